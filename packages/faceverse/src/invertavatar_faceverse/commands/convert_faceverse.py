"""``invertavatar convert-faceverse IN.npy OUT.npz``: the pickled FaceVerse dict -> a pickle-free npz."""

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers, groups) -> None:
    """Add the ``convert-faceverse`` parser."""
    parser = subparsers.add_parser(
        "convert-faceverse",
        help="convert the official (pickled) FaceVerse .npy once into a pickle-free .npz",
        description="Reads IN.npy through a restricted unpickler (NumPy arrays and plain containers only; any "
        "other object in the file is refused, nothing in it runs) and writes its numeric arrays to OUT.npz, "
        "which the 'faceverse' model loads without unpickling.",
        epilog="example:\n  invertavatar convert-faceverse faceverse_v3_1.npy faceverse_v3_1.npz\n\n"
        "put the .npz in INVERTAVATAR_WEIGHTS_DIR to use it without a path",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="faceverse_v3_1.npy")
    parser.add_argument("out", type=Path, help="output .npz")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and report what was written."""
    from invertavatar_faceverse.faceverse import convert_faceverse_file

    out = convert_faceverse_file(args.source, args.out)
    print(f"wrote {out}")
    return 0
