"""``invertavatar convert faceverse IN.npy OUT.npz``: the pickled FaceVerse dict -> a pickle-free npz.

``invertavatar convert-faceverse`` is kept as a hidden, deprecated alias.
"""

import argparse
from pathlib import Path

from invertavatar_faceverse.commands import add_convert_command

__all__ = ["register", "run"]

_DESCRIPTION = (
    "Reads IN.npy through a restricted unpickler (NumPy arrays and plain containers only; any "
    "other object in the file is refused, nothing in it runs) and writes its numeric arrays to OUT.npz, "
    "which the 'faceverse' model loads without unpickling."
)
_EPILOG = (
    "example:\n  invertavatar convert faceverse faceverse_v3_1.npy faceverse_v3_1.npz\n\n"
    "put the .npz in INVERTAVATAR_WEIGHTS_DIR to use it without a path"
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="faceverse_v3_1.npy")
    parser.add_argument("out", type=Path, help="output .npz")


def register(subparsers, groups) -> None:
    """Add ``convert faceverse`` and the hidden ``convert-faceverse`` alias."""
    add_convert_command(
        subparsers,
        groups,
        "faceverse",
        help="the official (pickled) FaceVerse v3.1 .npy -> a pickle-free .npz",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        add_arguments=_add_arguments,
        run=run,
    )


def run(args: argparse.Namespace) -> int:
    """Convert and report what was written."""
    from invertavatar_faceverse.faceverse import convert_faceverse_file

    out = convert_faceverse_file(args.source, args.out)
    print(f"wrote {out}")
    return 0
