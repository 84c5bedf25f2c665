"""The stage table lives below the CLI: names in training order, each resolving to its stage function."""

import importlib

from invertavatar_core.training.stages import STAGES


def test_stage_names_in_training_order_resolve_to_their_functions():
    assert list(STAGES) == ["latent", "oneshot", "incremental"]
    for name, stage in STAGES.items():
        function = getattr(importlib.import_module(stage.module), stage.function)
        assert function.__name__ == f"train_{name}"
        assert stage.module == f"invertavatar_core.training.stages.{name}"


def test_the_cli_keeps_one_registry_per_process():
    from invertavatar_core.cli import cli_registry

    assert cli_registry() is cli_registry()
