"""Expression UV renders, mouth holes and UV unwraps on a small stand-in head model."""

import math

import pytest
import torch
import torch.nn.functional as F

from invertavatar_core.geometry.cameras import look_at_camera, points_to_clip
from invertavatar_core.geometry.rasterizer.torch_backend import TorchRasterizer, TorchRasterizerConfig
from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.geometry.uv_maps import (
    canonical_vertices,
    mouth_hole,
    render_expression_uv,
    unwrap_image,
    uv_fragments,
    uv_unwrap_grid,
)
from invertavatar_core.plugin.protocols import MorphableModel

CENTRE = (0.0, -0.03, 0.0)
RADII = (0.17, 0.22, 0.17)
U_RANGE = (0.0, 0.8)  # the head's UV island; the nose ball gets (0.82, 1.0)
MOUTH_THETA = (0.6 * math.pi, 0.7 * math.pi)


def lat_long(n_lat: int, n_lon: int, u_range: tuple[float, float]):
    """Unit-sphere grid (front at +z, seam at the back) with per-vertex UVs; CCW seen from outside."""
    theta = torch.linspace(0, math.pi, n_lat + 1)
    phi = torch.linspace(-math.pi, math.pi, n_lon + 1)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    xyz = torch.stack([t.sin() * p.sin(), t.cos(), t.sin() * p.cos()], -1).reshape(-1, 3)
    uv = torch.stack([u_range[0] + (u_range[1] - u_range[0]) * (p + math.pi) / (2 * math.pi), 1 - t / math.pi], -1)
    idx = torch.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    return xyz, uv.reshape(-1, 2), faces, t.reshape(-1), p.reshape(-1)


class EllipsoidHead:
    """A MorphableModel stand-in: an ellipsoid head with a nose ball, a mouth hole in its face mask,
    two identity modes (width, height), and two expressions (jaw_open, puff)."""

    n_identity = 2
    n_expression = 2
    n_eye = 0
    expression_names = ("jaw_open", "puff")

    def __init__(self) -> None:
        head, head_uv, head_faces, theta, phi = lat_long(24, 32, U_RANGE)
        nose, nose_uv, nose_faces, _, _ = lat_long(8, 12, (0.82, 1.0))
        centre, radii = torch.tensor(CENTRE), torch.tensor(RADII)
        head_xyz = head * radii + centre
        nose_xyz = nose * 0.04 + torch.tensor([0.0, -0.03, RADII[2] + 0.02])
        canonical = torch.cat([head_xyz, nose_xyz])
        self._faces = torch.cat([head_faces, nose_faces + len(head)])
        self._uvs = torch.cat([head_uv, nose_uv]).clamp(0, 1)
        front = (theta.sin() * phi.cos()) > 0.35
        mouth = (phi.abs() < 0.35) & (theta >= MOUTH_THETA[0]) & (theta <= MOUTH_THETA[1])
        self._face_mask = torch.cat([(front & ~mouth).float(), torch.ones(len(nose))])
        self.n_vertices = len(canonical)
        # Model space is FaceVerse-like: 10x larger, y down, z backwards.
        self._to_canonical = torch.eye(4)
        self._to_canonical[:3, :3] = torch.diag(torch.tensor([0.1, -0.1, -0.1]))
        self._to_canonical[:3, 3] = torch.tensor([0.0, 0.01, -0.02])
        inv = torch.linalg.inv(self._to_canonical)
        self._mean = canonical @ inv[:3, :3].T + inv[:3, 3]
        below = torch.cat(
            [(theta > MOUTH_THETA[0]) & (phi.abs() < math.pi / 2), torch.zeros(len(nose), dtype=torch.bool)]
        )
        rel = self._mean - self._mean.mean(0)
        self._identity = torch.stack([rel * torch.tensor([1.0, 0, 0]), rel * torch.tensor([0, 1.0, 0])], -1) * 0.2
        jaw = torch.zeros_like(self._mean)
        jaw[below] = torch.tensor([0.0, 0.4, 0.3])  # model y down, z back: the chin drops and recedes
        puff = rel * torch.tensor([0.3, 0.0, 0.0])
        self._expression = torch.stack([jaw, puff], -1)

    @property
    def faces(self) -> torch.Tensor:
        return self._faces

    @property
    def uvs(self) -> torch.Tensor:
        return self._uvs

    @property
    def face_mask(self) -> torch.Tensor:
        return self._face_mask

    @property
    def landmark_indices(self) -> torch.Tensor:
        return torch.zeros(478, dtype=torch.long)

    @property
    def to_canonical(self) -> torch.Tensor:
        return self._to_canonical

    def vertices(self, identity, expression, eyes=None):
        return (
            self._mean
            + torch.einsum("nck,bk->bnc", self._identity, identity)
            + torch.einsum("nck,bk->bnc", self._expression, expression)
        )


