"""``invertavatar fit IMAGE_OR_VIDEO ... --model NAME[:PATH] --out DIR``: photos -> a fitted dataset.

The work is :func:`invertavatar_faceverse.dataset_fitting.fit_dataset` (landmarks, crops, the
morphable-model fit, UV renders and unwraps, in the layout of ``docs/dataset-layout.md``). A
sequence already in ``--out`` is skipped only when the content key of its input file and of the
settings (see :func:`invertavatar_core.data.datasets.input_key`) is unchanged, so an interrupted
run resumes and a different photo under the same file name is fitted again.
"""

import argparse
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument

__all__ = ["register", "run"]


def register(subparsers, groups) -> None:
    """Add the ``fit`` parser."""
    parser = subparsers.add_parser(
        "fit",
        help="fit a morphable model to photos or a video and write the dataset the encoders read",
        description="Detect landmarks, crop, fit identity/expression/eyes/camera, and write crops, EG3D cameras, "
        "expression UV renders, UV unwraps, coefficients and overlays (docs/dataset-layout.md). A sequence "
        "already in --out from the same file and settings is skipped, so an interrupted run resumes.",
        epilog="examples:\n"
        "  invertavatar fit portrait.png --out fitted/\n"
        "  invertavatar fit clip.mp4 --every 5 --max-frames 40 --model ict:FaceXModel/ --out fitted/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_VIDEO", help="images and/or videos")
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
        help="with several faces in a frame, fit the K-th largest (0, the default, is the largest)",
    )
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit every input and write the dataset."""
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
        device=args.device,
        progress=not args.no_progress,
    )
    return 0
