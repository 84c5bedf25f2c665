"""``invertavatar demo``: the main job end to end on built-in defaults.

    invertavatar demo [--out demo-output] [--checkpoint RUN] [--source-frames 4] [--driving-frames 8]

Renders one held-out synthetic procedural head (``synth-heads --split heldout``: an identity
seed range no training set draws from; cameras, expression UV renders and unwraps known exactly,
so no fitting is needed), inverts its first frames one at a time through the experiment's
inverter (the incremental path: per-frame latency and held-out error after each frame), drives
the avatar with the head's remaining frames (same-identity reenactment, scored against the true
renders) and orbits it. Without ``--checkpoint`` the models are the ``tiny`` preset with random
weights: every step runs for real and the timings are real, but the pictures show the pipeline,
not a likeness (no trained model ships yet; train one with ``invertavatar train``).

Writes into ``--out``: ``heads/`` (the synthetic dataset), ``model/`` (the model checkpoint used),
``avatar/``, ``driven.mp4`` (source | driving truth | avatar), ``orbit.mp4``, ``grid.png``,
``error_vs_frames.png`` and ``demo.json`` (every figure printed).
"""

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument
from invertavatar_core.errors import UserError

__all__ = ["register", "run"]

_MARKER = "demo.json"
"""Written last; the summary of the run."""
DEMO_KIND = "demo"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of a demo folder, which a later demo may rewrite."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="reconstruct, animate and orbit a synthetic head on the built-in defaults",
        description=__doc__.split("\n\n")[2].replace("``", "'") if __doc__ else None,
        epilog="examples:\n  invertavatar demo\n  invertavatar demo --checkpoint runs/incremental --out demo-trained",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument(
        "--checkpoint", help="model checkpoint folder (a training run); default: the tiny preset, random weights"
    )
    parser.add_argument("--source-frames", type=int, default=4, help="frames inverted one at a time (default 4)")
    parser.add_argument("--driving-frames", type=int, default=8, help="held-out frames that drive it (default 8)")
    parser.add_argument("--orbit-frames", type=int, default=24, help="frames of the orbit video (default 24)")
    parser.add_argument(
        "--seed", type=int, default=0, help="held-out synthetic head number (never a training head) and weight seed"
    )
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def _models(args: argparse.Namespace, registry, out: Path, device: str):
    """The checkpoint's models, or the tiny preset with random weights saved as ``out/model``."""
    from invertavatar_core.config.presets import preset_experiment
    from invertavatar_core.inversion.models import InversionModels

    if args.checkpoint:
        if not Path(args.checkpoint).is_dir():
            raise UserError(f"--checkpoint {args.checkpoint}: folder not found")
        return InversionModels.load(args.checkpoint, registry, device=device).eval(), Path(args.checkpoint)
    experiment = preset_experiment(registry, "tiny", out / "model", seed=args.seed, name="demo-tiny")
    models = InversionModels.build(experiment, registry, device=device).eval()
    models.save(out / "model")  # so `invertavatar render --avatar OUT/avatar` finds the same prior
    return models, out / "model"


def _synthetic_head(args: argparse.Namespace, registry, models, out: Path):
    """One procedural identity rendered at the prior's sizes: ``(sources, driving)`` observations."""
    from invertavatar_core.cli.reconstruct import fitted_frames

    try:
        from invertavatar_faceverse.synthetic_heads import SyntheticHeadsConfig, identity_seeds, synthesize_heads
    except ImportError as error:
        raise UserError(
            "the demo renders synthetic heads with invertavatar-faceverse: pip install 'invertavatar-core[faceverse]'"
        ) from error
    experiment = models.experiment
    info = models.prior.info
    total = args.source_frames + args.driving_frames
    config = SyntheticHeadsConfig(
        identities=1,
        frames_per_identity=total,
        resolution=max(64, info.image_resolution),
        uv_resolution=info.uv_resolution,
        seed=args.seed,
        split="heldout",  # the demo never shows a training identity
    )
    model = registry.create("morphable_model", experiment.morphable_model)
    rasterizer = registry.create("rasterizer", experiment.rasterizer)
    model_config = experiment.morphable_model.model_dump(mode="json")
    heads = synthesize_heads(out / "heads", config, model, rasterizer, model_config=model_config,
                             progress=not args.no_progress)  # fmt: skip
    # Only this head: a rerun into an earlier demo folder may find other heads in heads/.
    frames = fitted_frames(heads, sequences=list(identity_seeds(config)))
    return frames[: args.source_frames], frames[args.source_frames :]


class _Clock:
    """Wall time of a block in ms, synchronising CUDA so the figure is the work, not the launch."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self.cuda = torch.device(device).type == "cuda"
        self.ms = 0.0

    def __enter__(self) -> "_Clock":
        if self.cuda:
            self._torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self._torch.cuda.synchronize()
        self.ms = (time.perf_counter() - self._start) * 1000.0


def _scores(prediction, target) -> dict[str, float]:
    """Mean PSNR (dB) and L1 ([0, 1] units) of ``(B, 3, H, W)`` images in [-1, 1]."""
    from invertavatar_core.evaluation.metrics.l1 import l1_distance
    from invertavatar_core.evaluation.metrics.psnr import psnr
    from invertavatar_core.inversion.pipeline import resize_square

    target = resize_square(target.to(prediction), prediction.shape[-1])
    return {"psnr": float(psnr(prediction, target).mean()), "l1": float(l1_distance(prediction, target).mean())}


def _drive(avatar, models, driving):
    """``(T, 3, H, W)`` avatar renders with each driving frame's expression and camera."""
    import torch

    with torch.no_grad():
        return avatar.animate(models.prior, driving.expression_uv, driving.camera).image


