"""``invertavatar convert ict FOLDER OUT.npz``: ICT-FaceKit's FaceXModel folder -> one compact npz.

``invertavatar convert-ict`` is kept as a hidden, deprecated alias.
"""

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]

_DESCRIPTION = (
    "Read generic_neutral_mesh.obj, identityNNN.obj, the expression OBJs and vertex_indices.json "
    "once and store them as deltas in one .npz."
)
_EPILOG = (
    "example:\n  invertavatar convert ict ICT-FaceKit/FaceXModel ict_face_model_light.npz\n\n"
    "put the .npz in INVERTAVATAR_WEIGHTS_DIR to use it without a path"
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="ICT-FaceKit FaceXModel folder")
    parser.add_argument("out", type=Path, help="output .npz")


def register(subparsers, groups) -> None:
    """Add ``convert ict`` and the hidden ``convert-ict`` alias."""
    parser = groups["convert"].add_parser(
        "ict",
        help="ICT-FaceKit's FaceXModel folder -> the compact .npz the 'ict' model loads fastest",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)
    # No help= keeps the alias out of the command listing.
    alias = subparsers.add_parser(
        "convert-ict", description=f"Deprecated: use 'invertavatar convert ict'. {_DESCRIPTION}"
    )
    _add_arguments(alias)
    alias.set_defaults(func=run_deprecated)


def run(args: argparse.Namespace) -> int:
    """Convert and report what was written."""
    from invertavatar_faceverse.ict import convert_ict_folder, load_ict_arrays

    out = convert_ict_folder(args.folder, args.out)
    arrays = load_ict_arrays(out)
    print(
        f"wrote {out}: {arrays['neutral_vertices'].shape[0]} vertices, {len(arrays['identity_names'])} identity modes, "
        f"{len(arrays['expression_names'])} expressions"
    )
    return 0


def run_deprecated(args: argparse.Namespace) -> int:
    """The old spelling: a one-line note, then the same conversion."""
    print("invertavatar convert-ict is deprecated; use 'invertavatar convert ict'", file=sys.stderr)
    return run(args)
