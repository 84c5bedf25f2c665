"""Speed of ``invertavatar preprocess`` end to end, by phase, on a real clip.

Runs :func:`invertavatar_faceverse.dataset_fitting.fit_dataset` on a video into a fresh folder
(``--repeats`` times) and prints, per run, frames per second end to end and the seconds spent in
each phase, wall / CPU of the threads that ran it: ``decode`` (waiting for frames, both passes),
``detect`` (finding the face, pass 1), ``fit`` (the landmark fit), ``crop`` (pass 2), ``render``
(expression UV renders, UV unwraps, overlays; two threads, summed) and ``write`` (the files, in
the writer thread; render and write overlap each other). Also the
process's CPU seconds (user + system, all threads and the ffmpeg children) over the same run, to
tell a busy machine from slow code, and from them an estimate for two idle cores: the fit runs
on one thread while the other core waits, everything else keeps both busy, so
``fit CPU + (CPU - fit CPU) / 2`` seconds (optimistic where a phase cannot use both cores).
Writes JSON (``--out``, default ``benchmarks/results/preprocess.json``). Usage::

    python benchmarks/preprocess.py                              # the shared talking-head clip
    python benchmarks/preprocess.py --video clip.mp4 --max-frames 50 --threads 2
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_faceverse.dataset_fitting import fit_dataset

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "assets" / "media" / "talking_head_512.mp4"
PHASES = ("decode", "detect", "fit", "crop", "render", "write")


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=Path(os.environ.get("INVERTAVATAR_ASSETS", "")) / "media" /
                        "talking_head_512.mp4" if os.environ.get("INVERTAVATAR_ASSETS") else DEFAULT_VIDEO)  # fmt: skip
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--uv-resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CLI's default is 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "preprocess.json")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        print(f"video not found: {args.video}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    registry = default_registry()
    runs = []
    for repeat in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix="preprocess-bench-"))
        try:
            cpu, start = _cpu_seconds(), time.perf_counter()
            summary = fit_dataset(
                [args.video],
                folder / "dataset",
                registry,
                resolution=args.resolution,
                uv_resolution=args.uv_resolution,
                every=args.every,
                max_frames=args.max_frames,
                progress=False,
                say=lambda line: None,
            )
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        frames = sum(s["frames_written"] for s in summary.sequences.values())
        fit_cpu = summary.timings.get("fit_cpu", 0.0)
        two_cores = fit_cpu + (cpu - fit_cpu) / 2
        runs.append({"repeat": repeat, "frames": frames, "wall_s": wall, "cpu_s": cpu, "fps": frames / wall,
                     "two_core_s": two_cores, "two_core_fps": frames / two_cores, "load": os.getloadavg()[0],
                     **{p: summary.timings.get(p, 0.0) for p in PHASES},
                     **{f"{p}_cpu": summary.timings.get(f"{p}_cpu", 0.0) for p in PHASES}})  # fmt: skip
    header = ["run", "frames", "frames/s", "wall s", "CPU s", *[f"{p} s" for p in PHASES], "2 idle cores: s, frames/s"]
    # Each phase: wall seconds / CPU seconds of the thread that ran it.
    values = [
        [r["repeat"], r["frames"], f"{r['fps']:.2f}", f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}",
         *[f"{r[p]:.1f} / {r[p + '_cpu']:.1f}" for p in PHASES], f"{r['two_core_s']:.1f}, {r['two_core_fps']:.2f}"]
        for r in runs
    ]  # fmt: skip
    rows = [dict(zip(header, v, strict=True)) for v in values]
    print(f"{args.video.name}: preprocess end to end, torch threads {args.threads}, load {os.getloadavg()[0]:.1f}")
    print(format_table(rows, header))
    result = {
        "video": str(args.video),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "threads": args.threads,
        "runs": runs,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
