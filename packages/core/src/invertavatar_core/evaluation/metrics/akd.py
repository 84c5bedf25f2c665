"""AKD: average keypoint distance between landmarks detected on the output and on the target.

The detector is the paper's (MediaPipe FaceMesh, footnote 1 of Sec. 4.1), taken from the
registry by name (kind ``landmark_detector``, default ``"mediapipe"``, 478 points with irises).
Normalisation: landmark pixel coordinates are divided by the image width (images are square),
so a distance of 0.01 is 1% of the frame (5 px at 512). This is what makes the paper's values
(0.018 for ours in Table 1) plausible as fractions of the frame. Per image pair the distance is
the mean Euclidean distance over all landmarks; AKD is the mean over pairs.

Pairs whose *target* shows no detectable face are skipped (no ground truth) and counted in
:attr:`AKD.no_target_face`; pairs where the target has a face but the *prediction* has none
are counted in :attr:`AKD.missed` and left out of the mean (reported beside it by the
evaluation). With no matched pair at all, :meth:`AKD.compute` returns NaN.
"""

import math
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.evaluation.metrics.per_image import check_image_pair
from invertavatar_core.plugin.kinds import MetricConfig
from invertavatar_core.plugin.protocols import LandmarkDetector

__all__ = ["AKD", "AKDConfig", "keypoint_distance"]


class AKDConfig(MetricConfig):
    """Config of :class:`AKD`."""

    name: Literal["akd"] = "akd"
    detector: str = "mediapipe"
    """Registry name of the ``landmark_detector`` (built with its default config)."""


def keypoint_distance(predicted: Float[Tensor, "L 2"], target: Float[Tensor, "L 2"], width: int) -> float:
    """Mean Euclidean distance between corresponding landmarks, in units of the image width."""
    if predicted.shape != target.shape:
        raise ValueError(f"AKD: landmark sets differ in shape: {tuple(predicted.shape)} vs {tuple(target.shape)}")
    return float((predicted.double() - target.double()).norm(dim=-1).mean() / width)


def _to_uint8_hwc(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` in [-1, 1] -> ``(H, W, 3)`` uint8, as a detector reads a file."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class AKD(nn.Module):
    """Average keypoint distance (lower is better); satisfies :class:`~invertavatar_core.plugin.protocols.Metric`.

    Args:
        config: the metric's config.
        detector: a ready detector (tests, or to share one); by default built from the registry.
    """

    higher_is_better = False
    reference = "driving_motion"
    """Cross-identity reenactment compares the output with the driving frame."""

    def __init__(self, config: AKDConfig, detector: LandmarkDetector | None = None) -> None:
        super().__init__()
        self.config = config
        self._detector = detector
        self._why_not = ""
        self.reset()

    def _build_detector(self) -> None:
        if self._detector is not None or self._why_not:
            return
        from invertavatar_core.config.experiment import default_registry
        from invertavatar_core.plugin.registry import UnknownComponentError

        try:
            self._detector = default_registry().create("landmark_detector", self.config.detector)
        except UnknownComponentError as exc:
            self._why_not = f"akd.detector: {exc.message}"
        except ImportError as exc:
            self._why_not = f"akd.detector {self.config.detector!r} cannot be built here: {exc}"

    def available(self) -> tuple[bool, str]:
        """Whether the landmark detector can be built here (the reason names ``akd.detector``)."""
        self._build_detector()
        return (self._detector is not None, self._why_not)

    def reset(self) -> None:
        """Forget all accumulated values and counts."""
        self._total = 0.0
        self._count = 0
        self.missed = 0
        """Pairs whose target has a face but whose prediction has none (excluded from the mean)."""
        self.no_target_face = 0
        """Pairs skipped because no face was detected on the target."""

    @torch.no_grad()
    def update(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> None:
        """Detect landmarks on both images of each pair and accumulate their distance."""
        check_image_pair(prediction, target, "AKD")
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"AKD cannot run here: {reason}")
        width = int(prediction.shape[-1])
        for predicted_image, target_image in zip(prediction, target, strict=True):
            target_points = self._detector.detect(_to_uint8_hwc(target_image))
            if target_points is None:
                self.no_target_face += 1
                continue
            predicted_points = self._detector.detect(_to_uint8_hwc(predicted_image))
            if predicted_points is None:
                self.missed += 1
                continue
            self._total += keypoint_distance(torch.as_tensor(predicted_points), torch.as_tensor(target_points), width)
            self._count += 1

    def details(self) -> dict[str, int]:
        """Counts reported beside the value: pairs matched, missed and without a target face."""
        return {"matched": self._count, "missed": self.missed, "no_target_face": self.no_target_face}

    def compute(self) -> float:
        """Mean normalised keypoint distance over matched pairs (NaN when none matched)."""
        return self._total / self._count if self._count else math.nan

    @property
    def count(self) -> int:
        """Matched pairs accumulated since :meth:`reset`."""
        return self._count
