"""The ``invertavatar`` command: one entry point, one module per subcommand.

Each command module defines ``register(subparsers, groups)`` (adds its parser and sets ``func``);
plugins add theirs through the ``invertavatar_add_commands`` hook. Building the parser imports
no torch model: command modules import what they run inside ``func``, so ``invertavatar --help``
is quick, and the thread policy (:mod:`invertavatar_core.config.compute`) is set before torch loads.
Errors a user can fix are printed as one clear message with exit status 2, not a traceback
(``--traceback`` shows it).
"""

import argparse
import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from invertavatar_core.errors import UserError
from invertavatar_core.plugin.manager import get_plugin_manager

if TYPE_CHECKING:
    from invertavatar_core.plugin.registry import Registry

__all__ = ["COMMANDS", "HELP_ORDER", "UserError", "build_parser", "cli_registry", "count_noun", "main"]

COMMANDS: tuple[str, ...] = (
    "invertavatar_core.cli.demo",
    "invertavatar_core.cli.train",
    "invertavatar_core.cli.reconstruct",
    "invertavatar_core.cli.render",
    "invertavatar_core.cli.animate",
    "invertavatar_core.cli.live",
    "invertavatar_core.cli.export",
    "invertavatar_core.cli.evaluate",
    "invertavatar_core.cli.sweep",
    "invertavatar_core.cli.plugins",
    "invertavatar_core.cli.config",
    "invertavatar_core.cli.doctor",
)
"""Core's subcommand modules."""

HELP_ORDER: tuple[str, ...] = (
    "demo",
    "preprocess",
    "synth-heads",
    "train",
    "sample",
    "reconstruct",
    "render",
    "animate",
    "live",
    "export",
    "evaluate",
    "sweep",
    "plugins",
    "config",
    "convert",
    "doctor",
)
"""Commands in the order the workflow uses them (plugin commands not named here come before ``doctor``)."""

EPILOG = """\
workflow:
  invertavatar demo                                     # everything end to end on built-in defaults
  invertavatar preprocess clip.mp4 --out dataset/       # videos, photos -> fitted dataset
  invertavatar train latent --config experiment.yaml    # then oneshot, incremental
  invertavatar reconstruct --checkpoint runs/x --source a.png --out avatar/
  invertavatar render --avatar avatar/ --orbit --out orbit.mp4
  invertavatar animate --avatar avatar/ --driving talking.mp4 --out animated.mp4
  invertavatar live --avatar avatar/ --window          # webcam (or --source clip.mp4)

environment: INVERTAVATAR_THREADS (torch threads), INVERTAVATAR_DEVICE, INVERTAVATAR_WEIGHTS_DIR;
'invertavatar doctor' shows what this machine has."""


@functools.cache
def cli_registry() -> "Registry":
    """The registry of the installed plugins, built once per command-line process (the library keeps none)."""
    from invertavatar_core.config.experiment import default_registry  # imports torch: not while building --help

    return default_registry()


def count_noun(count: int, noun: str) -> str:
    """``"1 frame"``, ``"3 frames"``: counts in command output."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


class _VersionAction(argparse.Action):
    """``--version``: invertavatar, torch, CUDA and every installed plugin distribution."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from invertavatar_core.cli.doctor import version_lines

        print("\n".join(version_lines()))
        parser.exit()


def _order_commands(subparsers: argparse._SubParsersAction) -> None:
    """List the commands in :data:`HELP_ORDER` (argparse lists them in the order they were added)."""
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    unnamed = rank["doctor"] - 0.5
    # argparse keeps the help rows in this private list; reordering it changes only the listing.
    subparsers._choices_actions.sort(key=lambda action: rank.get(action.dest, unnamed))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports no torch model)."""
    parser = argparse.ArgumentParser(
        prog="invertavatar",
        description="Animatable 3D head avatars from one portrait or a few frames (InvertAvatar).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the versions of invertavatar, torch and the plugins"
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: INVERTAVATAR_THREADS, else 1; OpenMP "
        "workers sleep while waiting; see 'invertavatar doctor')",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = subparsers.add_parser(
        "train",
        help="train the encoders (latent, oneshot, incremental) or the prior",
        description="Train one stage; the stages run in order latent -> oneshot -> incremental, each "
        "starting from the last one's run folder (training.init_from).",
        epilog="example:\n  invertavatar train latent --config experiment.yaml --steps 2000 --out runs/latent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert = subparsers.add_parser(
        "convert",
        help="convert released weights and face models to our pickle-free files",
        description="Convert a released file once (a pickled one is read through a restricted unpickler)\n"
        "into a checkpoint or .npz the other commands load; SOURCE says which release.",
        epilog="example:\n  invertavatar convert faceverse faceverse_v3_1.npy faceverse_v3_1.npz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = {
        "train": train.add_subparsers(dest="stage", metavar="STAGE", required=True),
        "convert": convert.add_subparsers(dest="source", metavar="SOURCE", required=True),
    }
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers, groups)
    get_plugin_manager().hook.invertavatar_add_commands(subparsers=subparsers, groups=groups)
    _order_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from pydantic import ValidationError

    from invertavatar_core.config.compute import apply_threads, prepare_threads

    try:
        parser = build_parser()  # loads the plugins, which reads the INVERTAVATAR_* switches
    except ValueError as exc:
        print(f"invertavatar: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        apply_threads(prepare_threads(args.threads))  # before the command imports torch models
        return int(args.func(args) or 0)
    except (UserError, ValidationError, FileNotFoundError, KeyError, ValueError) as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"invertavatar {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"invertavatar {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`invertavatar plugins | head`): stop quietly. Pointing stdout at
        # /dev/null keeps the interpreter's final flush from raising the same error again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
