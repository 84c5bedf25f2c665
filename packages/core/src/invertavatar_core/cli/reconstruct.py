"""``invertavatar reconstruct``: build an avatar from one portrait, several frames, or a video clip.

    invertavatar reconstruct --checkpoint RUN --source a.png [b.png ...] [--fit FITDIR] --out AVATAR
    invertavatar reconstruct --checkpoint RUN --source-video clip.mp4 --frames 8 [--fit FITDIR] --out AVATAR

``--checkpoint`` is a model checkpoint folder (docs/checkpoints.md), e.g. a training run folder.
Each source frame needs its camera, expression UV render and UV unwrap: from ``--fit FITDIR``
(a folder written by ``invertavatar fit``, its frames in source order), or, without it, the
sources are fitted first with ``invertavatar fit`` into ``AVATAR.fit/`` (needs the faceverse
package). Several frames go through the experiment's inverter frame by frame (the incremental
path), with a progress line per frame.
"""

import argparse
import time
from pathlib import Path

from invertavatar_core.cli import UserError
from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument

__all__ = ["fitted_frames", "register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``reconstruct`` command."""
    parser = subparsers.add_parser(
        "reconstruct",
        help="build an avatar from source images or a video",
        description="Invert one portrait, several frames or a video clip of one person into an avatar folder, "
        "frame by frame through the experiment's inverter. Sources without --fit are fitted first "
        "('invertavatar fit', into AVATAR.fit/).",
        epilog="examples:\n"
        "  invertavatar reconstruct --checkpoint runs/incremental --source a.png b.png --out avatar/\n"
        "  invertavatar reconstruct --checkpoint runs/incremental --source-video clip.mp4 --frames 8 "
        "--fit fitted/ --out avatar/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model checkpoint folder (e.g. a training run)")
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--source", nargs="+", metavar="IMG", help="source image(s) of one person")
    sources.add_argument("--source-video", metavar="VIDEO", help="a video of one person")
    parser.add_argument("--frames", type=int, default=8, help="frames taken evenly from --source-video (default 8)")
    parser.add_argument("--fit", metavar="FITDIR", help="folder written by 'invertavatar fit' for these sources")
    parser.add_argument("--inverter", help="registry name of the inverter (default: the experiment's)")
    parser.add_argument("--out", required=True, help="avatar folder to write")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def fitted_frames(fit_dir: str | Path):
    """Every frame of a fit folder, in its order, as one :class:`Observation`."""
    from invertavatar_core.datasets import FitDataset
    from invertavatar_core.observation import Observation

    fit_dir = Path(fit_dir)
    if not fit_dir.is_dir():
        raise UserError(f"--fit {fit_dir}: folder not found (write it with `invertavatar fit`)")
    dataset = FitDataset(fit_dir)
    if len(dataset) == 0:
        raise UserError(f"--fit {fit_dir}: holds no fitted frames")
    return Observation.cat([dataset[i] for i in range(len(dataset))])


def _fit_sources(args: argparse.Namespace, fit_dir: Path, models) -> None:
    """Run ``invertavatar fit`` on the sources with the experiment's morphable model and the prior's UV size."""
    from invertavatar_core.cli import main
    from invertavatar_core.image_io import video_frame_count

    inputs = [args.source_video] if args.source_video else list(args.source)
    for path in inputs:
        if not Path(path).is_file():
            raise UserError(f"source not found: {path}")
    command = ["fit", *inputs, "--out", str(fit_dir), "--model", models.experiment.morphable_model.name]
    command += ["--uv-resolution", str(models.prior.info.uv_resolution), "--device", str(models.device)]
    if args.no_progress:
        command.append("--no-progress")
    if args.source_video:  # fit only about the frames that will be used
        command += ["--every", str(max(1, video_frame_count(args.source_video) // max(args.frames, 1)))]
    print(f"fitting the sources: invertavatar {' '.join(command)}")
    status = main(command)
    if status:
        raise UserError(f"`invertavatar fit` failed (status {status}); fit the sources yourself and pass --fit")


def _choose(frames, args: argparse.Namespace):
    import torch

    if args.source_video:
        if args.frames < 1:
            raise UserError(f"--frames must be at least 1, got {args.frames}")
        count = min(args.frames, len(frames))
        index = torch.linspace(0, len(frames) - 1, count).round().long()
        return frames[index]
    if len(frames) < len(args.source):
        raise UserError(f"--fit holds {len(frames)} frames but {len(args.source)} sources were given")
    return frames[: len(args.source)]


def run(args: argparse.Namespace) -> int:
    """Invert the sources frame by frame and save the avatar."""
    from tqdm import tqdm

    from invertavatar_core.compute import resolve_device
    from invertavatar_core.config import default_registry
    from invertavatar_core.inversion_models import InversionModels, component_dir

    registry = default_registry()
    device = resolve_device(args.device)
    checkpoint = Path(args.checkpoint)
    models = InversionModels.load(checkpoint, registry, device=device)
    experiment = models.experiment
    inverter_config = (
        registry.validate_config("inverter", {"name": args.inverter}) if args.inverter else experiment.inverter
    )
    inverter = registry.create("inverter", inverter_config, registry=registry, experiment=experiment, models=models)
    fit_dir = Path(args.fit) if args.fit else Path(f"{args.out}.fit")
    if not args.fit:
        _fit_sources(args, fit_dir, models)
    frames = _choose(fitted_frames(fit_dir), args)
    size = models.prior.info.image_resolution
    began = time.perf_counter()
    session = None
    with tqdm(total=len(frames), desc="reconstruct", unit="frame", disable=args.no_progress) as bar:
        for t in range(len(frames)):
            frame = frames[t]
            session = inverter.start(frame) if session is None else session.add(frame)
            bar.set_postfix_str(f"frame {t + 1}/{len(frames)}")
            bar.update(1)
    avatar = session.avatar()
    extra = {
        "checkpoint": str(checkpoint.resolve()),
        "prior_checkpoint": str(component_dir(checkpoint, "prior").resolve()),
        "sources": [str(p) for p in (args.source or [args.source_video])],
        "fit": str(fit_dir.resolve()),
    }
    avatar = type(avatar)(
        avatar.features, avatar.prior_config, avatar.identity, avatar.frame_count, avatar.inverter, extra
    )
    avatar.save(args.out)
    print(
        f"avatar from {len(frames)} frame(s) ({size}px prior, inverter {inverter_config.name}) in "
        f"{time.perf_counter() - began:.2f} s -> {args.out}"
    )
    return 0