@pytest.fixture(scope="module")
def head() -> EllipsoidHead:
    model = EllipsoidHead()
    assert isinstance(model, MorphableModel)
    return model


@pytest.fixture(scope="module")
def rasterizer() -> TorchRasterizer:
    return TorchRasterizer(TorchRasterizerConfig())


def neutral(model, b=1):
    return torch.zeros(b, model.n_identity), torch.zeros(b, model.n_expression)


def texture_image(resolution: int) -> torch.Tensor:
    """A smooth known UV texture (1, 3, R, R) in [-1, 1], texel (r, c) at u = (c + .5)/R, v = (r + .5)/R."""
    t = (torch.arange(resolution) + 0.5) / resolution
    v, u = torch.meshgrid(t, t, indexing="ij")
    return (
        0.8
        * torch.stack(
            [torch.sin(2 * math.pi * 2 * u), torch.cos(2 * math.pi * 1.5 * v), torch.sin(2 * math.pi * (u + v))]
        )[None]
    )


def render_textured(model, rasterizer, camera, texture, resolution):
    """Render the canonical mesh through ``camera`` with ``texture`` looked up by interpolated UVs."""
    identity, expression = neutral(model, camera.shape[0])
    vertices = canonical_vertices(model, identity, expression)
    frags = rasterizer.rasterize(points_to_clip(vertices, camera), model.faces, resolution, resolution)
    uv = rasterizer.interpolate(model.uvs[None], frags, model.faces)
    image = F.grid_sample(texture.expand(camera.shape[0], -1, -1, -1), 2 * uv - 1, align_corners=False)
    return torch.where(frags.mask[:, None], image, 1.0)


# --------------------------------------------------------------------------------------------
# mouth_hole
# --------------------------------------------------------------------------------------------


def test_mouth_hole_finds_enclosed_pixels_only():
    mask = torch.zeros(3, 1, 12, 12)
    mask[0, 0, 2:10, 2:10] = 1
    mask[0, 0, 4:7, 4:8] = 0  # an enclosed hole of 12 pixels
    mask[1] = mask[0]
    mask[1, 0, 5, 8:10] = 0  # a channel from the hole to the outside: no hole any more
    mask[2, 0, :, 5] = 1  # a stripe splitting the background: both halves reach the border
    hole = mouth_hole(mask)
    assert hole.shape == mask.shape and hole.dtype == mask.dtype
    expected = torch.zeros(12, 12)
    expected[4:7, 4:8] = 1
    assert torch.equal(hole[0, 0], expected)
    assert hole[1].sum() == 0 and hole[2].sum() == 0


def test_mouth_hole_is_four_connected():
    # A diamond ring whose pixels touch only diagonally still encloses its centre.
    mask = torch.zeros(1, 1, 7, 7)
    for i, j in [(1, 3), (2, 2), (2, 4), (3, 1), (3, 5), (4, 2), (4, 4), (5, 3)]:
        mask[0, 0, i, j] = 1
    hole = mouth_hole(mask)
    expected = torch.zeros(7, 7)
    for i, j in [(2, 3), (3, 2), (3, 3), (3, 4), (4, 3)]:
        expected[i, j] = 1
    assert torch.equal(hole[0, 0], expected)
    with pytest.raises((ValueError, TypeError), match="mask"):
        mouth_hole(torch.zeros(1, 7, 7))


# --------------------------------------------------------------------------------------------
# render_expression_uv
# --------------------------------------------------------------------------------------------


