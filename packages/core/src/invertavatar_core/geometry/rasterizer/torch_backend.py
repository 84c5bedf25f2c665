"""The default ``torch`` rasteriser: batched, pure torch (CPU and CUDA), no compiled extension.

Coverage and visibility are found without gradients:

1. per triangle (float64): screen-space edge functions normalised to barycentrics, the affine
   plane of ``z / w`` and the pixel bounding box;
2. triangles are grouped by the size of their bounding box (sides 1, 2, 3, 4, 6, 8, 12, ... on
   CPU; squares of 8, 16, 32, ... on CUDA, where kernel launches cost more than wasted work),
   and each group is evaluated as a dense ``(triangles, ky, kx)`` block of pixel candidates
   by broadcasting separable row and column terms (no per-pair gathers), in chunks that bound
   memory;
3. a z-buffer keeps, per pixel, the minimum of a packed int64 key ``(depth bits, triangle)``
   with ``scatter_reduce(amin)``: the nearest triangle wins, ties go to the lower index.

The barycentrics of each pixel's winning triangle are then recomputed from the clip-space
vertices with differentiable torch ops, so gradients reach vertex positions (and attributes)
through :meth:`TorchRasterizer.interpolate`. Coverage itself is piecewise constant and has no
gradient (no soft rasterisation).
"""

import sys
from typing import Literal

import torch
from torch import Tensor

from invertavatar_core.plugin.kinds import RasterizerConfig
from invertavatar_core.plugin.protocols import Fragments
from invertavatar_core.tensor_types import Float, Int

__all__ = [
    "TorchRasterizer",
    "TorchRasterizerConfig",
    "check_rasterizer_inputs",
    "fragments_from_triangle_ids",
    "interpolate_attributes",
]

_EMPTY = torch.iinfo(torch.int64).max
"""Z-buffer value of a pixel no triangle covers."""

_LITTLE_ENDIAN = sys.byteorder == "little"
"""The z-buffer key is assembled in place from two 32-bit words on little-endian machines."""


class TorchRasterizerConfig(RasterizerConfig):
    """Settings of the pure-torch rasteriser."""

    name: Literal["torch"] = "torch"

    chunk_candidates: int = 1 << 22
    """Pixel/triangle candidate pairs evaluated at once (bounds peak memory, ~100 MB per 4M)."""

    edge_tolerance: float = 1e-5
    """A pixel centre is inside when every barycentric is >= -tolerance, so shared edges that pass
    exactly through pixel centres leave no cracks (the z-buffer resolves the overlap)."""

    min_w: float = 1e-8
    """Triangles with a vertex at ``w <= min_w`` (behind a perspective camera) are dropped, not clipped."""

    blocks: Literal["auto", "fine", "coarse"] = "auto"
    """Candidate block shapes: ``fine`` = sides 1, 2, 3, 4, 6, 8, ... per axis (little wasted work,
    more groups: best on CPU); ``coarse`` = squares of 8, 16, 32, ... (few groups, so few kernel
    launches: best on CUDA); ``auto`` picks by the device of the vertices."""


