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

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.evaluation.metric_set import MetricSet
from invertavatar_core.evaluation.report import EvaluationReport, QualitativeExample
from invertavatar_core.evaluation.sequences import FrameSequences
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "ExpressionTransfer",
    "ModelUnderTest",
    "few_shot_indices",
    "run_protocol",
]


@dataclass
class ModelUnderTest:
    """A built model ready to evaluate: its label, experiment, inverter and prior."""

    label: str
    experiment: ExperimentConfig
    inverter: Any
    prior: Any
    trained: bool
    """False when the networks have fresh (untrained) weights."""


def few_shot_indices(length: int, count: int, window: int, eval_frames: int) -> tuple[list[int], list[int]] | None:
    """``(source positions, evaluation positions)`` within a clip of ``length`` frames, or None if too short.

    Sources: ``count`` positions spread evenly over ``[0, window)`` (duplicates removed, so a
    window shorter than ``count`` gives fewer); evaluation: the last ``eval_frames`` positions.
    """
    if length < window + eval_frames or count < 1:
        return None
    sources = sorted({round(i * (window - 1) / max(count - 1, 1)) for i in range(count)})
    return sources, list(range(length - eval_frames, length))


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
            from invertavatar_core.geometry.uv_maps import render_expression_uv

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


def run_protocol(
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
