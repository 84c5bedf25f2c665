"""MS-SSIM (multi-scale SSIM, Wang et al. 2003): a metric and the differentiable fallback perceptual loss.

At scale ``j`` (images halved by 2x2 average pooling between scales) the contrast-structure term
``cs_j = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)`` is averaged over the image; at the
coarsest scale the full SSIM (luminance times cs) is used. ``MS-SSIM = prod_j v_j ** w_j``.
Local statistics use a Gaussian window with "valid" filtering, so the coarsest scale must still
hold a window: images need ``min(H, W) >= window_size * 2 ** (scales - 1)`` roughly, checked with
a clear error. Terms are clamped at a small positive floor before the power (negative
correlation would make a fractional power undefined). :func:`ms_ssim` is what the losses use
when LPIPS weights are absent (``1 - ms_ssim`` through :meth:`MSSSIM.distance`).
"""

from typing import Literal

import kornia
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.per_image import PerImageMetric, to_unit_range
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = ["MSSSIM", "MSSSIMConfig", "ms_ssim"]

_FLOOR = 1e-6
"""Floor of each scale's term before the fractional power (keeps values and gradients finite)."""


class MSSSIMConfig(MetricConfig):
    """Config of :class:`MSSSIM`."""

    name: Literal["ms_ssim"] = "ms_ssim"
    scale_weights: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, Eq. 7
    """Exponent of each scale, finest first; their number is the number of scales."""
    window_size: int = 11  # Wang et al. 2003
    """Side of the Gaussian window in pixels."""
    sigma: float = 1.5  # Wang et al. 2003
    """Standard deviation of the Gaussian window in pixels."""
    k1: float = 0.01  # Wang et al. 2004
    """Luminance stabiliser: C1 = (k1 * peak)^2."""
    k2: float = 0.03  # Wang et al. 2004
    """Contrast stabiliser: C2 = (k2 * peak)^2."""


def _local_terms(x: Tensor, y: Tensor, kernel: Tensor, c1: float, c2: float) -> tuple[Tensor, Tensor]:
    """Luminance and contrast-structure maps of ``(B, C, H, W)`` images."""

    def blur(t: Tensor) -> Tensor:
        return kornia.filters.filter2d(t, kernel, padding="valid")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.pow(2) + mu_y.pow(2) + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return luminance, contrast_structure


def ms_ssim(
    prediction: Float[Tensor, "B 3 H W"],
    target: Float[Tensor, "B 3 H W"],
    config: MSSSIMConfig | None = None,
) -> Float[Tensor, " B"]:
    """Per-image MS-SSIM of images in [-1, 1] (measured in [0, 1]); differentiable in both inputs.

    Raises:
        ValueError: the images are too small for the configured scales and window.
    """
    config = config or MSSSIMConfig()
    scales = len(config.scale_weights)
    smallest = min(prediction.shape[-2:]) // 2 ** (scales - 1)
    if smallest < config.window_size:
        raise ValueError(
            f"ms_ssim: {tuple(prediction.shape[-2:])} images are too small for {scales} scales with an "
            f"{config.window_size}-px window (the coarsest scale is {smallest} px); use images of at least "
            f"{config.window_size * 2 ** (scales - 1)} px, or set ms_ssim.window_size / fewer scale_weights"
        )
    x, y = to_unit_range(prediction), to_unit_range(target)
    kernel = kornia.filters.get_gaussian_kernel2d(
        (config.window_size, config.window_size), (config.sigma, config.sigma), device=x.device, dtype=x.dtype
    )
    c1, c2 = config.k1**2, config.k2**2
    result = x.new_ones(x.shape[0])
    for index, weight in enumerate(config.scale_weights):
        luminance, contrast_structure = _local_terms(x, y, kernel, c1, c2)
        last = index == scales - 1
        term = (luminance * contrast_structure if last else contrast_structure).flatten(1).mean(1)
        result = result * term.clamp_min(_FLOOR).pow(weight)
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result


class MSSSIM(PerImageMetric):
    """Mean per-image MS-SSIM; higher is better. :meth:`distance` = ``1 - MS-SSIM`` for losses."""

    higher_is_better = True

    def __init__(self, config: MSSSIMConfig) -> None:
        super().__init__()
        self.config = config

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image MS-SSIM."""
        return ms_ssim(prediction, target, self.config)

    def distance(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """``1 - MS-SSIM`` per image, differentiable (0 for identical images)."""
        return 1.0 - ms_ssim(prediction.float(), target.float(), self.config)
