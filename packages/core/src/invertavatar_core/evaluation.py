"""Evaluation protocols of paper Sec. 4 (Tables 1-3, Fig. 6), run over a dataset of fitted sequences.

Every protocol inverts source frames with a model's inverter, animates the avatar with driving
frames (their camera and expression UV render) through ``prior.render`` only, and accumulates
the configured metrics. Protocols, with the paper's counts as the config defaults:

- ``reconstruction`` (Table 3): each sequence's first frame is inverted and re-rendered with
  its own camera and expression; compared with itself.
- ``same_identity`` (Table 1, same-ID): first frame as source, the next ``driving_frames``
  (500) frames of the same clip drive it; compared with those frames.
- ``cross_identity`` (Table 1, cross-ID): the first frame of clip ``i`` is driven by the first
  ``cross_driving_frames`` (200) frames of clip ``i + 1`` (cyclically). The driving expression
  is re-rendered on the *source* identity when both coefficient sets and the experiment's
  morphable model and rasterizer are available (as the released "online" mode does), else the
  driving clip's own expression render is used (and the report says so). There is no ground
  truth: metrics whose ``reference`` is ``"ground_truth"`` do not apply; ``"source_identity"``
  metrics (CSIM) compare with the source image, ``"driving_motion"`` metrics (AKD) with the
  driving frame.
- ``few_shot`` (Table 2, Fig. 6): for each K in ``source_frames``, K source frames sampled
  evenly from the first ``few_shot_source_window`` (200) frames, evaluated on the last
  ``few_shot_eval_frames`` (100) frames; clips shorter than the two together are skipped.
  Rows over K are the metric-vs-number-of-frames curves, one per model (aggregator).

Where a protocol has ground truth, every metric compares the output with the true frame. A
metric's ``reference`` attribute (default ``"ground_truth"``) says what its target is without; its
optional ``details()`` mapping (AKD: matched / missed / faceless pairs) adds columns.
Reconstruction time per avatar (inversion only, the paper's Time(s)) is reported as
``reconstruct_s``. Metrics that cannot run here (missing weights, detector) are listed with the
reason in every report.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from invertavatar_core.config import EvaluatedModel, ExperimentConfig
from invertavatar_core.observation import Observation
from invertavatar_core.registry import Registry

__all__ = [
    "EvaluationReport",
    "ExpressionTransfer",
    "FrameSequences",
    "MetricSet",
    "ModelUnderTest",
    "QualitativeExample",
    "SyntheticSequences",
    "build_models_under_test",
    "evaluate",
    "few_shot_indices",
    "write_report",
]

log = logging.getLogger("invertavatar.evaluation")


@runtime_checkable
class FrameSequences(Protocol):
    """What the protocols read: frames grouped by sequence (``invertavatar_core.datasets`` readers)."""

    def sequences(self) -> Mapping[str, Sequence[int]]:
        """Sequence name -> dataset indices of its frames, in time order."""
        ...

    def __getitem__(self, index: int) -> Observation:
        """One frame as an :class:`Observation` of batch 1."""
        ...


@dataclass(frozen=True)
class QualitativeExample:
    """One row of a qualitative grid: ``(3, H, W)`` images in [-1, 1] on the CPU."""

    source: Tensor
    driving: Tensor
    output: Tensor


@dataclass
class EvaluationReport:
    """Everything an evaluation produced: table rows, skipped metrics with reasons, notes, examples."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)
    """Names of the metrics that ran."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric name -> why it did not run."""
    notes: list[str] = field(default_factory=list)
    """Other things a reader of the numbers must know (fresh weights, fallbacks, skipped clips)."""
    examples: dict[tuple[str, str], list[QualitativeExample]] = field(default_factory=dict)
    """``(model label, protocol)`` -> qualitative rows."""

    def note(self, text: str) -> None:
        """Add a note once."""
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class ModelUnderTest:
    """A built model ready to evaluate: its label, experiment, inverter and prior."""

    label: str
    experiment: ExperimentConfig
    inverter: Any
    prior: Any
    trained: bool
    """False when the networks have fresh (untrained) weights."""


