"""Cross-identity reenactment (paper Table 1, cross-ID): clip i's first frame driven by clip i + 1.

The driving expression is re-rendered on the *source* identity when both coefficient sets and
the experiment's morphable model and rasterizer are available (as the released "online" mode
does), else the driving clip's own expression render is used (and the
report says so). There is no ground truth: metrics whose ``reference`` is ``"ground_truth"`` do
not apply; ``"source_identity"`` metrics (CSIM) compare with the source image,
``"driving_motion"`` metrics (AKD) with the driving frame.
"""

from collections.abc import Sequence
from typing import ClassVar, Literal

from torch import Tensor

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.evaluation.protocols.base import ExpressionSource, ModelUnderTest, ProtocolBase
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob
from invertavatar_core.plugin.registry import Registry

__all__ = ["CrossIdentity", "CrossIdentityConfig", "ExpressionTransfer"]


class CrossIdentityConfig(EvaluationProtocolConfig):
    """Cross-identity reenactment: no ground truth, identity and motion metrics only."""

    name: Literal["cross_identity"] = "cross_identity"
    driving_frames: int = 200  # Sec. 4.2.1: "the first 200 frames of one HDTF clip"
    """Leading frames of the driving clip."""


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


class CrossIdentity(ProtocolBase):
    """The first frame of clip ``i`` is driven by the first ``driving_frames`` frames of clip ``i + 1`` (cyclically)."""

    has_ground_truth: ClassVar[bool] = False

    def skip_reason(self, sequences: Sequence[tuple[str, Sequence[int]]]) -> str | None:
        """Another identity is needed to drive each clip."""
        return "needs at least two sequences" if len(sequences) < 2 else None

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: EvaluationReport
    ) -> list[EvaluationJob]:
        """One job per clip, driven by the next clip's leading frames."""
        jobs = []
        for position, (name, indices) in enumerate(sequences):
            _, other = sequences[(position + 1) % len(sequences)]
            jobs.append(EvaluationJob(name, [indices[0]], list(other[: self.config.driving_frames])))
        return jobs

    def expression_source(
        self, model: ModelUnderTest, registry: Registry, report: EvaluationReport
    ) -> ExpressionSource:
        """Driving expressions re-rendered on the source identity, when the data and components allow."""
        return ExpressionTransfer(model.experiment, registry, report)
