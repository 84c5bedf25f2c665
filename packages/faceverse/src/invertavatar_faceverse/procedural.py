"""A head model generated in code: closed mesh, UVs, identity modes, named blendshapes, eyes.

No data file is read: the mesh is a latitude/longitude grid around a head built from a skull,
a jaw and a neck (smoothly united), with the face carved in as a height field (brows, eye
sockets, nose, cheekbones, lips, chin). The eyeballs are separate spheres that show through the
lid opening, where the skin is recessed behind them; the lips meet along a band of thin rows
that, when the mouth opens, fold into the head as the mouth cavity. Identity modes are smooth
warps; expressions are named blendshapes (``jaw_open``, ``smile_left``, ``blink_right``, ...).

Model space is centimetres with x towards the subject's left, y up and z out of the face, the
origin roughly at the centre of the head at ear level (the same axes as MediaPipe's canonical
mesh and ICT). Everything is deterministic given the config.

Vertex layout: ``rows_total x (columns + 1)`` grid vertices (row 0 is the crown, the last row the
bottom of the neck, column ``columns`` repeats column 0 at the back seam), then the right and the
left eyeball. The mesh is watertight as a surface; the UV seam at the back and the collapsed
pole rows duplicate vertex positions (their zero-area triangles are dropped).

UV layout (v up): the face is one island over the rectangle ``u in [0.03, 0.97], v in [0.05,
0.90]`` (linear in grid index, so texel density is about even over the face); the rest of the
head is squeezed into the margins around it; each eyeball gets a small disc above (``v > 0.92``).
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from invertavatar_core.plugin.kinds import MorphableModelConfig
from invertavatar_faceverse.linear_model import LinearFaceModel
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS, NUM_LANDMARKS

__all__ = ["ProceduralHeadModel", "ProceduralHeadModelConfig", "HeadLayout", "HEAD"]


class ProceduralHeadModelConfig(MorphableModelConfig):
    """Resolution and placement of the generated head (the geometry itself is fixed)."""

    name: Literal["procedural"] = "procedural"
    rows: int = Field(120, ge=24)
    """Latitude rows of the head grid, crown to neck (the lip band adds ``mouth_rows + 2``)."""
    columns: int = Field(104, ge=16, multiple_of=2)
    """Longitude columns (even, so that one column runs down the midline)."""
    mouth_rows: int = Field(4, ge=1)
    """Rows inside the lip line; they unfold into the mouth cavity when the mouth opens."""
    eye_rings: int = Field(12, ge=4)
    """Latitude rings of each eyeball, from the pupil to 110 degrees back."""
    eye_segments: int = Field(24, ge=8, multiple_of=4)
    """Segments around each eyeball (a multiple of 4: the iris landmarks sit at quarter turns)."""
    canonical_scale: float = 0.0215
    """Model centimetres -> EG3D canonical units; puts the face region in about 80% of the face window."""
    mediapipe_canonical: Path | None = None
    """MediaPipe's ``face_model_with_iris.obj`` (or ``canonical_face_model.obj``); when given, all
    478 landmarks are found by aligning it to the head, otherwise the named ones are placed
    from the built-in layout and the rest are marked invalid (``landmark_valid``)."""


@dataclass(frozen=True)
class HeadLayout:
    """Where the features of the mean head are (cm, model space); the design of the face."""

    eye_x: float = 3.15
    """|x| of the eyeball centres."""
    eye_y: float = 2.7
    """y of the eyeball centres and eye corners."""
    eyeball_radius: float = 1.2
    eye_half_width: float = 1.3
    """Half the corner-to-corner width of the lid opening."""
    lid_up: float = 0.36
    """Height of the upper lid margin above the eye centre line (at the middle of the opening)."""
    lid_down: float = 0.32
    """Depth of the lower lid margin below it."""
    mouth_y: float = -4.3
    """y of the lip line on the midline."""
    mouth_half_width: float = 2.45
    upper_lip_height: float = 0.95
    lower_lip_height: float = 1.05
    nose_tip_y: float = -1.1
    subnasale_y: float = -2.1
    nasion_y: float = 3.3
    brow_y: float = 4.55
    hairline_y: float = 8.3
    chin_y: float = -9.4
    face_half_width: float = 7.6
    """Half-width of the face oval at its widest (in front of the ears)."""
    face_center_y: float = -0.5
    """Centre of the face region; lands on the centre of the tri-plane face window."""


HEAD = HeadLayout()
"""The one layout of the procedural head."""


# --------------------------------------------------------------------------------------------
# Small smooth functions (numpy, float64)
# --------------------------------------------------------------------------------------------


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, center: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - center) / sigma) ** 2)


def _window(x: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """1 inside [lo, hi], falling smoothly to 0 over ``soft`` outside."""
    return _smoothstep(lo - soft, lo, x) * (1.0 - _smoothstep(hi, hi + soft, x))


def _smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return 0.5 * (a + b + np.sqrt((a - b) ** 2 + k * k))


def _interp_smooth(x: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """Monotone-in-x control points -> a C1 curve (smoothstep between neighbours)."""
    xs_a, ys_a = np.asarray(xs), np.asarray(ys)
    order = np.argsort(xs_a)
    xs_a, ys_a = xs_a[order], ys_a[order]
    idx = np.clip(np.searchsorted(xs_a, x) - 1, 0, len(xs_a) - 2)
    t = np.clip((x - xs_a[idx]) / (xs_a[idx + 1] - xs_a[idx]), 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)
    return ys_a[idx] * (1 - t) + ys_a[idx + 1] * t


# --------------------------------------------------------------------------------------------
# The neutral head surface
# --------------------------------------------------------------------------------------------

_SKULL = ((0.0, 2.5, -1.0), (7.45, 9.95, 10.0))
_JAW = ((0.0, -3.6, 0.3), (6.1, 6.6, 8.6))
_NECK = (-1.2, 5.4, 5.6, -20.0)  # centre z, half-widths x/z, bottom y


def _directions(phi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Unit rays from the origin: latitude ``phi`` (up +), longitude ``lam`` (0 = +z, +pi/2 = +x)."""
    cp = np.cos(phi)
    return np.stack([cp * np.sin(lam), np.sin(phi), cp * np.cos(lam)], axis=-1)


def _exit_ellipsoid(d: np.ndarray, center: tuple, axes: tuple) -> np.ndarray:
    q = d / np.asarray(axes)
    p = -np.asarray(center) / np.asarray(axes)
    a = (q * q).sum(-1)
    b = 2.0 * (q * p).sum(-1)
    c = (p * p).sum() - 1.0
    return (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)


def _exit_neck(d: np.ndarray) -> np.ndarray:
    cz, ax, az, y_bottom = _NECK
    a = (d[..., 0] / ax) ** 2 + (d[..., 2] / az) ** 2
    b = -2.0 * d[..., 2] * cz / az**2
    c = (cz / az) ** 2 - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r_side = np.where(a > 1e-12, (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a), np.inf)
        r_bottom = np.where(d[..., 1] < -1e-9, y_bottom / np.minimum(d[..., 1], -1e-9), np.inf)
    # Fading the neck out on rays that point sideways keeps the union continuous (a capped
    # cylinder would switch on abruptly and leave a ridge round the head).
    fade = _smoothstep(-0.2, -0.55, d[..., 1])
    return np.where(fade > 0, np.minimum(np.minimum(r_side, r_bottom), 1e3), 0.0) * fade


def _base_radius(d: np.ndarray) -> np.ndarray:
    """Distance from the origin to the featureless head (skull, jaw, neck) along rays ``d``."""
    head = _smooth_max(_exit_ellipsoid(d, *_SKULL), _exit_ellipsoid(d, *_JAW), 1.2)
    return _smooth_max(head, _exit_neck(d), 2.0)


