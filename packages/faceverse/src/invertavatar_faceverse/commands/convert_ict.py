"""``invertavatar convert-ict FOLDER OUT.npz``: ICT-FaceKit's FaceXModel folder -> one compact npz."""

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers, groups) -> None:
    """Add the ``convert-ict`` parser."""
    parser = subparsers.add_parser(
        "convert-ict",
        help="convert ICT-FaceKit's FaceXModel folder to the compact .npz the 'ict' model loads fastest",
        description="Read generic_neutral_mesh.obj, identityNNN.obj, the expression OBJs and vertex_indices.json "
        "once and store them as deltas in one .npz.",
        epilog="example:\n  invertavatar convert-ict ICT-FaceKit/FaceXModel ict_face_model_light.npz\n\n"
        "put the .npz in INVERTAVATAR_WEIGHTS_DIR to use it without a path",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="ICT-FaceKit FaceXModel folder")
    parser.add_argument("out", type=Path, help="output .npz")
    parser.set_defaults(func=run)


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
