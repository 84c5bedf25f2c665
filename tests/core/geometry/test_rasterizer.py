"""The torch rasteriser against a brute-force per-pixel reference, plus gradients and occlusion."""

import pytest
import torch

from invertavatar_core.geometry.rasterizer.torch_backend import (
    TorchRasterizer,
    TorchRasterizerConfig,
    fragments_from_triangle_ids,
)
from invertavatar_core.plugin.protocols import Rasterizer


@pytest.fixture(scope="module")
def rasterizer() -> TorchRasterizer:
    return TorchRasterizer(TorchRasterizerConfig())


def brute_force(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    """Loop over triangles with exact float64 edge functions; nearest z/w wins (lower id on ties)."""
    v = vertices.double()
    b = v.shape[0]
    i, j = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    px, py = (2 * j + 1) / width - 1, (2 * i + 1) / height - 1
    ids = torch.full((b, height, width), -1, dtype=torch.long)
    depth = torch.full((b, height, width), float("inf"), dtype=torch.float64)
    bary = torch.zeros(b, height, width, 3, dtype=torch.float64)
    for k in range(b):
        for t, (i0, i1, i2) in enumerate(faces.tolist()):
            corners = v[k, [i0, i1, i2]]
            w = corners[:, 3]
            if (w <= 0).any():
                continue
            x, y, z = corners[:, 0] / w, corners[:, 1] / w, corners[:, 2] / w
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            if area.abs() < 1e-15:
                continue
            pairs = ((1, 2), (2, 0), (0, 1))
            lam = torch.stack(
                [((x[c] - x[a]) * (py - y[a]) - (y[c] - y[a]) * (px - x[a])) / area for a, c in pairs], -1
            )
            inside = (lam >= 0).all(-1)
            d = (lam * z).sum(-1)
            win = inside & (d < depth[k])
            ids[k][win] = t
            depth[k][win] = d[win]
            persp = lam / w
            bary[k][win] = (persp / persp.sum(-1, keepdim=True))[win]
    return ids, bary, depth


def random_mesh(batch: int, n_tri: int, perspective: bool, generator: torch.Generator):
    """Random triangles of mixed sizes (tiny to screen-filling), overlapping at random depths."""
    centre = torch.rand(batch, n_tri, 1, 2, generator=generator) * 2.4 - 1.2
    scale = torch.exp(torch.rand(batch, n_tri, 1, 1, generator=generator) * 4.5 - 4.0)  # 0.02 .. 1.6
    xy = centre + scale * (torch.rand(batch, n_tri, 3, 2, generator=generator) * 2 - 1)
    z = (
        torch.rand(batch, n_tri, 1, 1, generator=generator) * 2
        - 1
        + 0.1 * torch.randn(batch, n_tri, 3, 1, generator=generator)
    )
    w = (
        torch.rand(batch, n_tri, 3, 1, generator=generator) * 1.5 + 0.5
        if perspective
        else torch.ones(batch, n_tri, 3, 1)
    )
    clip = torch.cat([xy * w, z * w, w], -1).reshape(batch, n_tri * 3, 4)
    faces = torch.arange(n_tri * 3).reshape(n_tri, 3)
    return clip, faces


@pytest.mark.parametrize("perspective", [False, True], ids=["orthographic", "perspective"])
def test_agrees_with_brute_force(rasterizer, perspective):
    g = torch.Generator().manual_seed(1 + perspective)
    vertices, faces = random_mesh(2, 150, perspective, g)
    height, width = 48, 64  # not square: rows and columns must not be swapped
    frags = rasterizer.rasterize(vertices, faces, height, width)
    ids, bary, depth = brute_force(vertices, faces, height, width)
    assert frags.triangle_id.shape == (2, height, width) and frags.barycentrics.shape == (2, height, width, 3)
    agree = frags.triangle_id == ids
    assert agree.float().mean() >= 0.999, f"triangle ids agree on {agree.float().mean():.4%} of pixels"
    assert ids.ge(0).float().mean() > 0.5 and (ids >= 0).flatten(1).any(1).all()  # the test is not vacuous
    both = agree & (ids >= 0)
    bary_error = (frags.barycentrics.double() - bary)[both].abs().max()
    assert bary_error <= 1e-4, f"barycentric error {bary_error:.2e}"
    torch.testing.assert_close(frags.depth.double()[both], depth[both], atol=1e-4, rtol=1e-4)
    assert torch.isinf(frags.depth[ids < 0]).all()
    assert (frags.barycentrics[~frags.mask] == 0).all()


def test_batch_equals_separate_calls(rasterizer):
    g = torch.Generator().manual_seed(3)
    vertices, faces = random_mesh(2, 60, True, g)
    both = rasterizer.rasterize(vertices, faces, 32, 40)
    for k in range(2):
        one = rasterizer.rasterize(vertices[k : k + 1], faces, 32, 40)
        assert torch.equal(both.triangle_id[k], one.triangle_id[0])
        torch.testing.assert_close(both.barycentrics[k], one.barycentrics[0])
    assert not torch.equal(both.triangle_id[0], both.triangle_id[1])


def test_nearer_triangle_wins_in_either_order(rasterizer):
    near = [[-0.8, -0.8, -0.5, 1.0], [0.8, -0.8, -0.5, 1.0], [0.0, 0.8, -0.5, 1.0]]
    far = [[-1.0, -0.2, 0.5, 1.0], [1.0, -0.2, 0.5, 1.0], [0.0, 1.0, 0.5, 1.0]]
    for order in ([near, far], [far, near]):
        vertices = torch.tensor([order[0] + order[1]])
        faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
        frags = rasterizer.rasterize(vertices, faces, 16, 16)
        near_id = 0 if order[0] is near else 1
        centre = frags.triangle_id[0, 8, 8]  # both triangles cover the centre
        assert centre == near_id
        torch.testing.assert_close(frags.depth[0, 8, 8], torch.tensor(-0.5))
        assert (frags.triangle_id[0] == 1 - near_id).sum() > 0  # the far one shows elsewhere


def test_shared_edges_through_pixel_centres_leave_no_cracks(rasterizer):
    # A 4x4-cell grid whose diagonals pass exactly through pixel centres of a 16x16 image.
    n = 4
    lin = torch.linspace(-1, 1, n + 1)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    vertices = torch.stack([gx, gy, torch.zeros_like(gx), torch.ones_like(gx)], -1).reshape(1, -1, 4)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    frags = rasterizer.rasterize(vertices, faces, 16, 16)
    assert frags.mask.all()
    uv = rasterizer.interpolate(vertices[..., :2], frags, faces)
    centres = (2 * torch.arange(16) + 1) / 16 - 1
    torch.testing.assert_close(uv[0, :, :, 0], centres.expand(16, 16), atol=1e-6, rtol=0)
    torch.testing.assert_close(uv[0, :, :, 1], centres[:, None].expand(16, 16), atol=1e-6, rtol=0)


def test_interpolation_is_perspective_correct(rasterizer):
    # A plane z = 3 seen through a pinhole: interpolated camera-space x equals the pixel ray's x.
    cam = torch.tensor([[-2.0, -2.0, 3.0], [2.0, -2.0, 3.0], [0.0, 2.0, 3.0]]) * torch.tensor([1.0, 1.0, 1.0])
    cam = torch.cat([cam, torch.tensor([[-2.0, 2.0, 6.0]])])  # a slanted second triangle
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    clip = torch.cat([cam[:, :2], cam[:, 2:] - 0.1, cam[:, 2:]], -1)[None]  # x, y, z - near, w = z
    frags = rasterizer.rasterize(clip, faces, 20, 20)
    point = rasterizer.interpolate(cam[None], frags, faces)[0]
    ndc = point[..., :2] / point[..., 2:]
    centres = (2 * torch.arange(20) + 1) / 20 - 1
    m = frags.mask[0]
    assert m.sum() > 100
    torch.testing.assert_close(ndc[..., 0][m], centres.expand(20, 20)[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(ndc[..., 1][m], centres[:, None].expand(20, 20)[m], atol=1e-5, rtol=0)


def test_gradcheck_attributes_and_positions(rasterizer):
    vertices = torch.tensor(
        [[[-0.9, -0.8, 0.1, 1.0], [0.7, -0.9, 0.2, 1.3], [-0.6, 0.9, 0.3, 0.8], [0.95, 0.85, 0.1, 1.1]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    attributes = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)

    def render(v, a):
        frags = rasterizer.rasterize(v, faces, 7, 6)
        return rasterizer.interpolate(a, frags, faces), frags.depth.clamp(max=10)

    assert torch.autograd.gradcheck(render, (vertices, attributes), eps=1e-6, atol=1e-6)
    out, _ = render(vertices, attributes)
    out.sum().backward()
    assert vertices.grad[..., :2].abs().sum() > 0 and vertices.grad[..., 3].abs().sum() > 0


def test_behind_camera_and_degenerate_triangles_are_dropped(rasterizer):
    vertices = torch.tensor(
        [
            [
                [-1.0, -1.0, 0.0, 1.0],
                [3.0, -1.0, 0.0, 1.0],
                [-1.0, 3.0, 0.0, -1.0],
                [0.0, 0.0, 0.0, 1.0],
                [0.5, 0.5, 0.0, 1.0],
            ]
        ]
    )
    faces = torch.tensor([[0, 1, 2], [3, 4, 4]])
    frags = rasterizer.rasterize(vertices, faces, 8, 8)
    assert not frags.mask.any() and torch.isinf(frags.depth).all()
    empty = rasterizer.rasterize(vertices, torch.zeros(0, 3, dtype=torch.long), 8, 8)
    assert not empty.mask.any()


def test_bad_input_names_the_argument(rasterizer):
    with pytest.raises((ValueError, TypeError), match="vertices"):
        rasterizer.rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), 4, 4)
    with pytest.raises((ValueError, TypeError), match="faces"):
        rasterizer.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 3]]), 4, 4)
    frags = rasterizer.rasterize(torch.zeros(2, 3, 4), torch.tensor([[0, 1, 2]]), 4, 4)
    with pytest.raises((ValueError, TypeError), match="attributes"):
        rasterizer.interpolate(torch.zeros(3, 3, 1), frags, torch.tensor([[0, 1, 2]]))


