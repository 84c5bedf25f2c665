"""Shaded renders of a morphable-model mesh through an EG3D camera (synthetic data, fit overlays).

Lambertian shading of a UV texture (or a flat grey) with one directional light plus ambient,
rasterised with any :class:`~invertavatar_core.plugin.protocols.Rasterizer`; world space is EG3D
canonical space (the pose-free mesh), the head pose lives in the camera. :func:`flat_shaded`
draws grey, one shade per triangle, from fragments the caller already has: a preview (the fit
overlays of ``invertavatar preprocess``) for a few milliseconds a frame.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from invertavatar_core.geometry.cameras import points_to_clip
from invertavatar_core.geometry.normals import vertex_normals

__all__ = ["flat_shaded", "render_mesh"]


def render_mesh(
    rasterizer,
    vertices: Tensor,
    faces: Tensor,
    camera: Tensor,
    resolution: int,
    *,
    uvs: Tensor | None = None,
    texture: Tensor | None = None,
    light: Tensor | None = None,
    ambient: float = 0.35,
) -> tuple[Tensor, Tensor]:
    """Render ``vertices (B, N, 3)`` (canonical space) -> ``image (B, 3, R, R)`` in [-1, 1], ``mask (B, 1, R, R)``.

    Args:
        rasterizer: a Rasterizer.
        vertices: canonical-space mesh per frame.
        faces: ``(F, 3)`` triangles.
        camera: ``(B, 25)`` EG3D labels.
        resolution: square image size.
        uvs: per-vertex UVs ``(N, 2)`` (with ``texture``).
        texture: UV-space albedo ``(B|1, 3, Ht, Wt)`` in [-1, 1] (rows follow +v, as in
            :mod:`invertavatar_core.geometry.uv_maps`); None = light grey.
        light: ``(B, 3)`` direction *towards* the light in world space; None = from the camera.
        ambient: share of unshaded light.
    Uncovered pixels are 0 in ``image`` and ``mask``.
    """
    b = vertices.shape[0]
    faces = faces.to(vertices.device)
    fragments = rasterizer.rasterize(points_to_clip(vertices, camera), faces, resolution, resolution)
    normals = vertex_normals(vertices, faces)
    # Outward normals whatever the winding (the enclosed volume about the centroid is positive).
    corners = vertices[:, faces] - vertices.mean(1, keepdim=True)[:, None]
    volume = (corners[:, :, 0] * torch.linalg.cross(corners[:, :, 1], corners[:, :, 2], dim=-1)).sum((1, 2))
    normals = torch.where(volume[:, None, None] < 0, -normals, normals)
    attributes = [normals]
    if texture is not None:
        attributes.append(uvs.to(vertices)[None].expand(b, -1, -1))
    pixel = rasterizer.interpolate(torch.cat(attributes, -1), fragments, faces)  # (B, R, R, C)
    n = F.normalize(pixel[..., :3], dim=-1)
    if light is None:
        cam2world = camera[:, :16].view(-1, 4, 4)
        light = F.normalize(cam2world[:, :3, 3] - vertices.mean(1), dim=-1)
    lambert = (n * F.normalize(light, dim=-1)[:, None, None]).sum(-1).clamp(min=0.0)
    shade = (ambient + (1 - ambient) * lambert)[:, None]
    if texture is not None:
        grid = pixel[..., 3:5] * 2 - 1
        albedo = F.grid_sample(texture.expand(b, -1, -1, -1).to(vertices), grid, mode="bilinear", align_corners=False)
        albedo = (albedo + 1) / 2
    else:
        albedo = torch.full((b, 3, resolution, resolution), 0.8, dtype=vertices.dtype, device=vertices.device)
    mask = fragments.mask[:, None].to(vertices.dtype)
    image = (albedo * shade * 2 - 1) * mask
    return image, mask


def flat_shaded(
    vertices: Tensor, faces: Tensor, camera: Tensor, fragments, *, ambient: float = 0.35
) -> tuple[Tensor, Tensor]:
    """Grey, one shade per triangle: ``image (B, 3, R, R)`` in [-1, 1] and ``mask (B, 1, R, R)``.

    Args:
        vertices: canonical-space mesh ``(B, N, 3)``.
        faces: ``(F, 3)`` triangles.
        camera: ``(B, 25)`` EG3D labels; the light comes from the camera.
        fragments: the mesh rasterised through ``camera`` (``triangle_id (B, R, R)``).
        ambient: share of unshaded light.
    Two-sided: a triangle is lit by the absolute cosine, whatever its winding.
    """
    faces = faces.to(vertices.device)
    corners = vertices[:, faces]  # (B, F, 3, 3)
    normals = F.normalize(
        torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]), dim=-1
    )
    cam2world = camera[:, :16].view(-1, 4, 4).to(vertices)
    light = F.normalize(cam2world[:, :3, 3] - vertices.mean(1), dim=-1)
    shade = ambient + (1 - ambient) * (normals * light[:, None]).sum(-1).abs()  # (B, F)
    ids = fragments.triangle_id
    covered = ids >= 0
    pixel = shade.gather(1, ids.clamp(min=0).flatten(1)).view(ids.shape)
    mask = covered[:, None].to(vertices.dtype)
    image = (0.8 * pixel[:, None] * 2 - 1) * mask
    return image.expand(-1, 3, -1, -1), mask
