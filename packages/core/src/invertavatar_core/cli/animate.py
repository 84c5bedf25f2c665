"""``invertavatar animate``: an avatar driven by another clip, same-identity or cross-identity.

    invertavatar animate --avatar AVATAR --driving VIDEO_OR_FITDIR --out out.mp4
        [--mode auto|same|cross] [--side-by-side] [--driving-cache DIR] [--sequence NAME]

The driving clip is a fitted dataset (a folder written by ``invertavatar preprocess`` or ``synth-heads``,
or the official layout) or a video, which is fitted first with the avatar's morphable model (as
``invertavatar preprocess`` does) into ``--driving-cache`` (reused when the video and settings are
unchanged) or a temporary folder. Same identity uses the driving cameras as they are; cross
identity keeps the avatar's identity and moves its source pose as the driver's head moves from
the reference frame (invertavatar_core.animation.driving). ``--mode auto`` (the default) picks
same identity for the avatar's own fitted sources or matching identity coefficients, else cross
identity, and prints which and why. A driving fit of another morphable model is refused, naming
both models, before anything is rendered.
"""

import argparse
import contextlib
import tempfile
from pathlib import Path

from invertavatar_core.cli import cli_registry, count_noun
from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument
from invertavatar_core.errors import UserError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``animate`` command."""
    parser = subparsers.add_parser(
        "animate",
        help="drive an avatar with a video or fitted clip (same or another person)",
        description="Write a video of an avatar driven by another clip: a video (fitted first with the avatar's "
        "morphable model) or a fitted dataset folder. Same identity: the driving head poses and expressions as "
        "they are. Cross identity: the avatar keeps its identity; the expressions and the head motion relative "
        "to the reference frame are transferred onto its source pose.",
        epilog="examples:\n"
        "  invertavatar animate --avatar avatar/ --driving talking.mp4 --out animated.mp4\n"
        "  invertavatar animate --avatar avatar/ --driving fitted/ --mode cross --side-by-side --out reenacted.mp4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--avatar", required=True, help="avatar folder (from 'invertavatar reconstruct')")
    parser.add_argument(
        "--driving",
        required=True,
        metavar="VIDEO_OR_FITDIR",
        help="a video, or a folder written by 'invertavatar preprocess'",
    )
    parser.add_argument("--out", required=True, help="output video (.mp4)")
    parser.add_argument(
        "--mode",
        choices=("auto", "same", "cross"),
        default="auto",
        help="same: driving poses as they are; cross: relative head pose on the avatar's source pose; auto "
        "(default): same for the avatar's own sources or matching identity coefficients, else cross",
    )
    parser.add_argument("--side-by-side", action="store_true", help="write the driving frame beside the avatar")
    parser.add_argument(
        "--driving-cache",
        metavar="DIR",
        help="where a driving video's fit is kept and reused (default: a temporary folder, removed afterwards)",
    )
    parser.add_argument("--sequence", help="the driving folder's sequence to use (default: its first)")
    parser.add_argument(
        "--reference-frame",
        type=int,
        default=0,
        help="driving frame the cross-identity head motion is measured from (default 0, the first)",
    )
    parser.add_argument("--frames", type=int, help="at most this many driving frames (default: all)")
    parser.add_argument("--checkpoint", help="model checkpoint holding the prior (default: the avatar's)")
    parser.add_argument("--fps", type=float, help="video frame rate (default: the driving video's, else 25)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def _model_spec(model_config: dict) -> str:
    """``NAME[:PATH]`` for :func:`invertavatar_faceverse.fit_dataset` from a morphable model config."""
    path = model_config.get("path")
    return f"{model_config['name']}:{path}" if path else str(model_config["name"])


def _fit_video(args: argparse.Namespace, video: Path, fit_dir: Path, models, registry) -> None:
    """Fit the driving video with the avatar's morphable model, as ``invertavatar preprocess`` would."""
    try:
        from invertavatar_faceverse import fit_dataset
    except ImportError:
        raise UserError(
            'fitting a driving video needs the faceverse package (pip install "invertavatar-core[faceverse]"); '
            "or fit it elsewhere with the avatar's model and pass the folder"
        ) from None
    model_config = models.experiment.morphable_model.model_dump(mode="json")
    canonical = model_config.get("mediapipe_canonical")
    uv_resolution = models.prior.info.uv_resolution
    print(f"fitting the driving video with model {model_config['name']!r} into {fit_dir}")
    try:
        # Every fitted frame drives the avatar: the fit's quality flags are reported, not acted on.
        fit_dataset([video], fit_dir, registry, model=_model_spec(model_config), mediapipe_canonical=canonical,
                    uv_resolution=uv_resolution, max_frames=args.frames, device=str(models.device),
                    keep_flagged=True, progress=not args.no_progress)  # fmt: skip
    except (UserError, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(f"fitting the driving video failed: {message}") from exc


def _sequence(args: argparse.Namespace, dataset, name_hint: str | None) -> tuple[str, list[int]]:
    sequences = dataset.sequences()
    if not sequences:
        raise UserError(f"--driving {args.driving}: holds no fitted frames")
    wanted = args.sequence or name_hint
    if wanted is not None:
        if wanted not in sequences:
            raise UserError(f"--sequence {wanted}: not in {args.driving}; it holds {', '.join(sorted(sequences)[:10])}")
        return wanted, sequences[wanted]
    name = next(iter(sequences))
    if len(sequences) > 1:
        print(f"driving sequence {name!r} (of {len(sequences)}; --sequence NAME picks another)")
    return name, sequences[name]


def _own_sources(avatar, fit_dir: Path, driving: Path) -> bool:
    """Whether the driving frames are the avatar's own: its fit folder, or one of its source files."""
    recorded = avatar.extra.get("fit")
    if recorded is not None and Path(recorded).resolve() == fit_dir.resolve():
        return True
    sources = avatar.extra.get("sources")
    sources = [sources] if isinstance(sources, str) else sources or []
    return driving.is_file() and any(Path(s).resolve() == driving.resolve() for s in sources)


def _compose(avatar_image, driving_image):
    """``(3, H, 2W)``: the driving frame resized to the avatar's size, then the avatar."""
    import torch

    from invertavatar_core.inversion.pipeline import resize_square

    size = avatar_image.shape[-1]
    driving = resize_square(driving_image.to(avatar_image), size)[0]
    return torch.cat([driving, avatar_image], dim=-1)


def run(args: argparse.Namespace) -> int:
    """Fit the driving video if needed, choose the mode, render and write the video."""
    from invertavatar_core.animation.capture import video_frame_rate
    from invertavatar_core.cli.render import avatar_checkpoint
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.data.datasets import FIT_KIND
    from invertavatar_core.inversion.avatar import Avatar
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.io.atomic import check_output_dir, check_output_file

    check_output_file(args.out)  # before anything is loaded, fitted or rendered
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    if args.reference_frame < 0:
        raise UserError(f"--reference-frame must be 0 or more, got {args.reference_frame}")
    driving = Path(args.driving)
    if not driving.exists():
        raise UserError(
            f"--driving {driving}: not found (give a video or a folder written by 'invertavatar preprocess')"
        )
    is_video = driving.is_file()
    if is_video:
        from invertavatar_core.io.media import video_frame_count

        video_frame_count(driving)  # a corrupt or non-video file: one line now, not after the models load
        if args.driving_cache:
            check_output_dir(args.driving_cache, FIT_KIND, reuse=True, signature=("dataset.json",), what="fit folder")
    device = resolve_device(args.device)
    avatar = Avatar.load(args.avatar, device)
    registry = cli_registry()
    models = InversionModels.load(avatar_checkpoint(args, avatar), registry, device=device).eval()
    avatar.check_prior(models.prior)
    with contextlib.ExitStack() as stack:
        if is_video:
            if args.driving_cache:
                fit_dir = Path(args.driving_cache)
            else:
                fit_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="invertavatar-driving-"))) / "fit"
            _fit_video(args, driving, fit_dir, models, registry)
            fps = args.fps or video_frame_rate(driving)
            written = _animate(args, avatar, models, fit_dir, driving.stem, fps)
        else:
            written = _animate(args, avatar, models, driving, None, args.fps or 25.0)
    print(f"wrote {count_noun(written, 'frame')} -> {args.out}")
    return 0