class MetricSet:
    """The configured metrics, built once; the unavailable ones recorded with their reason."""

    def __init__(self, configs: Sequence[Any], registry: Registry, device: torch.device) -> None:
        self.metrics: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        for config in configs:
            metric = registry.create("metric", config)
            ok, reason = metric.available()
            if not ok:
                self.skipped[config.name] = reason
                continue
            if isinstance(metric, torch.nn.Module):
                metric.to(device)
            self.metrics[config.name] = metric

    def reset(self) -> None:
        """Reset every metric."""
        for metric in self.metrics.values():
            metric.reset()

    def applicable(self, has_ground_truth: bool) -> dict[str, Any]:
        """Metrics that apply to a protocol with / without ground truth."""
        return {
            n: m
            for n, m in self.metrics.items()
            if has_ground_truth or getattr(m, "reference", "ground_truth") != "ground_truth"
        }

    def update(self, output: Tensor, ground_truth: Tensor | None, source: Tensor, driving: Tensor) -> None:
        """Feed one batch: each metric gets the target its ``reference`` asks for."""
        for metric in self.applicable(ground_truth is not None).values():
            reference = getattr(metric, "reference", "ground_truth")
            if ground_truth is not None:
                target = ground_truth
            elif reference == "source_identity":
                target = source.expand_as(output)
            else:
                target = driving
            metric.update(output, target)

    def results(self, has_ground_truth: bool) -> dict[str, float]:
        """``{name: value}``, plus ``{name}_{key}`` for each entry of a metric's optional ``details()``."""
        out: dict[str, float] = {}
        for name, metric in self.applicable(has_ground_truth).items():
            try:
                out[name] = float(metric.compute())
            except (RuntimeError, ValueError) as exc:  # e.g. FID over fewer than two frames
                out[name] = math.nan
                log.warning("%s: %s", name, exc)
            details = getattr(metric, "details", None)  # optional: counts a reader needs beside the value
            if callable(details):
                out.update({f"{name}_{key}": value for key, value in details().items()})
        return out


def few_shot_indices(length: int, count: int, window: int, eval_frames: int) -> tuple[list[int], list[int]] | None:
    """``(source positions, evaluation positions)`` within a clip of ``length`` frames, or None if too short.

    Sources: ``count`` positions spread evenly over ``[0, window)`` (duplicates removed, so a
    window shorter than ``count`` gives fewer); evaluation: the last ``eval_frames`` positions.
    """
    if length < window + eval_frames or count < 1:
        return None
    sources = sorted({round(i * (window - 1) / max(count - 1, 1)) for i in range(count)})
    return sources, list(range(length - eval_frames, length))


