"""``invertavatar render``: an orbit video of an avatar, or the avatar driven by a fitted video.

    invertavatar render --avatar AVATAR --orbit --out orbit.mp4 [--frames 60]
    invertavatar render --avatar AVATAR --drive FITDIR --out driven.mp4

The prior comes from the model checkpoint the avatar was reconstructed with (recorded in
``avatar.json``) or from ``--checkpoint``. The orbit keeps the source's neutral expression (its
identity coefficients with a zero expression, rendered through the experiment's morphable model);
driving re-renders each driving expression on the source identity when both sets of coefficients
are known, else uses the driving frames' own expression UV renders.
"""

import argparse
from pathlib import Path

from invertavatar_core.cli import cli_registry, count_noun
from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument, checkpoint_folder
from invertavatar_core.errors import UserError

__all__ = ["avatar_checkpoint", "driving_components", "neutral_expression_uv", "register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``render`` command."""
    parser = subparsers.add_parser(
        "render",
        help="render an avatar: orbit video or driven by a fitted video",
        description="Write a video of an avatar: a novel-view orbit with its neutral expression, or the avatar "
        "driven by the expressions and cameras of a fitted video (same-person or cross-person reenactment).",
        epilog="examples:\n"
        "  invertavatar render --avatar avatar/ --orbit --frames 60 --out orbit.mp4\n"
        "  invertavatar preprocess driver.mp4 --out driving/ && invertavatar render --avatar avatar/ --drive driving/ "
        "--out driven.mp4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--avatar", required=True, help="avatar folder (from 'invertavatar reconstruct')")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--orbit", action="store_true", help="novel-view orbit with the neutral expression")
    mode.add_argument("--drive", metavar="FITDIR", help="driving frames: a folder written by 'invertavatar preprocess'")
    parser.add_argument("--checkpoint", help="model checkpoint holding the prior (default: the avatar's)")
    parser.add_argument("--frames", type=int, default=60, help="orbit length in frames (default 60)")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate (default 25)")
    parser.add_argument("--out", required=True, help="output video (.mp4)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def avatar_checkpoint(args: argparse.Namespace, avatar) -> Path:
    """``--checkpoint``, else the model checkpoint the avatar records; a one-line error when neither is there."""
    if args.checkpoint:
        return checkpoint_folder(args.checkpoint)
    recorded = avatar.extra.get("checkpoint")
    if not recorded:
        raise UserError(f"{args.avatar}: avatar.json records no checkpoint; pass --checkpoint RUN")
    if not Path(recorded).is_dir():
        raise UserError(f"{args.avatar}: its model checkpoint {recorded} is gone; pass --checkpoint RUN")
    return Path(recorded)


def driving_components(models):
    """The experiment's morphable model and rasteriser (what re-renders driving expressions on the avatar)."""
    registry = cli_registry()
    experiment = models.experiment
    return registry.create("morphable_model", experiment.morphable_model), registry.create(
        "rasterizer", experiment.rasterizer
    )


def neutral_expression_uv(models, identity, device):
    """``(1, 3, U, U)`` UV render of ``identity`` (``(1, S)``; None: the mean face) with a zero expression."""
    import torch

    from invertavatar_core.geometry.uv_maps import render_expression_uv

    registry = cli_registry()
    experiment = models.experiment
    model = registry.create("morphable_model", experiment.morphable_model)
    rasterizer = registry.create("rasterizer", experiment.rasterizer)
    identity = identity[:1].cpu() if identity is not None else torch.zeros(1, model.n_identity)
    expression = torch.zeros(1, model.n_expression)
    eyes = torch.zeros(1, model.n_eye) if model.n_eye else None
    uv = render_expression_uv(model, rasterizer, identity, expression, eyes, resolution=models.prior.info.uv_resolution)
    return uv.to(device)


def run(args: argparse.Namespace) -> int:
    """Write the video."""
    from tqdm import tqdm

    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.inversion.avatar import Avatar
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.io.atomic import check_output_file
    from invertavatar_core.io.media import write_video

    check_output_file(args.out)  # before anything is loaded or rendered
    device = resolve_device(args.device)
    avatar = Avatar.load(args.avatar, device)
    models = InversionModels.load(avatar_checkpoint(args, avatar), cli_registry(), device=device).eval()
    prior = models.prior
    avatar.check_prior(prior)
    if args.orbit:
        if args.frames < 2:
            raise UserError(f"--frames must be at least 2, got {args.frames}")
        frames = avatar.render_orbit(prior, neutral_expression_uv(models, avatar.identity, device), frames=args.frames)
        total = args.frames
    else:
        frames, total = _driven(args, models, avatar, device)
    write_video(
        tqdm(frames, total=total, desc="render", unit="frame", disable=args.no_progress), args.out, fps=args.fps
    )
    print(f"wrote {count_noun(total, 'frame')} -> {args.out}")
    return 0


def _driven(args: argparse.Namespace, models, avatar, device):
    """The avatar driven by the fit folder's cameras and expressions as they are (same identity)."""
    from invertavatar_core.animation.driving import (
        AvatarAnimator,
        animation_steps,
        check_driving_model,
        dataset_morphable_model,
        driving_frames,
    )
    from invertavatar_core.data.datasets import open_dataset

    if not Path(args.drive).is_dir():
        raise UserError(f"--drive {args.drive}: folder not found (write it with `invertavatar preprocess`)")
    dataset = open_dataset(args.drive)
    if len(dataset) == 0:
        raise UserError(f"--drive {args.drive}: holds no fitted frames")
    avatar_model = models.experiment.morphable_model.model_dump(mode="json")
    model, rasterizer = driving_components(models)
    # Coefficients of another morphable model mean nothing here: refused before anything renders.
    check_driving_model(avatar_model, dataset_morphable_model(dataset), model, avatar.identity,
                        avatar=args.avatar, driving=args.drive)  # fmt: skip
    animator = AvatarAnimator(avatar, models.prior, model, rasterizer)
    steps = animation_steps(
        animator,
        driving_frames(dataset, range(len(dataset))),
        mode="same",
        avatar_model=avatar_model["name"],
        driving=args.drive,
    )
    return (animator.render(step.expression_uv, step.camera)[0] for step in steps), len(dataset)
