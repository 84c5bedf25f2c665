"""Optional ``pytorch3d`` backend: pytorch3d finds the triangle per pixel, torch the rest.

Importing this module imports ``pytorch3d``; core registers the backend only when that succeeds.
pytorch3d's screen NDC has +x left and +y up with the shorter image side spanning [-1, 1], so
our clip coordinates are negated and scaled before rasterising; depth is our ``z / w``.
Barycentrics and depth are recomputed from the vertices by
:func:`~invertavatar_core.geometry.rasterizer.torch_backend.fragments_from_triangle_ids`, identical for every backend.
"""

from typing import Literal

import torch
from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
from pytorch3d.structures import Meshes
from torch import Tensor

from invertavatar_core.geometry.rasterizer.torch_backend import (
    check_rasterizer_inputs,
    fragments_from_triangle_ids,
    interpolate_attributes,
)
from invertavatar_core.plugin.kinds import RasterizerConfig
from invertavatar_core.plugin.protocols import Fragments
from invertavatar_core.tensor_types import Float, Int

__all__ = ["Pytorch3DRasterizer", "Pytorch3DRasterizerConfig"]


class Pytorch3DRasterizerConfig(RasterizerConfig):
    """Settings of the pytorch3d backend."""

    name: Literal["pytorch3d"] = "pytorch3d"

    bin_size: int | None = None
    """pytorch3d's coarse-to-fine bin size (None: its heuristic; 0: naive rasterisation)."""


class Pytorch3DRasterizer:
    """:class:`~invertavatar_core.plugin.protocols.Rasterizer` on pytorch3d's ``rasterize_meshes``."""

    def __init__(self, config: Pytorch3DRasterizerConfig) -> None:
        self.config = config

    def rasterize(
        self, vertices: Float[Tensor, "B N 4"], faces: Int[Tensor, "F 3"], height: int, width: int
    ) -> Fragments:
        """``vertices: (B, N, 4)`` clip space, ``faces: (F, 3)`` -> :class:`Fragments`."""
        check_rasterizer_inputs(vertices, faces, height, width)
        b, _, _ = vertices.shape
        faces = faces.to(device=vertices.device, dtype=torch.int64)
        with torch.no_grad():
            v = vertices.detach().float()
            w = v[..., 3:]
            short = min(height, width)
            ndc = v[..., :3] / w.clamp(min=1e-8) * v.new_tensor([-width / short, -height / short, 1.0])
            # pytorch3d ignores pixels at depth < 0: shift each mesh's z / w to >= 1 (order kept).
            ndc[..., 2] = ndc[..., 2] - ndc[..., 2].amin(1, keepdim=True) + 1.0
            # Triangles with a vertex behind the camera are dropped, as in the torch backend.
            kept = [(w[k, :, 0][faces] > 1e-8).all(1).nonzero().squeeze(1) for k in range(b)]
            meshes = Meshes(verts=list(ndc), faces=[faces[keep] for keep in kept])
            pix_to_face, _, _, _ = rasterize_meshes(
                meshes,
                image_size=(height, width),
                blur_radius=0.0,
                faces_per_pixel=1,
                bin_size=self.config.bin_size,
                perspective_correct=False,
            )
            packed = pix_to_face[..., 0]
            # Packed face p of mesh k is kept[k][p - first[k]]: concatenating kept maps p directly.
            lookup = torch.cat(kept)
            triangle_id = torch.where(packed >= 0, lookup[packed.clamp(min=0)] if len(lookup) else packed, -1)
        return fragments_from_triangle_ids(vertices, faces, triangle_id)

    def interpolate(
        self, attributes: Float[Tensor, "B N C"], fragments: Fragments, faces: Int[Tensor, "F 3"]
    ) -> Float[Tensor, "B H W C"]:
        """``attributes: (B, N, C)`` per vertex -> ``(B, H, W, C)``, zero where uncovered."""
        return interpolate_attributes(attributes, fragments, faces)