class SyntheticSequences:
    """Sequences rendered by a prior: identity ``i`` (a truncated random ``z``) on procedural drive ``i``.

    What ``data.root: null`` means for an evaluation ("synthetic from the prior"): ``sequences``
    drives of ``length`` frames from the experiment's morphable model and rasterizer
    (:meth:`~invertavatar_core.synthetic_samples.DriveBank.procedural`), each rendered in time
    order. Numbers on such data check the pipeline; they are not the paper's benchmarks.
    """

    def __init__(
        self,
        experiment: ExperimentConfig,
        registry: Registry,
        prior: Any,
        *,
        sequences: int,
        length: int,
        seed: int = 0,
    ) -> None:
        from invertavatar_core.synthetic_samples import DriveBank

        info = prior.info
        generator = torch.Generator().manual_seed(seed)
        drives = DriveBank.procedural(
            registry.create("morphable_model", experiment.morphable_model),
            registry.create("rasterizer", experiment.rasterizer),
            sequences=sequences,
            length=length,
            expression_resolution=info.uv_resolution,
            unwrap_resolution=info.uv_resolution,
            image_resolution=info.image_resolution,
            generator=generator,
        )
        device = next(iter(prior.parameters())).device if hasattr(prior, "parameters") else torch.device("cpu")
        self.frames: list[Observation] = []
        self._sequences: dict[str, list[int]] = {}
        z = torch.randn(sequences, info.z_dim, generator=generator)
        with torch.no_grad():
            for s in range(sequences):
                camera = drives.camera[s].to(device)
                psi = experiment.training.sample_truncation  # synthetic samples' truncation, docs/design/training.md
                ws = prior.mapping(z[s : s + 1].to(device), camera[:1], truncation_psi=psi)
                features = prior.canonical(ws)
                index = torch.arange(length)
                images = torch.cat(
                    [
                        prior.render(features, drives.expression_uv[s, chunk].to(device), camera[chunk])
                        .image.float()
                        .cpu()
                        for chunk in index.split(8)
                    ]
                )
                observation = drives.frames(torch.full((length,), s), index, images.clamp(-1, 1))
                start = len(self.frames)
                self.frames += [observation[t] for t in range(length)]
                self._sequences[f"synthetic{s:03d}"] = list(range(start, start + length))

    def sequences(self) -> Mapping[str, Sequence[int]]:
        """Sequence name -> frame indices."""
        return self._sequences

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Observation:
        """One frame (batch 1)."""
        return self.frames[index]


def _load(dataset: FrameSequences, indices: Sequence[int], device: torch.device) -> Observation:
    return Observation.cat([dataset[int(i)] for i in indices]).to(device)


