"""``invertavatar convert ict FOLDER OUT.npz``: ICT-FaceKit's FaceXModel folder -> one compact npz.

``invertavatar convert-ict`` is kept as a hidden, deprecated alias.
"""

import argparse
from pathlib import Path

from invertavatar_faceverse.commands import add_convert_command

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
    add_convert_command(
        subparsers,
        groups,
        "ict",
        help="ICT-FaceKit's FaceXModel folder -> the compact .npz the 'ict' model loads fastest",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        add_arguments=_add_arguments,
        run=run,
    )


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
