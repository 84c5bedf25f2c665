"""``invertavatar reconstruct``: build an avatar from one portrait, several frames, or a video clip.

    invertavatar reconstruct --checkpoint RUN --source a.png [b.png ...] [--fit FITDIR] --out AVATAR
    invertavatar reconstruct --checkpoint RUN --source-video clip.mp4 --frames 8 [--fit FITDIR] --out AVATAR

``--checkpoint`` is a model checkpoint folder (docs/checkpoints.md), e.g. a training run folder;
without it, the built-in model ``synth-heads-tiny`` (``invertavatar_core.pretrained``).
Each source frame needs its camera, expression UV render and UV unwrap: from ``--fit FITDIR``
(a folder written by ``invertavatar preprocess``, its frames in source order), or, without it, the
sources are fitted first, as ``invertavatar preprocess`` does, into ``AVATAR.fit/`` (needs the faceverse
package; a sequence there is reused only when its input file and fit settings hash the same).
Several frames go through the experiment's inverter frame by frame (the incremental path), with
a progress line per frame; encoders that fold frames in groups (the released ones) get all frames
in one call.

``--out`` must be a new or empty folder, or, with ``--overwrite``, an avatar written earlier
by invertavatar; any other folder is refused before any work and left as it is.
"""

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument, checkpoint_folder
from invertavatar_core.errors import UserError

if TYPE_CHECKING:
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.inversion.observation import Observation
    from invertavatar_core.plugin.registry import Registry

