"""Discovery through entry points: fake distributions, broken plugins, environment switches."""

import json

import pytest
from pydantic import ValidationError

from invertavatar_core import (
    DuplicateComponentError,
    ExperimentConfig,
    UnknownComponentError,
    build_registry,
    get_plugin_manager,
)
from invertavatar_core.plugin.manager import ENV_ALLOW, ENV_DISABLE_AUTOLOAD, ENV_DISABLED

ACME_MODULE = '''
"""A third-party aggregator plugin, installed only as a dist-info folder on sys.path."""
from typing import Literal

import torch

from invertavatar_core import AggregatorConfig, hookimpl
from invertavatar_core.plugin.bases import AggregatorBase


class AcmeMaxConfig(AggregatorConfig):
    """Element-wise maximum over frames."""

    name: Literal["acme_max"] = "acme_max"


class AcmeMax(AggregatorBase):
    def __init__(self, config, *, channels):
        super().__init__(channels)
        self.config = config

    def init_state(self, like):
        return {"max": torch.full_like(like, float("-inf"))}

    def update(self, state, frame):
        return {"max": torch.maximum(state["max"], frame)}

    def read(self, state):
        return state["max"]


@hookimpl
def invertavatar_register_aggregators(registrar):
    registrar.add("acme_max", AcmeMax, AcmeMaxConfig, description="element-wise max (third party)")
'''


def make_distribution(root, dist_name: str, module_name: str, source: str, entry_name: str) -> None:
    """Write ``module_name.py`` and a ``*.dist-info`` with an ``invertavatar`` entry point under ``root``."""
    (root / f"{module_name}.py").write_text(source)
    info = root / f"{dist_name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[invertavatar]\n{entry_name} = {module_name}\n")
    (info / "top_level.txt").write_text(f"{module_name}\n")


@pytest.fixture
def acme(tmp_path, monkeypatch):
    make_distribution(tmp_path, "acme-aggregators", "acme_aggregators", ACME_MODULE, "acme")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_fake_distribution_registers_through_entry_point(acme):
    registry = build_registry(get_plugin_manager(autoload=True))
    entry = registry.entry("aggregator", "acme_max")
    assert entry.distribution == "acme-aggregators"
    assert entry.plugin == "acme"
    agg = registry.create("aggregator", "acme_max", channels=2)
    import torch

    frames = torch.tensor([[1.0, 5.0], [3.0, -2.0]]).view(1, 2, 2, 1, 1)
    assert agg(frames).flatten().tolist() == [3.0, 5.0]


def test_fake_distribution_in_experiment_config_and_sweep(acme, experiment_data, tmp_path):
    from core_fakes import manager_with_fakes

    from invertavatar_core import ExperimentConfig
    from invertavatar_core.config.sweep import Sweep

    registry = build_registry(manager_with_fakes(autoload=True))
    config = ExperimentConfig.model_validate(
        {**experiment_data, "aggregator": "acme_max"}, context={"registry": registry}
    )
    assert config.aggregator.name == "acme_max"
    sweep = Sweep(experiment_data, ["aggregator.name=acme_max,conv_gru,mean"], registry)
    assert [p.config.aggregator.name for p in sweep.points] == ["acme_max", "conv_gru", "mean"]

    def run_point(point, point_dir):
        agg = registry.create("aggregator", point.config.aggregator, channels=1)
        import torch

        with torch.no_grad():
            return {"out": float(agg(torch.tensor([1.0, 3.0]).view(1, 2, 1, 1, 1)).sum())}

    rows = sweep.run(run_point, tmp_path / "sweep")
    assert [r["out"] for r in rows][0] == 3.0  # max of 1 and 3
    assert (tmp_path / "sweep" / "results.md").read_text().count("acme_max") == 2


BROKEN = "raise ImportError('this plugin needs libfoo')\n"


def test_broken_plugin_import_is_reported_and_others_load(acme, tmp_path):
    make_distribution(tmp_path, "broken-plugin", "broken_plugin", BROKEN, "broken")
    with pytest.warns(RuntimeWarning, match="broken"):
        pm = get_plugin_manager(autoload=True)
    registry = build_registry(pm)
    assert "acme_max" in registry.names("aggregator")
    (problem,) = [p for p in registry.problems if p.plugin == "broken"]
    assert problem.distribution == "broken-plugin" and "libfoo" in problem.error


def test_plugin_whose_hook_raises_is_reported(plugin_manager):
    class Raises:
        from invertavatar_core import hookimpl

        @hookimpl
        def invertavatar_register_aggregators(self, registrar):
            raise RuntimeError("boom")

    plugin_manager.register_plugin(Raises(), "raises", "raising-dist")
    registry = build_registry(plugin_manager)
    assert "conv_gru" in registry.names("aggregator")
    assert any(p.plugin == "raises" and "boom" in p.error for p in registry.problems)


