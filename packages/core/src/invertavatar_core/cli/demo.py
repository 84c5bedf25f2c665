"""``invertavatar demo``: the main job end to end, on the built-in model when one ships.

    invertavatar demo [--out demo-output] [--checkpoint RUN | --random-weights] [--source-frames 4]

Renders one held-out synthetic procedural head (``synth-heads --split heldout``: an identity
seed range no training set draws from; cameras, expression UV renders, unwraps and head masks
known exactly, so no fitting is needed), inverts its first frames one at a time through the
experiment's inverter (the incremental path: per-frame latency and held-out error after each
frame), drives the avatars from 1 frame and from all source frames with the head's remaining
frames (same-identity reenactment, scored on the head against the true renders, beside the
copy-the-source baseline) and orbits them. The models are ``--checkpoint`` when given, else the
built-in trained model when the package ships one; without either (or with ``--random-weights``)
the ``tiny`` preset with random weights: every step runs for real and the timings are real, but
the pictures show the pipeline, not a likeness.

Writes into ``--out``: ``heads/`` (the synthetic head), ``model/`` (random weights only: the
model used), ``avatar/`` (from all source frames), ``grid.png`` (source / avatar from 1 frame /
from all / truth, one row per driving frame), ``orbit.png`` (both avatars over a yaw sweep),
``driven.mp4`` (the grid's columns over every driving frame), ``orbit.mp4``,
``head_psnr_vs_frames.png`` and ``demo.json`` (every figure printed).
"""

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument, checkpoint_folder
from invertavatar_core.errors import UserError

__all__ = ["DEMO_KIND", "ORBIT_YAWS", "register", "run"]

_MARKER = "demo.json"
"""Written last; the summary of the run."""
DEMO_KIND = "demo"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of a demo folder, which a later demo may rewrite."""
ORBIT_YAWS = (-0.6, -0.3, 0.0, 0.3, 0.6)
"""Yaw angles (radians) of ``orbit.png``'s columns (the range issue 13 asks a prior to keep a head over)."""
_HEAD_RESOLUTION = 128
"""The synthetic head is rendered at least this large, then resized to the prior's size: the
recipes' training data is rendered at 128 px and loaded at the prior's (recipes/README.md)."""
_GRID_ROWS = 4
"""Driving frames shown in ``grid.png`` (evenly spread over the driving frames)."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="reconstruct, animate and orbit a held-out synthetic head on the built-in model",
        description=__doc__.split("\n\n")[2].replace("``", "'") if __doc__ else None,
        epilog="examples:\n  invertavatar demo\n  invertavatar demo --checkpoint runs/incremental --out demo-trained\n"
        "  invertavatar demo --random-weights --out demo-random",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "--checkpoint", help="model checkpoint folder (a training run); default: the built-in model when installed"
    )
    models.add_argument(
        "--random-weights", action="store_true", help="use the tiny preset with random weights even if a model ships"
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
    """``(models, checkpoint folder, provenance, trained)``: --checkpoint, the built-in model, or random weights."""
    from invertavatar_core.config.presets import preset_experiment
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.pretrained import DEFAULT_MODEL, builtin_model_dir

    if args.checkpoint:
        checkpoint = checkpoint_folder(args.checkpoint)
        models = InversionModels.load(checkpoint, registry, device=device).eval()
        return models, checkpoint, f"checkpoint {args.checkpoint}", True
    builtin = None if args.random_weights else builtin_model_dir(DEFAULT_MODEL)
    if builtin is not None:
        models = InversionModels.load(builtin, registry, device=device).eval()
        return models, builtin, f"built-in model {DEFAULT_MODEL}", True
    experiment = preset_experiment(registry, "tiny", out / "model", seed=args.seed, name="demo-tiny")
    models = InversionModels.build(experiment, registry, device=device).eval()
    models.save(out / "model")  # so `invertavatar render --avatar OUT/avatar` finds the same prior
    return models, out / "model", "tiny preset, RANDOM weights (no trained model)", False


def _synthetic_head(args: argparse.Namespace, registry, models, out: Path):
    """One held-out procedural identity at the prior's image size: ``(sequence name, sources, driving)``."""
    from invertavatar_core.data.datasets import FitDataset

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
        resolution=max(_HEAD_RESOLUTION, info.image_resolution),
        uv_resolution=info.uv_resolution,
        seed=args.seed,
        split="heldout",  # the demo never shows a training identity
    )
    model = registry.create("morphable_model", experiment.morphable_model)
    rasterizer = registry.create("rasterizer", experiment.rasterizer)
    model_config = experiment.morphable_model.model_dump(mode="json")
    heads = synthesize_heads(out / "heads", config, model, rasterizer, model_config=model_config,
                             progress=not args.no_progress)  # fmt: skip
    # Only this head (a rerun into an earlier demo folder may find others in heads/), loaded at the
    # prior's size as training loads its data (images and head masks resized with antialiasing).
    (name,) = identity_seeds(config)
    frames = FitDataset(heads, image_resolution=info.image_resolution).sequence(name)
    return name, frames[: args.source_frames], frames[args.source_frames :]


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


