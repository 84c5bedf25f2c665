"""The one training loop every stage uses (encoder stages 1-3 and the prior's GAN training).

A stage supplies its modules, its optimisers, a step function and a sample function
(:class:`Stage`); the :class:`Trainer` owns everything else:

- the run folder: ``config.json`` (the resolved config, written atomically at start),
  ``checkpoints/`` (:mod:`invertavatar_core.training.state`), ``log.csv`` (one row per
  ``log_every`` steps: each scalar averaged over the steps of the interval that returned it, so
  terms computed only every few steps, like lazy regularisers, still appear),
  ``samples/step-XXXXXXXX.png`` and TensorBoard events when ``tensorboard`` is installed;
- resume: a run folder with a checkpoint continues from it, bit for bit. Every step draws its
  randomness from a seed derived from (seed, rank, step) -- never from state carried over from
  earlier steps -- so ``kill -9`` loses at most one checkpoint interval and the resumed run
  computes exactly what the uninterrupted one would have;
- several processes under torchrun (:mod:`invertavatar_core.training.distributed`): rank 0 logs, samples
  and checkpoints; every optimiser step averages gradients over processes;
- precision: :meth:`StepContext.autocast` follows ``TrainingConfig.precision`` (fp16 adds a
  gradient scaler per optimiser);
- a tqdm progress bar on rank 0.

Example:
    >>> runtime = Runtime.from_env()  # doctest: +SKIP
    >>> stage = MyStage(device=runtime.device)  # doctest: +SKIP
    >>> Trainer(stage, experiment.training, runtime=runtime, config=experiment).fit()  # doctest: +SKIP
"""

import contextlib
import csv
import io
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor, nn
from tqdm import tqdm

from invertavatar_core.config.experiment import TrainingConfig, dump_config
from invertavatar_core.io.atomic import atomic_write_text, read_marker, write_marker
from invertavatar_core.io.checkpoints import RUN_KIND
from invertavatar_core.io.media import save_grid
from invertavatar_core.training.distributed import Runtime, average_gradients, broadcast_module
from invertavatar_core.training.state import TrainingState, latest_checkpoint, load_training_state, save_training_state

__all__ = ["CONFIG_FILE", "LOG_FILE", "Stage", "StepContext", "Trainer", "step_seed"]

CONFIG_FILE = "config.json"
"""The resolved config of a run, in the run folder."""
LOG_FILE = "log.csv"
"""Scalar log of a run: ``step``, ``seconds`` and every scalar a stage returns."""

_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


@runtime_checkable
class Stage(Protocol):
    """What a training stage hands the :class:`Trainer`.

    ``modules`` are checkpointed and resumed (frozen, deterministically rebuilt modules may be
    left out); ``optimizers`` are stepped through :meth:`StepContext.optimize`. Optional
    methods, called when present:

    - ``sample(ctx) -> Tensor | None``: ``(N, 3, H, W)`` images in [-1, 1] for a PNG grid
      (rank 0 only; must not use collectives), ``sample_columns`` images per row (default 8);
    - ``export(run_dir: Path, step: int)``: write deployable artefacts at each checkpoint and
      at the end (rank 0 only);
    - ``extra_state() -> dict`` / ``load_extra_state(state)``: more resumable state (tensors and
      JSON values).
    """

    modules: Mapping[str, nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]

    def step(self, ctx: "StepContext") -> Mapping[str, float | Tensor]:
        """Run one training step; returns scalars to log (losses, metrics)."""
        ...


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one step on one rank: distinct per rank and step, independent of history."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + 12_345) % (2**63 - 1)


@dataclass
class StepContext:
    """What a stage's ``step`` gets: the step number, a seeded generator and the optimiser helper."""

    step: int
    """Zero-based index of the step being run."""
    generator: torch.Generator
    """CPU generator seeded for this step and rank (the global RNGs are seeded the same way)."""
    runtime: Runtime
    precision: str
    _optimizers: Mapping[str, torch.optim.Optimizer] = field(repr=False)
    _scalers: Mapping[str, torch.amp.GradScaler] = field(repr=False)

    @property
    def device(self) -> torch.device:
        """Torch device of this process."""
        return self.runtime.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes, as ``TrainingConfig.precision`` says."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_PRECISION[self.precision])

    def optimize(self, name: str, loss: Tensor, *, retain_graph: bool = False) -> None:
        """Zero the grads of optimiser ``name``, back-propagate ``loss``, average over ranks, step."""
        if name not in self._optimizers:
            raise KeyError(f"stage has no optimizer {name!r}; it has {sorted(self._optimizers)}")
        optimizer = self._optimizers[name]
        scaler = self._scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward(retain_graph=retain_graph)
        if self.runtime.distributed:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            average_gradients(params, self.runtime.world_size)
        scaler.step(optimizer)
        scaler.update()


