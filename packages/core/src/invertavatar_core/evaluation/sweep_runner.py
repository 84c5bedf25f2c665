"""What ``invertavatar sweep`` does at each point: a short training run and/or an evaluation, as scalars.

For a point (a validated :class:`~invertavatar_core.config.sweep.SweepPoint`) and its folder:

1. each training stage named in ``stages`` (``latent``, ``oneshot``, ``incremental``, in the
   given order) runs into ``POINT/<stage>/`` with the point's training settings; a stage after
   the first starts from the previous stage's model checkpoint (``training.init_from``). A
   stage folder that already holds a checkpoint resumes (the trainer's behaviour), so an
   interrupted sweep loses at most one checkpoint interval of the running point;
2. with ``evaluate``, the point's model (the last stage's checkpoint, or the experiment's own
   ``evaluation.models``, or fresh weights when neither exists) is evaluated on the point's
   ``data.root`` (``null``: sequences synthesised by the model's prior) and the report is
   written to ``POINT/evaluation/``.

The returned scalars are the last training scalars of each stage (``<stage>/<name>``) and one
value per evaluated protocol and metric (``<protocol>/<metric>``, few-shot per K as
``few_shot_k<K>/<metric>``); :class:`~invertavatar_core.config.sweep.Sweep` writes them as one row.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invertavatar_core.config.experiment import ExperimentConfig, default_registry
from invertavatar_core.config.sweep import SweepPoint, apply_overrides
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.stages import STAGES

__all__ = ["check_point", "evaluation_scalars", "run_point"]

_COUNTS = ("model", "protocol", "source_frames", "sequences", "frames")
"""Row columns that identify or count rather than measure."""


def check_point(point: SweepPoint, *, stages: Sequence[str] = (), evaluate: bool = True) -> list[str]:
    """Problems that would make ``run_point`` fail for this point (checked for every point before any runs)."""
    problems = []
    problems += [f"unknown training stage {s!r} (known: {', '.join(STAGES)})" for s in stages if s not in STAGES]
    if not stages and not evaluate:
        problems.append("nothing to do: no training stage and evaluation switched off")
    root = point.config.data.root
    if root is not None and not Path(root).is_dir():  # training and evaluation both read it
        problems.append(f"data.root: folder not found: {root}")
    return problems


def _with(config: ExperimentConfig, overrides: list[tuple[str, Any]], registry: Registry) -> ExperimentConfig:
    data = apply_overrides(config.model_dump(mode="json"), overrides)
    return ExperimentConfig.model_validate(data, context={"registry": registry})


def evaluation_scalars(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flatten evaluation rows to ``<protocol>/<metric>`` scalars (few-shot: ``few_shot_k<K>/<metric>``).

    With several models the key starts with the model label (``<label>:<protocol>/<metric>``);
    non-finite values (e.g. AKD with no detected face) become None (an empty cell).
    """
    out: dict[str, float] = {}
    several = len({row["model"] for row in rows}) > 1
    for row in rows:
        protocol = row["protocol"] + (f"_k{row['source_frames']}" if row["protocol"] == "few_shot" else "")
        if several:
            protocol = f"{row['model']}:{protocol}"
        for key, value in row.items():
            if key not in _COUNTS and isinstance(value, (int, float)):
                out[f"{protocol}/{key}"] = float(value) if math.isfinite(value) else None
    return out


def run_point(
    point: SweepPoint,
    point_dir: str | Path,
    *,
    stages: Sequence[str] = (),
    evaluate: bool = True,
    registry: Registry | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (``stages``) and/or evaluate one sweep point; returns its scalars (see module doc).

    Raises:
        ValueError: the point cannot run (unknown stage, no data for the evaluation).
    """
    import torch

    problems = check_point(point, stages=stages, evaluate=evaluate)
    if problems:
        raise ValueError(f"sweep point {point.slug}: " + "; ".join(problems))
    registry = registry or default_registry()
    point_dir = Path(point_dir)
    experiment = point.config
    scalars: dict[str, Any] = {}
    previous: Path | None = None
    for stage in stages:
        run_dir = point_dir / stage
        overrides: list[tuple[str, Any]] = [("training.out_dir", str(run_dir))]
        if previous is not None:
            overrides.append(("training.init_from", str(previous)))
        config = _with(experiment, overrides, registry)
        from invertavatar_core.training.distributed import Runtime

        runtime = Runtime.from_env(device)
        try:
            result = STAGES[stage](config, registry, runtime, progress=progress)
        finally:
            runtime.close()
        scalars.update({f"{stage}/{k}": float(v) for k, v in result.items()})
        previous = run_dir
    if evaluate:
        from invertavatar_core.evaluation.report import write_report
        from invertavatar_core.evaluation.runner import evaluate as run_evaluation

        if previous is not None:
            experiment = _with(
                experiment, [("evaluation.models", [{"label": point.slug, "checkpoint": str(previous)}])], registry
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        report = run_evaluation(experiment, registry, device=device, progress=progress)
        write_report(report, point_dir / "evaluation")
        scalars.update(evaluation_scalars(report.rows))
        scalars["skipped_metrics"] = ", ".join(sorted(report.skipped)) or None
    return scalars
