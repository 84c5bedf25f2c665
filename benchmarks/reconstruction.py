"""Reconstruction and animation speed: latency vs source frames, streaming, FPS, memory, FLOPs, and PTI.

Measures, for each preset (``tiny`` / ``paper``), precision (fp32 / bf16) and optionally with
``torch.compile``:

- reconstruction latency of our ``incremental`` inverter from T = 1, 2, 4, 8, 16, 32 source frames
  (median of ``--repeats`` after ``--warmup`` calls; FaceVerse-style fitting is not included: the
  frames come with their cameras, expression UV renders and unwraps);
- per-frame streaming cost (``session.add`` of one frame) and the memory held as frames stream in
  (should stay constant: the recurrent state has a fixed size);
- animation FPS at the prior's image resolution (512^2 paper, 64^2 tiny): batch 1 latency and
  batch 8 throughput of ``Avatar.animate`` (the cached canonical features, ``prior.render`` only);
- peak memory of a 4-frame reconstruction (CUDA ``max_memory_allocated``; on CPU the growth of
  the process's peak RSS, a coarse upper bound);
- model FLOPs per call (``torch.utils.flop_counter.FlopCounterMode``) and the fraction of the
  device's peak they reach at the measured latency;
- the ``pti`` baseline (Next3D-PTI) in the same run: runs of 1 + 1 and (1 + n) + (1 + n)
  optimisation steps give the cost per step and the fixed cost; PTI's full run is extrapolated
  to its 450 + 350 steps, so the ratio to our reconstruction is measured on the same machine
  and settings.

Prints tables and writes JSON (``--out``, default ``benchmarks/results/reconstruction-<device>.json``).
Inputs are synthetic (random images, a frontal camera, an elliptical expression UV render): speed
does not depend on content. Usage::

    python benchmarks/reconstruction.py                       # CPU: tiny preset, fp32
    python benchmarks/reconstruction.py --preset paper --paper-frames 1 --repeats 1
    python benchmarks/reconstruction.py --device cuda --preset paper --preset tiny --precision fp32 --precision bf16
"""

import argparse
import contextlib
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from invertavatar_core.config.experiment import ExperimentConfig, default_registry
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.testing.inputs import example_camera, example_expression_uv

FRAME_COUNTS = (1, 2, 4, 8, 16, 32)
"""Source-frame counts of the latency sweep (issue 7)."""
PTI_STEPS = 450 + 350
"""PTI's w+ and fine-tuning steps (the ``pti`` inverter's defaults, PTI's published settings)."""
PEAK_TFLOPS = {
    # Dense tensor-core peaks from NVIDIA's datasheets: (fp32 non-tensor, bf16 dense).
    "H100 PCIe": (51.0, 756.0),
    "H100": (67.0, 989.0),  # SXM
    "H200": (67.0, 989.0),
    "A100": (19.5, 312.0),
}
"""Device-name fragment -> (fp32, bf16) peak TFLOP/s; first match wins (PCIe before SXM)."""


def experiment_for(preset: str) -> ExperimentConfig:
    """The experiment of a size preset: next3d prior, e4e + texture UNet + tri-plane SFT UNet, ConvGRU."""
    return preset_experiment(default_registry(), preset, name=f"bench-{preset}")