def test_disable_autoload_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    registry = build_registry(get_plugin_manager())
    assert "acme_max" not in registry.names("aggregator")


def test_disabled_plugins_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_DISABLED, "acme, other")
    registry = build_registry(get_plugin_manager())
    assert "acme_max" not in registry.names("aggregator")


def test_allow_list_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_ALLOW, "acme")
    registry = build_registry(get_plugin_manager())
    assert registry.names("aggregator") == ["acme_max"]


def test_trace_env(monkeypatch, capsys):
    from core_fakes import manager_with_fakes

    monkeypatch.setenv("INVERTAVATAR_TRACE_PLUGINS", "1")
    build_registry(manager_with_fakes())
    assert "invertavatar_register_aggregators -> plugin 'aggregators'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off", ""])
def test_autoload_switch_off_values_keep_autoload(acme, monkeypatch, value):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, value)
    assert "acme_max" in build_registry(get_plugin_manager()).names("aggregator")


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_autoload_switch_on_values_disable(acme, monkeypatch, value):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, value)
    assert "acme_max" not in build_registry(get_plugin_manager()).names("aggregator")


def test_autoload_switch_other_values_are_one_line_errors(acme, monkeypatch, capsys):
    from invertavatar_core.cli import main

    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "maybe")
    with pytest.raises(ValueError, match=f"{ENV_DISABLE_AUTOLOAD}='maybe': expected 1/true/yes/on or 0/false/no/off"):
        get_plugin_manager()
    assert main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invertavatar: error: environment variable INVERTAVATAR_DISABLE_PLUGIN_AUTOLOAD='maybe'")
    assert err.count("\n") == 1


def test_plugins_lists_the_names_the_block_list_takes(acme, monkeypatch, capsys):
    from invertavatar_core.cli import main

    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["components"]
    plugin_of = {row["name"]: row["plugin"] for row in rows}
    assert plugin_of["acme_max"] == "acme" and plugin_of["conv_gru"] == "aggregators"
    assert plugin_of["incremental"] == "invertavatar_core.builtin_plugin"
    # The listed names are exactly what INVERTAVATAR_DISABLED_PLUGINS takes.
    monkeypatch.setenv(ENV_DISABLED, f"{plugin_of['acme_max']},{plugin_of['conv_gru']}")
    registry = build_registry(get_plugin_manager())
    assert registry.names("aggregator") == [] and "incremental" in registry.names("inverter")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "DESCRIPTION"]
    assert (
        "not loaded: plugin 'aggregators' (invertavatar-aggregators): blocked by INVERTAVATAR_DISABLED_PLUGINS" in out
    )


def test_blocked_builtin_says_blocked_not_missing(monkeypatch):
    monkeypatch.setenv(ENV_DISABLED, "aggregators")
    registry = build_registry(get_plugin_manager())
    with pytest.raises(UnknownComponentError) as info:
        registry.entry("aggregator", "conv_gru")
    message = str(info.value)
    assert (
        "aggregator 'conv_gru' is provided by plugin 'aggregators', blocked by INVERTAVATAR_DISABLED_PLUGINS" in message
    )
    assert "not installed" not in message
    # The same message through an experiment config.
    with pytest.raises(ValidationError, match="blocked by INVERTAVATAR_DISABLED_PLUGINS"):
        ExperimentConfig.model_validate({"name": "x", "aggregator": "conv_gru"}, context={"registry": registry})


CLASH_MODULE = '''
"""A third-party plugin that registers a name the aggregators plugin already has."""
from typing import Literal

from invertavatar_core import AggregatorConfig, hookimpl


class ClashMeanConfig(AggregatorConfig):
    """Another 'mean'."""

    name: Literal["mean"] = "mean"


@hookimpl
def invertavatar_register_aggregators(registrar):
    registrar.add("mean", lambda config, **context: None, ClashMeanConfig, description="another mean")
'''


def test_a_duplicate_name_is_listed_with_both_providers_but_refused_for_use(acme, tmp_path, capsys):
    from invertavatar_core.cli import main

    make_distribution(tmp_path, "clash-plugin", "clash_plugin", CLASH_MODULE, "clash")
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    means = [(r["plugin"], r["distribution"]) for r in listing["components"] if r["name"] == "mean"]
    assert sorted(means) == [("aggregators", "invertavatar-aggregators"), ("clash", "clash-plugin")]
    (conflict,) = listing["conflicts"]
    assert "aggregator 'mean' is registered twice" in conflict and "clash-plugin" in conflict
    assert "acme_max" in {r["name"] for r in listing["components"]}  # the rest is still listed
    assert main(["plugins", "--kind", "aggregator"]) == 0
    assert "conflict: aggregator 'mean' is registered twice" in capsys.readouterr().out
    with pytest.raises(DuplicateComponentError, match="'mean' is registered twice"):
        build_registry(get_plugin_manager())