__all__ = ["fitted_frames", "register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``reconstruct`` command."""
    parser = subparsers.add_parser(
        "reconstruct",
        help="build an avatar from source images or a video",
        description="Invert one portrait, several frames or a video clip of one person into an avatar folder "
        "through the experiment's inverter (frame by frame; encoders that fold frames in groups get all frames "
        "at once). Sources without --fit are fitted first ('invertavatar preprocess', into AVATAR.fit/).",
        epilog="examples:\n"
        "  invertavatar reconstruct --checkpoint runs/incremental --source a.png b.png --out avatar/\n"
        "  invertavatar reconstruct --checkpoint runs/incremental --source-video clip.mp4 --frames 8 "
        "--fit fitted/ --out avatar/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        help="model checkpoint folder (e.g. a training run); default: the built-in model synth-heads-tiny "
        "(trained on synthetic heads: a pipeline check on real photos, not a likeness)",
    )
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--source", nargs="+", metavar="IMG", help="source image(s) of one person")
    sources.add_argument("--source-video", metavar="VIDEO", help="a video of one person")
    parser.add_argument("--frames", type=int, default=8, help="frames taken evenly from --source-video (default 8)")
    parser.add_argument("--fit", metavar="FITDIR", help="folder written by 'invertavatar preprocess' for these sources")
    parser.add_argument("--inverter", help="registry name of the inverter (default: the experiment's)")
    parser.add_argument("--out", required=True, help="avatar folder to write (new, or ours with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier avatar")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def fitted_frames(fit_dir: str | Path, sequences: list[str] | None = None) -> "Observation":
    """Every frame of a fit folder (or of the named ``sequences``, in that order) as one :class:`Observation`."""
    from invertavatar_core.data.datasets import FitDataset
    from invertavatar_core.inversion.observation import Observation

    fit_dir = Path(fit_dir)
    if not fit_dir.is_dir():
        raise UserError(f"--fit {fit_dir}: folder not found (write it with `invertavatar preprocess`)")
    dataset = FitDataset(fit_dir)
    if len(dataset) == 0:
        raise UserError(f"--fit {fit_dir}: holds no fitted frames")
    if sequences is None:
        return Observation.cat([dataset[i] for i in range(len(dataset))])
    return Observation.cat([dataset.sequence(name) for name in sequences])


def _inputs(args: argparse.Namespace) -> list[Path]:
    inputs = [Path(args.source_video)] if args.source_video else [Path(p) for p in args.source]
    for path in inputs:
        if not path.is_file():
            raise UserError(f"source not found: {path}")
    return inputs


def _fit_sources(args: argparse.Namespace, fit_dir: Path, models: "InversionModels", registry: "Registry") -> None:
    """Fit the sources as ``invertavatar preprocess`` would, with the experiment's model and the prior's UV size."""
    from invertavatar_core.io.media import video_frame_count

    try:
        from invertavatar_faceverse import fit_dataset
    except ImportError:
        raise UserError(
            'fitting the sources needs the faceverse package (pip install "invertavatar-core[faceverse]"); '
            "or fit them elsewhere and pass --fit"
        ) from None
    inputs = [str(p) for p in _inputs(args)]
    model = models.experiment.morphable_model.name
    uv_resolution = models.prior.info.uv_resolution
    device = str(models.device)
    # fit only about the frames that will be used
    every = max(1, video_frame_count(args.source_video) // max(args.frames, 1)) if args.source_video else 1
    command = ["preprocess", *inputs, "--out", str(fit_dir), "--model", model, "--uv-resolution", str(uv_resolution)]
    command += ["--device", device] + (["--no-progress"] if args.no_progress else [])
    command += ["--every", str(every)] if args.source_video else []
    command += ["--keep-flagged"]
    print(f"fitting the sources: invertavatar {' '.join(command)}")
    try:
        # Every source the user named is used: the fit's quality flags are reported, not acted on.
        fit_dataset(inputs, fit_dir, registry, model=model, uv_resolution=uv_resolution, every=every, device=device,
                    keep_flagged=True, progress=not args.no_progress)  # fmt: skip
    except (UserError, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(f"fitting the sources failed: {message}; fit the sources yourself and pass --fit") from exc


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


def _checkpoint(args: argparse.Namespace) -> Path:
    """``--checkpoint``, else the built-in model; a one-line error when neither is there."""
    from invertavatar_core.pretrained import DEFAULT_MODEL, builtin_model_dir

    if args.checkpoint:
        return checkpoint_folder(args.checkpoint)
    builtin = builtin_model_dir(DEFAULT_MODEL)
    if builtin is None:
        raise UserError(f"no --checkpoint given and this installation ships no built-in model {DEFAULT_MODEL!r}")
    print(f"model: built-in {DEFAULT_MODEL} (pass --checkpoint RUN for your own)")
    return builtin


def run(args: argparse.Namespace) -> int:
    """Invert the sources and save the avatar."""
    from tqdm import tqdm

    from invertavatar_core.cli import cli_registry
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.data.datasets import FIT_KIND
    from invertavatar_core.inversion.avatar import AVATAR_FILES, AVATAR_KIND
    from invertavatar_core.inversion.models import InversionModels, component_dir
    from invertavatar_core.io.atomic import check_output_dir

    device = resolve_device(args.device)
    # Where the output goes is settled before anything is loaded or computed.
    out = check_output_dir(args.out, AVATAR_KIND, overwrite=args.overwrite, signature=AVATAR_FILES)
    inputs = _inputs(args) if not args.fit else None
    fit_dir = Path(args.fit) if args.fit else Path(f"{out}.fit")
    if not args.fit:
        check_output_dir(fit_dir, FIT_KIND, reuse=True, signature=("dataset.json",), what="fit folder")
    elif not fit_dir.is_dir():
        raise UserError(f"--fit {fit_dir}: folder not found (write it with `invertavatar preprocess`)")
    registry = cli_registry()
    checkpoint = _checkpoint(args)
    models = InversionModels.load(checkpoint, registry, device=device)
    experiment = models.experiment
    inverter_config = (
        registry.validate_config("inverter", {"name": args.inverter}) if args.inverter else experiment.inverter
    )
    inverter = registry.create("inverter", inverter_config, registry=registry, experiment=experiment, models=models)
    if inputs is not None:
        _fit_sources(args, fit_dir, models, registry)
    # The auto-fit folder may hold other sources of earlier runs: take exactly these sequences.
    frames = _choose(fitted_frames(fit_dir, None if inputs is None else [p.stem for p in inputs]), args)
    size = models.prior.info.image_resolution
    began = time.perf_counter()
    # Encoders that fold frames in groups (the released ones) form their groups from the frames of one
    # call, so they get all frames at once, as the release sees them; the others stream frame by frame.
    steps = [frames] if models.frame_groups(len(frames)) is not None else [frames[t] for t in range(len(frames))]
    session = None
    done = 0
    with tqdm(total=len(frames), desc="reconstruct", unit="frame", disable=args.no_progress) as bar:
        for step in steps:
            session = inverter.start(step) if session is None else session.add(step)
            done += len(step)
            bar.set_postfix_str(f"frame {done}/{len(frames)}")
            bar.update(len(step))
    avatar = session.avatar()
    extra = {
        "checkpoint": str(checkpoint.resolve()),
        "prior_checkpoint": str(component_dir(checkpoint, "prior").resolve()),
        "sources": [str(p) for p in (args.source or [args.source_video])],
        "fit": str(fit_dir.resolve()),
        "morphable_model": experiment.morphable_model.model_dump(mode="json"),
    }
    # The first source's camera: the pose a cross-identity animation moves the avatar relative to.
    avatar = dataclasses.replace(avatar, extra=extra, source_camera=frames.camera[:1].cpu())
    avatar.save(out)
    print(
        f"avatar from {len(frames)} frame(s) ({size}px prior, inverter {inverter_config.name}) in "
        f"{time.perf_counter() - began:.2f} s -> {args.out}"
    )
    return 0