def _front_weight(base: np.ndarray) -> np.ndarray:
    """1 on the front of the head where the face height field applies, 0 on the sides and back."""
    x, y, z = base[..., 0], base[..., 1], base[..., 2]
    toward = z / np.maximum(np.hypot(x, z), 1e-9)
    return _smoothstep(0.15, 0.55, toward) * _smoothstep(-12.5, -10.0, y) * (1 - _smoothstep(9.5, 12.0, y))


def _face_relief(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height field (cm, towards +z) added to the base head on the front: the face's shape."""
    h = HEAD
    ax = np.abs(x)
    relief = np.zeros_like(x)
    # Flatten the round front of the ellipsoids at the temples and the sides of the cheeks.
    relief -= 0.9 * _smoothstep(3.5, 7.0, ax) * _window(y, -3.0, 6.5, 3.0)
    # Forehead slightly forward and flat; brow ridge; glabella.
    relief += 0.35 * _window(y, 4.5, 8.0, 2.0) * _gauss(x, 0.0, 4.0)
    relief += 0.55 * _gauss(ax, 2.9, 1.6) * _gauss(y, h.brow_y, 0.55)
    relief += 0.35 * _gauss(x, 0.0, 1.0) * _gauss(y, h.brow_y - 0.2, 0.7)
    # Eye sockets (the eyeballs and lids are set in later).
    relief -= 1.25 * np.exp(-0.5 * (((ax - h.eye_x) / 1.55) ** 2 + ((y - (h.eye_y + 0.1)) / 1.05) ** 2))
    # Cheekbones and the cheek below them.
    relief += 0.55 * np.exp(-0.5 * (((ax - 4.6) / 1.5) ** 2 + ((y - 0.6) / 1.1) ** 2))
    relief += 0.25 * np.exp(-0.5 * (((ax - 3.6) / 1.6) ** 2 + ((y + 2.3) / 1.6) ** 2))
    # Nose: ridge profile along the midline, a width that grows towards the wings, the wings.
    ridge = _interp_smooth(
        y,
        [4.2, h.nasion_y, 2.0, 0.6, -0.4, h.nose_tip_y, -1.5, -1.85, h.subnasale_y, -2.45],
        [0.0, 0.25, 0.75, 1.55, 2.25, 2.45, 2.05, 1.15, 0.35, 0.0],
    )
    half_width = _interp_smooth(y, [4.0, 2.0, 0.0, -1.0, -2.2], [0.55, 0.6, 0.75, 0.95, 1.0])
    across = np.exp(-1.6 * (x / half_width) ** 2) * (1.0 - _smoothstep(0.8, 1.6, np.abs(x / half_width)))
    relief += ridge * across
    relief += 0.75 * np.exp(-0.5 * (((ax - 1.25) / 0.45) ** 2 + ((y + 1.55) / 0.5) ** 2))
    # Lips: profiles across the lip line (rolled in at the line, full at the vermilion), under
    # an envelope that narrows to the corners; then the corners and the mentolabial fold.
    dy = y - h.mouth_y
    # The lips thin towards the corners: their profile is squeezed vertically there.
    taper = np.sqrt(np.clip(1.0 - (x / (h.mouth_half_width + 0.35)) ** 2, 0.15, None))
    lip_dy = dy / taper
    lips = (
        0.55 * _gauss(lip_dy, 0.42, 0.33)  # upper lip
        + 0.6 * _gauss(lip_dy, -0.5, 0.38)  # lower lip
        - 0.25 * _gauss(dy, -1.45, 0.35)  # mentolabial fold
        + 0.25 * _window(dy, 0.7, 2.2, 0.5)  # philtrum
    )
    envelope = np.exp(-((x / (h.mouth_half_width + 0.2)) ** 4))
    philtrum = np.exp(-((x / 2.4) ** 2)) * _window(dy, 0.9, 2.2, 0.4)
    relief += lips * np.maximum(envelope, 0.9 * philtrum)
    relief -= 0.3 * np.exp(-0.5 * (((ax - h.mouth_half_width - 0.1) / 0.45) ** 2 + (dy / 0.5) ** 2))
    relief += 1.5 * _gauss(x, 0.0, 2.1) * _gauss(y, -7.9, 1.3)
    return relief


def _eye_local(x: np.ndarray, y: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in one eye's opening: ``u`` in [-1, 1] corner to corner (outer = +1), ``v`` in cm."""
    h = HEAD
    return side * (x - side * h.eye_x) / h.eye_half_width, y - h.eye_y


def _lid_margins(u: np.ndarray) -> tuple[np.ndarray | np.floating, np.ndarray | np.floating]:
    """Upper and lower lid margins (cm above the eye line) at opening coordinate ``u`` (scalars for a 0-d ``u``)."""
    h = HEAD
    w = np.clip(1.0 - u * u, 0.0, None)
    # The upper lid peaks a little towards the nose, the lower one towards the temple.
    return h.lid_up * w * (1.0 - 0.12 * u), -h.lid_down * w * (1.0 + 0.1 * u)


def _inside_opening(x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    u, v = _eye_local(x, y, side)
    upper, lower = _lid_margins(u)
    return (np.abs(u) < 1.0) & (v < upper) & (v > lower)


# --------------------------------------------------------------------------------------------
# Grid construction
# --------------------------------------------------------------------------------------------


def _inverse_cdf(density: np.ndarray, grid: np.ndarray, n: int) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(np.linspace(0.0, cdf[-1], n), cdf, grid)


def _surface(phi: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base points, front weights and featured points on rays (phi, lam)."""
    d = _directions(phi, lam)
    base = _base_radius(d)[..., None] * d
    front = _front_weight(base)
    pts = base.copy()
    pts[..., 2] += front * _face_relief(base[..., 0], base[..., 1])
    return base, front, pts


def _latitudes(rows: int) -> np.ndarray:
    fine = np.linspace(math.pi / 2, -math.pi / 2, 4097)
    rate = np.zeros_like(fine)
    for lam in (0.0, math.pi / 2, math.pi):
        _, _, p = _surface(fine, np.full_like(fine, lam))
        seg = np.linalg.norm(np.diff(p, axis=0), axis=-1)
        rate += np.concatenate([seg[:1], 0.5 * (seg[1:] + seg[:-1]), seg[-1:]])
    _, _, front = _surface(fine, np.zeros_like(fine))
    face = _window(front[:, 1], HEAD.chin_y - 1.2, HEAD.hairline_y + 1.0, 1.5)
    return _inverse_cdf(rate * (1.0 + 2.5 * face), -fine, rows) * -1.0


def _longitudes(columns: int) -> np.ndarray:
    half = columns // 2
    fine = np.linspace(0.0, math.pi, 2049)
    rate = np.zeros_like(fine)
    for phi in (0.25, -0.45):
        _, _, p = _surface(np.full_like(fine, phi), fine)
        seg = np.linalg.norm(np.diff(p, axis=0), axis=-1)
        rate += np.concatenate([seg[:1], 0.5 * (seg[1:] + seg[:-1]), seg[-1:]])
    lam = _inverse_cdf(rate * (1.0 + 2.5 * (1.0 - _smoothstep(1.0, 1.5, fine))), fine, half + 1)
    return np.concatenate([-lam[::-1], lam[1:]])  # exact mirror symmetry, lam[half] == 0


def _mouth_latitude() -> float:
    fine = np.linspace(0.0, -1.2, 4001)
    _, _, p = _surface(fine, np.zeros_like(fine))
    return float(np.interp(HEAD.mouth_y, p[::-1, 1], fine[::-1]))


@dataclass(frozen=True)
class _Grid:
    phi: np.ndarray  # (R,)
    lam: np.ndarray  # (C + 1,)
    band: np.ndarray  # (R,) lip-band fraction f in [0, 1] for band rows, nan elsewhere
    row_weight: np.ndarray  # (R,) share of UV height


def _grid(config: ProceduralHeadModelConfig) -> _Grid:
    phi = _latitudes(config.rows)
    phi_m = _mouth_latitude()
    spacing = np.abs(np.gradient(phi))
    keep = np.abs(phi - phi_m) > 0.5 * spacing
    k = config.mouth_rows + 2
    half_gap = 0.0015  # rad: the lips touch at rest, the band is ~0.2 mm tall
    band_phi = phi_m + half_gap * (1.0 - 2.0 * np.arange(k) / (k - 1))
    band_f = np.arange(k) / (k - 1)
    phi_all = np.concatenate([phi[keep], band_phi])
    f_all = np.concatenate([np.full(keep.sum(), np.nan), band_f])
    order = np.argsort(-phi_all, kind="stable")
    phi_all, f_all = phi_all[order], f_all[order]
    weight = np.where(np.isnan(f_all) | (f_all == 0.0), 1.0, 0.02)
    lam = _longitudes(config.columns)  # -pi .. pi: the last column repeats the first (UV seam)
    return _Grid(phi_all, lam, f_all, weight)


# --------------------------------------------------------------------------------------------
# The generated model (numpy, built once per config)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Per-point attributes the displacement fields are written in (head vertices + 2 eye centres)."""

    pos: np.ndarray  # (M, 3) neutral positions
    x0: np.ndarray  # (M,) frontal x of the base point
    y0: np.ndarray  # (M,) frontal y of the base point
    front: np.ndarray  # (M,) 1 on the face front
    lower: np.ndarray  # (M,) 0 above the lip line, 1 below, f inside the band
    band_inner: np.ndarray  # (M,) sin(pi f) inside the band, 0 elsewhere
    in_mouth: np.ndarray  # (M,) 1 between the mouth corners, fading outside
    eye_center: tuple[np.ndarray, np.ndarray]  # right, left (3,)


@dataclass(frozen=True)
class _HeadData:
    mean: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    face_mask: np.ndarray
    identity: np.ndarray  # (S, N, 3)
    identity_names: tuple[str, ...]
    expression: np.ndarray  # (E, N, 3)
    expression_names: tuple[str, ...]
    eyeballs: tuple[np.ndarray, np.ndarray]  # vertex indices of right, left eyeball
    eye_centers: np.ndarray  # (2, 3)
    eye_poles: np.ndarray  # (2,) vertex index of each pupil centre
    landmarks: np.ndarray  # (478,)
    landmark_valid: np.ndarray  # (478,) bool
    to_canonical: np.ndarray  # (4, 4)
    grid_shape: tuple[int, int]
    band_rows: np.ndarray  # row indices of the lip band, top (upper lip) to bottom (lower lip)


def _eyeball(config: ProceduralHeadModelConfig, center: np.ndarray, uv_center: tuple[float, float], side: int):
    rings, segs = config.eye_rings, config.eye_segments
    r = HEAD.eyeball_radius
    theta_iris = math.asin(0.55 / r)
    # Rings: the pupil pole, a pupil ring, the iris ring (exactly), then on to 110 degrees.
    inner = np.array([0.0, 0.45 * theta_iris, theta_iris])
    outer = np.linspace(theta_iris, math.radians(110.0), rings - 1)[1:]
    theta = np.concatenate([inner, outer])
    psi = 2 * math.pi * np.arange(segs) / segs
    t, p = np.meshgrid(theta[1:], psi, indexing="ij")
    ring_pts = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    pts = center + r * np.concatenate([[[0.0, 0.0, 1.0]], ring_pts])
    rho = 0.035 * np.concatenate([[0.0], t.reshape(-1) / theta[-1]])
    ang = np.concatenate([[0.0], p.reshape(-1)])
    uv = np.stack([uv_center[0] + rho * np.cos(ang), uv_center[1] + rho * np.sin(ang)], -1)
    faces = []
    for s in range(segs):
        faces.append((0, 1 + s, 1 + (s + 1) % segs))
    for k in range(len(theta) - 2):
        for s in range(segs):
            a, b = 1 + k * segs + s, 1 + (k + 1) * segs + s
            c, d = 1 + (k + 1) * segs + (s + 1) % segs, 1 + k * segs + (s + 1) % segs
            faces += [(a, b, c), (a, c, d)]
    ring_iris = 1 + 1 * segs  # ring index 1 of the rings (theta_iris)
    iris = [0] + [ring_iris + q * segs // 4 for q in range(4)]
    return pts, uv, np.asarray(faces), np.asarray(iris)


def _piecewise(values: np.ndarray, lo: float, hi: float, out: tuple[float, float, float, float]) -> np.ndarray:
    """Map [min, lo] -> [o0, o1], [lo, hi] -> [o1, o2], [hi, max] -> [o2, o3], linearly."""
    vmin, vmax = float(values.min()), float(values.max())
    return np.interp(values, [vmin, lo, hi, vmax], list(out))


def _build(config: ProceduralHeadModelConfig) -> _HeadData:
    h = HEAD
    grid = _grid(config)
    n_rows, n_cols = len(grid.phi), len(grid.lam)
    phi, lam = np.meshgrid(grid.phi, grid.lam, indexing="ij")
    base, front, pts = _surface(phi, lam)
    band = np.broadcast_to(grid.band[:, None], phi.shape)
    in_band = ~np.isnan(band)
    f = np.where(in_band, band, 0.0)
    x0, y0 = base[..., 0], base[..., 1].copy()
    in_mouth = 1.0 - _smoothstep(h.mouth_half_width - 0.35, h.mouth_half_width + 0.1, np.abs(x0))
    in_mouth = in_mouth * (front > 0.5)
    band_inner = np.where(in_band, np.sin(math.pi * f), 0.0)
    # The lips meet in a shallow crease at rest.
    pts[..., 2] -= 0.22 * band_inner * in_mouth

    # Eyes: centre each eyeball just behind the socket surface, drape the lids over it and
    # recess the skin inside the opening so the eyeball shows there.
    centers = []
    for side in (-1, 1):
        cx, cy = side * h.eye_x, h.eye_y
        lat, lon = math.atan2(cy, 9.0), math.atan2(cx, 9.0)
        _, _, at = _surface(np.array([lat]), np.array([lon]))
        # Find the surface point whose frontal position is the eye centre (one Newton-like pass).
        for _ in range(6):
            lat += (cy - at[0, 1]) / 10.0
            lon += (cx - at[0, 0]) / 10.0
            _, _, at = _surface(np.array([lat]), np.array([lon]))
        z_surface = float(at[0, 2])
        centers.append(np.array([cx, cy, z_surface + 0.2 - h.eyeball_radius]))
    for side, c in zip((-1, 1), centers, strict=True):
        dx, dy = pts[..., 0] - c[0], pts[..., 1] - c[1]
        d2 = dx * dx + dy * dy
        sphere = c[2] + np.sqrt(np.maximum(h.eyeball_radius**2 - d2, 0.0))
        inside = _inside_opening(x0, y0, side) & (front > 0.5)
        over = (d2 < (h.eyeball_radius + 0.15) ** 2) & ~inside & (front > 0.5)
        pts[..., 2] = np.where(over, np.maximum(pts[..., 2], sphere + 0.1), pts[..., 2])
        pts[..., 2] = np.where(inside, np.minimum(pts[..., 2], sphere - 0.3), pts[..., 2])
        # Snap the skin vertex just above / below the opening in each column onto the lid margin
        # curve: a crisp lid edge, and a blink that closes exactly (the margins meet).
        for j in np.nonzero(inside.any(axis=0))[0]:
            rows = np.nonzero(inside[:, j])[0]
            for i, which, nudge in ((rows[0] - 1, 0, 1e-6), (rows[-1] + 1, 1, -1e-6)):
                u = side * (x0[i, j] - side * h.eye_x) / h.eye_half_width
                y_new = h.eye_y + float(_lid_margins(np.array(u))[which])
                pts[i, j, 1] = y_new
                y0[i, j] = y_new + nudge
                reach = h.eyeball_radius**2 - (pts[i, j, 0] - c[0]) ** 2 - (y_new - c[1]) ** 2
                if reach > 0:
                    pts[i, j, 2] = max(pts[i, j, 2], c[2] + math.sqrt(reach) + 0.1)

    # Faces of the grid, dropping the zero-area triangles at the two poles.
    idx = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    a, b = idx[:-1, :-1], idx[1:, :-1]
    c, d = idx[1:, 1:], idx[:-1, 1:]
    tri1 = np.stack([a, b, c], -1)[:-1].reshape(-1, 3)  # b == c on the last row (neck pole)
    tri2 = np.stack([a, c, d], -1)[1:].reshape(-1, 3)  # a == d on row 0 (crown pole)
    grid_faces = np.concatenate([tri1, tri2])

    # Face mask: the face oval region on the front, minus the inside of the lips.
    face_region = ((np.abs(x0) / 7.4) ** 4 + ((y0 - h.face_center_y) / 9.25) ** 4 <= 1.0) & (front > 0.3)
    mouth_inside = in_band & (f > 0.0) & (f < 1.0) & (in_mouth > 0.5)
    face_mask = (face_region & ~mouth_inside).astype(np.float64)

    # UVs: linear in grid index over the face rectangle, margins for the rest.
    rows_face = np.where(face_region.any(axis=1))[0]
    cols_face = np.where(face_region.any(axis=0))[0]
    cum = np.concatenate([[0.0], np.cumsum(grid.row_weight[1:])])
    v = _piecewise(-cum, -cum[rows_face[-1]], -cum[rows_face[0]], (0.0, 0.05, 0.90, 0.92))
    columns = np.arange(n_cols, dtype=np.float64)
    u = _piecewise(columns, float(cols_face[0]), float(cols_face[-1]), (0.0, 0.03, 0.97, 1.0))
    grid_uv = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), -1)

    # Eyeballs.
    n_grid = n_rows * n_cols
    eye_pts, eye_uv, eye_faces, eye_idx, poles, iris = [], [], [], [], [], {}
    offset = n_grid
    for name, side, c, uc in (("right", -1, centers[0], 0.40), ("left", 1, centers[1], 0.60)):
        p_e, uv_e, f_e, iris_e = _eyeball(config, c, (uc, 0.96), side)
        eye_pts.append(p_e)
        eye_uv.append(uv_e)
        eye_faces.append(f_e + offset)
        eye_idx.append(np.arange(offset, offset + len(p_e)))
        poles.append(offset)
        iris[name] = iris_e + offset
        offset += len(p_e)
    mean = np.concatenate([pts.reshape(-1, 3), *eye_pts])
    uvs = np.concatenate([grid_uv.reshape(-1, 2), *eye_uv])
    faces = np.concatenate([grid_faces, *eye_faces])
    mask = np.concatenate([face_mask.reshape(-1), np.ones(offset - n_grid)])

    # Attributes of every head vertex plus the two eye centres, for the displacement fields.
    lower = np.where(in_band, f, (y0 < h.mouth_y).astype(np.float64))
    ctx = _Context(
        pos=np.concatenate([pts.reshape(-1, 3), np.stack(centers)]),
        x0=np.concatenate([x0.reshape(-1), [c[0] for c in centers]]),
        y0=np.concatenate([y0.reshape(-1), [c[1] for c in centers]]),
        front=np.concatenate([front.reshape(-1), [1.0, 1.0]]),
        lower=np.concatenate([lower.reshape(-1), [0.0, 0.0]]),
        band_inner=np.concatenate([band_inner.reshape(-1), [0.0, 0.0]]),
        in_mouth=np.concatenate([in_mouth.reshape(-1), [0.0, 0.0]]),
        eye_center=(centers[0], centers[1]),
    )
    n_total = len(mean)

    def expand(field: np.ndarray, rigid_eyes: bool) -> np.ndarray:
        out = np.zeros((n_total, 3))
        out[:n_grid] = field[:n_grid]
        if rigid_eyes:  # eyeballs move with their centre, never deform
            out[eye_idx[0]] = field[n_grid]
            out[eye_idx[1]] = field[n_grid + 1]
        return out

    identity_names = tuple(name for name, _ in _IDENTITY_MODES)
    identity = np.stack([expand(fn(ctx), True) for _, fn in _IDENTITY_MODES])
    expression_names = tuple(name for name, _ in _EXPRESSIONS)
    expression = np.stack([expand(fn(ctx), False) for _, fn in _EXPRESSIONS])

    band_rows = np.where(~np.isnan(grid.band))[0]
    landmarks, valid = _builtin_landmarks(mean, x0, y0, front, face_region, grid, band_rows, n_cols, centers, iris)

    s = config.canonical_scale
    to_canonical = np.diag([s, s, s, 1.0])
    # The face-window centre of the tri-plane (see invertavatar_core.geometry.triplane_space).
    to_canonical[1, 3] = -0.02734375 - s * h.face_center_y
    return _HeadData(
        mean=mean,
        faces=faces,
        uvs=uvs,
        face_mask=mask,
        identity=identity,
        identity_names=identity_names,
        expression=expression,
        expression_names=expression_names,
        eyeballs=(eye_idx[0], eye_idx[1]),
        eye_centers=np.stack(centers),
        eye_poles=np.asarray(poles),
        landmarks=landmarks,
        landmark_valid=valid,
        to_canonical=to_canonical,
        grid_shape=(n_rows, n_cols),
        band_rows=band_rows,
    )


# --------------------------------------------------------------------------------------------
# Landmarks (built-in layout)
# --------------------------------------------------------------------------------------------


def _oval_points(n: int) -> np.ndarray:
    """``n`` points evenly spaced along the face oval, from the top centre towards +x."""
    h = HEAD
    t = np.linspace(0.0, 2 * math.pi, 4001)
    cy = 0.7  # widest at about cheekbone height
    up = np.cos(t) >= 0
    # Upper half an ellipse to the hairline; lower half narrows to the chin (a superellipse).
    s, c = np.sin(t), np.cos(t)
    x = h.face_half_width * np.sign(s) * np.abs(s) ** np.where(up, 1.0, 0.8)
    y = np.where(up, cy + (h.hairline_y - cy) * c, cy + (cy - h.chin_y) * c)
    seg = np.hypot(np.diff(x), np.diff(y))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    target = np.linspace(0.0, arc[-1], n + 1)[:-1]
    return np.stack([np.interp(target, arc, x), np.interp(target, arc, y)], -1)


def _builtin_landmarks(mean, x0, y0, front, face_region, grid, band_rows, n_cols, centers, iris):
    h = HEAD
    n_rows = len(grid.phi)
    n_grid = n_rows * n_cols
    pos = mean[:n_grid]
    skin = (front.reshape(-1) > 0.05) & np.isnan(np.broadcast_to(grid.band[:, None], (n_rows, n_cols))).reshape(-1)
    band_top = np.zeros((n_rows, n_cols), dtype=bool)
    band_bottom = np.zeros((n_rows, n_cols), dtype=bool)
    band_top[band_rows[0]] = True
    band_bottom[band_rows[-1]] = True
    skin |= band_top.reshape(-1) | band_bottom.reshape(-1)
    skin &= front.reshape(-1) > 0.05

    # Lid margins: per column, the skin vertex just above / below the recessed opening.
    lid_up = np.zeros((n_rows, n_cols), dtype=bool)
    lid_down = np.zeros((n_rows, n_cols), dtype=bool)
    for side in (-1, 1):
        inside = _inside_opening(x0, y0, side) & (front > 0.5)
        for j in np.where(inside.any(axis=0))[0]:
            rows = np.where(inside[:, j])[0]
            lid_up[rows[0] - 1, j] = True
            lid_down[rows[-1] + 1, j] = True

    def nearest(targets: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        cand = np.where(allowed.reshape(-1))[0]
        p = pos[cand]
        d2 = (
            (p[None, :, 0] - targets[:, None, 0]) ** 2
            + (p[None, :, 1] - targets[:, None, 1]) ** 2
            - 1e-3 * p[None, :, 2]
        )
        return cand[np.argmin(d2, axis=1)]

    out = np.full(NUM_LANDMARKS, -1, dtype=np.int64)

    def put(indices: tuple[int, ...], xy: np.ndarray, allowed: np.ndarray) -> None:
        found = nearest(np.asarray(xy, dtype=np.float64), allowed)
        for i, v in zip(indices, found, strict=True):
            if out[i] < 0:
                out[i] = v

    # Eyes first (their corners are shared by both lids), then lips, brows, nose, oval, midline.
    for side, name in ((-1, "right"), (1, "left")):
        ex = side * h.eye_x
        upper_run, lower_run = CONTOURS[f"{name}_eye_upper"], CONTOURS[f"{name}_eye_lower"]
        u = np.linspace(1.0, -1.0, len(upper_run))
        up_m, lo_m = _lid_margins(u)
        xs = ex + side * u * h.eye_half_width
        put((upper_run[0], upper_run[-1]), np.stack([xs[[0, -1]], np.full(2, h.eye_y)], -1), skin)
        put(upper_run[1:-1], np.stack([xs[1:-1], h.eye_y + up_m[1:-1]], -1), lid_up)
        put(lower_run[1:-1], np.stack([xs[1:-1], h.eye_y + lo_m[1:-1]], -1), lid_down)
        bx = side * np.linspace(5.6, 1.35, 5)
        arch = 4.15 + 0.45 * np.sin(np.linspace(0.35, 1.0, 5) * math.pi / 2)
        put(CONTOURS[f"{name}_brow_upper"], np.stack([bx, arch + 0.4], -1), skin)
        put(CONTOURS[f"{name}_brow_lower"], np.stack([bx + side * 0.15, arch - 0.25], -1), skin)
        out[list(CONTOURS[f"{name}_iris"])] = iris[name]

    xs = np.linspace(-h.mouth_half_width, h.mouth_half_width, 11)
    w = np.clip(1 - (xs / h.mouth_half_width) ** 2, 0, None)
    bow = 1.0 - 0.12 * _gauss(xs, 0.0, 0.35)  # the dip of the cupid's bow
    put(CONTOURS["lips_upper_outer"], np.stack([xs, h.mouth_y + h.upper_lip_height * w**0.6 * bow], -1), skin)
    put(
        CONTOURS["lips_lower_outer"][1:-1],
        np.stack([xs[1:-1], h.mouth_y - h.lower_lip_height * w[1:-1] ** 0.7], -1),
        skin,
    )
    xi = np.linspace(-h.mouth_half_width + 0.35, h.mouth_half_width - 0.35, 11)
    put(CONTOURS["lips_upper_inner"], np.stack([xi, np.full(11, h.mouth_y)], -1), band_top)
    put(CONTOURS["lips_lower_inner"][1:-1], np.stack([xi[1:-1], np.full(9, h.mouth_y)], -1), band_bottom)

    put(
        CONTOURS["nose_ridge"],
        np.stack(
            [np.zeros(10), [h.nasion_y, 2.5, 1.75, 1.05, 0.35, -0.45, h.nose_tip_y, -1.5, -1.75, h.subnasale_y]], -1
        ),
        skin,
    )
    ala = np.array([[0.5, -0.5], [0.9, -0.55], [1.3, -0.7], [1.6, -0.95], [1.6, -1.3], [1.4, -1.75]])
    put(CONTOURS["right_ala"][1:], ala * [-1, 1], skin)
    put(CONTOURS["left_ala"][1:], ala, skin)
    put((97, 326), np.array([[-0.6, -2.0], [0.6, -2.0]]), skin)
    put(CONTOURS["face_oval"], _oval_points(len(CONTOURS["face_oval"])), skin)
    mid = {
        "midline_forehead": np.linspace(h.hairline_y, h.nasion_y, 5),
        "midline_upper_lip": np.array([h.subnasale_y, -2.55, h.mouth_y + h.upper_lip_height, -3.7, -3.95, h.mouth_y]),
        "midline_chin": np.array(
            [h.mouth_y, -4.65, -4.95, h.mouth_y - h.lower_lip_height, -6.15, -7.0, -7.9, -8.75, h.chin_y]
        ),
    }
    for name, ys in mid.items():
        put(CONTOURS[name], np.stack([np.zeros(len(ys)), ys], -1), skin)

    valid = out >= 0
    # Unnamed indices still get distinct face vertices (so every index is usable in synthetic
    # data), spread over the face in a fixed order; they carry no MediaPipe meaning.
    pool = np.where(face_region.reshape(-1) & skin & ~np.isin(np.arange(n_grid), out[valid]))[0]
    missing = np.where(~valid)[0]
    pick = pool[np.linspace(0, len(pool) - 1, len(missing)).round().astype(np.int64)]
    out[missing] = pick
    return out, valid


# --------------------------------------------------------------------------------------------
# Identity modes: smooth warps, each scaled to one standard deviation
# --------------------------------------------------------------------------------------------

Field3 = Callable[[_Context], np.ndarray]


def _xyz(fx, fy, fz, n: int) -> np.ndarray:
    return np.stack(
        [
            np.broadcast_to(np.asarray(fx, dtype=np.float64), (n,)),
            np.broadcast_to(np.asarray(fy, dtype=np.float64), (n,)),
            np.broadcast_to(np.asarray(fz, dtype=np.float64), (n,)),
        ],
        -1,
    )


def _blob(ctx: _Context, cx: float, cy: float, sx: float, sy: float, mirror: bool = True) -> np.ndarray:
    x = np.abs(ctx.x0) if mirror else ctx.x0
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((ctx.y0 - cy) / sy) ** 2)) * ctx.front


def _side(ctx: _Context, side: int, soft: float = 0.6) -> np.ndarray:
    """Smooth selector of one half of the face: ``side`` +1 = subject's left (x > 0)."""
    return _smoothstep(-soft, soft, side * ctx.x0)


def _eye_region(ctx: _Context, radius: float = 2.0) -> np.ndarray:
    return _blob(ctx, HEAD.eye_x, HEAD.eye_y, radius, radius * 0.8)


def _identity_modes() -> list[tuple[str, Field3]]:
    h = HEAD

    def n(ctx):
        return len(ctx.x0)

    def head_width(ctx):
        return _xyz(0.045 * ctx.pos[:, 0], 0, 0, n(ctx))

    def head_height(ctx):
        return _xyz(0, 0.04 * (ctx.pos[:, 1] - h.eye_y), 0, n(ctx))

    def head_depth(ctx):
        return _xyz(0, 0, 0.04 * ctx.pos[:, 2], n(ctx))

    def crown_height(ctx):
        return _xyz(0, 0.6 * _smoothstep(4.0, 12.0, ctx.pos[:, 1]), 0, n(ctx))

    def face_length(ctx):
        below = np.clip(h.nose_tip_y - ctx.pos[:, 1], 0, 10) * _smoothstep(-16.0, -8.0, ctx.pos[:, 1])
        return _xyz(0, -0.06 * below, 0, n(ctx))

    def jaw_width(ctx):
        w = _smoothstep(-1.0, -5.0, ctx.pos[:, 1]) * _smoothstep(-14.0, -9.0, ctx.pos[:, 1])
        return _xyz(0.07 * ctx.pos[:, 0] * w, 0, 0, n(ctx))

    def chin_protrusion(ctx):
        return _xyz(0, 0, 0.45 * _blob(ctx, 0.0, -8.2, 2.4, 1.6), n(ctx))

    def chin_height(ctx):
        return _xyz(0, -0.4 * _blob(ctx, 0.0, -8.6, 2.6, 1.8), 0, n(ctx))

    def nose_length(ctx):
        w = _blob(ctx, 0.0, -1.2, 1.8, 1.4, mirror=False)
        return _xyz(0, -0.3 * w, 0.1 * w, n(ctx))

    def nose_width(ctx):
        w = _blob(ctx, 0.0, -1.4, 1.8, 1.0, mirror=False)
        return _xyz(0.14 * ctx.x0 * w, 0, 0, n(ctx))

    def nose_protrusion(ctx):
        w = _blob(ctx, 0.0, -0.6, 0.9, 1.6, mirror=False)
        return _xyz(0, 0, 0.35 * w, n(ctx))

    def nose_bridge(ctx):
        return _xyz(0, 0, 0.28 * _blob(ctx, 0.0, 2.0, 0.8, 1.3, mirror=False), n(ctx))

    def eye_spacing(ctx):
        return _xyz(0.22 * np.sign(ctx.x0) * _eye_region(ctx), 0, 0, n(ctx))

    def eye_height(ctx):
        return _xyz(0, 0.22 * _eye_region(ctx), 0, n(ctx))

    def eye_depth(ctx):
        return _xyz(0, 0, -0.25 * _eye_region(ctx, 1.7), n(ctx))

    def eye_opening(ctx):
        w = _eye_region(ctx, 1.2)
        return _xyz(0, 0.12 * (ctx.y0 - h.eye_y) * w, 0, n(ctx))

    def brow_height(ctx):
        return _xyz(0, 0.3 * _blob(ctx, 2.9, h.brow_y + 0.2, 2.0, 0.9), 0, n(ctx))

    def brow_ridge(ctx):
        return _xyz(0, 0, 0.3 * _blob(ctx, 2.6, h.brow_y, 2.4, 0.8), n(ctx))

    def mouth_width(ctx):
        w = _blob(ctx, 0.0, h.mouth_y, 3.2, 1.4, mirror=False)
        return _xyz(0.1 * ctx.x0 * w, 0, 0, n(ctx))

    def mouth_height(ctx):
        return _xyz(0, 0.3 * _blob(ctx, 0.0, h.mouth_y, 3.0, 1.5, mirror=False), 0, n(ctx))

    def upper_lip(ctx):
        w = _blob(ctx, 0.0, h.mouth_y + 0.5, 2.3, 0.45, mirror=False) * (1 - ctx.lower)
        return _xyz(0, 0.06 * w, 0.22 * w, n(ctx))

    def lower_lip(ctx):
        w = _blob(ctx, 0.0, h.mouth_y - 0.55, 2.2, 0.5, mirror=False) * ctx.lower
        return _xyz(0, -0.06 * w, 0.22 * w, n(ctx))

    def cheek_fullness(ctx):
        w = _blob(ctx, 4.2, -2.6, 1.8, 1.8)
        return _xyz(0.3 * np.sign(ctx.x0) * w, 0, 0.2 * w, n(ctx))

    def cheekbones(ctx):
        w = _blob(ctx, 4.7, 0.6, 1.4, 1.0)
        return _xyz(0.15 * np.sign(ctx.x0) * w, 0, 0.25 * w, n(ctx))

    def forehead_slope(ctx):
        return _xyz(0, 0, -0.05 * np.clip(ctx.pos[:, 1] - 4.5, 0, None) * _smoothstep(0.0, 4.0, ctx.pos[:, 2]), n(ctx))

    def face_flatness(ctx):
        w = ctx.front * _smoothstep(1.5, 6.0, np.abs(ctx.x0)) * _window(ctx.y0, -8.0, 6.0, 2.0)
        return _xyz(0, 0, 0.3 * w, n(ctx))

    def neck_width(ctx):
        w = _smoothstep(-10.0, -14.0, ctx.pos[:, 1])
        return _xyz(0.06 * ctx.pos[:, 0] * w, 0, 0.05 * (ctx.pos[:, 2] + 1.2) * w, n(ctx))

    def temple_width(ctx):
        w = _smoothstep(2.0, 7.0, np.abs(ctx.pos[:, 0])) * _window(ctx.pos[:, 1], 1.0, 8.0, 2.0)
        return _xyz(0.25 * np.sign(ctx.pos[:, 0]) * w, 0, 0, n(ctx))

    def asymmetry(ctx):
        w = ctx.front * _window(ctx.y0, -9.0, 7.0, 2.0)
        return _xyz(0, 0.012 * ctx.x0 * w, 0, n(ctx))

    def philtrum_length(ctx):
        w = _blob(ctx, 0.0, h.mouth_y - 1.0, 3.2, 2.5, mirror=False) * _smoothstep(
            h.subnasale_y - 0.2, h.mouth_y + 0.2, ctx.y0
        )
        return _xyz(0, -0.2 * w, 0, n(ctx))

    def warp(k: int, axis: int, cx: float, cy: float) -> Field3:
        def fn(ctx):
            w = np.exp(-0.5 * (((ctx.x0 - cx) / 2.2) ** 2 + ((ctx.y0 - cy) / 2.2) ** 2)) * ctx.front
            out = np.zeros((len(ctx.x0), 3))
            out[:, axis] = 0.3 * w
            return out

        fn.__name__ = f"face_warp_{'xy'[axis]}{k}"
        return fn

    # Local smooth warps on a coarse grid of the face: the freedom real faces need beyond the
    # named proportions (they make landmark fits of photos tighter).
    centres = [
        (-3.5, 4.5),
        (3.5, 4.5),
        (-4.0, 0.5),
        (4.0, 0.5),
        (0.0, 1.0),
        (-3.0, -4.0),
        (3.0, -4.0),
        (0.0, -4.5),
        (0.0, -8.0),
    ]
    warps = [warp(k, axis, cx, cy) for axis in (0, 1) for k, (cx, cy) in enumerate(centres)]
    return [
        (f.__name__, f)
        for f in (
            head_width,
            head_height,
            head_depth,
            crown_height,
            face_length,
            jaw_width,
            chin_protrusion,
            chin_height,
            nose_length,
            nose_width,
            nose_protrusion,
            nose_bridge,
            eye_spacing,
            eye_height,
            eye_depth,
            eye_opening,
            brow_height,
            brow_ridge,
            mouth_width,
            mouth_height,
            upper_lip,
            lower_lip,
            cheek_fullness,
            cheekbones,
            forehead_slope,
            face_flatness,
            neck_width,
            temple_width,
            asymmetry,
            philtrum_length,
            *warps,
        )
    ]


# --------------------------------------------------------------------------------------------
# Expression blendshapes (weight 1 = the full expression)
# --------------------------------------------------------------------------------------------


def _rotate_x(points: np.ndarray, pivot: np.ndarray, angle: float) -> np.ndarray:
    p = points - pivot
    c, s = math.cos(angle), math.sin(angle)
    out = p.copy()
    out[:, 1] = c * p[:, 1] - s * p[:, 2]
    out[:, 2] = s * p[:, 1] + c * p[:, 2]
    return out + pivot - points


def _jaw_weight(ctx: _Context) -> np.ndarray:
    """How much of the jaw's motion a point follows: hard split at the lips, soft on the cheeks."""
    h = HEAD
    soft = _smoothstep(h.mouth_y + 1.8, h.mouth_y - 2.5, ctx.y0)
    w = ctx.in_mouth * ctx.lower + (1.0 - ctx.in_mouth) * soft
    reach = _smoothstep(-4.0, 2.0, ctx.pos[:, 2]) * _smoothstep(-17.0, -10.0, ctx.pos[:, 1])
    return w * reach


def _lip_part(ctx: _Context, upper: np.ndarray, lower: np.ndarray, depth: float) -> np.ndarray:
    """Move the upper lip by ``upper`` and the lower by ``lower`` (3-vectors).

    The band between them follows and folds ``depth`` cm into the mouth.
    """
    h = HEAD
    reach_up = _smoothstep(h.mouth_y + 1.6, h.mouth_y, ctx.y0) * ctx.in_mouth
    reach_lo = _smoothstep(h.mouth_y - 1.8, h.mouth_y, ctx.y0) * ctx.in_mouth
    above = (1.0 - ctx.lower)[:, None] * reach_up[:, None] * upper
    below = ctx.lower[:, None] * reach_lo[:, None] * lower
    out = above + below
    out[:, 2] -= depth * ctx.band_inner * ctx.in_mouth
    return out


def _blink(side: int) -> Field3:
    h = HEAD

    def blink(ctx: _Context) -> np.ndarray:
        u, v = _eye_local(ctx.x0, ctx.y0, side)
        upper, lower = _lid_margins(np.clip(u, -1, 1))
        close = lower + 0.3 * (upper - lower)  # lids meet a third of the way up
        f_up, f_lo = 1.1, 0.7  # skin above / below the margins that stretches
        new_v = v.copy()
        zone_up = (v >= close) & (v < upper + f_up)
        new_v = np.where(zone_up & (v <= upper), close, new_v)
        stretch = zone_up & (v > upper)
        new_v = np.where(stretch, close + (v - upper) * (upper + f_up - close) / f_up, new_v)
        zone_lo = (v < close) & (v > lower - f_lo)
        new_v = np.where(zone_lo & (v >= lower), close, new_v)
        stretch_lo = zone_lo & (v < lower)
        new_v = np.where(stretch_lo, close - (lower - v) * (close - (lower - f_lo)) / f_lo, new_v)
        fade = (1.0 - _smoothstep(1.0, 1.35, np.abs(u))) * ctx.front
        dy = (new_v - v) * fade
        # Keep the moving lid outside the eyeball: push it just clear of the sphere where needed.
        c = ctx.eye_center[0 if side < 0 else 1]
        reach = h.eyeball_radius**2 - (ctx.pos[:, 0] - c[0]) ** 2 - (ctx.pos[:, 1] + dy - c[1]) ** 2
        clear = c[2] + np.sqrt(np.maximum(reach, 0.0)) + 0.1
        skin = ~_inside_opening(ctx.x0, ctx.y0, side)
        dz = np.where(skin & (reach > 0), np.maximum(clear - ctx.pos[:, 2], 0.0), 0.0) * fade
        return _xyz(0, dy, dz, len(ctx.x0))

    blink.__name__ = f"blink_{'left' if side > 0 else 'right'}"
    return blink


def _eye_wide(side: int) -> Field3:
    def eye_wide(ctx: _Context) -> np.ndarray:
        u, v = _eye_local(ctx.x0, ctx.y0, side)
        upper, _ = _lid_margins(np.clip(u, -1, 1))
        above = (v > upper) & ~_inside_opening(ctx.x0, ctx.y0, side)
        w = above * np.exp(-np.clip(v - upper, 0, None) / 0.9) * (1 - _smoothstep(0.9, 1.5, np.abs(u)))
        return _xyz(0, 0.2 * w * ctx.front, 0.05 * w * ctx.front, len(ctx.x0))

    eye_wide.__name__ = f"eye_wide_{'left' if side > 0 else 'right'}"
    return eye_wide


def _expressions() -> list[tuple[str, Field3]]:
    h = HEAD

    def n(ctx):
        return len(ctx.x0)

    def jaw_open(ctx):
        w = _jaw_weight(ctx)
        d = _rotate_x(ctx.pos, np.array([0.0, 0.8, -1.8]), 0.24) * w[:, None]
        d[:, 2] -= 2.4 * ctx.band_inner * ctx.in_mouth  # the lip band folds into the mouth cavity
        return d

    def jaw_side(side):
        def fn(ctx):
            return _xyz(side * 0.6 * _jaw_weight(ctx), 0, 0, n(ctx))

        fn.__name__ = f"jaw_{'left' if side > 0 else 'right'}"
        return fn

    def corner(ctx, side):
        return _blob(ctx, side * h.mouth_half_width, h.mouth_y, 1.2, 1.0, mirror=False)

    def smile(side):
        def fn(ctx):
            w = corner(ctx, side)
            cheek = _blob(ctx, side * 3.6, -1.6, 1.4, 1.2, mirror=False)
            out = _xyz(side * 0.45 * w, 0.5 * w + 0.25 * cheek, -0.25 * w + 0.2 * cheek, n(ctx))
            return (
                out
                + _lip_part(ctx, np.array([0, 0.05, 0]), np.array([0, -0.05, 0]), 0.1) * _side(ctx, side, 2.0)[:, None]
            )

        fn.__name__ = f"smile_{'left' if side > 0 else 'right'}"
        return fn

    def frown(side):
        def fn(ctx):
            w = corner(ctx, side)
            return _xyz(side * 0.1 * w, -0.45 * w, 0.0, n(ctx))

        fn.__name__ = f"frown_{'left' if side > 0 else 'right'}"
        return fn

    def stretch(side):
        def fn(ctx):
            w = corner(ctx, side)
            return _xyz(side * 0.5 * w, -0.15 * w, -0.1 * w, n(ctx))

        fn.__name__ = f"stretch_{'left' if side > 0 else 'right'}"
        return fn

    def mouth_side(side):
        def fn(ctx):
            w = _blob(ctx, 0.0, h.mouth_y, 3.0, 1.6, mirror=False)
            return _xyz(side * 0.5 * w, 0, 0, n(ctx))

        fn.__name__ = f"mouth_{'left' if side > 0 else 'right'}"
        return fn

    def lips(ctx):
        return _blob(ctx, 0.0, h.mouth_y, h.mouth_half_width + 0.6, 1.4, mirror=False)

    def pucker(ctx):
        w = lips(ctx)
        return _xyz(-0.35 * ctx.x0 / h.mouth_half_width * w * 1.2, 0, 0.55 * w, n(ctx))

    def funnel(ctx):
        # The "O" of "oh"/"who": the mouth narrows to about 60% of its width (the corners move
        # in, the skin around them follows), the lips push forward and part into a round opening,
        # most at the middle. With jaw_open it makes the taller O of an open vowel.
        dy = ctx.y0 - h.mouth_y
        across = 1.0 - _smoothstep(h.mouth_half_width - 0.3, h.mouth_half_width + 2.7, np.abs(ctx.x0))
        region = across * _gauss(dy, -0.1, 1.4) * ctx.front
        round_ = np.clip(1.0 - (ctx.x0 / (h.mouth_half_width * 0.75)) ** 2, 0.0, None)
        part = _lip_part(ctx, np.array([0.0, 0.15, 0.1]), np.array([0.0, -0.2, 0.1]), 0.5) * round_[:, None]
        return (
            _xyz(-0.4 * ctx.x0 * region, 0.0, 0.5 * region * lips(ctx) / max(float(lips(ctx).max()), 1e-9), n(ctx))
            + part
        )

    def upper_lip_up(ctx):
        return _lip_part(ctx, np.array([0.0, 0.4, 0.05]), np.zeros(3), 0.5)

    def lower_lip_down(ctx):
        return _lip_part(ctx, np.zeros(3), np.array([0.0, -0.45, 0.05]), 0.5)

    def cheek_puff(ctx):
        w = _blob(ctx, 3.8, -3.6, 1.6, 1.6)
        return _xyz(0.45 * np.sign(ctx.x0) * w, 0, 0.35 * w, n(ctx))

    def brow_raise(ctx):
        w = _blob(ctx, 2.8, h.brow_y + 0.6, 2.8, 1.6)
        return _xyz(0, 0.5 * w, 0, n(ctx))

    def brow_inner_up(ctx):
        w = _blob(ctx, 1.6, h.brow_y + 0.3, 1.2, 1.1)
        return _xyz(0, 0.45 * w, 0.05 * w, n(ctx))

    def brow_down(side):
        def fn(ctx):
            w = _blob(ctx, side * 2.6, h.brow_y, 1.8, 1.0, mirror=False)
            return _xyz(-side * 0.15 * w, -0.4 * w, 0.1 * w, n(ctx))

        fn.__name__ = f"brow_down_{'left' if side > 0 else 'right'}"
        return fn

    def nose_sneer(ctx):
        w = _blob(ctx, 1.3, -1.1, 0.9, 0.9)
        return _xyz(0, 0.25 * w, 0.05 * w, n(ctx))

    fns = [
        jaw_open,
        jaw_side(1),
        jaw_side(-1),
        smile(1),
        smile(-1),
        frown(1),
        frown(-1),
        stretch(1),
        stretch(-1),
        pucker,
        funnel,
        mouth_side(1),
        mouth_side(-1),
        upper_lip_up,
        lower_lip_down,
        cheek_puff,
        _blink(1),
        _blink(-1),
        _eye_wide(1),
        _eye_wide(-1),
        brow_raise,
        brow_inner_up,
        brow_down(1),
        brow_down(-1),
        nose_sneer,
    ]
    return [(f.__name__, f) for f in fns]


_IDENTITY_MODES = _identity_modes()
_EXPRESSIONS = _expressions()
_LIP_PARTING = ("upper_lip_up", "lower_lip_down")


@functools.lru_cache(maxsize=4)
def _cached_build(config: ProceduralHeadModelConfig) -> _HeadData:
    return _build(config)


# --------------------------------------------------------------------------------------------
# The torch model
# --------------------------------------------------------------------------------------------


class ProceduralHeadModel(LinearFaceModel):
    """The generated head as a :class:`~invertavatar_core.plugin.protocols.MorphableModel`.

    ``identity: (B, 48)`` ~ N(0, 1) per named mode (``identity_names``); ``expression: (B, 25)``
    blendshape weights in [0, 1] (``expression_names``; ``funnel`` is the rounded "O" mouth,
    ``pucker`` the pressed-forward lips); ``eyes: (B, 4)`` = (pitch, yaw) of the
    right then the left eye in radians (pitch up, yaw towards the subject's left).
    The UV face island is ``[0.03, 0.97] x [0.05, 0.90]``; the face mask leaves out the inside of
    the lips; ``landmark_valid`` is all True with the MediaPipe canonical mesh, else the named
    contours only; ``to_canonical`` maps model centimetres.
    """

    n_eye = 4
    model_name = "procedural head"
    expression_max = 1.0

    def __init__(self, config: ProceduralHeadModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ProceduralHeadModelConfig()
        data = _cached_build(self.config)
        self._data = data
        f32 = torch.float32
        self._set_bases(
            torch.as_tensor(data.mean),
            torch.as_tensor(data.identity),
            torch.as_tensor(data.expression),
            eyeballs=tuple(torch.as_tensor(e) for e in data.eyeballs),
            eye_centers=torch.as_tensor(data.eye_centers),
        )
        self.register_buffer("_faces", torch.as_tensor(data.faces, dtype=torch.int64), persistent=False)
        self.register_buffer("_uvs", torch.as_tensor(data.uvs, dtype=f32), persistent=False)
        self.register_buffer("_face_mask", torch.as_tensor(data.face_mask, dtype=f32), persistent=False)
        self.register_buffer("_landmarks", torch.as_tensor(data.landmarks, dtype=torch.int64), persistent=False)
        self.register_buffer("_landmark_valid", torch.as_tensor(data.landmark_valid), persistent=False)
        self.register_buffer("_to_canonical", torch.as_tensor(data.to_canonical, dtype=f32), persistent=False)
        self.register_buffer(
            "_eyeball_vertices", torch.as_tensor(np.stack(data.eyeballs), dtype=torch.int64), persistent=False
        )
        self.identity_names: tuple[str, ...] = data.identity_names
        self.expression_names: tuple[str, ...] = data.expression_names
        # Lips part in speech mostly because the jaw drops; the shapes that part them on their own
        # (a raised upper lip, a lowered lower lip, the O) cost the landmark fit 50x more, or it
        # opens the lips of a talking head instead of its jaw (jaw_open stayed 0 in 65 % of the
        # frames of a talking-head clip; docs/design/preprocessing.md).
        prior = torch.ones(len(data.expression_names))
        for name in _LIP_PARTING:
            prior[data.expression_names.index(name)] = 50.0
        self.register_buffer("expression_prior_scale", prior, persistent=False)
        if self.config.mediapipe_canonical is not None:
            self._align_landmarks(self.config.mediapipe_canonical)

    def _align_landmarks(self, path: Path) -> None:
        from invertavatar_faceverse.landmark_correspondence import correspondence_from_canonical

        named = torch.nonzero(self._landmark_valid).squeeze(1)
        anchors = dict(zip(named.tolist(), self._landmarks[named].tolist(), strict=True))
        n_grid = self._data.grid_shape[0] * self._data.grid_shape[1]
        skin = np.zeros(self.n_vertices, dtype=bool)
        skin[:n_grid] = self._data.face_mask[:n_grid] > 0.5
        found = correspondence_from_canonical(
            path,
            self._data.mean,
            anchors=anchors,
            candidates=skin,
            iris_vertices={
                "right": self._landmarks[list(CONTOURS["right_iris"])].numpy(),
                "left": self._landmarks[list(CONTOURS["left_iris"])].numpy(),
            },
        )
        self._landmarks = torch.as_tensor(found, dtype=torch.int64, device=self._landmarks.device)
        self._landmark_valid = torch.ones_like(self._landmark_valid)

    @property
    def eyeball_vertices(self) -> Tensor:
        """``(2, Ne)`` vertex indices of the right and the left eyeball."""
        return self._eyeball_vertices

    @property
    def lip_band_rows(self) -> tuple[int, ...]:
        """Grid rows of the lip band, upper inner lip first (for tests and diagnostics)."""
        return tuple(int(r) for r in self._data.band_rows)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, columns + 1)`` of the head grid; grid vertices come first, row-major."""
        return self._data.grid_shape
