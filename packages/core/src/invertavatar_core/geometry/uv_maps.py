"""The two UV maps the pipeline needs: the expression UV render and the UV unwrap of a photo.

Written against the :class:`~invertavatar_core.plugin.protocols.MorphableModel` and
:class:`~invertavatar_core.plugin.protocols.Rasterizer` protocols only.

Conventions:

- *canonical vertices* are ``model.vertices(identity, expression, eyes)`` mapped by
  ``model.to_canonical`` into EG3D tri-plane space; they carry identity and expression but no
  head pose, which lives in the camera (docs/design/preprocessing.md);
- *UV space* images (textures, unwraps) of size ``(Ht, Wt)`` hold at texel (row r, col c) the
  point ``u = (c + 0.5) / Wt``, ``v = (r + 0.5) / Ht`` of the model's UVs: rows follow +v, so
  ``grid_sample(texture, (2u - 1, 2v - 1), align_corners=False)`` reads texel (r, c). With OBJ
  UVs (v up) such images are upside down compared with OBJ texture files;
- the expression UV render stores ``(2u - 1, 2v - 1, face mask)`` per pixel, exactly the grid
  with which the prior samples its UV-space texture.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invertavatar_core.geometry.cameras import points_to_clip, project_points, split_camera
from invertavatar_core.geometry.normals import vertex_normals
from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.plugin.protocols import Fragments, MorphableModel, Rasterizer
from invertavatar_core.tensor_types import Camera, Float, Tensor

__all__ = [
    "FRONT_FACING_COSINE",
    "OCCLUSION_TOLERANCE",
    "RELEASE_FACE_ISLAND",
    "FaceIslandEnlargement",
    "canonical_vertices",
    "mouth_hole",
    "posed_fragments",
    "read_uv_mask",
    "render_expression_uv",
    "surface_depth",
    "unwrap_image",
    "uv_fragments",
    "uv_unwrap_grid",
]

FRONT_FACING_COSINE = 0.1
"""A texel is front-facing when its normal's cosine to the camera exceeds this (the release's normal z > 0.1)."""

OCCLUSION_TOLERANCE = 0.01
"""Canonical-space depth (the tri-plane box is 1 wide) by which a texel may lie behind the depth buffer."""

_CLIP_NEAR = 0.01
"""``near`` of the image-space clip coordinates; the depth buffer holds ``z/w = 1 - near / depth``."""


def canonical_vertices(
    model: MorphableModel, identity: Tensor, expression: Tensor, eyes: Tensor | None = None
) -> Float[Tensor, "B N 3"]:
    """Pose-free mesh ``(B, N, 3)`` in EG3D canonical space: ``model.to_canonical`` applied to ``model.vertices``."""
    vertices = model.vertices(identity, expression, eyes)
    m = model.to_canonical.to(vertices)
    return vertices @ m[:3, :3].T + m[:3, 3]


@dataclass(frozen=True)
class FaceIslandEnlargement:
    """A UV layout change: vertices whose UV lies strictly inside the box are scaled about the centre.

    With FaceVerse's UVs the released model scales the face island (u in (0.195, 0.805), v in
    (0.273, 0.727)) by 1.4 about (0.5, 0.5), so the face takes a larger share of the UV texture
    (docs/release-preprocessing.md). Both UV maps (the expression UV render and the unwrap) must use
    the same layout; the box is symmetric about 0.5, so it does not depend on the v direction.
    """

    u_range: tuple[float, float] = (0.195, 0.805)
    v_range: tuple[float, float] = (0.273, 0.727)
    scale: float = 1.4
    centre: tuple[float, float] = (0.5, 0.5)

    def apply(self, uvs: Float[Tensor, "N 2"]) -> Float[Tensor, "N 2"]:
        """Per-vertex UVs ``(N, 2)`` in the enlarged layout."""
        (u0, u1), (v0, v1) = self.u_range, self.v_range
        inside = (uvs[:, 0] > u0) & (uvs[:, 0] < u1) & (uvs[:, 1] > v0) & (uvs[:, 1] < v1)
        centre = torch.tensor(self.centre, dtype=uvs.dtype, device=uvs.device)
        return torch.where(inside[:, None], (uvs - centre) * self.scale + centre, uvs)


RELEASE_FACE_ISLAND = FaceIslandEnlargement()
"""The released model's UV face-island enlargement (for FaceVerse v3.1 UVs)."""