class Trainer:
    """Runs a :class:`Stage` for ``training.steps`` steps with resume, logs, samples, checkpoints."""

    def __init__(
        self,
        stage: Stage,
        training: TrainingConfig,
        *,
        runtime: Runtime | None = None,
        config: BaseModel | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        """Set up the run (nothing is written before :meth:`fit`).

        Args:
            stage: the modules, optimisers and step function.
            training: steps, intervals, precision and the run folder (``out_dir``); any object
                with the fields of :class:`TrainingConfig` that the loop reads works.
            runtime: process rank and device (default: a single CPU/CUDA process from the environment).
            config: the resolved config written to ``config.json`` (e.g. the experiment).
            seed: base of every step's seed.
            progress: show the tqdm bar (rank 0).
        """
        if not isinstance(stage, Stage):
            raise TypeError(f"{type(stage).__name__} is not a Stage: it needs modules, optimizers and step(ctx)")
        self.stage = stage
        self.training = training
        self.runtime = runtime or Runtime.from_env()
        self.config = config
        self.seed = seed
        self.progress = progress
        self.run_dir = Path(training.out_dir)
        self.scalers = {
            name: torch.amp.GradScaler(self.runtime.device.type, enabled=training.precision == "fp16")
            for name in stage.optimizers
        }
        self._tb = None
        self._interval = _IntervalMean()

    # ---------------------------------------------------------------- state

    def _state(self) -> TrainingState:
        extra = {
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            # The open logging interval, so a resumed run logs the same means as an uninterrupted one.
            "log_interval": {"sums": dict(self._interval.sums), "counts": dict(self._interval.counts)},
        }
        if hasattr(self.stage, "extra_state"):
            extra["stage"] = self.stage.extra_state()
        return TrainingState(self.stage.modules, self.stage.optimizers, extra)

    def resume(self) -> int:
        """Load the latest checkpoint of the run folder if there is one; returns the start step."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return 0
        state = self._state()
        step = load_training_state(path, state)
        for name, scaler_state in state.extra_state.get("scalers", {}).items():
            if name in self.scalers and scaler_state:
                self.scalers[name].load_state_dict(scaler_state)
        interval = state.extra_state.get("log_interval") or {}
        self._interval.sums = {k: float(v) for k, v in interval.get("sums", {}).items()}
        self._interval.counts = {k: int(v) for k, v in interval.get("counts", {}).items()}
        if hasattr(self.stage, "load_extra_state") and "stage" in state.extra_state:
            self.stage.load_extra_state(state.extra_state["stage"])
        return step

    def checkpoint(self, step: int) -> None:
        """Write the training state after ``step`` steps and let the stage export (rank 0)."""
        if self.runtime.is_main:
            save_training_state(self.run_dir, step, self._state())
            if hasattr(self.stage, "export"):
                self.stage.export(self.run_dir, step)
        self.runtime.barrier()

    # ---------------------------------------------------------------- run

    def _write_config(self) -> None:
        if self.config is None or not self.runtime.is_main:
            return
        path = self.run_dir / CONFIG_FILE
        if path.is_file() and latest_checkpoint(self.run_dir) is not None:
            old = json.loads(path.read_text(encoding="utf-8"))
            new = json.loads(self.config.model_dump_json())
            # More steps is a continuation, not a change.
            changed = _changed_keys(old, new, ignore={"training.steps", "steps"})
            if changed:
                raise ValueError(
                    f"{self.run_dir}: resuming a run whose config differs from {path} in {', '.join(changed)}; "
                    f"use another training.out_dir or restore the config"
                )
        dump_config(self.config, path)

    def fit(self) -> dict[str, float]:
        """Train from the last checkpoint (or from scratch) to ``training.steps``; returns the last scalars."""
        t = self.training
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.runtime.is_main and read_marker(self.run_dir) is None:
            write_marker(self.run_dir, RUN_KIND)  # ours: a later run may resume or re-export here
        self._write_config()
        for module in self.stage.modules.values():
            module.to(self.runtime.device)
            if self.runtime.distributed:
                broadcast_module(module)
        start = self.resume()
        log = _CsvLog(self.run_dir / LOG_FILE, start) if self.runtime.is_main else None
        self._open_tensorboard()
        bar = tqdm(
            total=t.steps,
            initial=start,
            desc=f"train {self.run_dir.name}",
            unit="step",
            disable=not (self.progress and self.runtime.is_main),
            dynamic_ncols=True,
        )
        last: dict[str, float] = {}
        interval = self._interval
        began = time.perf_counter()
        try:
            for step in range(start, t.steps):
                interval.add(self._one_step(step))
                done = step + 1
                if done % t.log_every == 0 or done == t.steps:
                    last = self.runtime.mean(interval.pop())
                    if log is not None:
                        log.write({"step": done, "seconds": round(time.perf_counter() - began, 3), **last})
                        self._tensorboard(done, last)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(last.items())[:4]}, refresh=False)
                if self.runtime.is_main and (done % t.sample_every == 0 or done == t.steps):
                    self._sample(done, step)
                if done % t.checkpoint_every == 0 or done == t.steps:
                    self.checkpoint(done)
                bar.update(1)
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
        if start >= t.steps and self.runtime.is_main and hasattr(self.stage, "export"):
            self.stage.export(self.run_dir, start)  # already finished: make sure the artefacts exist
        return last

    def _seed_everything(self, step: int) -> torch.Generator:
        seed = step_seed(self.seed, self.runtime.rank, step)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        return torch.Generator().manual_seed(seed)

    def _one_step(self, step: int) -> Mapping[str, float | Tensor]:
        generator = self._seed_everything(step)
        if self.runtime.distributed:
            for module in self.stage.modules.values():
                for buffer in module.buffers():  # DDP's broadcast_buffers: rank 0's statistics rule
                    torch.distributed.broadcast(buffer.data, 0)
        ctx = StepContext(step, generator, self.runtime, self.training.precision, self.stage.optimizers, self.scalers)
        return self.stage.step(ctx)

    def _sample(self, done: int, step: int) -> None:
        if not hasattr(self.stage, "sample"):
            return
        ctx = StepContext(
            step,
            self._seed_everything(step),
            self.runtime,
            self.training.precision,
            self.stage.optimizers,
            self.scalers,
        )
        with torch.no_grad():
            images = self.stage.sample(ctx)
        if images is not None:
            columns = getattr(self.stage, "sample_columns", 8)
            save_grid(
                images.float().clamp(-1, 1),
                self.run_dir / "samples" / f"step-{done:08d}.png",
                nrow=min(columns, len(images)),
            )

    def _open_tensorboard(self) -> None:
        if not self.runtime.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: the CSV log is the record
            return
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _tensorboard(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)


def _to_float(value: float | Tensor) -> float:
    return float(value.detach().float().mean()) if isinstance(value, Tensor) else float(value)


class _IntervalMean:
    """Running sums of each scalar over a logging interval (a key counts only the steps that returned it)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, scalars: Mapping[str, float | Tensor]) -> None:
        """Add one step's scalars."""
        for key, value in scalars.items():
            self.sums[key] = self.sums.get(key, 0.0) + _to_float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self) -> dict[str, float]:
        """The interval's means (in first-seen order); starts a new interval."""
        out = {key: total / self.counts[key] for key, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


def _changed_keys(old: Any, new: Any, ignore: set[str], prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}{key}"
            if path not in ignore:
                out += _changed_keys(old.get(key), new.get(key), ignore, path + ".")
        return out
    return [] if old == new else [prefix.rstrip(".")]


class _CsvLog:
    """``log.csv``: rows past the resumed step are dropped; the header grows with new scalars."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.is_file() and start > 0:
            with path.open(newline="", encoding="utf-8") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(float(r["step"])) <= start]
        self.columns = list(self.rows[0]) if self.rows else []
        self._rewrite()

    def write(self, row: Mapping[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        self.rows.append(dict(row))
        if new:
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row)

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        if self.columns:
            writer = csv.DictWriter(buffer, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())
