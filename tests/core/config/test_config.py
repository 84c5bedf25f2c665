"""Experiment configs: registry dispatch, error paths, JSON/YAML round-trip."""

import json

import pytest
import yaml
from pydantic import ValidationError

from invertavatar_core import ExperimentConfig, load_experiment
from invertavatar_core.config.experiment import dump_config, load_config_data


def test_dispatch_builds_each_components_own_config(registry, experiment_data):
    config = ExperimentConfig.model_validate(experiment_data, context={"registry": registry})
    assert type(config.aggregator).__name__ == "ConvGRUAggregatorConfig"
    assert config.aggregator.kernel_size == 5
    assert config.prior.width == 8
    assert config.encoders.texture is None
    assert config.training.stage2_losses.lpips == 1.0  # Eq. 3


def test_json_round_trip_keeps_subclass_fields(registry, experiment_data):
    config = ExperimentConfig.model_validate(experiment_data, context={"registry": registry})
    dumped = json.loads(config.model_dump_json())
    assert dumped["aggregator"] == {
        "name": "conv_gru",
        "kernel_size": 5,
        "gate_order": "update_reset",
        "update_weights": "previous",
    }
    assert dumped["prior"] == {"name": "fake_prior", "width": 8}
    again = ExperimentConfig.model_validate(dumped, context={"registry": registry})
    assert again == config


def test_yaml_file_and_resolved_dump(registry, experiment_data, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_data))
    config = load_experiment(path, registry)
    out = dump_config(config, tmp_path / "run" / "config.json")
    assert load_experiment(out, registry) == config


def test_error_carries_the_field_path(registry, experiment_data):
    bad = {**experiment_data, "aggregator": {"name": "conv_gru", "kernel_size": "wide"}}
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate(bad, context={"registry": registry})
    (error,) = info.value.errors()
    assert error["loc"] == ("aggregator", "kernel_size")


def test_unknown_key_is_rejected(registry, experiment_data):
    bad = {**experiment_data, "aggregator": {"name": "mean", "kernel_size": 3}}
    with pytest.raises(ValidationError, match="kernel_size"):
        ExperimentConfig.model_validate(bad, context={"registry": registry})


def test_unknown_component_lists_suggestions(registry, experiment_data):
    bad = {**experiment_data, "aggregator": "conv_gur"}
    with pytest.raises(ValidationError, match="Did you mean 'conv_gru'"):
        ExperimentConfig.model_validate(bad, context={"registry": registry})


def test_configs_are_frozen(registry, experiment_data):
    config = ExperimentConfig.model_validate(experiment_data, context={"registry": registry})
    with pytest.raises(ValidationError):
        config.aggregator.kernel_size = 7


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config_data(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        load_config_data(broken)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json: expected a mapping"):
        load_config_data(listing)


def test_without_a_context_one_registry_is_built_per_validation(registry, experiment_data, monkeypatch):
    import invertavatar_core.config.experiment as experiment_module

    built = []

    def fresh_registry():
        built.append(registry)
        return registry

    monkeypatch.setattr(experiment_module, "default_registry", fresh_registry)
    config = ExperimentConfig.model_validate(experiment_data)
    assert len(built) == 1  # shared by every component field, nested sections included
    assert config.prior.width == 8 and type(config.aggregator).__name__ == "ConvGRUAggregatorConfig"
    ExperimentConfig.model_validate(experiment_data)
    assert len(built) == 2  # the library keeps no registry between validations


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_an_empty_config_file_is_an_error_naming_it(tmp_path, text, capsys):
    from invertavatar_core.cli import main

    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    with pytest.raises(ValueError, match=r"empty.yaml: the config file is empty"):
        load_config_data(empty)
    assert main(["config", "show", str(empty)]) == 2  # not the paper-size defaults
    captured = capsys.readouterr()
    assert captured.out == "" and "empty.yaml: the config file is empty" in captured.err