def read_uv_mask(path: str | Path, resolution: int) -> Float[Tensor, "1 1 R R"]:
    """A UV-space mask image (grayscale / 255) ``(1, 1, R, R)`` that multiplies the unwrap's visibility.

    The released model was trained with the visibility multiplied by its repository's
    ``dense_uv_expanded_mask_onlyFace.png`` (enlarged FaceVerse layout, 256^2); we cannot ship it.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: UV mask not found; pass the release's dense_uv_expanded_mask_onlyFace.png "
            "(data_preprocess/FaceVerse/v3/ in the authors' repository, not shipped with invertavatar)"
        )
    with Image.open(path) as image:
        gray = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32).copy()) / 255
    if gray.shape != (resolution, resolution):
        raise ValueError(f"{path}: UV mask is {tuple(gray.shape)}, the UV maps are ({resolution}, {resolution})")
    return gray[None, None]


def _vertex_uvs(model: MorphableModel, like: Tensor, face_island: FaceIslandEnlargement | None = None) -> Tensor:
    uvs = model.uvs.to(like)
    if uvs.ndim != 2 or uvs.shape[1] != 2:
        raise ValueError(f"model.uvs: expected (N, 2) per-vertex UVs, got shape {tuple(uvs.shape)}")
    return uvs if face_island is None else face_island.apply(uvs)


def render_expression_uv(
    model: MorphableModel,
    rasterizer: Rasterizer,
    identity: Float[Tensor, "B S"],
    expression: Float[Tensor, "B E"],
    eyes: Float[Tensor, "B Y"] | None = None,
    resolution: int = 256,
    *,
    face_island: FaceIslandEnlargement | None = None,
) -> Float[Tensor, "B 3 R R"]:
    """Orthographic expression UV render ``(B, 3, R, R)``: channels ``2u - 1``, ``2v - 1``, face mask.

    The pose-free canonical mesh is viewed from +z (the face, at the largest z, is nearest) over
    exactly the face window of plane 0 (x in [-0.25, 0.25), y in [-0.27734375, 0.22265625));
    rows follow +y and columns +x, as in plane 0. The mask is the interpolated
    ``model.face_mask`` thresholded at 0.5. Uncovered pixels are 0 in all three channels (as in
    the released renders), so u = v = 0 there means nothing without the mask.
    """
    vertices = canonical_vertices(model, identity, expression, eyes)
    window = face_window(256)  # the window's canonical extent is the same at every resolution
    (x0, x1), (y0, y1) = window.x_range, window.y_range
    half = torch.tensor([(x1 - x0) / 2, (y1 - y0) / 2], dtype=vertices.dtype, device=vertices.device)
    centre = torch.tensor([(x1 + x0) / 2, (y1 + y0) / 2], dtype=vertices.dtype, device=vertices.device)
    xy = (vertices[..., :2] - centre) / half
    # Orthographic: w = 1, and z/w = -z so that the largest z (the face) is nearest.
    clip = torch.cat([xy, -vertices[..., 2:], torch.ones_like(vertices[..., :1])], -1)
    faces = model.faces.to(vertices.device)
    fragments = rasterizer.rasterize(clip, faces, resolution, resolution)
    uvs = _vertex_uvs(model, vertices, face_island)
    attributes = torch.cat([2 * uvs - 1, model.face_mask.to(vertices)[:, None]], -1)[None]
    out = rasterizer.interpolate(attributes, fragments, faces).permute(0, 3, 1, 2)
    mask = ((out[:, 2:] > 0.5) & fragments.mask[:, None]).to(out.dtype)
    return torch.cat([out[:, :2], mask], 1)


def _spread_along_lines(reached: Tensor, free: Tensor) -> Tensor:
    """``(M, L)`` bool: mark every free pixel whose run of free pixels along a line holds a reached one."""
    m, length = free.shape
    # Each blocked pixel starts a new run; runs of different lines get disjoint ids.
    run = (~free).cumsum(-1) + torch.arange(m, device=free.device)[:, None] * (length + 1)
    hits = torch.zeros(m * (length + 1), dtype=torch.int32, device=free.device)
    hits.index_add_(0, run.reshape(-1), reached.reshape(-1).to(torch.int32))
    return (hits[run] > 0) & free


def mouth_hole(mask: Float[Tensor, "B 1 H W"], max_sweeps: int | None = None) -> Float[Tensor, "B 1 H W"]:
    """Pixels ``(B, 1, H, W)`` outside ``mask`` that the image border cannot reach: holes enclosed by it.

    A flood fill of the non-mask region from every border pixel, 4-connected (a diagonal step
    between mask pixels does not leak). Each sweep spreads reachability along whole rows, then
    whole columns, of non-mask runs, so a fill converges in about as many sweeps as its paths
    have turns (a handful for a face), not as many as they have pixels. What stays unreached is
    the mouth interior and any eye hole (docs/design/prior.md). ``mask`` is thresholded at 0.5; the
    result is a float {0, 1} map like the input.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask: expected (B, 1, H, W), got shape {tuple(mask.shape)}")
    b, _, h, w = mask.shape
    free = mask[:, 0] < 0.5
    border = torch.zeros_like(free)
    border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    reached = free & border
    free_cols = free.transpose(1, 2).reshape(b * w, h)
    for _ in range(max_sweeps if max_sweeps is not None else h * w):
        before = reached
        reached = _spread_along_lines(reached.reshape(b * h, w), free.reshape(b * h, w)).view(b, h, w)
        cols = _spread_along_lines(reached.transpose(1, 2).reshape(b * w, h), free_cols)
        reached = cols.view(b, w, h).transpose(1, 2)
        if torch.equal(reached, before):
            break
    hole = (free & ~reached)[:, None]
    return hole.to(mask.dtype if mask.is_floating_point() else torch.float32)


