"""SSIM (structural similarity, Wang et al. 2004) through kornia, on images in [0, 1].

Gaussian window (sigma 1.5) of ``window_size`` pixels, constants K1 = 0.01, K2 = 0.03, peak 1,
"valid" filtering (no padding), averaged over pixels and channels of each image.
"""

from typing import Literal

import kornia
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.per_image import PerImageMetric, to_unit_range
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = ["SSIM", "SSIMConfig", "ssim"]


class SSIMConfig(MetricConfig):
    """Config of :class:`SSIM`."""

    name: Literal["ssim"] = "ssim"
    window_size: int = 11  # Wang et al. 2004
    """Side of the Gaussian window in pixels (odd); images must be at least this large."""


def ssim(
    prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], window_size: int = 11
) -> Float[Tensor, " B"]:
    """Per-image mean SSIM of images in [-1, 1] (measured in [0, 1]); differentiable."""
    if min(prediction.shape[-2:]) < window_size:
        raise ValueError(f"ssim: images of {tuple(prediction.shape[-2:])} are smaller than window_size {window_size}")
    ssim_map = kornia.metrics.ssim(
        to_unit_range(prediction), to_unit_range(target), window_size, max_val=1.0, padding="valid"
    )
    return ssim_map.flatten(1).mean(1)


class SSIM(PerImageMetric):
    """Mean per-image SSIM; higher is better (1 for identical images)."""

    higher_is_better = True

    def __init__(self, config: SSIMConfig) -> None:
        super().__init__()
        self.config = config

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image SSIM."""
        return ssim(prediction, target, self.config.window_size)
