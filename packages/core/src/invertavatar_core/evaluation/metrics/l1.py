"""L1: mean absolute error between images measured in [0, 1] (paper Table 1 reports 0.029 for ours)."""

from typing import Literal

from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.per_image import PerImageMetric
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = ["L1", "L1Config", "l1_distance"]


class L1Config(MetricConfig):
    """Config of :class:`L1` (no options)."""

    name: Literal["l1"] = "l1"


def l1_distance(prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
    """Per-image mean absolute difference in [0, 1] units (half the difference in [-1, 1]); differentiable."""
    return (prediction.float() - target.float()).abs().flatten(1).mean(1) / 2.0


class L1(PerImageMetric):
    """Mean per-image L1; lower is better."""

    higher_is_better = False

    def __init__(self, config: L1Config) -> None:
        super().__init__()
        self.config = config

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image L1 in [0, 1] units."""
        return l1_distance(prediction, target)

    def distance(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Differentiable per-image L1 (the same numbers as :meth:`scores`)."""
        return l1_distance(prediction, target)
