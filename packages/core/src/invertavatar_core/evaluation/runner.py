"""Running an evaluation: build every model under test, run every configured protocol (paper Sec. 4) on each.

Protocols are components: each name in ``evaluation.protocols`` is built through the registry.
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from invertavatar_core.config.experiment import EvaluatedModel, ExperimentConfig
from invertavatar_core.evaluation.metric_set import MetricSet
from invertavatar_core.evaluation.protocols import ModelUnderTest, run_protocol
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.evaluation.sequences import FrameSequences, SyntheticSequences
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "build_models_under_test",
    "evaluate",
]


def build_models_under_test(
    experiment: ExperimentConfig, registry: Registry, device: torch.device | str = "cpu"
) -> Iterator[ModelUnderTest]:
    """Build (one at a time, to bound memory) every model of ``experiment.evaluation.models``.

    With no models listed, the experiment itself is evaluated with fresh weights. A listed
    checkpoint's saved experiment is the base its ``overrides`` apply to; the evaluation
    settings always come from ``experiment``.
    """
    from invertavatar_core.config.sweep import apply_overrides
    from invertavatar_core.inversion.models import EXPERIMENT_FILE, InversionModels

    specs = experiment.evaluation.models or (EvaluatedModel(label=experiment.name),)
    for spec in specs:
        if spec.checkpoint is not None:
            from invertavatar_core.config.experiment import load_experiment

            checkpoint = Path(spec.checkpoint)
            if not (checkpoint / EXPERIMENT_FILE).is_file():
                raise FileNotFoundError(
                    f"evaluation.models[{spec.label!r}].checkpoint: {checkpoint} is not a model checkpoint "
                    f"(missing {EXPERIMENT_FILE}; see docs/checkpoints.md)"
                )
            base = load_experiment(checkpoint / EXPERIMENT_FILE, registry)
        else:
            base = experiment
        data = apply_overrides(base.model_dump(mode="json"), list(spec.overrides.items()))
        data["evaluation"] = experiment.evaluation.model_dump(mode="json")
        resolved = ExperimentConfig.model_validate(data, context={"registry": registry})
        if spec.checkpoint is not None:
            models = InversionModels.load(spec.checkpoint, registry, device=device, experiment=resolved)
        else:
            models = InversionModels.build(resolved, registry, device=device)
        inverter = registry.create("inverter", resolved.inverter, registry=registry, experiment=resolved, models=models)
        yield ModelUnderTest(spec.label, resolved, inverter, models.prior, trained=spec.checkpoint is not None)


def evaluate(
    experiment: ExperimentConfig,
    registry: Registry,
    dataset: FrameSequences | None = None,
    *,
    device: torch.device | str = "cpu",
    models: Iterator[ModelUnderTest] | Sequence[ModelUnderTest] | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> EvaluationReport:
    """Run every configured protocol for every model; returns the :class:`EvaluationReport`.

    Args:
        experiment: its ``evaluation`` section says what to run.
        registry: builds metrics, inverters and (cross-identity) the morphable model.
        dataset: frames grouped by sequence; ``None`` = ``data.root`` if set, else
            :class:`SyntheticSequences` from the first model's prior (``data.synthetic_drives``
            sequences, capped by ``evaluation.max_sequences``, of ``data.max_sequence_length`` frames).
        device: where the networks and metrics run.
        models: models to evaluate; default :func:`build_models_under_test` of ``experiment``.
        progress: show progress bars.
        on_row: called with each finished table row (for live printing).
    """
    device = torch.device(device)
    config = experiment.evaluation
    report = EvaluationReport()
    metrics = MetricSet(config.metrics, registry, device)
    protocols = [registry.create("evaluation_protocol", c) for c in config.protocols]
    report.skipped.update(metrics.skipped)
    report.measured.extend(metrics.metrics)
    if not metrics.metrics:
        report.note("no configured metric can run here; rows hold only counts and timings")
    if dataset is None and experiment.data.root is not None:
        from invertavatar_core.data.datasets import open_dataset

        dataset = open_dataset(experiment.data.root, image_resolution=experiment.data.image_resolution)
    sequences: list[tuple[str, list[int]]] = []
    for model in models if models is not None else build_models_under_test(experiment, registry, device):
        if dataset is None:
            count = min(experiment.data.synthetic_drives, config.max_sequences or experiment.data.synthetic_drives)
            length = experiment.data.max_sequence_length
            dataset = SyntheticSequences(
                experiment, registry, model.prior, sequences=count, length=length, seed=experiment.seed
            )
            report.note(
                f"data.root is null: {count} synthetic sequences of {length} frames rendered by model "
                f"{model.label!r}'s prior (pipeline check, not a benchmark)"
            )
        if not sequences:
            sequences = [(n, list(i)) for n, i in dataset.sequences().items() if len(i) > 0][: config.max_sequences]
            if not sequences:
                raise ValueError("evaluation: the dataset holds no sequences with frames")
        if not model.trained:
            report.note(f"model {model.label!r} has fresh (untrained) weights: its numbers only test the pipeline")
        for protocol in protocols:
            why_not = protocol.skip_reason(sequences)
            if why_not:
                report.note(f"{protocol.name} {why_not}; skipped")
                continue
            if not protocol.has_ground_truth:
                ground_truth_only = sorted(set(metrics.metrics) - set(metrics.applicable(False)))
                if ground_truth_only:
                    report.note(
                        f"{protocol.name} has no ground truth: {', '.join(ground_truth_only)} do not apply there"
                    )
            for count in protocol.source_counts():
                row = run_protocol(
                    protocol,
                    model,
                    dataset,
                    sequences,
                    metrics,
                    report,
                    registry,
                    device,
                    source_count=count,
                    progress=progress,
                )
                if row is None:
                    report.note(f"{protocol.name} (K={count}): no sequence was long enough; no row")
                    continue
                report.rows.append(row)
                if on_row:
                    on_row(row)
    return report
