"""Importance samples along rays from the coarse pass's weights (docs/design/prior.md).

The coarse weights of the ``S - 1`` intervals are smoothed (max-pool 2 then average-pool 2, as
EG3D does) and floored with 0.01 so that no interval is starved, then ``n`` depths are drawn by
inverting the piecewise-uniform CDF over the coarse depths: evenly spaced quantiles in evaluation
(deterministic renders), uniform random ones in training. Nothing here is differentiated.

``midpoints=True`` reproduces EG3D's variant, which the released model renders with: the CDF
runs over the coarse *midpoints*, the first and last smoothed weights are dropped (plus 1e-5
each), and the evaluation quantiles are ``linspace(0, 1, n)`` including both ends.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

__all__ = ["WEIGHT_FLOOR", "importance_depths"]

WEIGHT_FLOOR = 0.01
"""Added to the smoothed weights before sampling (EG3D)."""

_MIDPOINT_EPS = 1e-5  # EG3D: added to each weight; CDF steps below it divide by 1 instead


@torch.no_grad()
def importance_depths(
    depths: Float[Tensor, "B N S 1"],
    weights: Float[Tensor, "B N I"],
    n: int,
    *,
    deterministic: bool,
    midpoints: bool = False,
) -> Float[Tensor, "B N n 1"]:
    """Draw ``n`` depths per ray from the ``I = S - 1`` interval weights over the coarse ``depths``."""
    b, rays, s, _ = depths.shape
    w = weights.reshape(b * rays, 1, -1).float()
    w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1).reshape(b, rays, -1) + WEIGHT_FLOOR
    if midpoints:
        return _midpoint_depths(depths, w, n, deterministic=deterministic)
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # (B, N, S)
    cdf[..., -1] = 1.0
    if deterministic:
        u = torch.linspace(0.0, 1.0, n + 2, device=depths.device)[1:-1].expand(b, rays, n).contiguous()
    else:
        u = torch.rand(b, rays, n, device=depths.device)
    index = torch.searchsorted(cdf, u, right=True).clamp(1, s - 1)
    lo, hi = index - 1, index
    cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    edges = depths.squeeze(-1).float()
    t_lo, t_hi = edges.gather(-1, lo), edges.gather(-1, hi)
    fraction = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-8)).clamp(0, 1)
    return (t_lo + fraction * (t_hi - t_lo)).unsqueeze(-1).to(depths.dtype)


def _midpoint_depths(depths: Tensor, smoothed: Tensor, n: int, *, deterministic: bool) -> Tensor:
    """EG3D's inverse-CDF draw: bins = the ``S - 1`` coarse midpoints, weights = ``smoothed[..., 1:-1]``."""
    b, rays, _, _ = depths.shape
    d = depths.squeeze(-1).float()
    bins = (d[..., 1:] + d[..., :-1]) * 0.5
    w = smoothed[..., 1:-1] + _MIDPOINT_EPS
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # (B, N, S - 2)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n, device=depths.device).expand(b, rays, n).contiguous()
    else:
        u = torch.rand(b, rays, n, device=depths.device)
    index = torch.searchsorted(cdf, u, right=True)
    lo, hi = (index - 1).clamp_min(0), index.clamp_max(cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    t_lo, t_hi = bins.gather(-1, lo), bins.gather(-1, hi)
    step = cdf_hi - cdf_lo
    step = torch.where(step < _MIDPOINT_EPS, torch.ones_like(step), step)
    return (t_lo + (u - cdf_lo) / step * (t_hi - t_lo)).unsqueeze(-1).to(depths.dtype)
