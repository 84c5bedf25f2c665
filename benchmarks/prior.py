"""Prior speed: canonical features and animated 512^2 frames of the next3d prior, with peak memory.

For each configuration it times ``prior.canonical(ws)`` (G_tex + G_static, once per avatar) and
one animated frame with the features cached, ``prior.render(features, expression_uv, camera)``
(G_face + volume rendering + super-resolution), at batch 1 in evaluation mode, taking the median
and the best of ``--repeats`` after ``--warmup`` calls. Configurations: ``paper`` on CUDA in bf16
and fp32 when CUDA is available (issue 4 targets on one H100 in bf16: canonical <= 5 ms, a frame
<= 5 ms, peak <= 4 GB), and ``tiny`` on CPU (``--paper-cpu`` adds ``paper`` on CPU, slow).
CUDA runs synchronise around each call and report ``torch.cuda.max_memory_allocated``; CPU runs
report the process's peak resident memory. The ``speedup`` column is the fp32 time of the same
preset and device over this row's time (same run). Prints a table and writes JSON (``--out``,
default ``benchmarks/prior.json`` next to this script). Usage::

    python benchmarks/prior.py
    python benchmarks/prior.py --repeats 50 --compile
"""

import argparse
import contextlib
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.testing.inputs import example_camera, example_expression_uv
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident memory on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(preset: str, device: torch.device, precision: str, args: argparse.Namespace) -> dict:
    """One row: build the prior, time canonical and render, measure peak memory."""
    torch.manual_seed(0)
    prior = Next3DPrior(Next3DPriorConfig(preset=preset)).eval().to(device)
    prior.requires_grad_(False)
    if device.type == "cuda":
        prior = prior.to(memory_format=torch.channels_last)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    info = prior.info
    camera = example_camera(1).to(device)
    expression = example_expression_uv(1, info.uv_resolution).to(device)
    dtype = _DTYPES[precision]
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    canonical, render = prior.canonical, prior.render
    if args.compile:
        canonical = torch.compile(canonical, dynamic=False)
        render = torch.compile(render, dynamic=False)
    with torch.inference_mode():
        ws = prior.mapping(torch.randn(1, info.z_dim, device=device), camera, truncation_psi=0.7)
        with autocast():
            features = canonical(ws)

        def run_canonical() -> object:
            with autocast():
                return canonical(ws)

        def run_frame() -> object:
            with autocast():
                return render(features, expression, camera)

        canonical_ms = timed(run_canonical, device, args.warmup, args.repeats)
        frame_ms = timed(run_frame, device, args.warmup, args.repeats)
        image = run_frame().image
    return {
        "preset": preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "precision": precision,
        "compiled": bool(args.compile),
        "canonical_ms": statistics.median(canonical_ms),
        "canonical_best_ms": min(canonical_ms),
        "frame_ms": statistics.median(frame_ms),
        "frame_best_ms": min(frame_ms),
        "fps": 1000 / statistics.median(frame_ms),
        "peak_mb": peak_memory_mb(device),
        "image": "x".join(str(s) for s in image.shape[1:]),
        "finite": bool(torch.isfinite(image.float()).all()),
    }


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    # One thread by default: the tiny preset is thousands of small ops, and a second OpenMP thread
    # that has to wait for a busy core makes each op many times slower.
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--paper-cpu", action="store_true", help="also time the paper preset on CPU (slow)")
    parser.add_argument("--compile", action="store_true", help="torch.compile canonical and render")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("prior.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs: list[tuple[str, torch.device, str]] = []
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        configs += [("paper", cuda, "fp32"), ("paper", cuda, "bf16")]
    cpu = torch.device("cpu")
    configs.append(("tiny", cpu, "fp32"))
    if args.paper_cpu:
        configs.append(("paper", cpu, "fp32"))
    rows = [bench(preset, device, precision, args) for preset, device, precision in configs]
    for row in rows:
        base = next(
            r
            for r in rows
            if r["preset"] == row["preset"] and r["device"] == row["device"] and r["precision"] == "fp32"
        )
        row["speedup"] = base["frame_ms"] / row["frame_ms"]
    columns = [
        "preset",
        "device",
        "precision",
        "canonical_ms",
        "frame_ms",
        "fps",
        "peak_mb",
        "speedup",
        "image",
        "finite",
    ]
    print(format_table(rows, columns))
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