def run(args: argparse.Namespace) -> int:
    """Synthesize, reconstruct frame by frame, animate, orbit; print and save every figure."""
    import torch
    from tqdm import tqdm

    from invertavatar_core.cli import cli_registry
    from invertavatar_core.cli.render import neutral_expression_uv
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.evaluation.plots import plot_metric_vs_frames, save_qualitative_grid
    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.inversion.pipeline import resize_square
    from invertavatar_core.io.atomic import MARKER_FILE, atomic_write_text, check_output_dir, write_marker
    from invertavatar_core.io.media import write_video

    for name in ("source_frames", "driving_frames"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.orbit_frames < 2:
        raise UserError(f"--orbit-frames must be at least 2, got {args.orbit_frames}")
    device = str(resolve_device(args.device))  # a one-line error before the folder is claimed
    # Only an empty folder or an earlier demo's (demo.json: written before marker files existed).
    out = check_output_dir(args.out, DEMO_KIND, reuse=True, signature=(_MARKER,))
    write_marker(out, DEMO_KIND)
    registry = cli_registry()
    torch.manual_seed(args.seed)

    models, checkpoint = _models(args, registry, out, device)
    provenance = f"checkpoint {checkpoint}" if args.checkpoint else "tiny preset, RANDOM weights (no trained model)"
    info = models.prior.info
    print(f"models: {provenance}; prior {info.image_resolution}px, device {device}")
    if not args.checkpoint:
        print("  the pictures show the pipeline, not a likeness; pass --checkpoint RUN for a trained model")

    sources, driving = _synthetic_head(args, registry, models, out)
    driving = driving.to(device)
    inverter = registry.create(
        "inverter", models.experiment.inverter, registry=registry, experiment=models.experiment, models=models
    )
    rows: list[dict[str, Any]] = []
    session = None
    for t in tqdm(range(len(sources)), desc="reconstruct", unit="frame", disable=args.no_progress):
        frame = sources[t : t + 1].to(device)
        with _Clock(device) as add:
            session = inverter.start(frame) if session is None else session.add(frame)
            avatar = session.avatar()
        with _Clock(device) as drive:
            rendered = _drive(avatar, models, driving)
        rows.append(
            {
                "source_frames": t + 1,
                "add_frame_ms": round(add.ms, 2),
                **{k: round(v, 4) for k, v in _scores(rendered, driving.image).items()},
                "animate_fps": round(len(driving) / max(drive.ms / 1000.0, 1e-9), 1),
                "model": "demo",
            }
        )
    print(format_table([{k: v for k, v in row.items() if k != "model"} for row in rows]))

    avatar = session.avatar()
    origin = f"{out / 'heads'} (synthetic, held-out head {args.seed})"
    extra = {
        "checkpoint": str(checkpoint.resolve()),
        "sources": origin,
        "morphable_model": models.experiment.morphable_model.model_dump(mode="json"),
    }
    avatar = dataclasses.replace(avatar, extra=extra, source_camera=sources.camera[:1].cpu())
    avatar.save(out / "avatar")

    size = info.image_resolution
    source_image = resize_square(sources.image[:1], size)[0].to(device)
    truth = resize_square(driving.image, size)
    write_video(
        (torch.cat([source_image, truth[t], rendered[t]], dim=-1).clamp(-1, 1) for t in range(len(driving))),
        out / "driven.mp4",
        fps=8.0,
    )
    expression = neutral_expression_uv(models, avatar.identity, device)
    orbit = avatar.render_orbit(models.prior, expression, frames=args.orbit_frames)
    write_video(tqdm(orbit, total=args.orbit_frames, desc="orbit", unit="frame", disable=args.no_progress),
                out / "orbit.mp4", fps=12.0)  # fmt: skip
    examples = [
        SimpleNamespace(source=source_image.cpu(), driving=truth[t].cpu(), output=rendered[t].cpu())
        for t in range(min(4, len(driving)))
    ]
    save_qualitative_grid(examples, out / "grid.png", title=f"demo: {provenance}")
    if len(rows) > 1 and all(math.isfinite(row["l1"]) for row in rows):
        plot_metric_vs_frames(rows, "l1", out / "error_vs_frames.png")

    summary = {
        "models": provenance,
        "device": device,
        "inverter": models.experiment.inverter.name,
        "aggregator": models.experiment.aggregator.name if models.experiment.aggregator else None,
        "per_source_frame": [{k: v for k, v in row.items() if k != "model"} for row in rows],
        "outputs": sorted(
            p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name not in (_MARKER, MARKER_FILE)
        ),
    }
    atomic_write_text(out / _MARKER, json.dumps(summary, indent=2) + "\n")
    print(
        f"avatar from {len(sources)} frame(s): {sum(r['add_frame_ms'] for r in rows):.1f} ms in total, "
        f"animation {rows[-1]['animate_fps']} FPS at {size}px on {device}"
    )
    print(f"wrote {out}/: {', '.join([*summary['outputs'], _MARKER])}")
    return 0
