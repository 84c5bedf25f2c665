"""Face and vertex normals of triangle meshes (counter-clockwise winding seen from outside)."""

import torch

from invertavatar_core.tensor_types import Float, Int, Tensor

__all__ = ["face_normals", "vertex_normals"]


def face_normals(vertices: Float[Tensor, "B N 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "B F 3"]:
    """Area-weighted (unnormalised) face normals ``(B, F, 3)``: ``(v1 - v0) x (v2 - v0)``."""
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def vertex_normals(
    vertices: Float[Tensor, "B N 3"], faces: Int[Tensor, "F 3"], eps: float = 1e-12
) -> Float[Tensor, "B N 3"]:
    """Unit vertex normals ``(B, N, 3)``: the area-weighted mean of the adjacent face normals."""
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    per_face = face_normals(vertices, faces)
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(1, faces[:, k], per_face)
    return normals / normals.norm(dim=-1, keepdim=True).clamp(min=eps)
