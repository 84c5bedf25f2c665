"""Optional ``nvdiffrast`` backend (CUDA): nvdiffrast finds the triangle per pixel, torch the rest.

Importing this module imports ``nvdiffrast.torch``; core registers the backend only when that
succeeds. nvdiffrast's output rows already follow our clip convention (row 0 at ``y/w = -1``).
Unlike the torch backend it clips triangles against ``-w <= z <= w`` (OpenGL near/far planes),
so keep ``z / w`` inside [-1, 1]. Barycentrics and depth are recomputed from the vertices by
:func:`~invertavatar_core.geometry.rasterizer.torch_backend.fragments_from_triangle_ids`, identical for every backend.
"""

from typing import Literal

import nvdiffrast.torch as dr
import torch
from torch import Tensor

from invertavatar_core.geometry.rasterizer.torch_backend import (
    check_rasterizer_inputs,
    fragments_from_triangle_ids,
    interpolate_attributes,
)
from invertavatar_core.plugin.kinds import RasterizerConfig
from invertavatar_core.plugin.protocols import Fragments
from invertavatar_core.tensor_types import Float, Int

__all__ = ["NvdiffrastRasterizer", "NvdiffrastRasterizerConfig"]


class NvdiffrastRasterizerConfig(RasterizerConfig):
    """Settings of the nvdiffrast backend."""

    name: Literal["nvdiffrast"] = "nvdiffrast"

    opengl: bool = False
    """Use nvdiffrast's OpenGL context instead of its CUDA one."""


class NvdiffrastRasterizer:
    """:class:`~invertavatar_core.plugin.protocols.Rasterizer` on nvdiffrast (CUDA tensors only)."""

    def __init__(self, config: NvdiffrastRasterizerConfig) -> None:
        self.config = config
        self._contexts: dict[torch.device, object] = {}

    def _context(self, device: torch.device) -> object:
        if device not in self._contexts:
            make = dr.RasterizeGLContext if self.config.opengl else dr.RasterizeCudaContext
            self._contexts[device] = make(device=device)
        return self._contexts[device]

    def rasterize(
        self, vertices: Float[Tensor, "B N 4"], faces: Int[Tensor, "F 3"], height: int, width: int
    ) -> Fragments:
        """``vertices: (B, N, 4)`` clip space on CUDA, ``faces: (F, 3)`` -> :class:`Fragments`."""
        check_rasterizer_inputs(vertices, faces, height, width)
        if vertices.device.type != "cuda":
            raise ValueError(
                f"vertices: the nvdiffrast rasterizer needs CUDA tensors, got {vertices.device}; use 'torch'"
            )
        with torch.no_grad():
            tri = faces.to(device=vertices.device, dtype=torch.int32).contiguous()
            rast, _ = dr.rasterize(
                self._context(vertices.device), vertices.detach().float().contiguous(), tri, (height, width)
            )
        return fragments_from_triangle_ids(vertices, faces, rast[..., 3].long() - 1)

    def interpolate(
        self, attributes: Float[Tensor, "B N C"], fragments: Fragments, faces: Int[Tensor, "F 3"]
    ) -> Float[Tensor, "B H W C"]:
        """``attributes: (B, N, C)`` per vertex -> ``(B, H, W, C)``, zero where uncovered."""
        return interpolate_attributes(attributes, fragments, faces)
