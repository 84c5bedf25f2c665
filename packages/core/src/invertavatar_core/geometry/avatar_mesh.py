"""A coloured triangle mesh of an avatar's density field (``invertavatar export``).

The avatar, animated with one expression, is a field in canonical space (a
:class:`~invertavatar_core.plugin.protocols.VolumetricPrior` answers density and colour at any
point). The mesh is its iso-surface:

1. the density ``sigma`` is sampled on an ``N^3`` grid spanning the prior's box, in chunks;
2. marching cubes extracts the surface ``sigma = threshold``
   (:mod:`invertavatar_core.geometry.iso_surface`); optionally only the largest piece is kept;
3. each vertex is coloured with what the renderer draws there (below).

Threshold. The renderer draws a pixel as covered when the opacity its ray gathers,
``1 - exp(-integral of sigma)``, exceeds one half, i.e. when the integral exceeds ``ln 2``; the
mesh covers it when the ray meets the region ``sigma > t``, i.e. when the largest density along
it exceeds ``t``. The default ``t`` (:func:`silhouette_threshold`) is the level at which these
two silhouettes agree best, seen along the grid's three axes with the densities already sampled
(mean IoU over log-spaced levels up to the peak density; where several levels agree equally
well, the geometric middle of that range). No fixed density suits every prior: a well-trained
prior's density jumps by orders of magnitude at the skin, where any level inside the jump gives
the same surface, while a briefly trained one rises slowly and a fixed level swells or shrinks
the head. Measured on our CPU-trained tiny prior (``benchmarks/export.py``), the silhouette IoU
against the renderer's own opacity from three perspective views is 0.72 at ``ln 2 /
sample_spacing`` (7.3: the density at which one renderer step is half opaque) and 0.96 at the
calibrated level (about 4). A field that no axis-aligned ray finds opaque (an untrained prior)
has no such surface and is refused; ``threshold`` sets a level explicitly.

Colour. A vertex lies where the density crosses the threshold, which is not where the rendered
colour comes from: the renderer weights every sample by its opacity times the transparency in
front of it. So each vertex's colour is composited exactly that way along a short ray through it
against its outward normal, from one renderer step outside to one step inside
(:func:`vertex_colors`): the colour of the raw render (``PriorRender.raw``) of a camera looking
straight at that point of the surface. Super-resolution refines images in 2D and per view; it has
no 3D counterpart and is left out. Where the ray gathers almost no opacity (a thin, faint film)
the colour at the vertex itself is used.
"""

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from invertavatar_core.errors import UserError
from invertavatar_core.geometry.iso_surface import IsoSurface, grid_points, keep_largest_component, marching_cubes
from invertavatar_core.plugin.protocols import CanonicalFeatures, VolumetricPrior
from invertavatar_core.tensor_types import Float, Int, Tensor

__all__ = ["ColoredMesh", "extract_mesh", "sample_density", "silhouette_threshold", "vertex_colors"]

_FAINT = 1e-3
"""Below this total opacity along a vertex's colour ray, the vertex takes its own point colour."""


@dataclass(frozen=True)
class ColoredMesh:
    """A vertex-coloured triangle mesh in canonical units.

    ``vertices (N, 3)``; ``faces (F, 3)`` int64, counter-clockwise seen from outside;
    ``colors (N, 3)`` RGB in [0, 1]; ``normals (N, 3)`` unit, outward; ``threshold``: the
    density level of the surface.
    """

    vertices: Float[Tensor, "N 3"]
    faces: Int[Tensor, "F 3"]
    colors: Float[Tensor, "N 3"]
    normals: Float[Tensor, "N 3"]
    threshold: float


def silhouette_threshold(
    volume: Float[Tensor, "X Y Z"], box_size: float, *, levels: int = 96, tolerance: float = 0.005
) -> float:
    """The density level whose silhouettes best match the renderer's along the three axes (see the module doc).

    Args:
        volume: density on the nodes of a grid over the box (as :func:`sample_density` gives).
        box_size: side of the box, for the length of a step between nodes.
        levels: log-spaced candidate levels, from 1/1000 of the peak density to the peak.
        tolerance: levels whose mean IoU is within this of the best count as equally good.

    Raises:
        UserError: no axis-aligned ray through the grid gathers opacity 0.5.
    """
    volume = volume.float().cpu()
    step = box_size / (volume.shape[0] - 1)
    gathered = [torch.trapezoid(volume, dx=step, dim=axis) for axis in range(3)]
    opaque = [g > math.log(2.0) for g in gathered]
    peak = float(volume.max())
    if not any(bool(o.any()) for o in opaque) or not peak > 0:
        most = max(float(g.max()) for g in gathered)
        raise UserError(
            f"no surface the renderer would draw: along the box's axes no ray is half opaque (the most density a "
            f"ray gathers is {most:.3g}, opacity {1 - math.exp(-most):.2f}); an untrained prior? pass --threshold"
        )
    candidates = torch.logspace(math.log10(peak) - 3, math.log10(peak), levels)[:-1]
    maxima = [volume.amax(dim=axis) for axis in range(3)]
    score = torch.zeros(len(candidates))
    for k, level in enumerate(candidates.tolist()):
        for hit_region, drawn in zip(maxima, opaque, strict=True):
            hit = hit_region > level
            score[k] += float((hit & drawn).sum()) / max(int((hit | drawn).sum()), 1)
    score /= 3
    good = candidates[score >= float(score.max()) - tolerance]
    return float(torch.sqrt(good.min() * good.max()))


