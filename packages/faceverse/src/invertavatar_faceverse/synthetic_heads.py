"""Procedurally rendered heads written in the ``fit`` dataset layout (for training and eval tests).

Each identity gets random shape coefficients and a painted UV albedo (skin tone with smooth
blotches, hair on the scalp, brows, lips, irises, a dark mouth interior); each frame a random
sparse expression, a small gaze, a look-at camera, a light direction and a smooth background.
Frames are rendered with Lambertian shading and written with everything ``invertavatar fit``
writes (image, EG3D camera, expression UV render, unwrap grid and visibility, coefficients,
landmarks, preview unwrap), so readers cannot tell the two apart.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.geometry.cameras import look_at_camera, project_points
from invertavatar_core.geometry.uv_maps import canonical_vertices, render_expression_uv, unwrap_image, uv_unwrap_grid
from invertavatar_faceverse.landmark_maps import LANDMARK_MAP_RESOLUTION, landmark_contour_map
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS
from invertavatar_faceverse.mesh_render import render_mesh

__all__ = ["SyntheticHeadsConfig", "paint_albedo", "synthesize_heads"]


class SyntheticHeadsConfig(BaseModel):
    """What ``invertavatar synth-heads`` renders."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    identities: int = Field(4, ge=1)
    """Number of random identities (one sequence each)."""
    frames_per_identity: int = Field(8, ge=1)
    """Frames rendered per identity."""
    resolution: int = Field(128, ge=64, le=512)
    """Square image size."""
    uv_resolution: int = Field(64, ge=16, le=512)
    """Size of the expression UV render and of the UV unwrap."""
    texture_resolution: int = Field(256, ge=32)
    """Size of the painted albedo."""
    identity_scale: float = 0.8
    """Standard deviation of the identity coefficients (the model's modes are unit variance)."""
    max_active_expressions: int = Field(3, ge=0)
    """Blendshapes switched on per frame (each with a uniform weight)."""
    yaw_range: float = 0.45
    """Camera yaw drawn from [-range, range] radians around the frontal view."""
    pitch_range: float = 0.25
    """Camera pitch drawn from [-range, range] radians."""
    gaze_range: float = 0.25
    """Eye pitch / yaw drawn from [-range, range] radians (models with eyes)."""
    seed: int = 0
    """Everything random derives from it."""


def _smooth_noise(generator: torch.Generator, size: int, waves: int = 6) -> Tensor:
    """``(size, size)`` smooth noise in about [-1, 1]: a few random low-frequency cosines."""
    coords = (torch.arange(size) + 0.5) / size
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.zeros(size, size)
    for _ in range(waves):
        fu, fv = (torch.rand(2, generator=generator) * 6).tolist()
        phase = float(torch.rand(1, generator=generator)) * 2 * math.pi
        out += torch.cos(2 * math.pi * (fu * u + fv * v) + phase)
    return out / math.sqrt(waves)


