"""``--config FILE --set KEY=VALUE --out DIR``: how a command names its experiment, shared by train and evaluate."""

import argparse

from invertavatar_core.cli import cli_registry
from invertavatar_core.config.experiment import ExperimentConfig, load_config_data
from invertavatar_core.config.sweep import apply_overrides, parse_set

__all__ = ["add_experiment_arguments", "experiment_from_args"]


def add_experiment_arguments(parser: argparse.ArgumentParser, *, config_help: str, set_example: str) -> None:
    """Add ``--config`` and the repeatable ``--set`` (one value each; several values are a sweep)."""
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"dotted override, e.g. {set_example} (repeatable)",
    )


def experiment_from_args(args: argparse.Namespace, out_key: str) -> ExperimentConfig:
    """The config file with ``--set`` applied and ``--out`` written to the dotted ``out_key``, validated."""
    overrides = []
    for expression in args.sets:
        key, values = parse_set(expression)
        if len(values) != 1:
            raise ValueError(f"--set {expression}: one value expected (use `invertavatar sweep` for several)")
        overrides.append((key, values[0]))
    if args.out:
        overrides.append((out_key, args.out))
    data = apply_overrides(load_config_data(args.config), overrides)
    return ExperimentConfig.model_validate(data, context={"registry": cli_registry()})
