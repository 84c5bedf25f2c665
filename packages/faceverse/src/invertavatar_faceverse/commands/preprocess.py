"""``invertavatar preprocess VIDEO|PHOTO|FOLDER ... --out DATASET``: media -> the fitted dataset.

The work is :func:`invertavatar_faceverse.dataset_fitting.fit_dataset`: frames streamed one at a
time, faces found at any size and place, the morphable model fitted, and crops, EG3D cameras,
expression UV renders, UV unwraps, coefficients and overlays written in the layout of
``docs/dataset-layout.md``, with a per-frame ``report.csv``. An interrupted run resumes; work
already done for the same input file and settings is kept (see
:func:`invertavatar_core.data.datasets.input_key`). ``invertavatar fit`` is kept as a hidden,
deprecated spelling.
"""

import argparse
import sys
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument

__all__ = ["register", "run"]

_DESCRIPTION = (
    "Find the face in every frame (also small or off-centre ones), crop, fit identity/expression/eyes/camera, "
    "and write crops, EG3D cameras, expression UV renders, UV unwraps, coefficients and overlays "
    "(docs/dataset-layout.md) plus report.csv: every frame, written or skipped and why. A folder of photos is one "
    "person: one sequence with one identity. Frames are streamed, so any length of video fits in memory; an "
    "interrupted run continues where it stopped."
)
_EPILOG = (
    "examples:\n"
    "  invertavatar preprocess portrait.jpg --out dataset/\n"
    "  invertavatar preprocess photos-of-anna/ --out dataset/          # one person, one identity\n"
    "  invertavatar preprocess clip.mp4 --every 2 --face-index 1 --model ict:FaceXModel/ --out dataset/"
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="VIDEO|PHOTO|FOLDER",
        help="videos, photos, and/or folders of photos of one person each",
    )
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument(
        "--model",
        default="procedural",
        metavar="NAME[:PATH]",
        help="morphable model, optionally with its data file (e.g. ict:FaceXModel/ or faceverse:faceverse_v3_1.npz)",
    )
    parser.add_argument(
        "--mediapipe-canonical",
        type=Path,
        default=None,
        help="MediaPipe's face_model_with_iris.obj: gives the model all 478 landmark correspondences",
    )
    parser.add_argument("--resolution", type=int, default=512, help="crop size (default 512)")
    parser.add_argument(
        "--uv-resolution", type=int, default=256, help="expression UV render / unwrap size (default 256)"
    )
    parser.add_argument(
        "--crop",
        choices=("ffhq", "eg3d"),
        default="ffhq",
        help="crop recipe: 'ffhq' (ours, from the landmarks) or 'eg3d' (EG3D's in-the-wild recipe the released "
        "model's data used; needs --crop-reference; docs/release-preprocessing.md)",
    )
    parser.add_argument(
        "--crop-reference",
        type=Path,
        default=None,
        metavar="FILE",
        help="the eg3d crop's standard 3D landmarks: Deep3DFaceRecon's similarity_Lm3D_all.mat or a (68|5, 3) .npy",
    )
    parser.add_argument(
        "--uv-layout",
        choices=("model", "release"),
        default="model",
        help="UV layout of the UV maps: the model's own UVs, or 'release': the released model's FaceVerse "
        "face-island enlargement (x1.4; use with --model faceverse:..., docs/release-preprocessing.md)",
    )
    parser.add_argument(
        "--uv-mask",
        type=Path,
        default=None,
        metavar="PNG",
        help="UV-space mask multiplied into the unwrap visibility (the release's dense_uv_expanded_mask_onlyFace.png)",
    )
    parser.add_argument("--every", type=int, default=1, help="use every k-th video frame")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="optimisation steps per batch of video frames (default 200); photos and the frames that fix a "
        "video's identity get 2.5x N (default 500)",
    )
    parser.add_argument(
        "--face-index",
        type=int,
        default=None,
        metavar="K",
        help="with several faces in a frame, take the K-th largest (0, the default, is the largest); "
        "a video follows that face from frame to frame",
    )
    parser.add_argument(
        "--keep-flagged",
        action="store_true",
        help="also write frames the fit's quality check flags (skipped by default; report.csv lists them)",
    )
    parser.add_argument(
        "--jitter-baseline",
        action="store_true",
        help="fit each video a second time without temporal terms and print its jitter too "
        "(what the smoothing removes; doubles the fitting time)",
    )
    add_device_argument(parser)
    add_progress_argument(parser)


def register(subparsers, groups) -> None:
    """Add ``preprocess`` and the hidden, deprecated ``fit``."""
    parser = subparsers.add_parser(
        "preprocess",
        help="videos, photos or folders of photos -> the fitted dataset the encoders read",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)
    # No help= keeps the old spelling out of the command listing.
    alias = subparsers.add_parser(
        "fit",
        description=f"Deprecated: use 'invertavatar preprocess'. {_DESCRIPTION}",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(alias)
    alias.set_defaults(func=run_deprecated)


def run_deprecated(args: argparse.Namespace) -> int:
    """``invertavatar fit``: one note, then :func:`run`."""
    print("invertavatar fit is deprecated; use 'invertavatar preprocess'", file=sys.stderr)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Preprocess every input and write the dataset."""
    from invertavatar_core.config.experiment import default_registry
    from invertavatar_faceverse import fit_dataset

    fit_dataset(
        args.inputs,
        args.out,
        default_registry(),
        model=args.model,
        mediapipe_canonical=args.mediapipe_canonical,
        resolution=args.resolution,
        uv_resolution=args.uv_resolution,
        crop=args.crop,
        crop_reference=args.crop_reference,
        uv_layout=args.uv_layout,
        uv_mask=args.uv_mask,
        every=args.every,
        max_frames=args.max_frames,
        steps=args.steps,
        face_index=args.face_index,
        keep_flagged=args.keep_flagged,
        jitter_baseline=args.jitter_baseline,
        device=args.device,
        progress=not args.no_progress,
    )
    return 0