def test_expression_uv_render_geometry(head, rasterizer):
    identity, expression = neutral(head, 2)
    expression[1, 0] = 1.0  # frame 1 opens the jaw
    res = 128
    out = render_expression_uv(head, rasterizer, identity, expression, resolution=res)
    assert out.shape == (2, 3, res, res)
    u, v, mask = out[:, 0], out[:, 1], out[:, 2]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert u.abs().max() <= 1 and v.abs().max() <= 1
    covered = (u != 0) | (v != 0)
    assert not covered[:, 0, 0].any() and (mask <= covered.float()).all()  # background is 0, 0, 0
    # Pixel (i, j) shows canonical (x, y) = window origin + (j + .5, i + .5) * 0.5 / R, viewed from +z:
    # the forehead at x = 0, y = 0.1 must show the front of the head (u = 0.4), not the back.
    window = face_window(256)
    step = 0.5 / res
    i = int((0.1 - window.y_range[0]) / step)
    j = res // 2
    y_centre = window.y_range[0] + (i + 0.5) * step
    theta = math.acos((y_centre - CENTRE[1]) / RADII[1])
    assert u[0, i, j].item() == pytest.approx(2 * 0.4 - 1, abs=0.03)
    assert v[0, i, j].item() == pytest.approx(2 * (1 - theta / math.pi) - 1, abs=0.03)
    assert mask[0, i, j] == 1
    # Rows follow +y: the chin (low y) is in the first rows, the crown in the last.
    rows = covered[0].any(1).nonzero().squeeze(1)
    chin_y = window.y_range[0] + (rows.min().item() + 0.5) * step
    assert chin_y == pytest.approx(CENTRE[1] - RADII[1], abs=2 * step)
    # The mouth is a hole inside the face mask, and opening the jaw changes the render.
    hole = mouth_hole(out[:, 2:])
    assert hole[0].sum() > 4
    hole_rows = hole[0, 0].any(1).nonzero().squeeze(1).float().mean()
    mouth_y = CENTRE[1] + RADII[1] * math.cos(sum(MOUTH_THETA) / 2)
    assert window.y_range[0] + (hole_rows.item() + 0.5) * step == pytest.approx(mouth_y, abs=0.03)
    assert covered[0][hole[0, 0] > 0].all()
    assert (out[0] != out[1]).any() and not torch.equal(mask[0], mask[1])


# --------------------------------------------------------------------------------------------
# uv_unwrap_grid + unwrap_image
# --------------------------------------------------------------------------------------------


def interior(visibility: torch.Tensor) -> torch.Tensor:
    """Visible texels whose 3x3 neighbourhood is visible too (away from silhouettes and seams)."""
    return -F.max_pool2d(-visibility, 3, 1, 1) > 0.5


def test_unwrap_round_trip_recovers_the_texture(head, rasterizer):
    uv_res, image_res = 64, 192
    texture = texture_image(uv_res)
    camera = look_at_camera(torch.tensor([0.35, -0.3]), torch.tensor([0.1, -0.05]))
    image = render_textured(head, rasterizer, camera, texture, image_res)
    identity, expression = neutral(head, 2)
    grid, visibility = uv_unwrap_grid(
        head, rasterizer, identity, expression, None, camera, uv_resolution=uv_res, image_resolution=image_res
    )
    assert grid.shape == (2, uv_res, uv_res, 2) and visibility.shape == (2, 1, uv_res, uv_res)
    assert set(visibility.unique().tolist()) <= {0.0, 1.0}
    unwrapped = unwrap_image(image, grid, visibility)
    assert unwrapped.shape == (2, 3, uv_res, uv_res)
    assert (unwrapped[visibility.expand(-1, 3, -1, -1) == 0] == 1.0).all()  # white where unseen
    good = interior(visibility).expand(-1, 3, -1, -1)
    assert good[:, 0].float().mean() > 0.1  # a real share of UV space is checked
    error = (unwrapped - texture).abs()
    assert error[good].mean() < 0.02, f"round-trip mean abs error {error[good].mean():.4f}"
    # The head's island has no UV singularity in view (the nose ball's poles have: a whole row of
    # texels there meets in one 3D point), so every texel of it must come back.
    head_island = ((torch.arange(uv_res) + 0.5) / uv_res < U_RANGE[1]).expand_as(good)
    assert error[good & head_island].mean() < 0.005 and error[good & head_island].max() < 0.05
    # The two yaws see different sides of the face.
    assert (visibility[0] != visibility[1]).float().mean() > 0.02