def posed_fragments(
    rasterizer: Rasterizer,
    vertices: Float[Tensor, "B N 3"],
    faces: Tensor,
    camera: Camera,
    resolution: int,
) -> Fragments:
    """The canonical mesh ``vertices (B, N, 3)`` seen through ``camera (B, 25)``, rasterised at ``resolution``.

    Its depth buffer is the one :func:`uv_unwrap_grid` tests occlusion against.
    """
    clip = points_to_clip(vertices, camera.to(vertices), near=_CLIP_NEAR)
    return rasterizer.rasterize(clip, faces.to(vertices.device), resolution, resolution)


def surface_depth(fragments: Fragments) -> Float[Tensor, "B H W"]:
    """Camera depth ``(B, H, W)`` of the nearest surface in :func:`posed_fragments` (huge where nothing is drawn)."""
    return _CLIP_NEAR / (1 - fragments.depth).clamp(min=1e-12)  # clip z / w = 1 - near / depth


def uv_fragments(
    model: MorphableModel,
    rasterizer: Rasterizer,
    resolution: int,
    *,
    face_island: FaceIslandEnlargement | None = None,
    like: Tensor | None = None,
) -> Fragments:
    """The model's UV layout rasterised at ``resolution`` (vertices at ``(2u - 1, 2v - 1)``): ``(1, R, R)`` fragments.

    The same for every frame of a model, so a caller unwrapping many batches rasterises it once
    and hands it to :func:`uv_unwrap_grid`. ``like``: a tensor giving the device and dtype.
    """
    like = model.uvs if like is None else like
    uvs = _vertex_uvs(model, like, face_island)
    uv_clip = torch.cat([2 * uvs - 1, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], -1)[None]
    return rasterizer.rasterize(uv_clip, model.faces.to(uvs.device), resolution, resolution)


