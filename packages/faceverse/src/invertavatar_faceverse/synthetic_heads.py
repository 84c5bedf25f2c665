"""Procedurally rendered heads written in the ``fit`` dataset layout (for training and eval tests).

Each identity gets random shape coefficients, a painted UV albedo (skin tone with smooth
blotches, hair on the scalp, brows, lips, irises, a dark mouth interior) with details that only
some views reveal (marks on one cheek, hair longer on one side with a tilted hairline, ears with an
earring on the other side), one light direction and one smooth background. Each sequence is a
talking head: yaw, pitch, gaze and the blendshape weights follow smooth curves in time (the yaw
reaching up to ``yaw_range``, 60 degrees by default). Frames are rendered with Lambertian shading
and written with everything ``invertavatar preprocess`` writes (image, EG3D camera, expression UV
render, unwrap grid and visibility, coefficients, landmarks, preview unwrap), plus the head mask
of each frame and the painted albedo of each identity (``textures/<seq>.png``).

Splits: every identity has its own seed, and the ``train`` and ``heldout`` splits draw them from
disjoint ranges (:data:`SPLIT_SEEDS`), so no held-out head is ever a training head whatever
``seed`` and ``identities`` are; ``dataset.json["synthetic"]`` records the split and each
sequence's identity seed.
"""

import json
import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.geometry.cameras import look_at_camera, project_points
from invertavatar_core.geometry.uv_maps import canonical_vertices, render_expression_uv, unwrap_image, uv_unwrap_grid
from invertavatar_core.io.media import save_image
from invertavatar_faceverse.landmark_maps import LANDMARK_MAP_RESOLUTION, landmark_contour_map
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS
from invertavatar_faceverse.mesh_render import render_mesh

__all__ = [
    "SEEDS_PER_SPLIT",
    "SPLIT_SEEDS",
    "SyntheticHeadsConfig",
    "identity_seeds",
    "paint_albedo",
    "smooth_trajectory",
    "synthesize_heads",
]

SEEDS_PER_SPLIT = 1_000_000
"""Identity seeds of one split: ``SPLIT_SEEDS[split] + [0, SEEDS_PER_SPLIT)``."""

SPLIT_SEEDS = {"train": 0, "heldout": SEEDS_PER_SPLIT}
"""First identity seed of each split; the ranges never overlap."""

SEQUENCE_PREFIX = {"train": "id", "heldout": "heldout"}
"""Sequence names: ``id0000``, ... for training heads, ``heldout0000``, ... for held-out ones."""


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
    yaw_range: float = Field(math.radians(60), ge=0, le=1.5)
    """Largest camera yaw (radians) around the frontal view; each sequence's curve peaks at 60-100% of it."""
    pitch_range: float = Field(0.25, ge=0, le=1.0)
    """Largest camera pitch (radians)."""
    gaze_range: float = 0.25
    """Largest eye pitch / yaw (radians, models with eyes)."""
    split: Literal["train", "heldout"] = "train"
    """Which identity-seed range the heads come from (:data:`SPLIT_SEEDS`)."""
    seed: int = Field(0, ge=0)
    """Identity ``k`` uses seed ``SPLIT_SEEDS[split] + seed + k``; everything about it derives from that."""
    details: bool = True
    """Paint the view-dependent details (cheek marks, asymmetric hair, ears and earring)."""

    def model_post_init(self, _context: object) -> None:
        """Keep every identity seed inside its split's range."""
        if self.seed + self.identities > SEEDS_PER_SPLIT:
            raise ValueError(
                f"synth-heads: seed {self.seed} + identities {self.identities} leaves the {self.split} seed range "
                f"(at most {SEEDS_PER_SPLIT})"
            )


def identity_seeds(config: SyntheticHeadsConfig) -> dict[str, int]:
    """Sequence name -> identity seed, in writing order."""
    base, prefix = SPLIT_SEEDS[config.split] + config.seed, SEQUENCE_PREFIX[config.split]
    return {f"{prefix}{config.seed + k:04d}": base + k for k in range(config.identities)}


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


def paint_albedo(
    model, rasterizer, identity: Tensor, generator: torch.Generator, resolution: int = 256, *, details: bool = True
) -> Tensor:
    """A UV-space albedo ``(1, 3, R, R)`` in [-1, 1] for one identity ``(1, S)`` of ``model``.

    ``details`` paints what only some views reveal: marks on one cheek, hair that reaches the jaw
    on one side under a tilted hairline, ears with an earring on the other side. The same
    random numbers are drawn either way, so ``details=False`` gives the same head without them.
    """
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
    draws = _detail_draws(generator)
    hairline = eye_level + 0.03
    if details:
        hairline = hairline + draws["hair_tilt"] * pos[..., 0]
    scalp = covered & (face < 0.5) & ~eyeball & (pos[..., 1] > hairline)
    if details:
        albedo = _paint_ears(albedo, pos, covered & (face < 0.5) & ~eyeball, lm, skin, -draws["side"])
        mouth_level = lm[[0, 17]][:, 1].mean()
        long_side = covered & (face < 0.5) & ~eyeball & (draws["side"] * pos[..., 0] > 0.03)
        scalp = scalp | (long_side & (pos[..., 1] > mouth_level))
    albedo = torch.where(scalp[..., None], hair * (1 + 0.1 * blotch), albedo)
    if details:
        albedo = _paint_cheek_marks(albedo, pos, covered & (face > 0.5) & ~eyeball, lm, draws)

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


