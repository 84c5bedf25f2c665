"""``invertavatar fit IMAGE_OR_VIDEO ... --model NAME[:PATH] --out DIR``: photos -> a fitted dataset.

Per input (an image is a one-frame sequence; a video one sequence of its frames): detect
MediaPipe landmarks, cut square crops (:mod:`invertavatar_faceverse.face_crop`, boxes smoothed
over a video's frames), detect again on the crops, fit the morphable model
(:mod:`invertavatar_faceverse.fitting`), then write, per frame, the crop, its EG3D camera, the
expression UV render, the UV unwrap (grid, visibility, preview) and the coefficients, plus an
overlay of the fitted mesh, in the layout of ``docs/dataset-layout.md``. A sequence already in
``--out`` is skipped, so an interrupted run resumes.
"""

import argparse
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument

__all__ = ["register", "run"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def register(subparsers, groups) -> None:
    """Add the ``fit`` parser."""
    parser = subparsers.add_parser(
        "fit",
        help="fit a morphable model to photos or a video and write the dataset the encoders read",
        description="Detect landmarks, crop, fit identity/expression/eyes/camera, and write crops, EG3D cameras, "
        "expression UV renders, UV unwraps, coefficients and overlays (docs/dataset-layout.md). A sequence "
        "already in --out is skipped, so an interrupted run resumes.",
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
    parser.add_argument("--every", type=int, default=1, help="use every k-th video frame")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument("--steps", type=int, default=None, help="per-frame optimisation steps (default 100)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def _model_config(spec: str, canonical: Path | None, registry) -> dict:
    name, _, path = spec.partition(":")
    config = {"name": name}
    fields = registry.config_cls("morphable_model", name).model_fields
    if path:
        if "path" not in fields:
            raise ValueError(f"--model {spec}: model {name!r} takes no data path")
        config["path"] = path
    if canonical is not None:
        if "mediapipe_canonical" not in fields:
            raise ValueError(f"--mediapipe-canonical: model {name!r} has its own landmark correspondence")
        config["mediapipe_canonical"] = str(canonical)
    return registry.validate_config("morphable_model", config).model_dump(mode="json")


def _frames(path: Path, every: int, max_frames: int | None):
    from invertavatar_core.image_io import read_image, read_video_frames, video_frame_count

    if path.suffix.lower() in VIDEO_SUFFIXES:
        count = video_frame_count(path)
        indices = list(range(0, count, max(1, every)))[:max_frames]
        return read_video_frames(path, indices), [f"{i:05d}" for i in indices]
    return [read_image(path)], ["00000"]


def run(args: argparse.Namespace) -> int:
    """Fit every input and write the dataset."""
    import torch
    from tqdm.auto import tqdm

    from invertavatar_core.cli import UserError, count_noun
    from invertavatar_core.compute import resolve_device
    from invertavatar_core.config import default_registry
    from invertavatar_core.datasets import FitDatasetWriter, FittedFrame
    from invertavatar_core.image_io import to_uint8
    from invertavatar_core.uv_maps import canonical_vertices, render_expression_uv, unwrap_image, uv_unwrap_grid
    from invertavatar_faceverse.face_crop import crop_box, crop_image, smooth_boxes
    from invertavatar_faceverse.fitting import FitDivergedError, FittingConfig, LandmarkInputError, fit_video
    from invertavatar_faceverse.mesh_render import render_mesh

    for path in args.inputs:
        if not path.is_file():
            raise UserError(f"input not found: {path}")
    registry = default_registry()
    if "mediapipe" not in registry.names("landmark_detector"):
        raise UserError('`fit` needs the MediaPipe landmark detector: pip install "invertavatar-faceverse[mediapipe]"')
    device = resolve_device(args.device)
    model_config = _model_config(args.model, args.mediapipe_canonical, registry)
    model = registry.create("morphable_model", model_config).to(device)
    rasterizer = registry.create("rasterizer", "torch")
    detector = registry.create("landmark_detector", "mediapipe")
    fitting = FittingConfig(**({"steps": args.steps} if args.steps else {}))
    valid = getattr(model, "landmark_valid", None)
    if valid is not None and not bool(valid.all()):
        print(
            f"note: model {model_config['name']!r} places {int(valid.sum())} of the 478 landmarks; "
            "pass --mediapipe-canonical face_model_with_iris.obj to use all of them"
        )
    writer = FitDatasetWriter(args.out, model_config, args.resolution, args.uv_resolution)
    names = [p.stem for p in args.inputs]
    if len(set(names)) != len(names):
        raise UserError("inputs must have distinct file names (each becomes a sequence named after it)")

    for path in args.inputs:
        sequence = path.stem
        frames, frame_names = _frames(path, args.every, args.max_frames)
        if frame_names and all(writer.has(sequence, f) for f in frame_names):
            print(f"{sequence}: already fitted, skipped")
            continue
        boxes = []
        for k, frame in enumerate(tqdm(frames, desc=f"{sequence}: landmarks", unit="frame", disable=args.no_progress)):
            found = detector.detect(to_uint8(frame))
            if found is None:
                raise UserError(f"{path}: no face found in frame {frame_names[k]}")
            boxes.append(crop_box(found))
        boxes = smooth_boxes(boxes) if len(boxes) > 1 else boxes
        crops, landmarks = [], []
        for k, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            crop = crop_image(frame, box, args.resolution)
            found = detector.detect(to_uint8(crop))
            if found is None:
                raise UserError(f"{path}: no face found in the crop of frame {frame_names[k]}")
            crops.append(crop)
            landmarks.append(found)
        points = torch.stack(landmarks).to(device)
        try:
            result = fit_video(model, points, args.resolution, fitting)
        except (LandmarkInputError, FitDivergedError) as exc:
            raise UserError(f"{path}: {exc}") from None
        images = torch.stack(crops).to(device)
        for k in tqdm(range(len(frames)), desc=f"{sequence}: writing", unit="frame", disable=args.no_progress):
            sl = slice(k, k + 1)
            ident, expr = result.identity[sl], result.expression[sl]
            eyes = None if result.eyes is None else result.eyes[sl]
            with torch.no_grad():
                uv = render_expression_uv(model, rasterizer, ident, expr, eyes, resolution=args.uv_resolution)
                grid, vis = uv_unwrap_grid(
                    model,
                    rasterizer,
                    ident,
                    expr,
                    eyes,
                    result.camera[sl],
                    uv_resolution=args.uv_resolution,
                    image_resolution=args.resolution,
                )
                unwrap = unwrap_image(images[sl], grid, vis)
                verts = canonical_vertices(model, ident, expr, eyes)
                shaded, mask = render_mesh(rasterizer, verts, model.faces, result.camera[sl], args.resolution)
                overlay = images[sl] * (1 - 0.6 * mask) + shaded * 0.6 * mask
            writer.add(
                sequence,
                frame_names[k],
                FittedFrame(
                    image=images[k],
                    camera=result.camera[k],
                    expression_uv=uv[0],
                    unwrap_grid=grid[0],
                    visibility=vis[0],
                    identity=ident[0],
                    expression=expr[0],
                    eyes=None if eyes is None else eyes[0],
                    landmarks=landmarks[k],
                    unwrap_rgb=unwrap[0],
                    overlay=overlay[0],
                ),
            )
        error = result.relative_error
        mean, worst = float(error.mean()), float(error.max())
        print(
            f"{sequence}: {count_noun(len(frames), 'frame')}, landmark error {mean:.2%} of the face size "
            f"(max {worst:.2%})"
        )
    print(f"wrote {args.out}")
    return 0