def uv_unwrap_grid(
    model: MorphableModel,
    rasterizer: Rasterizer,
    identity: Float[Tensor, "B S"],
    expression: Float[Tensor, "B E"],
    eyes: Float[Tensor, "B Y"] | None,
    camera: Camera,
    *,
    uv_resolution: int = 256,
    image_resolution: int = 512,
    occlusion_tolerance: float = OCCLUSION_TOLERANCE,
    face_island: FaceIslandEnlargement | None = None,
    image_fragments: Fragments | None = None,
    layout_fragments: Fragments | None = None,
) -> tuple[Float[Tensor, "B Ht Wt 2"], Float[Tensor, "B 1 Ht Wt"]]:
    """Texel -> image position ``grid (B, Ht, Wt, 2)`` in [-1, 1] and ``visibility (B, 1, Ht, Wt)``.

    The mesh is the *canonical* one (:func:`canonical_vertices`, identity and expression, no
    pose) seen through the EG3D ``camera`` (which carries the head pose). It is rasterised in UV
    space (vertices at ``(2u - 1, 2v - 1)``), each texel's 3D point is interpolated and
    projected: ``grid`` follows ``grid_sample(align_corners=False)``, so it is independent of the
    resolution of the image later sampled. ``visibility`` (0 or 1) = texel covered in UV space
    x front-facing (cosine between the outward vertex normal, interpolated, and the direction to
    the camera > :data:`FRONT_FACING_COSINE`) x UV face mask > 0.5
    x inside the image x not occluded (within ``occlusion_tolerance`` of the depth buffer of the
    posed mesh rendered at ``image_resolution``). Uncovered texels get grid 0.

    ``image_fragments``: that posed render, when the caller already has it (:func:`posed_fragments`
    of the same mesh, camera and ``image_resolution``, e.g. to draw an overlay): not rasterised again.
    ``layout_fragments``: :func:`uv_fragments` of the same model, ``uv_resolution`` and ``face_island``,
    when the caller keeps it across batches.
    """
    vertices = canonical_vertices(model, identity, expression, eyes)
    b, n, _ = vertices.shape
    if camera.shape != (b, 25):
        raise ValueError(f"camera: expected ({b}, 25) EG3D labels to match the batch, got shape {tuple(camera.shape)}")
    camera = camera.to(vertices)
    faces = model.faces.to(vertices.device)
    normals = vertex_normals(vertices, faces)
    # Orient normals outwards whatever the model's winding: the volume they enclose around the
    # mesh centroid must be positive (true for closed heads and for open face shells alike).
    corners = vertices[:, faces] - vertices.mean(1, keepdim=True)[:, None]  # (B, F, 3, 3)
    volume = (corners[:, :, 0] * torch.linalg.cross(corners[:, :, 1], corners[:, :, 2], dim=-1)).sum((1, 2))
    normals = torch.where(volume[:, None, None] < 0, -normals, normals)

    # One UV-space rasterisation serves the whole batch: per-frame attributes go in channels.
    if layout_fragments is None:
        layout_fragments = uv_fragments(model, rasterizer, uv_resolution, face_island=face_island, like=vertices)
    elif layout_fragments.depth.shape != (1, uv_resolution, uv_resolution):
        raise ValueError(
            f"layout_fragments: expected (1, {uv_resolution}, {uv_resolution}), "
            f"got {tuple(layout_fragments.depth.shape)}"
        )
    per_frame = torch.cat([vertices, normals], -1).permute(1, 0, 2).reshape(1, n, b * 6)
    attributes = torch.cat([per_frame, model.face_mask.to(vertices)[None, :, None]], -1)
    texels = rasterizer.interpolate(attributes, layout_fragments, faces)[0]  # (Ht, Wt, 6B + 1)
    texels = texels.permute(2, 0, 1)  # channel-first
    points = texels[: 6 * b].reshape(b, 6, uv_resolution, uv_resolution)[:, :3]
    texel_normals = texels[: 6 * b].reshape(b, 6, uv_resolution, uv_resolution)[:, 3:]
    covered = layout_fragments.mask[0][None, None].expand(b, 1, -1, -1)
    in_face = (texels[6 * b :] > 0.5)[None].expand(b, 1, -1, -1)

    flat_points = points.flatten(2).transpose(1, 2)  # (B, Ht*Wt, 3)
    pixels, depth = project_points(flat_points, camera, image_resolution)
    grid = pixels / image_resolution * 2 - 1
    inside = (grid.abs() < 1).all(-1) & (depth > 0)

    cam2world, _ = split_camera(camera)
    # Contiguous before normalising: torch's norm over a strided last dimension is ~10x slower on CPU.
    to_camera = F.normalize((cam2world[:, None, :3, 3] - flat_points).contiguous(), dim=-1)
    texel_directions = F.normalize(texel_normals.flatten(2).transpose(1, 2).contiguous(), dim=-1)
    facing = (texel_directions * to_camera).sum(-1) > FRONT_FACING_COSINE

    # Occlusion: the texel's depth against the posed mesh's depth buffer at its pixel (nearest).
    if image_fragments is None:
        image_fragments = posed_fragments(rasterizer, vertices, faces, camera, image_resolution)
    elif image_fragments.depth.shape != (b, image_resolution, image_resolution):
        raise ValueError(
            f"image_fragments: expected ({b}, {image_resolution}, {image_resolution}), "
            f"got {tuple(image_fragments.depth.shape)}"
        )
    buffer_depth = surface_depth(image_fragments).flatten(1)
    col = pixels[..., 0].floor().long().clamp(0, image_resolution - 1)
    row = pixels[..., 1].floor().long().clamp(0, image_resolution - 1)
    nearest = buffer_depth.gather(1, row * image_resolution + col)
    unoccluded = depth <= nearest + occlusion_tolerance

    seen = (inside & facing & unoccluded).view(b, 1, uv_resolution, uv_resolution) & covered & in_face
    grid = torch.where(covered.view(b, -1, 1), grid, 0.0).view(b, uv_resolution, uv_resolution, 2)
    return grid, seen.to(vertices.dtype)


def unwrap_image(
    image: Float[Tensor, "B C H W"],
    grid: Float[Tensor, "B Ht Wt 2"],
    visibility: Float[Tensor, "B 1 Ht Wt"],
    fill: float = 1.0,
) -> Float[Tensor, "B C Ht Wt"]:
    """Sample ``image`` at each texel's grid position (bilinear), ``fill`` where not visible.

    ``fill = 1`` is white for images in [-1, 1] (docs/design/preprocessing.md); the pipeline unwraps the
    residual with -1. A soft visibility blends ``sampled * v + fill * (1 - v)``.
    """
    if image.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(
            f"image (B, C, H, W) and grid (B, Ht, Wt, 2) expected, got {tuple(image.shape)} and {tuple(grid.shape)}"
        )
    if visibility.shape != (grid.shape[0], 1, *grid.shape[1:3]):
        raise ValueError(f"visibility: expected {(grid.shape[0], 1, *grid.shape[1:3])}, got {tuple(visibility.shape)}")
    sampled = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    v = visibility.to(image.dtype)
    return sampled * v + fill * (1 - v)
