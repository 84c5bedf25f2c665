"""CPU thread policy: the CLI's default against the alternatives, on an idle and on a busy machine.

For each setting a fresh process (the OpenMP variables only count before torch is imported)
times three things a user runs on the CPU with the ``tiny`` preset:

- ``demo_s``: ``invertavatar demo`` end to end at small sizes (2 source, 2 driving, 2 orbit
  frames; model build, synthetic head, reconstruction, videos, plots), one run;
- ``reconstruct_ms``: the incremental inverter on 4 frames (median of ``--repeats`` after one
  warm-up call);
- ``train_step_s``: one step of ``train latent`` (the second of two; the first warms up).

Settings: ``default`` is what ``invertavatar`` does when nothing is asked for
(:mod:`invertavatar_core.config.compute`: the usable cores, at most 1, as intra-op threads with
``OMP_WAIT_POLICY=PASSIVE``); the alternatives are 1 thread with passive or active waiting, N
threads with active waiting, and torch's own default (N threads, OpenMP's default wait
policy). ``busy`` runs every setting again while N CPU-burning processes compete for the cores.
``--rounds`` interleaves the settings and reports medians. Prints a table, writes JSON
(``--out``, default ``benchmarks/results/threads.json``). Usage::

    python benchmarks/threads.py
    python benchmarks/threads.py --repeats 5 --condition idle
"""

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def usable_cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings() -> list[dict[str, Any]]:
    """The CLI default first, then the alternatives (threads None: torch decides; wait None: OpenMP decides)."""
    n = usable_cores()
    rows = [
        {"setting": "default", "threads": "cli", "wait": "cli"},
        {"setting": "1 thread, passive", "threads": 1, "wait": "PASSIVE"},
        {"setting": "1 thread, active", "threads": 1, "wait": "ACTIVE"},
        {"setting": f"{n} threads, active", "threads": n, "wait": "ACTIVE"},
        {"setting": f"torch default ({n} threads)", "threads": None, "wait": None},
    ]
    return rows


# ---------------------------------------------------------------------------------------------- worker


def _worker(threads: str, repeats: int) -> dict[str, float]:
    """Runs in a fresh process whose OpenMP environment the parent set; returns the timings."""
    if threads == "cli":
        from invertavatar_core.config.compute import apply_threads, prepare_threads

        apply_threads(prepare_threads(None))
    import torch

    if threads not in ("cli", "none"):
        torch.set_num_threads(int(threads))
    from invertavatar_core.cli import build_parser
    from invertavatar_core.config.experiment import default_registry

    sys.path.insert(0, str(HERE))
    from reconstruction import experiment_for, synthetic_frames, time_call

    result: dict[str, float] = {"torch_threads": torch.get_num_threads()}
    registry = default_registry()
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        quiet = contextlib.redirect_stdout(io.StringIO())
        # Reconstruction: the incremental inverter over 4 frames.
        experiment = experiment_for("tiny")
        from invertavatar_core.inversion.models import InversionModels

        torch.manual_seed(0)
        models = InversionModels.build(experiment, registry, device=device).eval().requires_grad_(False)
        inverter = registry.create("inverter", experiment.inverter, registry=registry, experiment=experiment,
                                   models=models)  # fmt: skip
        frames = synthetic_frames(models.prior.info, 4, device)
        with torch.no_grad():
            result["reconstruct_ms"] = 1e3 * time_call(lambda: inverter.invert(frames), device, repeats, 1)

        # Training: the second step of `train latent` on the tiny preset.
        from invertavatar_core.config.presets import preset_experiment
        from invertavatar_core.training.stages.latent import train_latent

        run = Path(tmp) / "train"
        training = {"out_dir": str(run), "steps": 2, "log_every": 1, "checkpoint_every": 1000, "sample_every": 1000}
        with quiet:
            train_latent(preset_experiment(registry, "tiny", aggregator=None, training=training), registry,
                         progress=False)  # fmt: skip
        lines = (run / "log.csv").read_text().splitlines()
        header = lines[0].split(",")
        seconds = [float(line.split(",")[header.index("seconds")]) for line in lines[1:]]
        result["train_step_s"] = seconds[-1] - seconds[-2]

        # The demo, end to end, through the command's own function (the thread policy is this process's).
        argv = ["demo", "--out", str(Path(tmp) / "demo"), "--source-frames", "2", "--driving-frames", "2",
                "--orbit-frames", "2", "--no-progress", "--device", "cpu"]  # fmt: skip
        args = build_parser().parse_args(argv)
        began = time.perf_counter()
        with quiet:
            args.func(args)
        result["demo_s"] = time.perf_counter() - began
    return result