def _head_metrics(registry) -> dict[str, Any]:
    """Head PSNR and head MS-SSIM (the evaluation's perceptual stand-in), then full-frame PSNR and L1, by name."""
    from invertavatar_core.config.presets import TINY_PERCEPTUAL

    # Two MS-SSIM scales with a 5-px window fit 64 px (recipes/evaluation/README.md uses the same).
    settings = {k: v for k, v in TINY_PERCEPTUAL.items() if k != "name"}
    configs = [{"name": "head_psnr"}, {"name": "head_ms_ssim", **settings}, {"name": "psnr"}, {"name": "l1"}]
    return {c["name"]: registry.create("metric", c) for c in configs}


def _scores(metrics: dict[str, Any], prediction, truth, mask) -> dict[str, float]:
    """Each metric over ``prediction`` / ``truth`` ``(T, 3, H, W)`` in [-1, 1], head ``mask`` ``(T, 1, H, W)``."""
    from invertavatar_core.inversion.pipeline import resize_square

    size = prediction.shape[-1]
    truth = resize_square(truth.to(prediction), size)
    mask = resize_square(mask.to(prediction), size)
    out = {}
    for name, metric in metrics.items():
        metric.reset()
        if getattr(metric, "uses_head_mask", False):
            metric.update(prediction, truth, mask)
        else:
            metric.update(prediction, truth)
        out[name] = round(float(metric.compute()), 4)
    return out


def _drive(avatar, models, driving):
    """``(T, 3, H, W)`` avatar renders with each driving frame's expression and camera."""
    import torch

    with torch.no_grad():
        return avatar.animate(models.prior, driving.expression_uv, driving.camera).image.clamp(-1, 1)


def _yaw_sweep(avatars, models, identity, device):
    """Per avatar, its renders ``(3, H, W)`` at :data:`ORBIT_YAWS` (neutral expression, pitch 0)."""
    import torch

    from invertavatar_core.cli.render import neutral_expression_uv
    from invertavatar_core.geometry.cameras import look_at_camera

    expression = neutral_expression_uv(models, identity, device)
    camera = look_at_camera(torch.tensor(ORBIT_YAWS), torch.zeros(len(ORBIT_YAWS))).to(device)
    expression = expression.expand(len(ORBIT_YAWS), -1, -1, -1)
    with torch.no_grad():
        return [list(avatar.animate(models.prior, expression, camera).image.clamp(-1, 1).cpu()) for avatar in avatars]