def sample_density(
    prior: VolumetricPrior, field: Tensor, resolution: int, *, chunk: int = 1 << 16, progress: bool = False
) -> Float[Tensor, "X Y Z"]:
    """Density on the ``resolution^3`` nodes over the prior's box (float32, on the CPU), ``chunk`` points at a time."""
    if resolution < 3:
        raise ValueError(f"sample_density: resolution must be at least 3, got {resolution}")
    device = field.device
    total = resolution**3
    out = torch.empty(total, dtype=torch.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, total, chunk), desc="density", unit="chunk", disable=not progress, leave=False):
            stop = min(start + chunk, total)
            points = grid_points(resolution, prior.box_size, start=start, stop=stop).to(device)
            sigma, _ = prior.query_field(field, points[None])
            out[start:stop] = sigma[0, :, 0].float().cpu()
    return out.reshape(resolution, resolution, resolution)


def vertex_colors(
    prior: VolumetricPrior,
    field: Tensor,
    vertices: Float[Tensor, "N 3"],
    normals: Float[Tensor, "N 3"],
    *,
    depth: float,
    samples: int = 8,
    chunk: int = 1 << 13,
) -> Float[Tensor, "N 3"]:
    """RGB ``(N, 3)`` composited along ``v + t n``, ``t`` from ``depth`` down to ``-depth`` (``samples`` points).

    Front-to-back alpha compositing at the midpoints of ``samples`` equal intervals, as the
    renderer does along a camera ray; vertices whose ray gathers almost no opacity take the
    colour at the vertex.
    """
    device = field.device
    step = 2.0 * depth / samples
    offsets = depth - step * (torch.arange(samples, dtype=torch.float32) + 0.5)  # outside -> inside
    colors = torch.empty(len(vertices), 3, dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(vertices), chunk):
            v = vertices[start : start + chunk].to(device, torch.float32)
            n = normals[start : start + chunk].to(device, torch.float32)
            points = v[:, None] + n[:, None] * offsets.to(device)[None, :, None]  # (P, S, 3)
            sigma, rgb = prior.query_field(field, torch.cat([points.reshape(1, -1, 3), v[None]], dim=1))
            count = points.shape[0] * samples
            sigma = sigma[0, :count, 0].float().reshape(-1, samples)
            ray_rgb = rgb[0, :count].float().reshape(-1, samples, 3)
            alpha = 1 - torch.exp(-sigma * step)
            transparency = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
            weight = alpha * transparency
            total = weight.sum(dim=1, keepdim=True)
            composite = (weight[..., None] * ray_rgb).sum(dim=1) / total.clamp_min(1e-12)
            own = rgb[0, count:].float()
            colors[start : start + len(v)] = torch.where(total > _FAINT, composite, own).clamp(0, 1).cpu()
    return colors


def extract_mesh(
    prior: VolumetricPrior,
    features: CanonicalFeatures,
    expression_uv: Float[Tensor, "1 3 Hu Wu"],
    *,
    resolution: int = 256,
    threshold: float | None = None,
    keep_largest: bool = True,
    chunk: int = 1 << 16,
    progress: bool = False,
) -> ColoredMesh:
    """The coloured iso-surface of one avatar (``features`` of batch 1) animated with ``expression_uv``.

    Args:
        prior: the prior the features belong to.
        features: the avatar's canonical features.
        expression_uv: the expression to animate with (e.g. the neutral face's UV render).
        resolution: grid nodes per side of the prior's box.
        threshold: iso-level of the density; ``None``: :func:`silhouette_threshold`.
        keep_largest: keep only the connected piece with the most faces (drops floaters).
        chunk: grid points per decoder call (memory: about 1 KB each at paper size).
        progress: show a progress bar over the grid.

    Raises:
        UserError: no level is given and nothing is opaque to the renderer, the density is nowhere
            above ``threshold`` (the message gives its range), or scikit-image (the ``export``
            extra) is missing.
    """
    if features.batch_size != 1 or expression_uv.shape[0] != 1:
        raise ValueError(
            f"extract_mesh: one avatar and one expression, got {features.batch_size} and {expression_uv.shape[0]}"
        )
    with torch.inference_mode():
        field = prior.animate(features, expression_uv)
    volume = sample_density(prior, field, resolution, chunk=chunk, progress=progress)
    level = silhouette_threshold(volume, prior.box_size) if threshold is None else float(threshold)
    surface: IsoSurface = marching_cubes(volume, level, prior.box_size)
    if keep_largest:
        surface = keep_largest_component(surface)
    colors = vertex_colors(prior, field, surface.vertices, surface.normals, depth=prior.sample_spacing)
    return ColoredMesh(surface.vertices, surface.faces, colors, surface.normals, level)
