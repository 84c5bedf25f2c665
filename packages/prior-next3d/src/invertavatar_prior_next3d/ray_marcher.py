"""Alpha compositing along rays, EG3D's "MipRayMarcher2" recipe (docs/design/prior.md).

Samples are taken at sorted depths ``t_0 < ... < t_{S-1}``; each interval contributes its
midpoint colour and density: ``sigma = softplus(density_mid - 1)``, ``alpha = 1 - exp(-sigma *
delta)``, weight = alpha times the transmittance before it. The composited colour features are
rescaled from [0, 1] to [-1, 1] with no background colour; the expected depth is normalised by
the total weight and clamped to the sampled range (the far end where nothing was hit).

Interval ``i`` averages samples ``i`` and ``i + 1``, so the composite equals a sum over the
*samples* with weights ``(w_{i-1} + w_i) / 2`` (:func:`sample_weights`). Compositing that way
never builds the ``(B, N, S - 1, C)`` midpoint colours, and because it is a plain weighted sum
the colours may stay in any order once the weights are known (the renderer uses this to avoid
sorting 32-channel colours).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

__all__ = ["DENSITY_SHIFT", "MarchResult", "finish_depth", "interval_weights", "march", "sample_weights"]

DENSITY_SHIFT = 1.0
"""``sigma = softplus(density - 1)``: empty space at initialisation (EG3D's density activation)."""


@dataclass(frozen=True)
class MarchResult:
    """Composited rays: ``color (B, N, C)`` in [-1, 1], ``depth (B, N, 1)``, ``weights (B, N, S - 1)``."""

    color: Tensor
    depth: Tensor
    weights: Tensor


def interval_weights(densities: Float[Tensor, "B N S 1"], depths: Float[Tensor, "B N S 1"]) -> Float[Tensor, "B N I"]:
    """Compositing weight of each of the ``I = S - 1`` intervals between sorted samples (float32)."""
    deltas = (depths[:, :, 1:] - depths[:, :, :-1]).squeeze(-1).float()
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]).squeeze(-1).float() * 0.5
    alpha = 1 - torch.exp(-F.softplus(densities_mid - DENSITY_SHIFT) * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=2), dim=2)
    return alpha * transmittance[:, :, :-1]


def sample_weights(weights: Float[Tensor, "B N I"]) -> Float[Tensor, "B N S"]:
    """Per-sample weights ``(w_{i-1} + w_i) / 2`` (``w_{-1} = w_{S-1} = 0``) equivalent to midpoint compositing."""
    return (F.pad(weights, (0, 1)) + F.pad(weights, (1, 0))) * 0.5


def march(
    colors: Float[Tensor, "B N S C"], densities: Float[Tensor, "B N S 1"], depths: Float[Tensor, "B N S 1"]
) -> MarchResult:
    """Composite ``S`` sorted samples per ray."""
    weights = interval_weights(densities, depths)
    per_sample = sample_weights(weights)
    color = torch.einsum("bns,bnsc->bnc", per_sample.to(colors.dtype), colors).float()
    depth = finish_depth(per_sample, depths)
    return MarchResult(color=color * 2 - 1, depth=depth, weights=weights)


def finish_depth(per_sample: Float[Tensor, "B N S"], depths: Float[Tensor, "B N S 1"]) -> Float[Tensor, "B N 1"]:
    """Expected depth from per-sample weights over sorted ``depths``, clamped to their range."""
    d = depths.squeeze(-1).float()
    total = per_sample.sum(dim=2, keepdim=True)
    near, far = d[:, :, :1], d[:, :, -1:]
    depth = (per_sample * d).sum(dim=2, keepdim=True) / total.clamp_min(1e-8)
    return torch.where(total > 1e-8, depth, far).clamp(near, far)
