"""The accumulation every per-image metric shares: a score per image pair, averaged over the dataset.

Subclasses implement :meth:`PerImageMetric.scores`; the dataset-level value is the mean of the
per-image scores (PSNR is therefore the mean of per-image PSNRs, as image-reconstruction papers
report it, not the PSNR of the pooled MSE).
"""

from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["MetricReference", "PerImageMetric", "check_image_pair", "to_unit_range"]

MetricReference = Literal["ground_truth", "source_identity", "driving_motion"]
"""What a metric's ``target`` is in a reenactment protocol (see :mod:`invertavatar_core.evaluation.protocols`):
the true frame (pixel-aligned metrics), the source image (identity), or the driving frame (motion)."""


def check_image_pair(prediction: Tensor, target: Tensor, metric: str) -> None:
    """Raise a clear ``ValueError`` unless both are ``(B, 3, H, W)`` of the same shape."""
    for label, image in (("prediction", prediction), ("target", target)):
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"{metric}: {label} must be (B, 3, H, W) RGB in [-1, 1], got {shape}")
    if prediction.shape != target.shape:
        raise ValueError(
            f"{metric}: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape"
        )


def to_unit_range(image: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 3 H W"]:
    """``[-1, 1]`` -> ``[0, 1]`` in float32 (the range PSNR / L1 / SSIM are reported in)."""
    return (image.float() + 1.0) / 2.0


class PerImageMetric(nn.Module):
    """Mean over image pairs of :meth:`scores`; an ``nn.Module`` so networks move with ``.to()``.

    Satisfies :class:`~invertavatar_core.plugin.protocols.Metric`. Inputs are moved to the metric's
    device when it has parameters or buffers.
    """

    higher_is_better: bool = False
    reference: ClassVar[MetricReference] = "ground_truth"
    """Compared with the true frame; without ground truth (cross-identity) the metric does not apply."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def available(self) -> tuple[bool, str]:
        """``(True, "")``; metrics that need weights override this."""
        return True, ""

    def reset(self) -> None:
        """Forget all accumulated values."""
        self._total = 0.0
        self._count = 0

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image scores of a batch, both in [-1, 1]."""
        raise NotImplementedError

    def _device_of(self, like: Tensor) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), None)
        return like.device if tensor is None else tensor.device

    def _prepare(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        check_image_pair(prediction, target, type(self).__name__)
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"{type(self).__name__} cannot run here: {reason}")
        device = self._device_of(prediction)
        return prediction.to(device, torch.float32), target.to(device, torch.float32)

    @torch.no_grad()
    def update(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> None:
        """Accumulate the scores of one batch."""
        prediction, target = self._prepare(prediction, target)
        scores = self.scores(prediction, target)
        self._total += float(scores.double().sum())
        self._count += int(scores.numel())

    def compute(self) -> float:
        """Mean score over every image seen since :meth:`reset`."""
        if self._count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        return self._total / self._count

    @property
    def count(self) -> int:
        """Image pairs accumulated since :meth:`reset`."""
        return self._count
