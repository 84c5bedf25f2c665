"""What every evaluation protocol shares: the model under test, a base class, and the loop that runs one.

A protocol (see :class:`~invertavatar_core.plugin.protocols.EvaluationProtocol`) only chooses
frames: per sequence, which frames are inverted (sources) and which drive the avatar. The loop
here inverts, animates through ``prior.render`` and feeds the metrics the same way for all.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.evaluation.metric_set import MetricSet
from invertavatar_core.evaluation.report import EvaluationReport, QualitativeExample
from invertavatar_core.evaluation.sequences import FrameSequences
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob, EvaluationProtocol
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "ExpressionSource",
    "ModelUnderTest",
    "ProtocolBase",
    "run_protocol",
]

ExpressionSource = Callable[[Observation, Observation], Tensor]
"""``(sources, driving) -> expression UV render (T, 3, Hu, Wu)`` the avatar is animated with."""


@dataclass
class ModelUnderTest:
    """A built model ready to evaluate: its label, experiment, inverter and prior."""

    label: str
    experiment: ExperimentConfig
    inverter: Any
    prior: Any
    trained: bool
    """False when the networks have fresh (untrained) weights."""


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


def _example(examples: list[QualitativeExample], limit: int, source: Tensor, driving: Tensor, output: Tensor) -> None:
    if len(examples) < limit:
        examples.append(QualitativeExample(source.detach().cpu(), driving.detach().cpu(), output.detach().cpu()))


def _own_expression(sources: Observation, driving: Observation) -> Tensor:
    return driving.expression_uv


class ProtocolBase:
    """Base of our protocols: one source count, ground truth, driving frames' own expressions.

    Subclasses set ``has_ground_truth`` and implement :meth:`jobs`; a third-party protocol may
    subclass it or satisfy :class:`~invertavatar_core.plugin.protocols.EvaluationProtocol` directly.
    """

    has_ground_truth: ClassVar[bool] = True

    def __init__(self, config: EvaluationProtocolConfig) -> None:
        self.config = config
        self.name = config.name

    def source_counts(self) -> tuple[int, ...]:
        """Numbers of source frames K to run with (one table row each)."""
        return (1,)

    def skip_reason(self, sequences: Sequence[tuple[str, Sequence[int]]]) -> str | None:
        """Why this protocol cannot run on ``sequences`` (None: it can)."""
        return None

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: EvaluationReport
    ) -> list[EvaluationJob]:
        """Per sequence: the source frames and driving frames (dataset indices)."""
        raise NotImplementedError

    def expression_source(
        self, model: ModelUnderTest, registry: Registry, report: EvaluationReport
    ) -> ExpressionSource:
        """How the driving expression is obtained: by default the driving frames' own UV renders."""
        return _own_expression


def run_protocol(
    protocol: EvaluationProtocol,
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
    """Run one protocol for one model and one K; returns its table row, or None when nothing ran."""
    config = model.experiment.evaluation
    has_ground_truth = protocol.has_ground_truth
    metrics.reset()
    # One qualitative grid per protocol: with several K, the largest K's.
    counts = protocol.source_counts()
    keep_examples = source_count == max(counts)
    examples = report.examples.setdefault((model.label, protocol.name), []) if keep_examples else []
    jobs = protocol.jobs(sequences, source_count, report)
    if not jobs:
        return None
    expression_source = protocol.expression_source(model, registry, report)
    frames_done, seconds, evaluated = 0, [], 0
    label = f"{model.label} {protocol.name}" + (f" K={source_count}" if len(counts) > 1 else "")
    for job in tqdm(jobs, desc=label, unit="seq", disable=not progress, leave=False):
        sources = _load(dataset, job.sources, device)
        avatar, spent = _timed_invert(model.inverter, sources)
        seconds.append(spent)
        for chunk in _batches(job.driving, config.batch_size):
            driving = _load(dataset, chunk, device)
            expression_uv = expression_source(sources[0], driving)
            size = tuple(driving.image.shape[-2:])
            if model.prior.info.image_resolution != size[-1]:
                report.note(
                    f"{model.label}: renders of {model.prior.info.image_resolution} px were resized to the data's "
                    f"{size[-1]} px before the metrics"
                )
            output = _render(model, avatar, expression_uv, driving.camera, size)
            truth = driving.image if has_ground_truth else None
            metrics.update(output, truth, sources.image[:1], driving.image, head_mask=driving.head_mask)
            _example(examples, config.qualitative_examples, sources.image[0], driving.image[0], output[0])
            frames_done += len(chunk)
        evaluated += 1
    row: dict[str, Any] = {
        "model": model.label,
        "protocol": protocol.name,
        "source_frames": source_count,
        "sequences": evaluated,
        "frames": frames_done,
    }
    row.update(metrics.results(has_ground_truth))
    if metrics.unmasked:
        report.note(
            f"{', '.join(sorted(metrics.unmasked))}: the {protocol.name} frames carry no head masks "
            "(synthetic heads from `invertavatar synth-heads` do); not measured"
        )
    row["reconstruct_s"] = sum(seconds) / len(seconds)
    return row
