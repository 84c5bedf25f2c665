"""Live driving speed: frames per second end to end and per phase (capture, track, fit, render, output).

Runs the live loop of ``invertavatar live`` (:class:`invertavatar_core.animation.live.LiveSession`:
MediaPipe in tracking mode, the warm-started Gauss-Newton fit, the one-euro filter, the avatar's
render at its native resolution) on a video file, reading every frame as fast as it can be
processed, once sequentially and once pipelined (the render in a second thread), and once paced
at the file's frame rate (what a viewer sees: frames dropped to keep up). The avatar comes from
``--avatar``, or from the demo's tiny preset with random weights (``invertavatar demo``, written
to a temporary folder): the render cost is that of the trained tiny model. The "output" phase
converts each frame to uint8, as writing a video does, without writing a file.

Prints, per run, the phase table (wall and CPU milliseconds per frame; on a machine shared with
other work the CPU figures are the ones to compare, the wall figures include waiting for a
core) and the jitter table (mean frame-to-frame change of pose and expression, raw and
smoothed), and writes every figure as JSON (``--out``, default
``benchmarks/results/live-cpu.json``). Usage::

    python benchmarks/live.py                                        # the shared talking-head clip
    python benchmarks/live.py --clip my.mp4 --avatar avatar/ --frames 100
"""

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from invertavatar_core.animation.capture import FrameSource
from invertavatar_core.animation.driving import AvatarAnimator
from invertavatar_core.animation.live import LiveSession, LiveSettings
from invertavatar_core.cli import main as cli_main
from invertavatar_core.config.experiment import default_registry
from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.io.media import to_uint8
from invertavatar_faceverse.live_tracking import LiveFaceTracker

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "assets" / "media" / "talking_head_512.mp4"


def demo_avatar(folder: Path) -> Path:
    """The demo's tiny random-weight avatar, written into ``folder``."""
    if cli_main(["demo", "--out", str(folder), "--no-progress", "--driving-frames", "1", "--orbit-frames", "2"]):
        sys.exit("invertavatar demo failed")
    return folder / "avatar"


def run(avatar_dir: Path, clip: Path, frames: int | None, *, realtime: bool, pipeline: bool) -> dict:
    """One live run; returns its summary and prints its tables."""
    registry = default_registry()
    avatar = Avatar.load(avatar_dir)
    models = InversionModels.load(avatar.extra["checkpoint"], registry).eval()
    model = registry.create("morphable_model", models.experiment.morphable_model)
    rasterizer = registry.create("rasterizer", models.experiment.rasterizer)
    animator = AvatarAnimator(avatar, models.prior, model, rasterizer)
    source = FrameSource(str(clip), realtime=realtime, max_frames=frames)
    session = LiveSession(source, LiveFaceTracker(model), animator, LiveSettings(pipeline=pipeline))
    for frame in session.frames():
        to_uint8(frame.avatar)  # what writing or showing a frame starts with
    source.close()
    report = session.report
    still = round(source.fps)
    name = ("paced at the file's rate" if realtime else "as fast as possible") + (
        ", pipelined" if pipeline else ", sequential"
    )
    print(f"\n== {name}: {report.frames} frames, {report.dropped} dropped, start-up {report.startup_s:.2f} s, "
          f"mode {report.mode}")  # fmt: skip
    print(format_table(report.phase_rows()))
    print(f"jitter (mean frame-to-frame change; still: the stillest {still} frames)")
    print(format_table(report.jitter_rows(still)))
    return {"run": name, "realtime": realtime, **report.summary(still), "table": report.phase_rows()}


def main() -> None:
    """Parse the options, make the avatar if needed, run each configuration, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP, help=f"video to drive with (default {CLIP})")
    parser.add_argument("--avatar", type=Path, help="avatar folder (default: the demo's tiny random-weight avatar)")
    parser.add_argument("--frames", type=int, help="at most this many frames per run (default: the whole clip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "live-cpu.json")
    args = parser.parse_args()
    if not args.clip.is_file():
        sys.exit(f"--clip {args.clip}: not found")
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="invertavatar-live-bench-") as tmp:
        avatar = args.avatar or demo_avatar(Path(tmp) / "demo")
        for realtime, pipeline in ((False, False), (False, True), (True, True)):
            results.append(run(avatar, args.clip, args.frames, realtime=realtime, pipeline=pipeline))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    meta = {
        "clip": str(args.clip),
        "avatar": str(args.avatar) if args.avatar else "demo tiny preset, random weights",
        "cpus": usable,
        "torch_threads": args.threads,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps({"machine": meta, "runs": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
