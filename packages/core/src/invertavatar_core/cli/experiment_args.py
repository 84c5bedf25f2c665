"""Arguments several commands share, so their names, defaults and help read the same everywhere.

``--config FILE --set KEY=VALUE --steps N --out DIR`` name an experiment (train, evaluate);
``--device`` and ``--no-progress`` mean the same in every command that takes them. Nothing heavy
is imported at module level: building the parser must not import torch.
"""

import argparse
from pathlib import Path

__all__ = [
    "DEVICE_HELP",
    "add_device_argument",
    "add_experiment_arguments",
    "add_progress_argument",
    "add_set_argument",
    "checkpoint_folder",
    "experiment_from_args",
    "single_overrides",
]

DEVICE_HELP = "torch device: cpu, cuda or cuda:N (default: INVERTAVATAR_DEVICE, else cuda when available)"


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` (resolved by :func:`invertavatar_core.config.compute.resolve_device`)."""
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: hide progress bars (logs and CI)."""
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_set_argument(parser: argparse.ArgumentParser, example: str, *, sweep: bool = False) -> None:
    """The repeatable ``--set KEY=VALUE`` (``sweep``: several comma-separated values each)."""
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=V1,V2" if sweep else "KEY=VALUE",
        help=f"dotted config override, e.g. {example} (repeatable" + ("; several values are swept)" if sweep else ")"),
    )


def add_experiment_arguments(
    parser: argparse.ArgumentParser, *, config_help: str, set_example: str, steps_key: str | None = None
) -> None:
    """Add ``--config``, ``--set`` and, when ``steps_key`` is given, ``--steps`` (sets that dotted key)."""
    parser.add_argument("--config", required=True, help=config_help)
    add_set_argument(parser, set_example)
    if steps_key is not None:
        parser.add_argument("--steps", type=int, default=None, help=f"training steps (overrides {steps_key})")
        parser.set_defaults(steps_key=steps_key)


def single_overrides(sets: list[str]) -> list[tuple[str, object]]:
    """``--set`` expressions as ``(dotted key, value)``; several values in one are refused (that is a sweep)."""
    from invertavatar_core.config.sweep import parse_set

    overrides = []
    for expression in sets:
        key, values = parse_set(expression)
        if len(values) != 1:
            raise ValueError(f"--set {expression}: one value expected (use `invertavatar sweep` for several)")
        overrides.append((key, values[0]))
    return overrides


def experiment_from_args(args: argparse.Namespace, out_key: str):
    """The config file with ``--set``, ``--steps`` and ``--out`` (written to the dotted ``out_key``) applied."""
    from invertavatar_core.cli import cli_registry
    from invertavatar_core.config.experiment import ExperimentConfig, load_config_data
    from invertavatar_core.config.sweep import apply_overrides

    overrides = single_overrides(args.sets)
    if getattr(args, "steps", None) is not None:
        overrides.append((args.steps_key, args.steps))
    if args.out:
        overrides.append((out_key, args.out))
    data = apply_overrides(load_config_data(args.config), overrides)
    return ExperimentConfig.model_validate(data, context={"registry": cli_registry()})


def checkpoint_folder(value: str | Path) -> Path:
    """``--checkpoint VALUE`` as a path; one line when it is not a folder (before any model is built)."""
    from invertavatar_core.errors import UserError

    if not Path(value).is_dir():
        raise UserError(f"--checkpoint {value}: folder not found")
    return Path(value)