def _batches(indices: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def _timed_invert(inverter: Any, frames: Observation) -> tuple[Any, float]:
    if frames.image.is_cuda:
        torch.cuda.synchronize()
    began = time.perf_counter()
    with torch.no_grad():
        avatar = inverter.invert(frames)
    if frames.image.is_cuda:
        torch.cuda.synchronize()
    return avatar, time.perf_counter() - began


def _render(model: ModelUnderTest, avatar: Any, expression_uv: Tensor, camera: Tensor, size: tuple[int, int]) -> Tensor:
    """Animate and bring the output to the ground truth's size: ``(B, 3, H, W)`` in [-1, 1]."""
    with torch.no_grad():
        image = avatar.animate(model.prior, expression_uv, camera).image.float().clamp(-1, 1)
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    return image


class ExpressionTransfer:
    """Re-renders driving expressions on the source identity (cross-identity), when it can.

    The experiment's ``morphable_model`` must be the one the dataset was fitted with (its
    coefficient sizes are checked by the model). Rendering runs on the CPU, where the model's
    tensors live; the result moves to the frames' device.
    """

    def __init__(self, experiment: ExperimentConfig, registry: Registry, report: EvaluationReport) -> None:
        self.experiment = experiment
        self.registry = registry
        self.report = report
        self.render = None
        self.why_not = ""

    def _build(self) -> None:
        if self.render is not None or self.why_not:
            return
        try:
            from invertavatar_core.uv_maps import render_expression_uv

            model = self.registry.create("morphable_model", self.experiment.morphable_model)
            rasterizer = self.registry.create("rasterizer", self.experiment.rasterizer)
        except Exception as exc:  # noqa: BLE001 - any failure means the fallback, reported in __call__
            self.why_not = f"{type(exc).__name__}: {exc}"
            return
        self.render = lambda identity, expression, eyes, resolution: render_expression_uv(
            model, rasterizer, identity, expression, eyes, resolution
        )

    def __call__(self, source: Observation, driving: Observation) -> Tensor:
        """The expression UV render of ``driving``'s expression on ``source``'s identity."""
        missing = [
            n
            for n, t in (("source identity", source.identity), ("driving expression", driving.expression))
            if t is None
        ]
        if not missing:
            self._build()
        if self.render is None:
            why = self.why_not or f"no {' or '.join(missing)} coefficients in the dataset"
            self.report.note(
                f"cross_identity: the driving clip's own expression UV renders were used, not re-rendered on the "
                f"source identity ({why})"
            )
            return driving.expression_uv
        identity = source.identity[:1].expand(len(driving), -1).cpu()
        eyes = None if driving.eyes is None else driving.eyes.cpu()
        uv = self.render(identity, driving.expression.cpu(), eyes, driving.expression_uv.shape[-1])
        return uv.to(driving.expression_uv.device, driving.expression_uv.dtype)


def _example(examples: list[QualitativeExample], limit: int, source: Tensor, driving: Tensor, output: Tensor) -> None:
    if len(examples) < limit:
        examples.append(QualitativeExample(source.detach().cpu(), driving.detach().cpu(), output.detach().cpu()))


def _run_protocol(
    protocol: str,
    model: ModelUnderTest,
    dataset: FrameSequences,
    sequences: list[tuple[str, list[int]]],
    metrics: MetricSet,
    report: EvaluationReport,
    registry: Registry,
    device: torch.device,
    *,
    source_count: int = 1,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Run one protocol for one model (and one K); returns its table row, or None when nothing ran."""
    config = model.experiment.evaluation
    has_ground_truth = protocol != "cross_identity"
    metrics.reset()
    # One qualitative grid per protocol: few-shot shows its largest K.
    keep_examples = protocol != "few_shot" or source_count == max(config.source_frames)
    examples = report.examples.setdefault((model.label, protocol), []) if keep_examples else []
    transfer = ExpressionTransfer(model.experiment, registry, report) if protocol == "cross_identity" else None
    frames_done, seconds, evaluated = 0, [], 0
    jobs = []
    for position, (name, indices) in enumerate(sequences):
        if protocol == "reconstruction":
            jobs.append((name, [indices[0]], [indices[0]]))
        elif protocol == "same_identity":
            driving = indices[1 : 1 + config.driving_frames]
            if driving:
                jobs.append((name, [indices[0]], driving))
        elif protocol == "cross_identity":
            _, other = sequences[(position + 1) % len(sequences)]
            jobs.append((name, [indices[0]], other[: config.cross_driving_frames]))
        else:
            chosen = few_shot_indices(
                len(indices), source_count, config.few_shot_source_window, config.few_shot_eval_frames
            )
            if chosen is None:
                report.note(
                    f"few_shot: sequence {name!r} ({len(indices)} frames) is shorter than few_shot_source_window "
                    f"({config.few_shot_source_window}) + few_shot_eval_frames ({config.few_shot_eval_frames}); skipped"
                )
                continue
            jobs.append((name, [indices[i] for i in chosen[0]], [indices[i] for i in chosen[1]]))
    if not jobs:
        return None
    label = f"{model.label} {protocol}" + (f" K={source_count}" if protocol == "few_shot" else "")
    for _, source_indices, driving_indices in tqdm(jobs, desc=label, unit="seq", disable=not progress, leave=False):
        sources = _load(dataset, source_indices, device)
        avatar, spent = _timed_invert(model.inverter, sources)
        seconds.append(spent)
        for chunk in _batches(driving_indices, config.batch_size):
            driving = _load(dataset, chunk, device)
            expression_uv = transfer(sources[0], driving) if transfer else driving.expression_uv
            size = tuple(driving.image.shape[-2:])
            if model.prior.info.image_resolution != size[-1]:
                report.note(
                    f"{model.label}: renders of {model.prior.info.image_resolution} px were resized to the data's "
                    f"{size[-1]} px before the metrics"
                )
            output = _render(model, avatar, expression_uv, driving.camera, size)
            metrics.update(output, driving.image if has_ground_truth else None, sources.image[:1], driving.image)
            _example(examples, config.qualitative_examples, sources.image[0], driving.image[0], output[0])
            frames_done += len(chunk)
        evaluated += 1
    row: dict[str, Any] = {
        "model": model.label,
        "protocol": protocol,
        "source_frames": source_count,
        "sequences": evaluated,
        "frames": frames_done,
    }
    row.update(metrics.results(has_ground_truth))
    row["reconstruct_s"] = sum(seconds) / len(seconds)
    return row


def build_models_under_test(
    experiment: ExperimentConfig, registry: Registry, device: torch.device | str = "cpu"
) -> Iterator[ModelUnderTest]:
    """Build (one at a time, to bound memory) every model of ``experiment.evaluation.models``.

    With no models listed, the experiment itself is evaluated with fresh weights. A listed
    checkpoint's saved experiment is the base its ``overrides`` apply to; the evaluation
    settings always come from ``experiment``.
    """
    from invertavatar_core.inversion_models import EXPERIMENT_FILE, InversionModels
    from invertavatar_core.sweep import apply_overrides

    specs = experiment.evaluation.models or (EvaluatedModel(label=experiment.name),)
    for spec in specs:
        if spec.checkpoint is not None:
            from invertavatar_core.config import load_experiment

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
    report.skipped.update(metrics.skipped)
    report.measured.extend(metrics.metrics)
    if not metrics.metrics:
        report.note("no configured metric can run here; rows hold only counts and timings")
    if dataset is None and experiment.data.root is not None:
        from invertavatar_core.datasets import open_dataset

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
        for protocol in config.protocols:
            if protocol == "cross_identity" and len(sequences) < 2:
                report.note("cross_identity needs at least two sequences; skipped")
                continue
            if protocol == "cross_identity":
                ground_truth_only = sorted(set(metrics.metrics) - set(metrics.applicable(False)))
                if ground_truth_only:
                    report.note(
                        f"cross_identity has no ground truth: {', '.join(ground_truth_only)} do not apply there"
                    )
            counts = config.source_frames if protocol == "few_shot" else (1,)
            for count in counts:
                row = _run_protocol(
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
                    report.note(f"{protocol} (K={count}): no sequence was long enough; no row")
                    continue
                report.rows.append(row)
                if on_row:
                    on_row(row)
    return report


def write_report(
    report: EvaluationReport, out_dir: str | Path, *, plot_metrics: Sequence[str] | None = None
) -> list[Path]:
    """Write ``results.{csv,md,json}``, ``report.{md,json}`` and the PNG plots; returns the paths.

    Args:
        report: what :func:`evaluate` returned.
        out_dir: the folder (created).
        plot_metrics: columns plotted against the number of source frames (default: every
            metric that ran, and ``reconstruct_s``).
    """
    import json

    from invertavatar_core.atomic import atomic_write_text
    from invertavatar_core.plots import plot_metric_vs_frames, save_qualitative_grid
    from invertavatar_core.tables import write_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(write_table(report.rows, out_dir / "results")) if report.rows else []
    plots = []
    few_shot = [r for r in report.rows if r["protocol"] == "few_shot"]
    candidates = plot_metrics or [*report.measured, "reconstruct_s"]
    for metric in candidates:
        if any(isinstance(r.get(metric), float) and math.isfinite(r[metric]) for r in few_shot):
            plots.append(plot_metric_vs_frames(few_shot, metric, out_dir / f"few_shot_{metric}_vs_frames.png"))
    for (label, protocol), examples in report.examples.items():
        if examples:
            slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
            plots.append(
                save_qualitative_grid(
                    examples, out_dir / f"qualitative_{slug}_{protocol}.png", title=f"{label}: {protocol}"
                )
            )
    written += plots
    lines = ["# Evaluation", ""]
    if report.rows:
        lines += [(out_dir / "results.md").read_text(encoding="utf-8").rstrip(), ""]
    lines += ["## Skipped metrics", ""]
    lines += [f"- **{name}**: {reason}" for name, reason in report.skipped.items()] or ["- none"]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report.notes] or ["- none"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    written.append(atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n"))
    payload = {
        "rows": report.rows,
        "measured": report.measured,
        "skipped": report.skipped,
        "notes": report.notes,
        "plots": [p.name for p in plots],
    }
    written.append(atomic_write_text(out_dir / "report.json", json.dumps(payload, indent=2, default=str) + "\n"))
    return written
