"""Iso-surfaces of a scalar field sampled on a regular grid: marching cubes and connected components.

The grid spans a cube ``[-box/2, box/2]^3`` with ``N`` nodes per side (spacing ``box / (N - 1)``),
indexed ``volume[i, j, k]`` = value at ``(x_i, y_j, z_k)``. The surface separates values above
``level`` (the inside) from values below it; triangles wind counter-clockwise seen from outside,
so face normals ``(v1 - v0) x (v2 - v0)`` point out (:mod:`invertavatar_core.geometry.normals`).
The border nodes are set below ``level`` before extraction, so the surface is always closed and
stays inside the box, whatever the field does at its edges.

Marching cubes is scikit-image's (Lewiner's variant, which resolves the ambiguous cube cases
consistently and so yields a watertight mesh); it is an optional dependency, the ``export``
extra, imported only when a surface is extracted.
"""

from dataclasses import dataclass

import numpy as np
import torch

from invertavatar_core.errors import UserError
from invertavatar_core.tensor_types import Float, Int, Tensor

__all__ = ["EXPORT_EXTRA_HINT", "IsoSurface", "grid_points", "keep_largest_component", "marching_cubes"]

EXPORT_EXTRA_HINT = 'mesh export needs scikit-image: pip install "invertavatar-core[export]"'
"""The one-line error when the ``export`` extra is missing."""


@dataclass(frozen=True)
class IsoSurface:
    """A triangle mesh: ``vertices (N, 3)`` in the grid's coordinates, ``faces (F, 3)`` int64, ``normals (N, 3)``.

    ``normals`` are unit vectors pointing out of the surface (down the field's gradient).
    """

    vertices: Float[Tensor, "N 3"]
    faces: Int[Tensor, "F 3"]
    normals: Float[Tensor, "N 3"]


def grid_points(resolution: int, box_size: float, *, start: int = 0, stop: int | None = None) -> Float[Tensor, "P 3"]:
    """Nodes ``start:stop`` (flat, C order: x slowest, z fastest) of the ``resolution^3`` box grid, ``(P, 3)``."""
    stop = resolution**3 if stop is None else stop
    flat = torch.arange(start, stop, dtype=torch.int64)
    index = torch.stack([flat // resolution**2, (flat // resolution) % resolution, flat % resolution], dim=-1)
    return index.to(torch.float32) * (box_size / (resolution - 1)) - box_size / 2


def marching_cubes(volume: Float[Tensor, "X Y Z"], level: float, box_size: float) -> IsoSurface:
    """The closed surface where ``volume`` (nodes over ``[-box/2, box/2]^3``) crosses ``level``; inside is above it.

    Raises:
        UserError: the ``export`` extra (scikit-image) is not installed, or the field is nowhere
            above ``level`` (the message gives the range the field does span).
    """
    try:
        from skimage.measure import marching_cubes as skimage_marching_cubes
    except ImportError:
        raise UserError(EXPORT_EXTRA_HINT) from None
    if volume.ndim != 3 or min(volume.shape) < 3:
        raise ValueError(f"marching_cubes: expected a volume of at least 3 nodes per side, got {tuple(volume.shape)}")
    grid = volume.detach().to("cpu", torch.float32).numpy().copy()
    if not np.isfinite(grid).all():
        raise ValueError("marching_cubes: the field holds NaN or infinite values")
    # Closed surfaces whatever the field does at the box's faces: the border is outside.
    inner = grid[1:-1, 1:-1, 1:-1]
    low, high = float(inner.min()), float(inner.max())
    if not high > level:
        raise UserError(
            f"no surface: inside the box the field spans [{low:.4g}, {high:.4g}], never above the threshold {level:.4g}"
        )
    outside = min(low, level) - 1.0
    grid[[0, -1], :, :] = outside
    grid[:, [0, -1], :] = outside
    grid[:, :, [0, -1]] = outside
    spacing = box_size / (grid.shape[0] - 1), box_size / (grid.shape[1] - 1), box_size / (grid.shape[2] - 1)
    # "descent": the object is where values are greater, so the normals point out; scikit-image winds
    # the triangles by the left-hand rule around them, hence the swap of two corners (right-hand, outwards).
    vertices, faces, normals, _ = skimage_marching_cubes(
        grid, level, spacing=spacing, gradient_direction="descent", allow_degenerate=False
    )
    vertices = torch.from_numpy(vertices.astype(np.float32)) - box_size / 2
    normals = torch.from_numpy(normals.astype(np.float32))
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    faces = torch.from_numpy(faces[:, [0, 2, 1]].astype(np.int64))
    return IsoSurface(vertices, faces, normals)


def keep_largest_component(surface: IsoSurface) -> IsoSurface:
    """Only the connected piece with the most faces (pieces share no vertex); vertices renumbered in order."""
    vertices, faces = surface.vertices, surface.faces
    if len(faces) == 0:
        return surface
    # Connected components by hooking and pointer jumping (Shiloach-Vishkin): each round, every
    # tree root takes the smallest root among the faces touching its tree, then every vertex
    # points straight at its root; a few dozen vectorised rounds even for a million faces.
    label = torch.arange(len(vertices), dtype=torch.int64)
    while True:
        roots = label[faces]
        hooked = label.scatter_reduce(0, roots.reshape(-1), roots.amin(dim=1).repeat_interleave(3), reduce="amin")
        while True:  # full shortcut: labels are roots again
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, label):
            break
        label = hooked
    face_label = label[faces[:, 0]]
    largest = torch.bincount(face_label).argmax()
    kept_faces = faces[face_label == largest]
    used = torch.zeros(len(vertices), dtype=torch.bool)
    used[kept_faces.reshape(-1)] = True
    renumber = torch.cumsum(used, 0) - 1
    return IsoSurface(vertices[used], renumber[kept_faces], surface.normals[used])