def _detail_draws(generator: torch.Generator) -> dict:
    """The random numbers of the view-dependent details (always drawn, painted or not)."""
    side = 1.0 if float(torch.rand(1, generator=generator)) < 0.5 else -1.0
    tilt = (0.15 + 0.35 * float(torch.rand(1, generator=generator))) * side
    marks = torch.rand(4, 3, generator=generator)  # per mark: offset x, offset y, size
    tint = torch.rand(1, generator=generator)
    return {"side": side, "hair_tilt": tilt, "marks": marks, "mark_tint": float(tint)}


def _side_point(lm: Tensor, indices: list[int], side: float) -> Tensor:
    """The landmark among ``indices`` on the ``side`` (sign of x) of the face."""
    points = lm[indices]
    return points[int(torch.argmax(points[:, 0] * side))]


def _paint_cheek_marks(albedo: Tensor, pos: Tensor, allowed: Tensor, lm: Tensor, draws: dict) -> Tensor:
    """A birthmark and moles on the ``side`` cheek, between the outer eye corner and the mouth corner."""
    side = draws["side"]
    eye = _side_point(lm, [33, 263], side)
    mouth = _side_point(lm, [61, 291], side)
    centre = torch.stack([eye[0] * 1.05 + side * 0.01, 0.4 * eye[1] + 0.6 * mouth[1]])
    colour = (
        torch.tensor([0.32, 0.17, 0.1]) * (1 - draws["mark_tint"])
        + torch.tensor([0.55, 0.12, 0.12]) * draws["mark_tint"]
    )
    xy = pos[..., :2]
    for k, (dx, dy, size) in enumerate(draws["marks"].tolist()):
        offset = torch.tensor([side * (dx - 0.5) * 0.03, (dy - 0.5) * 0.04]) if k else torch.zeros(2)
        radius = (0.018 + 0.008 * size) if k == 0 else (0.006 + 0.005 * size)
        spot = allowed & ((xy - centre - offset).norm(dim=-1) < radius)
        albedo = torch.where(spot[..., None], colour, albedo)
    return albedo


def _paint_ears(albedo: Tensor, pos: Tensor, allowed: Tensor, lm: Tensor, skin: Tensor, earring_side: float) -> Tensor:
    """Ears on both sides of the head (the mesh has none): a darker oval with a dark concha, and a gold earring."""
    eye_y = lm[[33, 263]][:, 1].mean()
    nose_y = lm[1, 1]
    band = allowed & (pos[..., 1] < eye_y) & (pos[..., 1] > nose_y - 0.02)
    for side in (1.0, -1.0):
        x = torch.where(band, pos[..., 0] * side, torch.full_like(pos[..., 0], -1e9))
        flat = int(torch.argmax(x))
        centre = pos.reshape(-1, 3)[flat]
        d = (pos[..., 1:] - centre[1:]) / torch.tensor([0.045, 0.03])
        near = allowed & (pos[..., 0] * side > centre[0] * side - 0.04)
        ear = near & ((d**2).sum(-1) < 1)
        albedo = torch.where(ear[..., None], skin * 0.8, albedo)
        albedo = torch.where((near & ((d**2).sum(-1) < 0.25))[..., None], skin * 0.45, albedo)
        if side == earring_side:
            lobe = centre[1:] - torch.tensor([0.042, 0.0])
            ring = near & ((pos[..., 1:] - lobe).norm(dim=-1) < 0.012)
            albedo = torch.where(ring[..., None], torch.tensor([0.95, 0.78, 0.2]), albedo)
    return albedo