def synthetic_frames(info: Any, count: int, device: torch.device) -> Observation:
    """``count`` frames with the prior's shapes: random images, frontal cameras, an elliptical face."""
    g = torch.Generator().manual_seed(0)
    r, u = info.image_resolution, info.uv_resolution
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, u), torch.linspace(-1, 1, u), indexing="ij")
    grid = torch.stack([xs, ys], -1)[None].expand(count, u, u, 2).clone()
    return Observation(
        image=torch.rand(count, 3, r, r, generator=g) * 2 - 1,
        camera=example_camera(count),
        expression_uv=example_expression_uv(count, u),
        unwrap_grid=grid,
        visibility=torch.ones(count, 1, u, u),
    ).to(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (timings must include it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call (matmuls and convolutions, as FlopCounterMode counts)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """The process's resident set size now, in MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def held_memory_mb(device: torch.device) -> float:
    """Memory held now: CUDA allocated, else the process RSS."""
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else current_rss_mb()


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def compile_models(models: InversionModels) -> None:
    """``torch.compile`` every method the inversion and animation call, in place."""
    prior = models.prior
    for name in ("canonical", "render"):
        setattr(prior, name, torch.compile(getattr(prior, name)))
    models.latent.compile()
    for encoder in models.feature_encoders().values():
        for name in ("update", "read"):
            setattr(encoder, name, torch.compile(getattr(encoder, name)))


def device_peak_tflops(device: torch.device, precision: str, override: float | None) -> float | None:
    """The device's peak TFLOP/s for ``precision`` (``--peak-tflops`` wins; None when unknown)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, (fp32, bf16) in PEAK_TFLOPS.items():
        if fragment in name:
            return bf16 if precision == "bf16" else fp32
    return None


def frame_counts(preset: str, args: argparse.Namespace) -> list[int]:
    """The source-frame counts measured for ``preset`` (the paper preset may be capped on slow devices)."""
    return [t for t in FRAME_COUNTS if t <= (args.paper_frames if preset == "paper" else max(FRAME_COUNTS))]


def benchmark_config(
    preset: str,
    precision: str,
    compiled: bool,
    args: argparse.Namespace,
    device: torch.device,
    bar: tqdm,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Every measurement of one (preset, precision, compile) setting, filled into ``result`` as it goes."""
    registry = default_registry()
    experiment = experiment_for(preset)
    torch.manual_seed(0)
    # Inference only: frozen parameters (FlopCounterMode's module tracker trips over leaves needing grad).
    models = InversionModels.build(experiment, registry, device=device).eval().requires_grad_(False)
    if compiled:
        compile_models(models)
    ours = registry.create("inverter", experiment.inverter, registry=registry, experiment=experiment, models=models)
    info = models.prior.info
    counts = frame_counts(preset, args)
    frames = synthetic_frames(info, max(max(counts), args.stream_frames), device)
    result["image_resolution"] = info.image_resolution
    result["parameters_m"] = sum(p.numel() for p in models.parameters()) / 1e6
    repeats, warmup = args.repeats, args.warmup
    with torch.no_grad(), autocast(device, precision):
        # Memory first: on the CPU only the growth of the process's peak RSS is observable.
        bar.set_postfix_str(f"{preset} {precision}: memory")
        memory_frames = frames[: min(4, max(counts))]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            ours.invert(memory_frames)
            result["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            before = peak_rss_mb()
            ours.invert(memory_frames)
            result["peak_mem_mb"] = peak_rss_mb() - before
        result["peak_mem_frames"] = len(memory_frames)
        for t in counts:
            bar.set_postfix_str(f"{preset} {precision}: reconstruct from {t}")
            result[f"recon_{t}f_ms"] = 1e3 * time_call(lambda t=t: ours.invert(frames[:t]), device, repeats, warmup)
            bar.update(1)
        bar.set_postfix_str(f"{preset} {precision}: streaming")
        if preset != "paper" or args.paper_frames > 1:
            session = ours.start(frames[:1])
            held, costs = [], []
            for t in range(1, args.stream_frames):
                synchronize(device)
                began = time.perf_counter()
                session.add(frames[t : t + 1])
                synchronize(device)
                costs.append(time.perf_counter() - began)
                held.append(held_memory_mb(device))
            result["stream_ms_per_frame"] = 1e3 * statistics.median(costs[warmup:] or costs)
            quarter = max(1, len(held) // 4)
            result["stream_mem_growth_mb"] = held[-1] - held[quarter - 1]
            result["stream_read_ms"] = 1e3 * time_call(session.avatar, device, repeats, warmup)
        bar.update(1)
        bar.set_postfix_str(f"{preset} {precision}: animation")
        avatar = ours.invert(frames[:1])
        for batch in (1, 8):
            uv = frames.expression_uv[:1].expand(batch, -1, -1, -1)
            camera = frames.camera[:1].expand(batch, -1)
            seconds = time_call(
                lambda uv=uv, camera=camera: avatar.animate(models.prior, uv, camera), device, repeats, warmup
            )
            result[f"anim_fps_b{batch}"] = batch / seconds
        bar.update(1)
        bar.set_postfix_str(f"{preset} {precision}: FLOPs")
        result["gflop_recon_1f"] = count_flops(lambda: ours.invert(frames[:1])) / 1e9
        if len(frames) >= 4 and 4 in counts:
            result["gflop_recon_4f"] = count_flops(lambda: ours.invert(frames[:4])) / 1e9
        result["gflop_anim_frame"] = (
            count_flops(lambda: avatar.animate(models.prior, frames.expression_uv[:1], frames.camera[:1])) / 1e9
        )
        peak = device_peak_tflops(device, precision, args.peak_tflops)
        achieved = result["gflop_recon_1f"] / result["recon_1f_ms"]  # GFLOP / ms = TFLOP/s
        result["recon_1f_tflops"] = achieved
        result["recon_1f_peak_fraction"] = achieved / peak if peak else None
        anim_achieved = result["gflop_anim_frame"] * result["anim_fps_b8"] / 1e3
        result["anim_tflops"] = anim_achieved
        result["anim_peak_fraction"] = anim_achieved / peak if peak else None
        bar.update(1)
    # PTI is timed once per preset and precision, uncompiled: compiling is an option of our pipeline.
    if args.pti_steps > 0 and not compiled:
        bar.set_postfix_str(f"{preset} {precision}: pti baseline")

        def pti_seconds(steps: int) -> float:
            config = {"name": "pti", "w_steps": steps, "tune_steps": steps, "progress": False}
            pti = registry.create("inverter", config, registry=registry, experiment=experiment, models=models)
            with autocast(device, precision):
                return time_call(lambda: pti.invert(frames[:1]), device, args.pti_repeats, 0)

        # Two runs that differ only in their step count separate the cost per step from the fixed
        # cost (the prior's copy for tuning, the first call's allocations).
        short, long = pti_seconds(1), pti_seconds(1 + args.pti_steps)
        per_step = max(long - short, 0.0) / (2 * args.pti_steps)
        fixed = max(short - 2 * per_step, 0.0)
        result["pti_s_per_step"] = per_step
        result["pti_s_fixed"] = fixed
        result["pti_s_full"] = fixed + per_step * PTI_STEPS
        result["pti_vs_ours_1f"] = result["pti_s_full"] / (result["recon_1f_ms"] / 1e3)
    bar.update(1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=("tiny", "paper"), help="repeatable (default: tiny)")
    parser.add_argument("--precision", action="append", choices=("fp32", "bf16"), help="repeatable (default: fp32)")
    parser.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--stream-frames", type=int, default=32, help="frames streamed one at a time")
    parser.add_argument("--paper-frames", type=int, default=32, help="largest source-frame count for the paper preset")
    parser.add_argument("--pti-steps", type=int, default=5, help="PTI steps timed per phase (0: skip the baseline)")
    parser.add_argument("--pti-repeats", type=int, default=1, help="timed PTI runs per step count (median)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s (CPU has no table)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--out", default=None, help="JSON file (default benchmarks/results/reconstruction-<device>.json)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    presets = args.preset or ["tiny"]
    precisions = args.precision or ["fp32"]
    compiles = [False, True] if args.compile else [False]
    settings = [(p, q, c) for p in presets for q in precisions for c in compiles]
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    print(f"device: {device_name}; torch {torch.__version__}")
    steps = sum(len(frame_counts(p, args)) + 4 for p, _, _ in settings)
    results = []
    with tqdm(total=steps, desc="benchmark", unit="step") as bar:
        for preset, precision, compiled in settings:
            result: dict[str, Any] = {"preset": preset, "precision": precision, "compiled": compiled}
            results.append(result)
            try:
                benchmark_config(preset, precision, compiled, args, device, bar, result)
            except Exception as exc:  # noqa: BLE001 - one failing setting must not hide the others' figures
                result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                print(f"\n{preset} {precision} compile={compiled}: failed: {result['error']}", file=sys.stderr)
    latency = [
        {
            "preset": r["preset"],
            "precision": r["precision"],
            "compiled": r["compiled"],
            **{f"{t}f_ms": r.get(f"recon_{t}f_ms") for t in FRAME_COUNTS},
        }
        for r in results
    ]
    print("\nReconstruction latency (ms) vs number of source frames")
    print(format_table(latency))
    summary_keys = (
        "preset",
        "precision",
        "compiled",
        "stream_ms_per_frame",
        "stream_mem_growth_mb",
        "anim_fps_b1",
        "anim_fps_b8",
        "peak_mem_mb",
        "gflop_recon_1f",
        "gflop_anim_frame",
        "recon_1f_tflops",
        "recon_1f_peak_fraction",
        "pti_s_full",
        "pti_vs_ours_1f",
    )
    print("\nStreaming, animation, memory, FLOPs and the PTI baseline")
    print(format_table([{k: r.get(k) for k in summary_keys} for r in results]))
    for r in results:
        if "error" in r:
            print(f"{r['preset']} {r['precision']} compile={r['compiled']}: {r['error']}")
    out = Path(args.out or Path(__file__).parent / "results" / f"reconstruction-{device.type}.json")
    payload = {
        "device": device_name,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "settings": vars(args),
        "results": results,
    }
    atomic_write_text(out, json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