def test_unwrap_visibility_excludes_back_faces_and_occluded_texels(head, rasterizer):
    uv_res, image_res = 64, 192
    texture = texture_image(uv_res)
    camera = look_at_camera(torch.tensor([0.6]), torch.tensor([0.0]))  # the nose hides part of the face
    image = render_textured(head, rasterizer, camera, texture, image_res)
    identity, expression = neutral(head)
    grid, visible = uv_unwrap_grid(
        head, rasterizer, identity, expression, None, camera, uv_resolution=uv_res, image_resolution=image_res
    )
    _, ignoring = uv_unwrap_grid(
        head,
        rasterizer,
        identity,
        expression,
        None,
        camera,
        uv_resolution=uv_res,
        image_resolution=image_res,
        occlusion_tolerance=math.inf,
    )
    occluded = (ignoring > visible) & interior(ignoring)
    assert occluded.sum() >= 3 and (visible <= ignoring).all()
    # Sampling occluded texels would read the nose: far from the face's own texture.
    wrong = unwrap_image(image, grid, ignoring)
    assert (wrong - texture).abs().mean(1, keepdim=True)[occluded].mean() > 0.1
    # The back of the head (u near the seam) and everything outside the face mask stay unseen.
    t = (torch.arange(uv_res) + 0.5) / uv_res
    back = (t < 0.1) | ((t > 0.7) & (t < 0.8))
    assert visible[0, 0][:, back].sum() == 0
    assert visible.sum() > 50
    # Normals are oriented outwards whatever the winding of the model's triangles.
    flipped = EllipsoidHead()
    flipped._faces = flipped._faces[:, [0, 2, 1]]
    _, same = uv_unwrap_grid(
        flipped, rasterizer, identity, expression, None, camera, uv_resolution=uv_res, image_resolution=image_res
    )
    assert torch.equal(same, visible)


def test_unwrap_reuses_a_layout_rasterised_once(head, rasterizer):
    # preprocess rasterises the UV layout once per clip: the grid and visibility must not change.
    uv_res, image_res = 64, 128
    camera = look_at_camera(torch.tensor([0.3, -0.5]), torch.tensor([0.1, 0.0]))
    identity, expression = neutral(head)
    identity, expression = identity.expand(2, -1), expression.expand(2, -1)
    layout = uv_fragments(head, rasterizer, uv_res)
    assert layout.mask.shape == (1, uv_res, uv_res) and layout.mask.float().mean() > 0.2
    args = (head, rasterizer, identity, expression, None, camera)
    grid, visible = uv_unwrap_grid(*args, uv_resolution=uv_res, image_resolution=image_res)
    grid_kept, visible_kept = uv_unwrap_grid(
        *args, uv_resolution=uv_res, image_resolution=image_res, layout_fragments=layout
    )
    assert visible.sum() > 50 and torch.equal(grid, grid_kept) and torch.equal(visible, visible_kept)
    with pytest.raises(ValueError, match="layout_fragments: expected \\(1, 32, 32\\)"):
        uv_unwrap_grid(*args, uv_resolution=32, image_resolution=image_res, layout_fragments=layout)


def test_procedural_head_expression_render(rasterizer, full_registry):
    if "procedural" not in full_registry.names("morphable_model"):
        pytest.skip("the faceverse package's procedural head model is not installed")
    model = full_registry.create("morphable_model", "procedural")
    names = list(model.expression_names)
    jaw = next((k for k, n in enumerate(names) if "jaw" in n.lower() and "open" in n.lower()), None)
    assert jaw is not None, f"no jaw-open expression among {names}"
    identity = torch.zeros(2, model.n_identity)
    expression = torch.zeros(2, model.n_expression)
    expression[1, jaw] = 1.0
    eyes = torch.zeros(2, model.n_eye) if model.n_eye else None
    out = render_expression_uv(model, rasterizer, identity, expression, eyes, resolution=128)
    mask = out[:, 2:]
    # The face mask lies inside the window, clear of its border, and the open mouth is a hole.
    assert mask[:, :, 1:-1, 1:-1].sum() == mask.sum() and mask.mean() > 0.1
    hole = mouth_hole(mask).sum((1, 2, 3))
    assert hole[1] > hole[0] and hole[1] > 4


def test_mouth_hole_follows_a_winding_path():
    # A spiral corridor: its end is reachable from the border only along many turns.
    n = 21
    mask = torch.ones(1, 1, n, n)
    lo, hi = 1, n - 2
    path = []
    while lo <= hi:
        path += [(lo, c) for c in range(lo, hi + 1)] + [(r, hi) for r in range(lo, hi + 1)]
        path += [(hi, c) for c in range(hi, lo - 1, -1)] + [(r, lo + 2) for r in range(hi, lo + 1, -1)]
        lo, hi = lo + 2, hi - 2
    for r, c in path:
        mask[0, 0, r, c] = 0
    mask[0, 0, 0, 1] = 0  # the spiral's mouth opens onto the border
    sealed = mask.clone()
    sealed[0, 0, 0, 1] = 1
    open_hole, sealed_hole = mouth_hole(mask), mouth_hole(sealed)
    assert open_hole.sum() == 0
    assert sealed_hole.sum() == (sealed[0, 0, 1:-1, 1:-1] == 0).sum() > 50