# ---------------------------------------------------------------------------------------------- parent


def run_setting(setting: dict[str, Any], repeats: int, timeout: float) -> dict[str, Any]:
    """One setting in a fresh process with its OpenMP environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    env.pop("INVERTAVATAR_THREADS", None)
    threads = setting["threads"]
    if threads not in ("cli", None):
        env["OMP_NUM_THREADS"] = str(threads)
    if setting["wait"] not in ("cli", None):
        env["OMP_WAIT_POLICY"] = setting["wait"]
    command = [sys.executable, __file__, "--worker", "none" if threads is None else str(threads), "--repeats",
               str(repeats)]  # fmt: skip
    began = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - began
    return result


@contextlib.contextmanager
def competing_load(processes: int):
    """``processes`` pure-Python busy loops (one per core) for the duration of the block."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(1.0)
        yield
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()


def main(argv: list[str] | None = None) -> int:
    """Run every setting idle and busy; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="reconstruction repeats (median)")
    parser.add_argument("--condition", action="append", choices=("idle", "busy"), help="default: both")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the settings (median)")
    parser.add_argument("--setting", action="append", help="only these settings (and the default); default: all")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per setting before giving up")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "threads.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.repeats)))
        return 0

    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.io.atomic import atomic_write_text

    cores = usable_cores()
    chosen = [s for s in settings() if not args.setting or s["setting"] in args.setting or s["setting"] == "default"]
    rows, raw = [], []
    figures = ("demo_s", "reconstruct_ms", "train_step_s")
    for condition in args.condition or ["idle", "busy"]:
        load = competing_load(cores) if condition == "busy" else contextlib.nullcontext()
        runs: dict[str, list[dict[str, Any]]] = {s["setting"]: [] for s in chosen}
        with load:
            # Rounds interleave the settings, so a change in other jobs' load hits every setting alike.
            for _ in range(args.rounds):
                for setting in chosen:
                    result = run_setting(setting, args.repeats, args.timeout)
                    result["load_1min"] = round(os.getloadavg()[0], 2)
                    runs[setting["setting"]].append(result)
                    raw.append({"condition": condition, "setting": setting["setting"], **result})
                    print(condition, setting["setting"], json.dumps(result), flush=True)
        for name, results in runs.items():
            row: dict[str, Any] = {"condition": condition, "setting": name, "runs": len(results)}
            good = [r for r in results if "error" not in r]
            if good:
                row["torch_threads"] = good[0]["torch_threads"]
                row.update({key: statistics.median(r[key] for r in good) for key in figures})
                row["load_1min"] = statistics.median(r["load_1min"] for r in good)
            if len(good) < len(results):
                row["error"] = next(r["error"] for r in results if "error" in r)
            rows.append(row)
    columns = ["condition", "setting", "runs", "torch_threads", "demo_s", "reconstruct_ms", "train_step_s", "load_1min"]
    shown = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    print(
        format_table(
            shown, [c for c in columns if any(c in r for r in rows)] + (["error"] * any("error" in r for r in rows))
        )
    )
    verdict = {}
    for condition in {r["condition"] for r in rows}:
        mine = [r for r in rows if r["condition"] == condition]
        default = mine[0]
        for key in figures:
            best = min(r.get(key, float("inf")) for r in mine)
            verdict[f"{condition}/{key}"] = round(default.get(key, float("inf")) / best, 3) if best else None
    print("default / best per figure (1.0 = the default is the fastest):", json.dumps(verdict))
    payload = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "usable_cores": cores},
        "repeats": args.repeats,
        "rounds": args.rounds,
        "rows": rows,
        "default_over_best": verdict,
        "runs": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
