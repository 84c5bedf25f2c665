"""Run the whole evaluation chain of recipes/evaluation/README.md on random tiny weights, in minutes.

    python recipes/evaluation/smoke.py --scratch /tmp/eval-smoke [--heldout 8]

In a scratch folder laid out like the repository root (``runs/``, ``recipes/``), it runs the very
commands of the README with these stand-ins: 2 held-out heads of 24 frames and 2 training heads
of 8 frames (instead of 8 x 24 and 48 x 24; ``--heldout 8`` gives the real evaluation's size),
random-weight tiny checkpoints for stages 1-3 (instead of the trained runs), copies of the stage
configs with ``training.steps: 1`` (every training command trains one step), and PTI with 2 + 2
steps. The numbers mean nothing; the run proves that every command, config, checkpoint path and
the report fit together. Prints the wall time of each step.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _run(argv: list[str], cwd: Path, times: list[tuple[str, float]]) -> None:
    """Run one command in ``cwd``; stop on failure with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MPLBACKEND": "Agg"}
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    spent = time.perf_counter() - began
    label = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
    times.append((label, spent))
    print(f"{spent:6.1f} s  {label}", flush=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {label}")


def _patched(source: Path, target: Path, edit) -> None:
    """Copy a YAML config with ``edit(data)`` applied."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    edit(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _one_step(data: dict) -> None:
    data["training"].update(steps=1, batch_size=2, checkpoint_every=1000, sample_every=1000, log_every=1)


def _short_pti(data: dict) -> None:
    for model in data["evaluation"]["models"]:
        if model.get("overrides", {}).get("inverter.name") == "pti":
            model["overrides"].update({"inverter.w_steps": 2, "inverter.tune_steps": 2})


def _random_checkpoints(root: Path) -> None:
    """Tiny random-weight stand-ins for runs/stage1 (one-shot), runs/stage2 (one-shot) and runs/stage3 (conv_gru)."""
    from invertavatar_core.config.experiment import ExperimentConfig, default_registry
    from invertavatar_core.config.presets import preset_experiment_data
    from invertavatar_core.inversion.models import InversionModels

    registry = default_registry()
    for stage, aggregator in (("stage1", None), ("stage2", None), ("stage3", {"name": "conv_gru"})):
        data = preset_experiment_data(registry, "tiny", root / "runs" / stage)
        data.update(name=f"smoke-{stage}", aggregator=aggregator)
        experiment = ExperimentConfig.model_validate(data, context={"registry": registry})
        InversionModels.build(experiment, registry).save(root / "runs" / stage)


def main(argv: list[str] | None = None) -> int:
    """Lay out the scratch folder and run every step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", type=Path, required=True, help="a new folder (or one this script made)")
    parser.add_argument("--heldout", type=int, default=2, help="held-out heads (8: the real evaluation's size)")
    args = parser.parse_args(argv)
    root = args.scratch.resolve()
    if root.exists() and any(root.iterdir()) and not (root / "smoke.txt").is_file():
        print(f"--scratch {root}: not empty and not an earlier smoke run; choose a new folder", file=sys.stderr)
        return 2
    shutil.rmtree(root / "runs", ignore_errors=True)  # an earlier smoke run's, rebuilt from nothing
    root.mkdir(parents=True, exist_ok=True)
    (root / "smoke.txt").write_text("scratch folder of recipes/evaluation/smoke.py\n")
    cli = str(Path(sys.executable).parent / "invertavatar")
    times: list[tuple[str, float]] = []
    began = time.perf_counter()

    # Configs as the README names them, shortened (one training step, two PTI steps).
    for name in ("stage2-oneshot", "stage3-incremental"):
        _patched(REPO / "recipes/configs" / f"{name}.yaml", root / "recipes/configs" / f"{name}.yaml", _one_step)
    for name in ("fig6-aggregators", "table2-inverters", "table3-encoders", "table3-retrained"):
        _patched(HERE / f"{name}.yaml", root / "recipes/evaluation" / f"{name}.yaml", _short_pti)

    heads = ["--resolution", "128", "--uv-resolution", "64", "--tiny", "--no-progress"]
    _run([cli, "synth-heads", "--out", "runs/data/synth-heldout", "--identities", str(args.heldout),
          "--frames-per-identity", "24", "--split", "heldout", *heads], root, times)  # fmt: skip
    _run([cli, "synth-heads", "--out", "runs/data/synth-train", "--identities", "2", "--frames-per-identity", "8",
          "--split", "train", *heads], root, times)  # fmt: skip
    _random_checkpoints(root)

    # The README's training commands (Fig. 6 aggregators; Table 3's retrained ablations).
    for aggregator in ("conv_fusion", "mean"):
        _run([cli, "train", "incremental", "--config", "recipes/configs/stage3-incremental.yaml", "--set",
              f"aggregator.name={aggregator}", "--steps", "1", "--out", f"runs/fig6/{aggregator}", "--no-progress"],
             root, times)  # fmt: skip
    offsets = ["--set", "encoders.static.name=triplane_offset_unet", "--set", "encoders.static.preset=tiny"]
    for label, change in (("offsets", offsets), ("no-texture", ["--set", "encoders.texture=null"])):
        _run([cli, "train", "oneshot", "--config", "recipes/configs/stage2-oneshot.yaml", *change, "--steps", "1",
              "--out", f"runs/ablation/{label}-s2", "--no-progress"], root, times)  # fmt: skip
        _run([cli, "train", "incremental", "--config", "recipes/configs/stage3-incremental.yaml", *change,
              "--steps", "1", "--set", f"training.init_from=runs/ablation/{label}-s2", "--out",
              f"runs/ablation/{label}-s3", "--no-progress"], root, times)  # fmt: skip

    for name in ("fig6-aggregators", "table2-inverters", "table3-encoders", "table3-retrained"):
        _run([cli, "evaluate", "--config", f"recipes/evaluation/{name}.yaml", "--no-progress"], root, times)
    _run([sys.executable, str(HERE / "report.py"), "--eval", "runs/eval", "--out", "report"], root, times)
    _run([sys.executable, str(HERE / "per_head.py"), "recipes/evaluation/fig6-aggregators.yaml", "--models",
          "conv_gru,mean"], root, times)  # fmt: skip
    print(f"{time.perf_counter() - began:6.1f} s  in all; report: {root / 'report' / 'tables.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
