"""Head-masked metrics: the error on the head alone, where the target's head mask is known (synthetic heads).

On synthetic heads every identity has one flat background, so full-frame scores reward getting
the background right, which copying the source frame already does; the likeness lies in the
head pixels. ``invertavatar synth-heads`` writes each frame's exact head mask, the dataset
readers load it as ``Observation.head_mask`` and the evaluation passes the driving frames' masks
to every metric with ``uses_head_mask`` (:class:`~invertavatar_core.evaluation.metric_set.MetricSet`).

- ``head_psnr``: PSNR of the mean squared error over the pixels inside the target's mask (weighted
  by the mask, all three channels, images in [0, 1], peak 1): ``10 log10(1 / MSE_head)``, the
  figure the prior's supervised training logs as ``head_psnr``.
- ``head_ms_ssim``, ``head_lpips``: windowed and network metrics cannot leave pixels out, so both
  images are composited over one flat colour outside the target's mask,
  ``x * m + background * (1 - m)``, before the metric sees them: the background then differs
  nowhere, and a head drawn too small or too large still costs inside the mask.

Without a mask (``mask=None``) the whole frame counts as the head. A frame whose mask is empty has
no head to score: it is left out of the mean and counted (``details()``: ``empty_masks``).
"""

from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.lpips import LPIPS, LPIPSConfig
from invertavatar_core.evaluation.metrics.ms_ssim import MSSSIMConfig, ms_ssim
from invertavatar_core.evaluation.metrics.per_image import PerImageMetric, to_unit_range
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = [
    "HeadLPIPS",
    "HeadLPIPSConfig",
    "HeadMSSSIM",
    "HeadMSSSIMConfig",
    "HeadMaskedMetric",
    "HeadPSNR",
    "HeadPSNRConfig",
    "composite_over",
    "head_psnr",
]


def head_psnr(
    prediction: Float[Tensor, "B 3 H W"],
    target: Float[Tensor, "B 3 H W"],
    mask: Float[Tensor, "B 1 H W"],
    max_db: float = 100.0,
) -> Float[Tensor, " B"]:
    """Per-image PSNR in dB over ``mask`` (in [0, 1]) of images in [-1, 1], measured in [0, 1].

    Capped at ``max_db`` like :func:`~invertavatar_core.evaluation.metrics.psnr.psnr`; NaN where
    the mask is empty.
    """
    mask = mask.float()
    squared = (to_unit_range(prediction) - to_unit_range(target)).pow(2) * mask
    area = 3.0 * mask.flatten(1).sum(1)
    mse = squared.flatten(1).sum(1) / area.clamp_min(1e-12)
    value = -10.0 * torch.log10(mse.clamp_min(10.0 ** (-max_db / 10.0)))
    return torch.where(area > 0, value, torch.full_like(value, float("nan")))


def composite_over(
    image: Float[Tensor, "B 3 H W"], mask: Float[Tensor, "B 1 H W"], background: float
) -> Float[Tensor, "B 3 H W"]:
    """``image`` inside ``mask`` (in [0, 1]) and the flat colour ``background`` (in [-1, 1]) outside it."""
    mask = mask.to(image.dtype)
    return image * mask + background * (1.0 - mask)