@pytest.mark.parametrize(
    "settings", [{"chunk_candidates": 64}, {"blocks": "coarse"}], ids=["small_chunks", "coarse_blocks"]
)
def test_block_settings_give_the_same_result(settings):
    g = torch.Generator().manual_seed(5)
    vertices, faces = random_mesh(2, 80, True, g)
    a = TorchRasterizer(TorchRasterizerConfig(blocks="fine")).rasterize(vertices, faces, 40, 32)
    b = TorchRasterizer(TorchRasterizerConfig(**settings)).rasterize(vertices, faces, 40, 32)
    assert torch.equal(a.triangle_id, b.triangle_id)
    torch.testing.assert_close(a.barycentrics, b.barycentrics)


def test_fragments_from_ids_match_and_registry(rasterizer, full_registry):
    g = torch.Generator().manual_seed(6)
    vertices, faces = random_mesh(2, 40, True, g)
    frags = rasterizer.rasterize(vertices, faces, 24, 24)
    again = fragments_from_triangle_ids(vertices, faces, frags.triangle_id)
    torch.testing.assert_close(again.barycentrics, frags.barycentrics)
    torch.testing.assert_close(again.depth, frags.depth)
    built = full_registry.create("rasterizer", "torch")
    assert isinstance(built, Rasterizer)
    # Optional backends appear only when their library imports.
    for name, module in (("nvdiffrast", "nvdiffrast.torch"), ("pytorch3d", "pytorch3d.renderer")):
        try:
            __import__(module)
            present = True
        except ImportError:
            present = False
        assert (name in full_registry.names("rasterizer")) == present


def test_depth_order_keeps_float_precision_whatever_the_depth_range(rasterizer):
    # Two overlapping triangles 1e-4 apart in depth, plus one far off to the side at z/w = -1e6:
    # the nearer of the two must still win (no global shift that would eat the precision).
    a = [[-0.9, -0.9, 0.5001, 1.0], [0.9, -0.9, 0.5001, 1.0], [0.0, 0.9, 0.5001, 1.0]]
    b = [[-0.9, -0.8, 0.5, 1.0], [0.9, -0.8, 0.5, 1.0], [0.0, 0.95, 0.5, 1.0]]
    far = [[0.9, 0.9, -1e6, 1.0], [1.0, 0.9, -1e6, 1.0], [0.95, 1.0, -1e6, 1.0]]
    vertices = torch.tensor([a + b + far])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    frags = rasterizer.rasterize(vertices, faces, 16, 16)
    assert frags.triangle_id[0, 8, 8] == 1
    assert frags.triangle_id[0, 15, 15] == 2
