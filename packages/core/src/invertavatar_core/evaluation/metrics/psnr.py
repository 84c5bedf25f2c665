"""PSNR (peak signal-to-noise ratio, paper Tables 1-3) between images in [0, 1].

Per image: ``10 * log10(1 / MSE)`` with the MSE over all pixels and channels of the image in
[0, 1] (peak value 1). Identical images have MSE 0 and an infinite PSNR; each image's PSNR is
capped at ``max_db`` instead, so one perfect frame cannot turn the dataset mean into ``inf``.
"""

from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.per_image import PerImageMetric, to_unit_range
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = ["PSNR", "PSNRConfig", "psnr"]


class PSNRConfig(MetricConfig):
    """Config of :class:`PSNR`."""

    name: Literal["psnr"] = "psnr"
    max_db: float = 100.0
    """Cap on one image's PSNR in dB (reached by identical images: MSE floor 10^(-max_db/10))."""


def psnr(
    prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], max_db: float = 100.0
) -> Float[Tensor, " B"]:
    """Per-image PSNR in dB of images in [-1, 1] (measured in [0, 1]), capped at ``max_db``."""
    mse = (to_unit_range(prediction) - to_unit_range(target)).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(10.0 ** (-max_db / 10.0)))


class PSNR(PerImageMetric):
    """Mean per-image PSNR; higher is better."""

    higher_is_better = True

    def __init__(self, config: PSNRConfig) -> None:
        super().__init__()
        self.config = config

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image PSNR in dB."""
        return psnr(prediction, target, self.config.max_db)