class HeadMaskedMetric(PerImageMetric):
    """A per-image metric that also takes the target's head mask ``(B, 1, H, W)`` in :meth:`update`.

    Subclasses implement :meth:`masked_scores` (NaN marks a frame with nothing to score).
    """

    uses_head_mask: ClassVar[bool] = True
    """The evaluation passes the driving frames' head masks to :meth:`update`."""

    def reset(self) -> None:
        """Forget all accumulated values and the count of empty masks."""
        super().reset()
        self._empty = 0

    def masked_scores(
        self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], mask: Float[Tensor, "B 1 H W"]
    ) -> Float[Tensor, " B"]:
        """Per-image scores over ``mask``; NaN where the mask is empty."""
        raise NotImplementedError

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image scores with the whole frame as the head."""
        whole = prediction.new_ones(prediction.shape[0], 1, *prediction.shape[2:])
        return self.masked_scores(prediction, target, whole)

    @torch.no_grad()
    def update(
        self,
        prediction: Float[Tensor, "B 3 H W"],
        target: Float[Tensor, "B 3 H W"],
        mask: Float[Tensor, "B 1 H W"] | None = None,
    ) -> None:
        """Accumulate one batch scored over ``mask`` (the target's head; ``None`` = the whole frame)."""
        prediction, target = self._prepare(prediction, target)
        if mask is None:
            scores = self.scores(prediction, target)
        else:
            if mask.shape != (prediction.shape[0], 1, *prediction.shape[2:]):
                raise ValueError(
                    f"{type(self).__name__}: mask must be (B, 1, H, W) = "
                    f"{(prediction.shape[0], 1, *prediction.shape[2:])}, got {tuple(mask.shape)}"
                )
            scores = self.masked_scores(prediction, target, mask.to(prediction.device, torch.float32))
        finite = ~torch.isnan(scores)
        self._empty += int((~finite).sum())
        self._total += float(scores[finite].double().sum())
        self._count += int(finite.sum())

    def details(self) -> dict[str, float]:
        """``{"empty_masks": n}`` when frames without a head were left out, else nothing."""
        return {"empty_masks": float(self._empty)} if self._empty else {}


class HeadPSNRConfig(MetricConfig):
    """Config of :class:`HeadPSNR`."""

    name: Literal["head_psnr"] = "head_psnr"
    max_db: float = 100.0
    """Cap on one image's PSNR in dB (identical heads)."""


class HeadPSNR(HeadMaskedMetric):
    """Mean per-image PSNR over the target's head mask; higher is better."""

    higher_is_better = True

    def __init__(self, config: HeadPSNRConfig) -> None:
        super().__init__()
        self.config = config

    def masked_scores(
        self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], mask: Float[Tensor, "B 1 H W"]
    ) -> Float[Tensor, " B"]:
        """Per-image head PSNR in dB."""
        return head_psnr(prediction, target, mask, self.config.max_db)


class HeadMSSSIMConfig(MSSSIMConfig):
    """Config of :class:`HeadMSSSIM`: MS-SSIM's settings plus the flat background colour."""

    name: Literal["head_ms_ssim"] = "head_ms_ssim"  # type: ignore[assignment]
    background: float = 1.0
    """Colour in [-1, 1] both images get outside the target's head mask (any constant; the same for both)."""


class HeadMSSSIM(HeadMaskedMetric):
    """Mean per-image MS-SSIM of both images composited over one background outside the head; higher is better."""

    higher_is_better = True

    def __init__(self, config: HeadMSSSIMConfig) -> None:
        super().__init__()
        self.config = config

    def masked_scores(
        self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], mask: Float[Tensor, "B 1 H W"]
    ) -> Float[Tensor, " B"]:
        """Per-image MS-SSIM of the composites; NaN where the mask is empty."""
        background = self.config.background
        prediction, target = composite_over(prediction, mask, background), composite_over(target, mask, background)
        value = ms_ssim(prediction, target, self.config)
        return torch.where(mask.flatten(1).sum(1) > 0, value, torch.full_like(value, float("nan")))


class HeadLPIPSConfig(LPIPSConfig):
    """Config of :class:`HeadLPIPS`: LPIPS's two weight files plus the flat background colour."""

    name: Literal["head_lpips"] = "head_lpips"  # type: ignore[assignment]
    background: float = 1.0
    """Colour in [-1, 1] both images get outside the target's head mask (any constant; the same for both)."""


class HeadLPIPS(HeadMaskedMetric):
    """Mean per-image LPIPS (AlexNet) of both images composited over one background outside the head; lower is better.

    Unavailable, like ``lpips``, until both weight files are given.
    """

    higher_is_better = False

    def __init__(self, config: HeadLPIPSConfig) -> None:
        super().__init__()
        self.config = config
        self.lpips = LPIPS(LPIPSConfig(backbone_weights=config.backbone_weights, head_weights=config.head_weights))

    def available(self) -> tuple[bool, str]:
        """Whether both weight files were supplied (the reason names the missing field / file)."""
        ok, reason = self.lpips.available()
        return ok, reason.replace("lpips.", "head_lpips.")

    def masked_scores(
        self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"], mask: Float[Tensor, "B 1 H W"]
    ) -> Float[Tensor, " B"]:
        """Per-image LPIPS of the composites; NaN where the mask is empty."""
        background = self.config.background
        prediction, target = composite_over(prediction, mask, background), composite_over(target, mask, background)
        value = self.lpips.scores(prediction, target)
        return torch.where(mask.flatten(1).sum(1) > 0, value, torch.full_like(value, float("nan")))