def smooth_trajectory(generator: torch.Generator, frames: int, amplitude: float, cycles: float = 1.5) -> Tensor:
    """``(T,)`` a smooth curve peaking at 60-100% of ``amplitude`` (two sines, up to ``cycles`` per sequence)."""
    f = (0.3 + torch.rand(2, generator=generator) * (cycles - 0.3)).tolist()
    phase = (torch.rand(2, generator=generator) * 2 * math.pi).tolist()
    peak = amplitude * (0.6 + 0.4 * float(torch.rand(1, generator=generator)))

    def curve(t: Tensor) -> Tensor:
        return torch.sin(2 * math.pi * f[0] * t + phase[0]) + 0.5 * torch.sin(2 * math.pi * f[1] * t + phase[1])

    # Normalised on a dense grid of the whole curve, so short sequences are samples of the same motion.
    scale = curve(torch.linspace(0, 1, 257)).abs().max().clamp_min(1e-6)
    t = torch.arange(frames, dtype=torch.float32) / max(frames - 1, 1)
    return peak * curve(t) / scale


def _background(generator: torch.Generator, size: int) -> Tensor:
    """``(1, 3, R, R)`` a vertical two-colour gradient in [-1, 1] (one per identity)."""
    top, bottom = torch.rand(1, 3, 1, 1, generator=generator), torch.rand(1, 3, 1, 1, generator=generator)
    t = torch.linspace(0, 1, size).view(1, 1, size, 1)
    return (top * (1 - t) + bottom * t) * 2 - 1


def _expressions(generator: torch.Generator, frames: int, names: tuple[str, ...], active: int) -> Tensor:
    """``(T, E)`` smooth blendshape curves: ``active`` shapes (``jaw_open`` among them, as in speech)."""
    n = len(names)
    out = torch.zeros(frames, n)
    chosen = torch.randperm(n, generator=generator)[:active].tolist()
    if "jaw_open" in names and active > 0 and names.index("jaw_open") not in chosen:
        chosen[0] = names.index("jaw_open")
    t = torch.arange(frames, dtype=torch.float32) / max(frames - 1, 1)
    for j in chosen:
        rate = 1.0 + 2.0 * float(torch.rand(1, generator=generator))
        phase = float(torch.rand(1, generator=generator)) * 2 * math.pi
        weight = 0.4 + 0.6 * float(torch.rand(1, generator=generator))
        out[:, j] = weight * torch.sin(2 * math.pi * rate * t + phase).clamp_min(0)
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

    seeds = identity_seeds(config)
    meta_path = Path(out) / "dataset.json"
    old = json.loads(meta_path.read_text(encoding="utf-8")).get("synthetic", {}) if meta_path.is_file() else {}
    if old.get("split", config.split) != config.split:
        raise ValueError(
            f"{meta_path}: 'synthetic.split' is {old.get('split')!r}, not {config.split!r}; use another --out"
        )
    extra = {
        "synthetic": {
            "split": config.split,
            "seed_ranges": {k: [v, v + SEEDS_PER_SPLIT] for k, v in SPLIT_SEEDS.items()},
            "identity_seeds": {**old.get("identity_seeds", {}), **seeds},
            "config": config.model_dump(mode="json"),
        }
    }
    writer = FitDatasetWriter(
        out, model_config or {"name": "unknown"}, config.resolution, config.uv_resolution, extra=extra
    )
    r, t = config.resolution, config.frames_per_identity
    names = tuple(getattr(model, "expression_names", ()))
    bar = tqdm(total=config.identities * t, desc="rendering heads", unit="frame", disable=not progress)
    for sequence, seed in seeds.items():
        writer.begin_sequence(sequence)  # frames of an earlier, longer run leave the index
        generator = torch.Generator().manual_seed(seed)
        identity = config.identity_scale * torch.randn(1, model.n_identity, generator=generator)
        texture = paint_albedo(
            model, rasterizer, identity, generator, config.texture_resolution, details=config.details
        )
        save_image(texture[0], Path(out) / "textures" / f"{sequence}.png")
        expression = _expressions(generator, t, names or tuple(map(str, range(model.n_expression))),
                                  config.max_active_expressions)  # fmt: skip
        eyes = None
        if model.n_eye:
            gaze = [smooth_trajectory(generator, t, config.gaze_range, cycles=3.0) for _ in range(2)]
            eyes = torch.stack(gaze, -1).repeat(1, model.n_eye // 2)  # both eyes look the same way
        yaw = smooth_trajectory(generator, t, config.yaw_range)
        pitch = smooth_trajectory(generator, t, config.pitch_range)
        camera = look_at_camera(yaw, pitch)
        light = F.normalize(torch.randn(1, 3, generator=generator) * 0.5 + torch.tensor([0.0, 0.5, 1.0]), dim=-1)
        background = _background(generator, r)
        ids = identity.expand(t, -1)
        with torch.no_grad():
            verts = canonical_vertices(model, ids, expression, eyes)
            head, mask = render_mesh(
                rasterizer, verts, model.faces, camera, r, uvs=model.uvs, texture=texture, light=light.expand(t, -1)
            )
            image = head * mask + background * (1 - mask)
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
                    head_mask=mask[i],
                ),
            )
            bar.update(1)
    bar.close()
    return Path(out)
