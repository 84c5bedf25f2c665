"""``invertavatar demo``: the main job on the built-in defaults."""

import argparse

from invertavatar_core.config import default_registry
from invertavatar_core.tables import format_table

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser("demo", help="run the built-in demo")
    parser.add_argument("--out", default="demo-output", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Show what is installed (the reconstruction demo arrives with the pipeline)."""
    registry = default_registry()
    rows = [{"kind": e.kind, "name": e.name, "distribution": e.distribution} for e in registry.entries()]
    print(format_table(rows))
    return 0
