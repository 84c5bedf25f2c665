"""The generic trainer: resume is bit-exact (after an exception or kill -9), DDP averages gradients."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from trainer_toy_stage import Interrupted, ToyStage

from invertavatar_core.config.experiment import TrainingConfig
from invertavatar_core.training.distributed import Runtime, average_gradients
from invertavatar_core.training.state import latest_checkpoint
from invertavatar_core.training.trainer import LOG_FILE, Trainer, step_seed


def _training(out_dir: Path, steps: int = 12, **kw) -> TrainingConfig:
    values = {"out_dir": out_dir, "steps": steps, "checkpoint_every": 5, "log_every": 2, "sample_every": 6, **kw}
    return TrainingConfig(**values)


def _params(stage: ToyStage) -> list[torch.Tensor]:
    return [p.detach().clone() for p in stage.model.parameters()]


def test_resume_after_a_crash_reproduces_the_uninterrupted_run_exactly(tmp_path):
    reference = ToyStage()
    Trainer(reference, _training(tmp_path / "a"), config=_training(tmp_path / "a"), progress=False).fit()

    crashed = ToyStage(fail_at=8)
    with pytest.raises(Interrupted):
        Trainer(crashed, _training(tmp_path / "b"), config=_training(tmp_path / "b"), progress=False).fit()
    assert latest_checkpoint(tmp_path / "b").name == "state-00000005.safetensors"

    resumed = ToyStage(init_seed=99)  # a different init: everything must come from the checkpoint
    trainer = Trainer(resumed, _training(tmp_path / "b"), config=_training(tmp_path / "b"), progress=False)
    last = trainer.fit()
    for a, b in zip(_params(reference), _params(resumed), strict=True):
        assert torch.equal(a, b)
    assert resumed.exports == [10, 12] and last["lr"] == pytest.approx(0.1)

    # The log holds each step once (rows after the checkpoint were dropped and re-logged) ...
    with (tmp_path / "b" / LOG_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    with (tmp_path / "a" / LOG_FILE).open() as handle:
        reference_rows = list(csv.DictReader(handle))
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference_rows]
    # ... the loss fell, and the config and sample grids are in the run folder.
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert json.loads((tmp_path / "b" / "config.json").read_text())["steps"] == 12
    assert sorted(p.name for p in (tmp_path / "b" / "samples").iterdir()) == ["step-00000006.png", "step-00000012.png"]


def test_resume_refuses_a_changed_config(tmp_path):
    Trainer(ToyStage(), _training(tmp_path, steps=5), config=_training(tmp_path, steps=5), progress=False).fit()
    changed = _training(tmp_path, steps=10, lr=0.5)
    with pytest.raises(ValueError, match="lr"):
        Trainer(ToyStage(), changed, config=changed, progress=False).fit()
    # More steps alone is a continuation.
    longer = _training(tmp_path, steps=10)
    Trainer(ToyStage(), longer, config=longer, progress=False).fit()
    assert latest_checkpoint(tmp_path).name == "state-00000010.safetensors"


_KILL_SCRIPT = """
import sys
from pathlib import Path
from trainer_toy_stage import ToyStage
from invertavatar_core.config.experiment import TrainingConfig
from invertavatar_core.training.trainer import Trainer
out = Path(sys.argv[1])
cfg = TrainingConfig(out_dir=out, steps=12, checkpoint_every=5, log_every=2, sample_every=100)
Trainer(ToyStage(kill_at=8), cfg, config=cfg, progress=False).fit()
"""


def test_kill_9_loses_at_most_one_checkpoint_interval(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "run")], env=env, capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    assert latest_checkpoint(tmp_path / "run").name == "state-00000005.safetensors"

    cfg = _training(tmp_path / "run", sample_every=100)
    resumed = ToyStage(init_seed=5)
    Trainer(resumed, cfg, config=cfg, progress=False).fit()
    reference = ToyStage()
    ref_cfg = _training(tmp_path / "ref", sample_every=100)
    Trainer(reference, ref_cfg, config=ref_cfg, progress=False).fit()
    for a, b in zip(_params(reference), _params(resumed), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    runtime = Runtime.from_env("cpu")
    try:
        stage = ToyStage(optimizer="sgd", init_seed=rank)  # rank 1 starts elsewhere: rank 0's weights must win
        cfg = _training(Path(out_dir), steps=4, checkpoint_every=4, log_every=1, sample_every=100)
        Trainer(stage, cfg, runtime=runtime, progress=False).fit()
        torch.save({"params": _params(stage)}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        runtime.close()


def _unused_parameter_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    runtime = Runtime.from_env("cpu")
    try:
        used, rank0_only, unused = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        loss = (used * (rank + 1)).sum() + (rank0_only.sum() * 4 if rank == 0 else 0)
        loss.backward()
        average_gradients([used, rank0_only, unused], world_size)
        torch.save(
            {"used": used.grad, "rank0_only": rank0_only.grad, "unused": unused.grad}, Path(out_dir) / f"g{rank}.pt"
        )
    finally:
        runtime.close()


def test_gradient_average_counts_a_missing_gradient_as_zero_and_leaves_unused_ones_none(tmp_path):
    mp.spawn(_unused_parameter_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        grads = torch.load(tmp_path / f"g{rank}.pt", weights_only=True)
        assert torch.equal(grads["used"], torch.full((3,), 1.5))  # (1 + 2) / 2
        assert torch.equal(grads["rank0_only"], torch.full((3,), 2.0))  # (4 + 0) / 2
        assert grads["unused"] is None  # Adam and weight decay skip it, as in one process


def test_two_process_gloo_run_matches_the_single_process_gradient_average(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["params"] for r in range(2)]
    for a, b in zip(*ranks, strict=True):
        assert torch.equal(a, b)  # the processes stay in lockstep

    # Single process: the same per-rank batches (and dropout masks), loss averaged over ranks.
    stage = ToyStage(optimizer="sgd", init_seed=0)
    optimizer = stage.optimizers["opt"]
    for step in range(4):
        optimizer.zero_grad()
        for rank in range(2):
            seed = step_seed(0, rank, step)
            torch.manual_seed(seed)
            x, y = ToyStage.data(torch.Generator().manual_seed(seed), stage.batch)
            (stage.loss(x, y) / 2).backward()
        optimizer.step()
    for a, b in zip(_params(stage), ranks[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Rank 0 alone wrote the log, one row per step, with the loss averaged over ranks.
    with (tmp_path / LOG_FILE).open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


class _CountingStage(ToyStage):
    """Returns the step index every step and a sparse term every third step (like a lazy regulariser)."""

    def step(self, ctx):
        scalars = dict(super().step(ctx), index=float(ctx.step))
        if ctx.step % 3 == 0:
            scalars["sparse"] = float(ctx.step)
        return scalars


def test_the_log_holds_interval_means_and_terms_of_some_steps_only(tmp_path):
    training = _training(tmp_path, steps=8, log_every=4)
    Trainer(_CountingStage(), training, config=training, progress=False).fit()
    with (tmp_path / LOG_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["index"]) for r in rows] == [1.5, 5.5]  # means of steps 0-3 and 4-7
    assert [float(r["sparse"]) for r in rows] == [1.5, 6.0]  # steps 0, 3 and step 6 only