def run(args: argparse.Namespace) -> int:
    """Synthesize, reconstruct frame by frame, animate, orbit; print and save every figure."""
    import torch
    from tqdm import tqdm

    from invertavatar_core.cli import cli_registry
    from invertavatar_core.cli.render import neutral_expression_uv
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.evaluation.plots import plot_metric_vs_frames, save_image_grid
    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.inversion.pipeline import resize_square
    from invertavatar_core.io.atomic import MARKER_FILE, atomic_write_text, check_output_dir, write_marker
    from invertavatar_core.io.media import write_video

    began = time.perf_counter()
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

    models, checkpoint, provenance, trained = _models(args, registry, out, device)
    info = models.prior.info
    print(f"models: {provenance}; prior {info.image_resolution}px, device {device}")
    if not trained:
        print("  the pictures show the pipeline, not a likeness; pass --checkpoint RUN for a trained model")

    sequence, sources, driving = _synthetic_head(args, registry, models, out)
    driving = driving.to(device)
    if driving.head_mask is None:
        raise UserError(f"{out / 'heads'}: the synthetic head was written without head masks; rerun into a new --out")
    metrics = _head_metrics(registry)
    inverter = registry.create(
        "inverter", models.experiment.inverter, registry=registry, experiment=models.experiment, models=models
    )
    rows: list[dict[str, Any]] = []
    session = None
    renders = {}  # source frames -> (T, 3, H, W) renders of the driving frames
    avatars = {}
    for t in tqdm(range(len(sources)), desc="reconstruct", unit="frame", disable=args.no_progress):
        frame = sources[t : t + 1].to(device)
        with _Clock(device) as add:
            session = inverter.start(frame) if session is None else session.add(frame)
            avatar = session.avatar()
        with _Clock(device) as drive:
            rendered = _drive(avatar, models, driving)
        if t in (0, len(sources) - 1):
            renders[t + 1], avatars[t + 1] = rendered, avatar
        rows.append(
            {
                "source_frames": t + 1,
                "add_frame_ms": round(add.ms, 2),
                **_scores(metrics, rendered, driving.image, driving.head_mask),
                "animate_fps": round(len(driving) / max(drive.ms / 1000.0, 1e-9), 1),
            }
        )
    print(format_table(rows))

    size = info.image_resolution
    source_image = resize_square(sources.image[:1], size).to(device)
    copy = _scores(metrics, source_image.expand(len(driving), -1, -1, -1), driving.image, driving.head_mask)
    many = len(sources)
    methods = {"copy the source": copy, "avatar from 1 frame": rows[0]}
    if many > 1:
        methods[f"avatar from {many} frames"] = rows[-1]
    table = [{"method": label, **{k: scores[k] for k in metrics}} for label, scores in methods.items()]
    print(f"\nheld-out head {sequence}, scored on its {len(driving)} driving frames "
          "(head_* over the true head mask; head_ms_ssim: 2 scales, 5-px window):")  # fmt: skip
    print(format_table(table))

    origin = f"{out / 'heads'} (synthetic, held-out head {args.seed})"
    extra = {
        "checkpoint": str(checkpoint.resolve()),
        "sources": origin,
        "morphable_model": models.experiment.morphable_model.model_dump(mode="json"),
    }
    # The first source's camera: the pose a cross-identity animation moves the avatar relative to.
    avatar = dataclasses.replace(avatars[many], extra=extra, source_camera=sources.camera[:1].cpu())
    avatar.save(out / "avatar")

    truth = resize_square(driving.image, size).clamp(-1, 1)
    columns = ["source", "avatar, 1 frame"] + ([f"avatar, {many} frames"] if many > 1 else []) + ["truth"]
    counts = [1, many] if many > 1 else [1]

    def cells(t: int) -> list:
        return [source_image[0], *(renders[k][t] for k in counts), truth[t]]

    write_video((torch.cat(cells(t), dim=-1) for t in range(len(driving))), out / "driven.mp4", fps=8.0)
    shown = sorted({round(i * (len(driving) - 1) / max(_GRID_ROWS - 1, 1)) for i in range(_GRID_ROWS)})
    save_image_grid(
        [[c.cpu() for c in cells(t)] for t in shown],
        out / "grid.png",
        column_titles=columns,
        row_titles=[f"driving frame {t + 1}" for t in shown],
        title=f"demo: {provenance}\nheld-out head {sequence}",
    )
    save_image_grid(
        _yaw_sweep([avatars[k] for k in counts], models, avatar.identity, device),
        out / "orbit.png",
        column_titles=[f"yaw {yaw:+.1f}" for yaw in ORBIT_YAWS],
        row_titles=[f"avatar, {k} frame{'s' if k > 1 else ''}" for k in counts],
        title=f"demo: {provenance}",
    )
    expression = neutral_expression_uv(models, avatar.identity, device)
    orbit = avatar.render_orbit(models.prior, expression, frames=args.orbit_frames)
    write_video(tqdm(orbit, total=args.orbit_frames, desc="orbit", unit="frame", disable=args.no_progress),
                out / "orbit.mp4", fps=12.0)  # fmt: skip
    if len(rows) > 1 and all(math.isfinite(row["head_psnr"]) for row in rows):
        plot_metric_vs_frames([{**row, "model": "demo"} for row in rows], "head_psnr", out / "head_psnr_vs_frames.png")

    wall = time.perf_counter() - began
    summary = {
        "models": provenance,
        "checkpoint": str(checkpoint.resolve()),
        "trained": trained,
        "device": device,
        "inverter": models.experiment.inverter.name,
        "aggregator": models.experiment.aggregator.name if models.experiment.aggregator else None,
        "head": {"sequence": sequence, "split": "heldout", "source_frames": many, "driving_frames": len(driving)},
        "metrics": table,
        "grid": {"columns": columns, "driving_frames": [t + 1 for t in shown], "orbit_yaws": list(ORBIT_YAWS)},
        "per_source_frame": rows,
        "wall_s": round(wall, 2),
        "outputs": sorted(
            p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name not in (_MARKER, MARKER_FILE)
        ),
    }
    atomic_write_text(out / _MARKER, json.dumps(summary, indent=2) + "\n")
    print(
        f"avatar from {many} frame(s): {sum(r['add_frame_ms'] for r in rows):.1f} ms in total "
        f"(first frame {rows[0]['add_frame_ms']:.1f} ms), animation {rows[-1]['animate_fps']} FPS at {size}px on "
        f"{device}; demo {wall:.1f} s"
    )
    print(f"wrote {out}/: {', '.join([*summary['outputs'], _MARKER])}")
    return 0