def _animate(args: argparse.Namespace, avatar, models, fit_dir: Path, sequence: str | None, fps: float) -> int:
    """Check the driving model, choose the mode and write the video; returns the frames written."""
    from tqdm import tqdm

    from invertavatar_core.animation.driving import (
        AvatarAnimator,
        animation_steps,
        avatar_source_camera,
        check_driving_model,
        choose_mode,
        dataset_morphable_model,
        driving_frames,
    )
    from invertavatar_core.cli.render import driving_components
    from invertavatar_core.data.datasets import open_dataset
    from invertavatar_core.io.media import write_video

    size = models.prior.info.image_resolution
    dataset = open_dataset(fit_dir, image_resolution=size if args.side_by_side else None)
    avatar_model = models.experiment.morphable_model.model_dump(mode="json")
    model, rasterizer = driving_components(models)
    # Coefficients of another morphable model mean nothing to this avatar: refused before any rendering.
    check_driving_model(avatar_model, dataset_morphable_model(dataset), model, avatar.identity,
                        avatar=args.avatar, driving=args.driving)  # fmt: skip
    name, indices = _sequence(args, dataset, sequence)
    if args.frames is not None:
        indices = indices[: args.frames]
    if args.reference_frame >= len(indices):
        raise UserError(f"--reference-frame {args.reference_frame}: the driving clip has {len(indices)} frames")
    reference = dataset[indices[args.reference_frame]]
    own = _own_sources(avatar, fit_dir, Path(args.driving))
    mode, why = choose_mode(args.mode, avatar.identity, reference.identity, own_sources=own)
    print(f"mode: {mode} identity ({why})")
    source_camera, note = avatar_source_camera(avatar)
    if mode == "cross" and note:
        print(f"note: {note}")
    animator = AvatarAnimator(avatar, models.prior, model, rasterizer)
    if not animator.can_transfer or reference.expression is None:
        print("note: the driving frames' own expression UV renders are used (no identity or expression coefficients)")
    steps = animation_steps(
        animator,
        driving_frames(dataset, indices, images=args.side_by_side),
        mode=mode,
        reference_camera=reference.camera,
        source_camera=source_camera,
        avatar_model=avatar_model["name"],
        driving=args.driving,
    )

    def frames():
        for step in steps:
            image = animator.render(step.expression_uv, step.camera)[0]
            yield _compose(image, step.frame.image) if args.side_by_side else image

    progress = tqdm(frames(), total=len(indices), desc=f"animate {name}", unit="frame", disable=args.no_progress)
    write_video(progress, args.out, fps=fps)
    return len(indices)
