"""CSIM: cosine similarity of ArcFace identity embeddings (paper ref. [10]), IR-SE-50 with user weights.

Each image is cropped to the face window the ID loss uses (``losses.ID_CROP``: rows 35-223 and
columns 32-220 of a 256 frame, as fractions, the pSp/e4e convention for FFHQ/EG3D-aligned
portraits), area-resized to 112x112 (the input size of the public ``model_ir_se50.pth``), and
embedded by :class:`~invertavatar_core.nn.ir_se.IRSENet` with its ArcFace head; CSIM is the cosine
of the two L2-normalised embeddings, averaged over image pairs. Inputs must therefore be aligned
portraits like the dataset's (the evaluation protocols pass them as rendered / as loaded).
For same-identity reenactment the target is the ground-truth frame; for cross-identity the
protocols pass the *source* image as the target (identity preservation).
"""

from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.per_image import PerImageMetric
from invertavatar_core.io.weight_files import missing_weights_reason
from invertavatar_core.nn.ir_se import IRSENet, load_ir_se50_weights
from invertavatar_core.plugin.kinds import MetricConfig
from invertavatar_core.training.losses import ID_CROP, ID_RESOLUTION

__all__ = ["CSIM", "CSIMConfig", "arcface_embedding"]

WEIGHTS_WHAT = "ArcFace IR-SE-50 weights (model_ir_se50.pth from TreB1eN/InsightFace_Pytorch, or .safetensors)"


class CSIMConfig(MetricConfig):
    """Config of :class:`CSIM`."""

    name: Literal["csim"] = "csim"
    weights: Path | None = None
    """ArcFace IR-SE-50 weights with the output head (``model_ir_se50.pth`` or ``.safetensors``); required."""


def arcface_embedding(network: IRSENet, image: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B E"]:
    """L2-normalised identity embedding of aligned portraits in [-1, 1] (face crop, 112x112)."""
    h, w = image.shape[-2:]
    top, bottom, left, right = ID_CROP
    crop = image[:, :, round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
    return network.embed(F.adaptive_avg_pool2d(crop, ID_RESOLUTION))


class CSIM(PerImageMetric):
    """Mean per-image identity cosine similarity; higher is better (1 for identical images)."""

    higher_is_better = True
    reference = "source_identity"
    """Cross-identity reenactment compares the output with the source image."""

    def __init__(self, config: CSIMConfig) -> None:
        super().__init__()
        self.config = config
        self._missing = missing_weights_reason(config.weights, "csim.weights", WEIGHTS_WHAT)
        self.network: IRSENet | None = None
        if not self._missing:
            self.network = IRSENet(head_resolution=ID_RESOLUTION)
            load_ir_se50_weights(self.network, config.weights)
            self.network.eval().requires_grad_(False)

    def available(self) -> tuple[bool, str]:
        """Whether the ArcFace weights were supplied (the reason names ``csim.weights``)."""
        return (not self._missing, self._missing)

    def train(self, mode: bool = True) -> "CSIM":
        """Stays in eval mode (pretrained BatchNorm statistics, no dropout)."""
        return super().train(False)

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image cosine similarity of the identity embeddings."""
        return (arcface_embedding(self.network, prediction) * arcface_embedding(self.network, target)).sum(1)
