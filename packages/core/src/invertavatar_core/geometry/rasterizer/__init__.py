"""Rasterisers: the pure-torch backend (re-exported here) and optional nvdiffrast / pytorch3d backends."""

from invertavatar_core.geometry.rasterizer.torch_backend import (
    TorchRasterizer,
    TorchRasterizerConfig,
    check_rasterizer_inputs,
    fragments_from_triangle_ids,
    interpolate_attributes,
)

__all__ = [
    "TorchRasterizer",
    "TorchRasterizerConfig",
    "check_rasterizer_inputs",
    "fragments_from_triangle_ids",
    "interpolate_attributes",
]
