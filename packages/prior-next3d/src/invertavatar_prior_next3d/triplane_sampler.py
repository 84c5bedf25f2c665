"""Tri-plane feature lookup: project 3D points on the three planes, sample, average (docs/design/prior.md).

Planes (EG3D layout, box ``[-box/2, box/2]^3`` mapped to grid coordinates ``[-1, 1]``):
plane 0 is XY (columns +x, rows +y), plane 1 is XZ, and plane 2 follows EG3D's released variant,
which projects a point to (z, x). Features are sampled bilinearly with zero padding
(``align_corners=False``) and averaged over the planes.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

__all__ = ["PLANE_AXES", "sample_triplane"]

PLANE_AXES = ((0, 1), (0, 2), (2, 0))
"""For each plane, the point coordinates used as (grid x = column, grid y = row)."""


def sample_triplane(
    planes: Float[Tensor, "B 3 C R R"], points: Float[Tensor, "B N 3"], box_size: float = 1.0
) -> Float[Tensor, "B N C"]:
    """Mean of the three planes' bilinear samples at ``points`` (canonical units)."""
    b, n_planes, c, h, w = planes.shape
    if n_planes != 3 or points.shape[0] != b or points.shape[-1] != 3:
        raise ValueError(f"sample_triplane: planes {tuple(planes.shape)} and points {tuple(points.shape)} do not match")
    coords = points * (2.0 / box_size)
    grids = torch.stack([coords[..., list(axes)] for axes in PLANE_AXES], dim=1)  # (B, 3, N, 2)
    grids = grids.reshape(b * 3, 1, -1, 2).to(planes.dtype)
    sampled = F.grid_sample(
        planes.reshape(b * 3, c, h, w), grids, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B * 3, C, 1, N)
    return sampled.reshape(b, 3, c, -1).mean(dim=1).transpose(1, 2)