def check_rasterizer_inputs(vertices: Tensor, faces: Tensor, height: int, width: int) -> None:
    """Raise a ValueError naming the argument when rasteriser inputs are malformed."""
    if vertices.ndim != 3 or vertices.shape[-1] != 4:
        raise ValueError(f"vertices: expected (B, N, 4) clip-space positions, got shape {tuple(vertices.shape)}")
    if not vertices.is_floating_point():
        raise ValueError(f"vertices: expected a float tensor, got {vertices.dtype}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces: expected (F, 3) vertex indices, got shape {tuple(faces.shape)}")
    if faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces: expected an integer tensor, got {faces.dtype}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(
            f"faces: indices must lie in [0, {vertices.shape[1]}) (the vertex count), "
            f"found [{int(faces.min())}, {int(faces.max())}]"
        )
    limit = 2**31 // max(1, vertices.shape[0])
    if faces.shape[0] >= limit:
        raise ValueError(
            f"faces: at most {limit - 1} triangles per call for batch {vertices.shape[0]}, got {faces.shape[0]}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"height, width: expected positive sizes, got {height}x{width}")


def _block_sides(limit: int, coarse: bool) -> list[int]:
    """Candidate block sides up to ``limit``: 1, 2, 3, 4, 6, 8, 12, ... (<= 1.5x waste per axis) or 8, 16, 32, ..."""
    sides, p = ([8], 16) if coarse else ([1], 2)
    while sides[-1] < limit:
        sides += [p] if coarse else [p, p + p // 2]
        p *= 2
    return sides


class _Splatter:
    """Evaluates groups of triangles on dense ``(T, ky, kx)`` candidate blocks into one z-buffer.

    Every barycentric (and the depth) is affine in screen space, so its value at box offset
    ``(dy, dx)`` is ``row[dy] + col[dx]``: one add per quantity and candidate remains.
    """

    def __init__(self, zbuf: Tensor, width: int, tolerance: float, dummy: int, signed: bool) -> None:
        self.zbuf, self.width, self.tolerance, self.dummy, self.signed = zbuf, width, tolerance, dummy, signed

    def splat(
        self, coef: Tensor, tri: Tensor, base_pixel: Tensor, box_w: Tensor, box_h: Tensor, kx: int, ky: int
    ) -> None:
        """Splat ``T`` triangles whose boxes fit in ``ky x kx`` pixels.

        ``coef: (3, 4, T)`` float32 = (x slope, y slope, value at the box corner) of the three
        barycentrics and the depth; ``tri`` (global index), ``base_pixel``, ``box_w``, ``box_h``: ``(T,)``.
        """
        device = coef.device
        dx = torch.arange(kx, device=device)
        dy = torch.arange(ky, device=device)
        rows = coef[2, :, :, None] + coef[1, :, :, None] * dy.to(coef.dtype)  # (4, T, ky)
        cols = coef[0, :, :, None] * dx.to(coef.dtype)  # (4, T, kx)
        # -inf in barycentric 0 marks candidates outside the triangle's box.
        rows[0].masked_fill_(dy >= box_h[:, None], float("-inf"))
        cols[0].masked_fill_(dx >= box_w[:, None], float("-inf"))
        lam = rows[0, :, :, None] + cols[0, :, None, :]
        torch.minimum(lam, rows[1, :, :, None] + cols[1, :, None, :], out=lam)
        torch.minimum(lam, rows[2, :, :, None] + cols[2, :, None, :], out=lam)
        outside = lam < self.tolerance
        # Key = (ordered float32 depth bits) << 32 | triangle: written word by word in place.
        if _LITTLE_ENDIAN:
            key = torch.empty(tri.shape[0], ky, kx, dtype=torch.int64, device=device)
            torch.add(rows[3, :, :, None], cols[3, :, None, :], out=key.view(torch.float32)[..., 1::2])
            if self.signed:
                bits = key.view(torch.int32)[..., 1::2]
                bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats order by descending magnitude
            key.view(torch.int32)[..., 0::2] = tri[:, None, None].to(torch.int32)
        else:
            bits = (rows[3, :, :, None] + cols[3, :, None, :]).view(torch.int32)
            if self.signed:
                bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
            key = (bits.to(torch.int64) << 32) | tri[:, None, None]
        pixel = (base_pixel[:, None] + dy * self.width)[:, :, None] + dx
        pixel.masked_fill_(outside, self.dummy)
        self.zbuf.scatter_reduce_(0, pixel.view(-1), key.view(-1), reduce="amin")


def _fragments(
    vertices: Tensor, faces: Tensor, covered: Tensor, global_tri: Tensor, height: int, width: int
) -> Fragments:
    """Fragments from the covered flat pixel indices ``(K,)`` and their global triangles ``b * F + f``.

    The barycentrics and depth are recomputed from ``vertices`` with differentiable ops.
    """
    b, n_vertices, _ = vertices.shape
    n_faces = faces.shape[0]
    batch = torch.div(global_tri, n_faces, rounding_mode="floor")
    face = global_tri - batch * n_faces
    pixel = covered - batch * (height * width)
    row = torch.div(pixel, width, rounding_mode="floor")
    col = pixel - row * width

    # Channel-first gathers of the winning triangles' corners: (4, 3, K).
    corner = faces.T.contiguous().index_select(1, face) + batch * n_vertices
    x, y, z, w = vertices.permute(2, 0, 1).reshape(4, -1).index_select(1, corner.view(-1)).view(4, 3, -1)
    px = (2 * col + 1).to(vertices.dtype) / width - 1
    py = (2 * row + 1).to(vertices.dtype) / height - 1
    # The perspective-correct barycentrics l satisfy sum_k l_k (x_k - px w_k) = 0 and
    # sum_k l_k (y_k - py w_k) = 0, so l is the cross product of those two rows.
    r, s = x - px * w, y - py * w
    bary = torch.stack([r[1] * s[2] - r[2] * s[1], r[2] * s[0] - r[0] * s[2], r[0] * s[1] - r[1] * s[0]])
    bary = bary / (bary[0] + bary[1] + bary[2])
    depth = (bary * z).sum(0) / (bary * w).sum(0)

    total = b * height * width
    triangle_id = torch.full((total,), -1, dtype=torch.int64, device=vertices.device)
    triangle_id[covered] = face
    # In-place copies into fresh buffers: autograd records them, and no extra buffer is made.
    bary_full = vertices.new_zeros(3, total).index_copy_(1, covered, bary)
    depth_full = vertices.new_full((total,), float("inf")).index_copy_(0, covered, depth)
    return Fragments(
        triangle_id=triangle_id.view(b, height, width),
        barycentrics=bary_full.view(3, b, height, width).permute(1, 2, 3, 0),
        depth=depth_full.view(b, height, width),
    )


def fragments_from_triangle_ids(
    vertices: Float[Tensor, "B N 4"], faces: Int[Tensor, "F 3"], triangle_id: Int[Tensor, "B H W"]
) -> Fragments:
    """Complete :class:`Fragments` from per-pixel triangle ids ``(B, H, W)`` (-1 = background).

    Backends that only report which triangle covers each pixel (nvdiffrast, pytorch3d) share
    the differentiable barycentric and depth computation of the torch backend through this.
    """
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    b, h, w = triangle_id.shape
    flat = triangle_id.reshape(-1)
    covered = (flat >= 0).nonzero().squeeze(1)
    batch = torch.div(covered, h * w, rounding_mode="floor")
    return _fragments(vertices, faces, covered, flat[covered] + batch * faces.shape[0], h, w)


class TorchRasterizer:
    """Rasteriser over clip-space vertices (see :class:`~invertavatar_core.plugin.protocols.Rasterizer`).

    Example:
        >>> r = TorchRasterizer(TorchRasterizerConfig())
        >>> v = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [3.0, -1.0, 0.0, 1.0], [-1.0, 3.0, 0.0, 1.0]]])
        >>> r.rasterize(v, torch.tensor([[0, 1, 2]]), 4, 4).mask.all().item()
        True
    """

    def __init__(self, config: TorchRasterizerConfig) -> None:
        self.config = config

    @torch.no_grad()
    def _zbuffer(self, vertices: Tensor, faces: Tensor, height: int, width: int) -> Tensor:
        """``(B*H*W,)`` int64 packed key of the nearest triangle per pixel (``_EMPTY`` if none)."""
        b, n_vertices, _ = vertices.shape
        n_faces = faces.shape[0]
        device = vertices.device
        v = vertices.detach().to(torch.float64)
        w = v[..., 3]
        w_ok = w > self.config.min_w
        safe_w = torch.where(w_ok, w, torch.ones_like(w))
        # Screen space puts pixel (i, j)'s centre at integer (x, y) = (j, i); a bad w gives NaN,
        # which fails every comparison below and drops its triangles.
        screen = torch.stack(
            [
                (v[..., 0] / safe_w + 1.0) * (0.5 * width) - 0.5,
                (v[..., 1] / safe_w + 1.0) * (0.5 * height) - 0.5,
                torch.where(w_ok, v[..., 2] / safe_w, torch.nan),
            ]
        ).view(3, b * n_vertices)
        corner = (faces.T[:, None, :] + torch.arange(b, device=device)[:, None] * n_vertices).reshape(-1)
        x0, x1, x2, y0, y1, y2, z0, z1, z2 = screen.index_select(1, corner).view(9, b * n_faces)
        # Triangle t of batch element k has the global index k * F + t (the low key word).

        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        xmin = torch.ceil(torch.minimum(torch.minimum(x0, x1), x2)).clamp_(min=0)
        xmax = torch.floor(torch.maximum(torch.maximum(x0, x1), x2)).clamp_(max=width - 1)
        ymin = torch.ceil(torch.minimum(torch.minimum(y0, y1), y2)).clamp_(min=0)
        ymax = torch.floor(torch.maximum(torch.maximum(y0, y1), y2)).clamp_(max=height - 1)
        zmin = torch.minimum(torch.minimum(z0, z1), z2)
        keep = (area.abs() > 1e-12) & (xmin <= xmax) & (ymin <= ymax) & (zmin > -torch.inf) & (area.abs() < torch.inf)
        zbuf = torch.full((b * height * width + 1,), _EMPTY, dtype=torch.int64, device=device)
        if not bool(keep.any()):
            return zbuf[:-1]

        # Depths enter the key as float bits, whose integer order equals the float order only for
        # positive floats; negative depths need their bits remapped (a shift would cost precision).
        signed = bool(zmin[keep].min() < 0)
        inv = 1.0 / torch.where(keep, area, 1.0)
        xmin, ymin = torch.where(keep, xmin, 0.0), torch.where(keep, ymin, 0.0)
        # lambda_k(x, y) = a_k (x - xmin) + b_k (y - ymin) + c_k, measured from the box corner so
        # that float32 evaluation on small integer offsets stays accurate.
        a0, a1, a2 = (y1 - y2) * inv, (y2 - y0) * inv, (y0 - y1) * inv
        b0, b1, b2 = (x2 - x1) * inv, (x0 - x2) * inv, (x1 - x0) * inv
        c0 = a0 * (xmin - x1) + b0 * (ymin - y1)
        c1 = a1 * (xmin - x2) + b1 * (ymin - y2)
        c2 = a2 * (xmin - x0) + b2 * (ymin - y0)
        coef = torch.stack(
            [
                torch.stack([a0, a1, a2, a0 * z0 + a1 * z1 + a2 * z2]),
                torch.stack([b0, b1, b2, b0 * z0 + b1 * z1 + b2 * z2]),
                torch.stack([c0, c1, c2, c0 * z0 + c1 * z1 + c2 * z2]),
            ]
        ).to(torch.float32)  # (3, 4, B*F)
        tri = torch.arange(b * n_faces, device=device)
        batch = torch.div(tri, n_faces, rounding_mode="floor")
        base_pixel = (batch * height + ymin.long()) * width + xmin.long()
        box_w = torch.where(keep, xmax - xmin + 1, 1.0).long()
        box_h = torch.where(keep, ymax - ymin + 1, 1.0).long()

        coarse = self.config.blocks == "coarse" or (self.config.blocks == "auto" and device.type != "cpu")
        side = _block_sides(max(height, width), coarse)
        sides = torch.tensor(side, device=device)
        n_sides = len(side)
        if coarse:
            size_y = size_x = torch.searchsorted(sides, torch.maximum(box_w, box_h))
        else:
            size_y, size_x = torch.searchsorted(sides, box_h), torch.searchsorted(sides, box_w)
        # Dropped triangles get group -1, which sorts first and is skipped.
        group = torch.where(keep, size_y * n_sides + size_x, -1)
        order = torch.argsort(group)
        groups, counts = torch.unique_consecutive(group[order], return_counts=True)
        splatter = _Splatter(zbuf, width, -self.config.edge_tolerance, b * height * width, signed)
        start = 0
        for g, count in zip(groups.tolist(), counts.tolist(), strict=True):
            if g >= 0:
                ky, kx = side[g // n_sides], side[g % n_sides]
                step = max(1, self.config.chunk_candidates // (kx * ky))
                for s in range(start, start + count, step):
                    idx = order[s : min(s + step, start + count)]
                    splatter.splat(coef.index_select(2, idx), idx, base_pixel[idx], box_w[idx], box_h[idx], kx, ky)
            start += count
        return zbuf[:-1]

    def rasterize(
        self, vertices: Float[Tensor, "B N 4"], faces: Int[Tensor, "F 3"], height: int, width: int
    ) -> Fragments:
        """``vertices: (B, N, 4)`` clip space, ``faces: (F, 3)`` -> :class:`Fragments` of ``(B, H, W)``.

        ``barycentrics`` (a channel-last view of channel-first storage) and ``depth`` carry
        gradients to ``vertices``; ``triangle_id`` does not.
        """
        check_rasterizer_inputs(vertices, faces, height, width)
        faces = faces.to(device=vertices.device, dtype=torch.int64)
        zbuf = self._zbuffer(vertices, faces, height, width)
        covered = (zbuf != _EMPTY).nonzero().squeeze(1)
        return _fragments(vertices, faces, covered, zbuf[covered] & 0xFFFFFFFF, height, width)

    def interpolate(
        self, attributes: Float[Tensor, "#B N C"], fragments: Fragments, faces: Int[Tensor, "F 3"]
    ) -> Float[Tensor, "B H W C"]:
        """``attributes: (B, N, C)`` per vertex -> ``(B, H, W, C)``, zero where uncovered."""
        return interpolate_attributes(attributes, fragments, faces)


def interpolate_attributes(
    attributes: Float[Tensor, "#B N C"], fragments: Fragments, faces: Int[Tensor, "F 3"]
) -> Float[Tensor, "B H W C"]:
    """Barycentric interpolation of per-vertex ``attributes (B|1, N, C)`` -> ``(B, H, W, C)``.

    Shared by every backend whose :class:`Fragments` follow the protocol (barycentrics zero on
    uncovered pixels); one attribute set is broadcast over the fragments' batch. Differentiable
    w.r.t. ``attributes`` and ``fragments.barycentrics``. The result is a channel-last view of
    channel-first storage (``permute(0, 3, 1, 2)`` gives a contiguous NCHW tensor).
    """
    b, h, w = fragments.triangle_id.shape
    if attributes.ndim != 3 or attributes.shape[0] not in (1, b):
        raise ValueError(f"attributes: expected (B, N, C) with B = {b} or 1, got shape {tuple(attributes.shape)}")
    n_vertices, channels = attributes.shape[1], attributes.shape[2]
    faces = faces.to(device=attributes.device, dtype=torch.int64)
    # Dense over all pixels: uncovered ones read triangle 0 with zero weights.
    corner = faces.T.contiguous().index_select(1, fragments.triangle_id.reshape(-1).clamp(min=0)).view(3, b, h * w)
    if attributes.shape[0] == b and b > 1:
        corner = corner + (torch.arange(b, device=corner.device) * n_vertices)[:, None]
    corner = corner.view(3, -1)
    values = attributes.permute(2, 0, 1).reshape(channels, -1)
    bary = fragments.barycentrics.permute(3, 0, 1, 2).reshape(3, -1).to(attributes.dtype)
    out = bary[0] * values.index_select(1, corner[0])
    out = out.addcmul(bary[1], values.index_select(1, corner[1]))
    out = out.addcmul(bary[2], values.index_select(1, corner[2]))
    return out.view(channels, b, h, w).permute(1, 2, 3, 0)
