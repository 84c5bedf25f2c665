"""The ``invertavatar`` command: one entry point, one module per subcommand.

Each command module defines ``register(subparsers, groups)`` (adds its parser and sets ``func``);
plugins add theirs through the ``invertavatar_add_commands`` hook.
Errors a user can fix are printed as one clear message with exit status 2, not a traceback
(``--traceback`` shows it).
"""

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.errors import UserError
from invertavatar_core.plugin.manager import get_plugin_manager
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.version import __version__

__all__ = ["COMMANDS", "UserError", "cli_registry", "main"]

COMMANDS: tuple[str, ...] = (
    "invertavatar_core.cli.demo",
    "invertavatar_core.cli.plugins",
    "invertavatar_core.cli.config",
    "invertavatar_core.cli.sweep",
    "invertavatar_core.cli.train",
    "invertavatar_core.cli.reconstruct",
    "invertavatar_core.cli.render",
    "invertavatar_core.cli.evaluate",
)
"""Subcommand modules, in help order."""


@functools.cache
def cli_registry() -> Registry:
    """The registry of the installed plugins, built once per command-line process (the library keeps none)."""
    return default_registry()


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="invertavatar",
        description="Animatable 3D head avatars from one portrait or a few frames (InvertAvatar).",
    )
    parser.add_argument("--version", action="version", version=f"invertavatar {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = subparsers.add_parser("train", help="train a model (stage given as subcommand)")
    convert = subparsers.add_parser("convert", help="convert released weights to our checkpoints")
    groups = {
        "train": train.add_subparsers(dest="stage", metavar="STAGE", required=True),
        "convert": convert.add_subparsers(dest="source", metavar="SOURCE", required=True),
    }
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers, groups)
    pm = get_plugin_manager()
    pm.hook.invertavatar_add_commands(subparsers=subparsers, groups=groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
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
