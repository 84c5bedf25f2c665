"""The command-line subcommands this package adds to ``invertavatar``."""

import argparse
import sys
from collections.abc import Callable

__all__ = ["add_convert_command"]


def add_convert_command(
    subparsers,
    groups,
    name: str,
    *,
    help: str,
    description: str,
    epilog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add ``convert NAME`` and its hidden, deprecated spelling ``convert-NAME`` (one note, then ``run``)."""
    parser = groups["convert"].add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.set_defaults(func=run)

    def run_deprecated(args: argparse.Namespace) -> int:
        print(f"invertavatar convert-{name} is deprecated; use 'invertavatar convert {name}'", file=sys.stderr)
        return run(args)

    # No help= keeps the alias out of the command listing.
    alias = subparsers.add_parser(
        f"convert-{name}", description=f"Deprecated: use 'invertavatar convert {name}'. {description}"
    )
    add_arguments(alias)
    alias.set_defaults(func=run_deprecated)