# --------------------------------------------------------------------------------------------
# The release's UV layout: face-island enlargement and the UV mask file
# --------------------------------------------------------------------------------------------


def test_face_island_enlargement_scales_only_the_box():
    from invertavatar_core.geometry.uv_maps import RELEASE_FACE_ISLAND

    uvs = torch.tensor([[0.5, 0.5], [0.3, 0.4], [0.1, 0.5], [0.5, 0.8], [0.195, 0.5], [0.8, 0.7]])
    out = RELEASE_FACE_ISLAND.apply(uvs)
    expected = torch.tensor([[0.5, 0.5], [0.22, 0.36], [0.1, 0.5], [0.5, 0.8], [0.195, 0.5], [0.92, 0.78]])
    torch.testing.assert_close(out, expected)


def test_face_island_setting_reaches_both_uv_maps(head, rasterizer):
    from invertavatar_core.geometry.uv_maps import RELEASE_FACE_ISLAND

    identity, expression = neutral(head)
    plain = render_expression_uv(head, rasterizer, identity, expression, resolution=96)
    island = render_expression_uv(
        head, rasterizer, identity, expression, resolution=96, face_island=RELEASE_FACE_ISLAND
    )
    torch.testing.assert_close(island[:, 2], plain[:, 2])  # same geometry, same mask
    u, v = (plain[:, 0] + 1) / 2, (plain[:, 1] + 1) / 2
    covered = plain[:, 2] > 0
    margin = 0.03  # a triangle around such a pixel has all its vertices on one side of the box edge
    inside = covered & (u > 0.195 + margin) & (u < 0.805 - margin) & (v > 0.273 + margin) & (v < 0.727 - margin)
    outside = covered & ((u < 0.195 - margin) | (u > 0.805 + margin) | (v < 0.273 - margin) | (v > 0.727 + margin))
    assert inside.sum() > 100 and outside.sum() > 100
    torch.testing.assert_close(
        island[:, :2].permute(0, 2, 3, 1)[inside], 1.4 * plain[:, :2].permute(0, 2, 3, 1)[inside]
    )
    torch.testing.assert_close(island[:, :2].permute(0, 2, 3, 1)[outside], plain[:, :2].permute(0, 2, 3, 1)[outside])

    camera = look_at_camera(torch.tensor([0.0]), torch.tensor([0.0])).float()
    grid, vis = uv_unwrap_grid(head, rasterizer, identity, expression, None, camera, uv_resolution=64)
    grid_i, vis_i = uv_unwrap_grid(
        head, rasterizer, identity, expression, None, camera, uv_resolution=64, face_island=RELEASE_FACE_ISLAND
    )
    # Texel (u, v) of the plain layout sees the point that texel 1.4 (u - .5) + .5 sees in the enlarged one.
    t = (torch.arange(64) + 0.5) / 64
    v_t, u_t = torch.meshgrid(t, t, indexing="ij")
    centre = interior(vis)[0, 0] & (u_t > 0.3) & (u_t < 0.7) & (v_t > 0.35) & (v_t < 0.65)
    moved = torch.stack([2 * (1.4 * (u_t - 0.5) + 0.5) - 1, 2 * (1.4 * (v_t - 0.5) + 0.5) - 1], -1)[None]
    sampled = F.grid_sample(grid_i.permute(0, 3, 1, 2), moved, align_corners=False)[0].permute(1, 2, 0)
    assert centre.sum() > 20 and not torch.equal(grid_i, grid)
    torch.testing.assert_close(sampled[centre], grid[0][centre], atol=0.02, rtol=0)


def test_uv_mask_file_is_read_or_named(tmp_path):
    from PIL import Image

    from invertavatar_core.geometry.uv_maps import read_uv_mask

    with pytest.raises(FileNotFoundError, match="dense_uv_expanded_mask_onlyFace.png"):
        read_uv_mask(tmp_path / "absent.png", 256)
    values = (torch.arange(16 * 16) % 256).reshape(16, 16).to(torch.uint8)
    Image.fromarray(values.numpy(), mode="L").save(tmp_path / "mask.png")
    torch.testing.assert_close(read_uv_mask(tmp_path / "mask.png", 16), values.float()[None, None] / 255)
    with pytest.raises(ValueError, match=r"mask\.png: UV mask is \(16, 16\), the UV maps are \(32, 32\)"):
        read_uv_mask(tmp_path / "mask.png", 32)