def _segment_distance(points: Tensor, path: Tensor) -> Tensor:
    """``(P,)`` distance from ``points (P, 2)`` to the polyline ``path (K, 2)``."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = ((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)
    closest = a[None] + t.clamp(0, 1)[..., None] * ab[None]
    return (points[:, None] - closest).norm(dim=-1).amin(1)


def paint_albedo(model, rasterizer, identity: Tensor, generator: torch.Generator, resolution: int = 256) -> Tensor:
    """A UV-space albedo ``(1, 3, R, R)`` in [-1, 1] for one identity ``(1, S)`` of ``model``."""
    verts = canonical_vertices(model, identity, torch.zeros(1, model.n_expression))[0]
    uvs = model.uvs.to(verts)
    faces = model.faces
    eye = getattr(model, "eye_label", torch.zeros(model.n_vertices, dtype=torch.int64)).to(verts)
    clip = torch.cat([2 * uvs - 1, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], -1)[None]
    fragments = rasterizer.rasterize(clip, faces, resolution, resolution)
    attrs = torch.cat([verts, model.face_mask.to(verts)[:, None], (eye > 0).to(verts)[:, None]], -1)[None]
    texel = rasterizer.interpolate(attrs, fragments, faces)[0]  # (R, R, 5)
    pos, face, eyeball = texel[..., :3], texel[..., 3], texel[..., 4] > 0.5
    covered = fragments.mask[0]
    lm = verts[model.landmark_indices]

    tone = torch.rand(1, generator=generator)
    skin = torch.tensor([0.93, 0.76, 0.64]) * (1 - tone) + torch.tensor([0.45, 0.30, 0.22]) * tone
    blotch = _smooth_noise(generator, resolution)[..., None]
    albedo = skin * (1 + 0.06 * blotch)
    hair = torch.tensor([0.12, 0.09, 0.07]) + 0.25 * torch.rand(3, generator=generator)
    eye_level = lm[list(CONTOURS["right_eye_upper"])][:, 1].mean()
    scalp = covered & (face < 0.5) & ~eyeball & (pos[..., 1] > eye_level + 0.03)
    albedo = torch.where(scalp[..., None], hair * (1 + 0.1 * blotch), albedo)

    xy = pos[..., :2].reshape(-1, 2)
    front = (pos[..., 2] > lm[:, 2].min()).reshape(-1)
    for run in ("right_brow_upper", "right_brow_lower", "left_brow_upper", "left_brow_lower"):
        near = (_segment_distance(xy, lm[list(CONTOURS[run])][:, :2]) < 0.006) & front
        albedo = torch.where((near.view(resolution, resolution) & ~eyeball)[..., None], hair, albedo)
    corners = lm[[61, 291]]
    centre = 0.5 * (lm[0] + lm[17])[:2]
    half = torch.stack([0.5 * (corners[1, 0] - corners[0, 0]).abs(), 0.5 * (lm[0, 1] - lm[17, 1]).abs()])
    inside = (((xy - centre) / half.clamp_min(1e-6)) ** 2).sum(-1) < 1.0
    lips = (inside & front).view(resolution, resolution) & ~eyeball
    lip_colour = skin * torch.tensor([0.85, 0.55, 0.55])
    albedo = torch.where((lips & (face > 0.5))[..., None], lip_colour, albedo)
    albedo = torch.where((lips & (face < 0.5))[..., None], torch.tensor([0.25, 0.05, 0.06]), albedo)

    if bool(eyeball.any()):
        iris_colour = torch.tensor([0.35, 0.22, 0.1]) + 0.3 * torch.rand(3, generator=generator)
        albedo = torch.where(eyeball[..., None], torch.tensor([0.92, 0.9, 0.88]), albedo)
        for run in ("right_iris", "left_iris"):
            ids = list(CONTOURS[run])
            radius = (lm[ids[1:]] - lm[ids[0]]).norm(dim=-1).mean()
            d = (pos - lm[ids[0]]).norm(dim=-1)
            albedo = torch.where((eyeball & (d < radius))[..., None], iris_colour, albedo)
            albedo = torch.where((eyeball & (d < 0.45 * radius))[..., None], torch.tensor([0.03, 0.03, 0.03]), albedo)
    return (albedo.clamp(0, 1) * 2 - 1).permute(2, 0, 1)[None]


def _background(generator: torch.Generator, b: int, size: int) -> Tensor:
    top, bottom = torch.rand(b, 3, 1, 1, generator=generator), torch.rand(b, 3, 1, 1, generator=generator)
    t = torch.linspace(0, 1, size).view(1, 1, size, 1)
    return (top * (1 - t) + bottom * t) * 2 - 1


def _expressions(generator: torch.Generator, b: int, n: int, active: int) -> Tensor:
    out = torch.zeros(b, n)
    for i in range(b):
        k = int(torch.randint(0, active + 1, (1,), generator=generator))
        idx = torch.randperm(n, generator=generator)[:k]
        out[i, idx] = torch.rand(k, generator=generator)
    return out


def synthesize_heads(
    out: str | Path,
    config: SyntheticHeadsConfig,
    model,
    rasterizer,
    *,
    model_config: dict | None = None,
    progress: bool = True,
) -> Path:
    """Render ``config.identities`` x ``config.frames_per_identity`` frames into ``out``.

    ``model`` is any morphable model (the procedural head by default in the command) and
    ``rasterizer`` any Rasterizer; ``model_config`` is recorded in ``dataset.json``.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(config.seed)
    writer = FitDatasetWriter(out, model_config or {"name": "unknown"}, config.resolution, config.uv_resolution)
    r, t = config.resolution, config.frames_per_identity
    bar = tqdm(total=config.identities * t, desc="rendering heads", unit="frame", disable=not progress)
    for k in range(config.identities):
        sequence = f"id{k:04d}"
        writer.begin_sequence(sequence)  # frames of an earlier, longer run leave the index
        identity = config.identity_scale * torch.randn(1, model.n_identity, generator=generator)
        texture = paint_albedo(model, rasterizer, identity, generator, config.texture_resolution)
        expression = _expressions(generator, t, model.n_expression, config.max_active_expressions)
        eyes = (torch.rand(t, model.n_eye, generator=generator) * 2 - 1) * config.gaze_range if model.n_eye else None
        yaw = (torch.rand(t, generator=generator) * 2 - 1) * config.yaw_range
        pitch = (torch.rand(t, generator=generator) * 2 - 1) * config.pitch_range
        camera = look_at_camera(yaw, pitch)
        ids = identity.expand(t, -1)
        with torch.no_grad():
            verts = canonical_vertices(model, ids, expression, eyes)
            light = F.normalize(torch.randn(t, 3, generator=generator) * 0.5 + torch.tensor([0.0, 0.5, 1.0]), dim=-1)
            head, mask = render_mesh(
                rasterizer, verts, model.faces, camera, r, uvs=model.uvs, texture=texture, light=light
            )
            image = head * mask + _background(generator, t, r) * (1 - mask)
            expression_uv = render_expression_uv(
                model, rasterizer, ids, expression, eyes, resolution=config.uv_resolution
            )
            grid, visibility = uv_unwrap_grid(
                model, rasterizer, ids, expression, eyes, camera, uv_resolution=config.uv_resolution, image_resolution=r
            )
            unwrap = unwrap_image(image, grid, visibility)
            landmarks, _ = project_points(verts[:, model.landmark_indices], camera, r)
        for i in range(t):
            frame = f"{i:05d}"
            writer.add(
                sequence,
                frame,
                FittedFrame(
                    image=image[i],
                    camera=camera[i],
                    expression_uv=expression_uv[i],
                    unwrap_grid=grid[i],
                    visibility=visibility[i],
                    identity=identity[0],
                    expression=expression[i],
                    eyes=None if eyes is None else eyes[i],
                    landmarks=landmarks[i],
                    landmark_map=landmark_contour_map(landmarks[i], r, LANDMARK_MAP_RESOLUTION),
                    unwrap_rgb=unwrap[i],
                ),
            )
            bar.update(1)
    bar.close()
    return Path(out)
