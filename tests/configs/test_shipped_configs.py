"""configs/: what `invertavatar config init` writes, each file trains one step in 8 GiB or is refused up front.

Every run is a fresh `invertavatar` process (as a user runs it) under a wrapper process that reports
the peak resident memory of its child (``resource.getrusage(RUSAGE_CHILDREN)``), with the memory
budget set to 8 GiB. ``tiny`` and ``small`` train one step of every stage; ``paper`` cannot train a
step on a CPU in 8 GiB (the memory estimate puts every stage above 30 GiB), so for it the test asserts
that the estimate refuses it with the figure before building anything.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from invertavatar_core.cli import build_parser, main
from invertavatar_core.config.experiment import load_config_data, load_experiment
from invertavatar_core.config.presets import PRESETS, preset_experiment_yaml
from invertavatar_core.training.memory_estimate import BUDGET_ENV
from invertavatar_core.training.stages.incremental import IncrementalStage
from invertavatar_core.training.stages.latent import LatentStage
from invertavatar_core.training.stages.oneshot import OneShotStage
from invertavatar_prior_next3d.training import PriorTrainingConfig, prior_memory_estimate
from invertavatar_prior_next3d.training_presets import preset_prior_training_yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
BUDGET = 8 << 30
STAGES = {"latent": LatentStage, "oneshot": OneShotStage, "incremental": IncrementalStage}
RUNNABLE = ("tiny", "small")

# Runs the command given as arguments; prints the child's exit status and peak RSS (KiB on Linux).
_PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('peak', code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _invertavatar(*args: str, tmp_path: Path) -> tuple[int, int, str]:
    """Run ``invertavatar ARGS`` in a fresh process with the 8 GiB budget: exit status, peak RSS bytes, stderr."""
    env = {**os.environ, BUDGET_ENV: str(BUDGET), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-c", _PEAK, sys.executable, "-m", "invertavatar_core.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    match = re.search(r"^peak (-?\d+) (\d+)$", done.stdout, flags=re.M)
    assert match, done.stdout + done.stderr
    return int(match[1]), int(match[2]) * 1024, done.stderr


def test_configs_holds_every_preset_of_both_kinds():
    assert sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")) == sorted(
        f"{preset}/{kind}.yaml" for preset in PRESETS for kind in ("experiment", "prior")
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_configs_are_what_config_init_writes_and_validate(preset, full_registry, capsys):
    experiment = CONFIGS / preset / "experiment.yaml"
    prior = CONFIGS / preset / "prior.yaml"
    assert experiment.read_text() == preset_experiment_yaml(full_registry, preset)
    assert prior.read_text() == preset_prior_training_yaml(full_registry, preset)
    loaded = load_experiment(experiment, full_registry)
    prior_config = PriorTrainingConfig.model_validate(load_config_data(prior), context={"registry": full_registry})
    # The encoder stages' training.prior_weights must hold the experiment's own prior.
    assert prior_config.prior == loaded.prior
    for kind, path in (("experiment", experiment), ("prior", prior)):
        args = build_parser().parse_args(["config", "init", "--preset", preset, "--kind", kind])
        assert args.func(args) == 0
        assert capsys.readouterr().out == path.read_text()


def test_config_init_offers_exactly_the_presets(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["config", "init", "--help"])
    assert "--preset {" + ",".join(PRESETS) + "}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["config", "init", "--preset", "huge"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", RUNNABLE)
def test_runnable_configs_train_one_step_of_every_stage_within_8_gib(preset, full_registry, tmp_path):
    experiment_file = CONFIGS / preset / "experiment.yaml"
    experiment = load_experiment(experiment_file, full_registry)
    runs = {stage: ["train", stage, "--config", str(experiment_file), "--set", "training.steps=1"] for stage in STAGES}
    runs["prior"] = ["train", "prior", "--config", str(CONFIGS / preset / "prior.yaml"), "--steps", "1"]
    prior_config = PriorTrainingConfig.model_validate(
        load_config_data(CONFIGS / preset / "prior.yaml"), context={"registry": full_registry}
    )
    for name, args in runs.items():
        code, peak, stderr = _invertavatar(*args, "--out", str(tmp_path / name), "--no-progress", tmp_path=tmp_path)
        assert code == 0, f"{preset} {name}: {stderr[-2000:]}"
        assert peak <= BUDGET, f"{preset} {name}: peak {peak / 2**30:.2f} GiB"
        estimate = (
            prior_memory_estimate(prior_config, full_registry)
            if name == "prior"
            else STAGES[name].memory_estimate(experiment, full_registry)
        )
        # Conservative: the estimate that let the run start covers what it used.
        assert peak <= estimate.total_bytes <= BUDGET, f"{preset} {name}: peak {peak}, {estimate.describe()}"
        assert (tmp_path / name / "prior" / "model.safetensors").is_file()  # every run exports (at least) the prior
        assert len((tmp_path / name / "log.csv").read_text().splitlines()) == 2  # a header and the one step


def test_paper_configs_are_refused_up_front_with_the_figures(full_registry, tmp_path):
    experiment_file = CONFIGS / "paper" / "experiment.yaml"
    experiment = load_experiment(experiment_file, full_registry)
    for stage_class in STAGES.values():
        estimate = stage_class.memory_estimate(experiment, full_registry)
        assert estimate.total_bytes > BUDGET, estimate.describe()
    prior_config = PriorTrainingConfig.model_validate(
        load_config_data(CONFIGS / "paper" / "prior.yaml"), context={"registry": full_registry}
    )
    assert prior_memory_estimate(prior_config, full_registry).total_bytes > BUDGET
    # Through the command line, as a user meets it: one line with both figures, nothing written.
    args = ["train", "latent", "--config", str(experiment_file), "--set", "training.steps=1"]
    out = tmp_path / "latent"
    code, peak, stderr = _invertavatar(*args, "--out", str(out), tmp_path=tmp_path)
    assert code != 0
    message = stderr.strip().splitlines()[-1]
    assert re.search(r"train latent \(experiment 'paper'\) needs about \d+\.\d GiB", message), stderr
    assert "only 8.0 GiB is available" in message, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert peak < 2 << 30  # refused before any paper-size network was allocated


def test_paper_prior_config_is_refused_by_train_prior(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(BUDGET_ENV, "8G")
    out = tmp_path / "prior"
    assert main(["train", "prior", "--config", str(CONFIGS / "paper" / "prior.yaml"), "--out", str(out)]) != 0
    message = capsys.readouterr().err.strip()
    expected = r"invertavatar train: error: train prior needs about \d+\.\d GiB .*8\.0 GiB is available.*"
    assert re.fullmatch(expected, message), message
    assert not out.exists()
