"""FID (Fréchet Inception distance, Heusel et al. 2017; paper Table 3) with user-supplied Inception weights.

Pool features of predictions and of targets are accumulated as running sums (float64), so
memory does not grow with the dataset. Each set is summarised by its mean and (unbiased)
covariance and the distance between the two Gaussians is

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})

The matrix square root is taken through symmetric eigendecompositions in float64 (eigenvalues
clamped at zero), which stays real and finite where a general ``sqrtm(S_1 S_2)`` can return
complex values for the rank-deficient covariances of small sets. FID over fewer than two
images per side is undefined and raises.
"""

from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.evaluation.metrics.inception import FIDInceptionV3, load_fid_inception_weights
from invertavatar_core.evaluation.metrics.per_image import PerImageMetric
from invertavatar_core.io.weight_files import missing_weights_reason, read_state_dict
from invertavatar_core.plugin.kinds import MetricConfig

__all__ = ["FID", "FIDConfig", "FeatureStatistics", "frechet_distance", "sqrtm_psd"]

WEIGHTS_WHAT = "FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth or a .safetensors conversion)"


class FIDConfig(MetricConfig):
    """Config of :class:`FID`."""

    name: Literal["fid"] = "fid"
    weights: Path | None = None
    """Inception-v3 FID weights, torchvision ``Inception3`` layout (``.pth`` or ``.safetensors``); required."""
    input_resolution: int = 299  # Inception-v3 input size (Szegedy et al. 2016)
    """Images are resized bilinearly to this square size before the network."""


def sqrtm_psd(matrix: Float[Tensor, "D D"]) -> Float[Tensor, "D D"]:
    """Square root of a symmetric positive semi-definite matrix (float64, eigenvalues clamped at 0)."""
    matrix = matrix.double()
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(
    mu1: Float[Tensor, " D"], sigma1: Float[Tensor, "D D"], mu2: Float[Tensor, " D"], sigma2: Float[Tensor, "D D"]
) -> float:
    """Squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (see module doc)."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)} / {tuple(sigma2.shape)}"
        )
    root1 = sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(value), 0.0)  # rounding can leave -1e-12 for identical sets


class FeatureStatistics:
    """Running mean and covariance of feature vectors (float64 sums)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self._sum = torch.zeros(dim, dtype=torch.float64)
        self._outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, features: Float[Tensor, "B D"]) -> None:
        """Accumulate a batch of feature vectors."""
        features = features.detach().to("cpu", torch.float64)
        self.count += features.shape[0]
        self._sum += features.sum(0)
        self._outer += features.T @ features

    def mean_and_covariance(self) -> tuple[Float[Tensor, " D"], Float[Tensor, "D D"]]:
        """``(mu, sigma)`` with the unbiased covariance (needs at least two vectors)."""
        if self.count < 2:
            raise ValueError(f"FID needs at least 2 images per set, got {self.count}")
        mu = self._sum / self.count
        sigma = (self._outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return mu, sigma


class FID(PerImageMetric):
    """Fréchet Inception distance between the set of predictions and the set of targets; lower is better."""

    higher_is_better = False

    def __init__(self, config: FIDConfig) -> None:
        super().__init__()
        self.config = config
        self._missing = missing_weights_reason(config.weights, "fid.weights", WEIGHTS_WHAT)
        self.network: FIDInceptionV3 | None = None
        if not self._missing:
            self.network = FIDInceptionV3(config.input_resolution)
            load_fid_inception_weights(
                self.network, read_state_dict(config.weights, WEIGHTS_WHAT), f"{WEIGHTS_WHAT} {config.weights}"
            )
            self.network.eval().requires_grad_(False)

    def available(self) -> tuple[bool, str]:
        """Whether the Inception weights were supplied (the reason names ``fid.weights``)."""
        return (not self._missing, self._missing)

    def train(self, mode: bool = True) -> "FID":
        """Stays in eval mode (pretrained BatchNorm statistics)."""
        return super().train(False)

    def reset(self) -> None:
        """Forget both feature sets."""
        super().reset()
        self.predictions = FeatureStatistics(FIDInceptionV3.feature_dim)
        self.targets = FeatureStatistics(FIDInceptionV3.feature_dim)

    @torch.no_grad()
    def update(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> None:
        """Add the pool features of both batches to their sets."""
        prediction, target = self._prepare(prediction, target)
        self.predictions.add(self.network(prediction))
        self.targets.add(self.network(target))
        self._count += prediction.shape[0]

    def compute(self) -> float:
        """FID between everything predicted and every target since :meth:`reset`."""
        mu1, sigma1 = self.predictions.mean_and_covariance()
        mu2, sigma2 = self.targets.mean_and_covariance()
        return frechet_distance(mu1, sigma1, mu2, sigma2)
