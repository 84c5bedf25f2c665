"""Avatar meshes from analytic fields: the surface sits at the threshold, colours are composited like the renderer."""

import math

import pytest
import torch

from invertavatar_core.errors import UserError
from invertavatar_core.geometry.avatar_mesh import extract_mesh, sample_density, silhouette_threshold, vertex_colors
from invertavatar_core.geometry.iso_surface import grid_points
from invertavatar_core.plugin.protocols import CanonicalFeatures, VolumetricPrior

pytest.importorskip("skimage")

RED, GREEN, BLUE = torch.eye(3)


class _AnalyticPrior:
    """A VolumetricPrior whose field is given by two functions of the points (the rest of the protocol is stubbed)."""

    info = None
    w_avg = None

    def __init__(self, sigma, rgb, *, box_size: float = 1.0, sample_spacing: float = 0.05):
        self._sigma, self._rgb = sigma, rgb
        self.box_size, self.sample_spacing = box_size, sample_spacing

    def animate(self, features, expression_uv):
        return torch.zeros(1, 1)

    def query_field(self, field, points):
        return self._sigma(points), self._rgb(points)

    def mapping(self, z, camera, truncation_psi=1.0):
        raise NotImplementedError

    def canonical(self, ws, edits=None):
        raise NotImplementedError

    def render(self, features, expression_uv, camera, *, neural_resolution=None):
        raise NotImplementedError

    def build_discriminator(self):
        raise NotImplementedError


def _features():
    return CanonicalFeatures(ws=torch.zeros(1, 1, 1), texture={}, static={})


def _ball(points, radius=0.3, peak=40.0, softness=0.01):
    return peak * torch.sigmoid((radius - points.norm(dim=-1, keepdim=True)) / softness)


def test_surface_sits_where_the_density_crosses_the_threshold():
    prior = _AnalyticPrior(_ball, lambda p: RED.expand(*p.shape[:-1], 3))
    assert isinstance(prior, VolumetricPrior)
    n = 40
    for level in (15.0, 30.0):
        mesh = extract_mesh(prior, _features(), torch.zeros(1, 3, 4, 4), resolution=n, threshold=level)
        assert mesh.threshold == level
        # 40 * sigmoid((0.3 - r) / 0.01) = level  <=>  r = 0.3 - 0.01 * logit(level / 40)
        p = level / 40
        expected = 0.3 - 0.01 * math.log(p / (1 - p))
        assert (mesh.vertices.norm(dim=-1) - expected).abs().max() < 1 / (n - 1)
        torch.testing.assert_close(mesh.colors, RED.expand_as(mesh.colors))
        assert ((mesh.normals * mesh.vertices).sum(dim=-1) > 0).all()


def _soft(points):
    return 10 * torch.sigmoid((0.3 - points.norm(dim=-1, keepdim=True)) / 0.03)


def test_default_threshold_matches_the_silhouette_the_renderer_draws():
    # Where along an axis does a ray through the soft ball gather opacity 0.5 (integral ln 2)?
    s = torch.linspace(-0.5, 0.5, 4001)
    rho = torch.linspace(0.2, 0.45, 2501)
    points = torch.stack([rho[:, None].expand(-1, len(s)), s.expand(len(rho), -1), torch.zeros(len(rho), len(s))], -1)
    integral = _soft(points)[..., 0].sum(dim=1) * (s[1] - s[0])
    edge = float(rho[(integral > math.log(2)).sum() - 1])  # the rendered silhouette's radius
    n = 64
    volume = _soft(grid_points(n, 1.0)).reshape(n, n, n)
    level = silhouette_threshold(volume, 1.0)
    # The mesh's silhouette radius is where the density equals the level on the ray's closest point.
    radius = 0.3 - 0.03 * math.log(level / (10 - level))
    assert abs(radius - edge) < 1 / (n - 1)
    # A fixed "one renderer step half opaque" level (ln 2 / 0.05 = 13.9) is above this field's peak.
    assert level < 10 < math.log(2) / 0.05
    mesh = extract_mesh(
        _AnalyticPrior(_soft, lambda p: RED.expand(*p.shape[:-1], 3)),
        _features(),
        torch.zeros(1, 3, 4, 4),
        resolution=n,
    )
    assert mesh.threshold == level
    assert (mesh.vertices.norm(dim=-1) - radius).abs().max() < 1 / (n - 1)


def test_a_sharp_field_takes_the_middle_of_the_levels_that_all_fit():
    n = 32
    volume = torch.where(grid_points(n, 1.0).norm(dim=-1) < 0.3, 1000.0, 0.0).reshape(n, n, n)
    level = silhouette_threshold(volume, 1.0)
    assert 10 < level < 100  # near sqrt(1 * 1000): every level in (0, 1000) gives the same silhouette


def test_a_field_nothing_draws_has_no_default_surface():
    volume = torch.full((16, 16, 16), 0.3)  # an untrained prior: opacity 1 - exp(-0.3) = 0.26 through the box
    with pytest.raises(UserError, match=r"no surface the renderer would draw: .*opacity 0\.2[56]"):
        silhouette_threshold(volume, 1.0)


def test_sample_density_visits_every_node_once_in_chunks():
    prior = _AnalyticPrior(lambda p: p[..., :1] + 10 * p[..., 1:2] + 100 * p[..., 2:], lambda p: p)
    whole = sample_density(prior, torch.zeros(1), 7, chunk=1000)
    chunked = sample_density(prior, torch.zeros(1), 7, chunk=5)
    torch.testing.assert_close(whole, chunked)
    coords = torch.linspace(-0.5, 0.5, 7)
    torch.testing.assert_close(whole[2, 3, 4], coords[2] + 10 * coords[3] + 100 * coords[4])


def _plane_prior(film_sigma: float):
    """Material below z = 0: green; a red film on top, 0 <= z < 0.01, of density ``film_sigma``; empty above."""

    def sigma(p):
        z = p[..., 2:]
        return torch.where(z < 0, torch.full_like(z, 100.0), torch.where(z < 0.01, film_sigma, 0.0))

    def rgb(p):
        z = p[..., 2:]
        return torch.where(z >= 0, RED, GREEN) * torch.ones_like(z)

    return _AnalyticPrior(sigma, rgb, sample_spacing=0.05)


def test_vertex_colour_is_composited_front_to_back_along_the_normal():
    vertices = torch.tensor([[0.1, -0.2, 0.0], [0.0, 0.0, 0.0]])
    up = torch.tensor([[0.0, 0.0, 1.0]]).expand(2, 3)
    # An opaque red film hides the green below it entirely.
    opaque = vertex_colors(_plane_prior(1e4), torch.zeros(1), vertices, up, depth=0.05)
    torch.testing.assert_close(opaque, RED.expand(2, 3))
    # A half-transparent film: red in front dominates, green shows through; blue never appears.
    thin = vertex_colors(_plane_prior(60.0), torch.zeros(1), vertices, up, depth=0.05)
    assert (thin[:, 0] > thin[:, 1]).all() and (thin[:, 1] > 0.1).all()
    torch.testing.assert_close(thin.sum(dim=-1), torch.ones(2))
    assert (thin[:, 2] == 0).all()
    # Seen from below (normal pointing down), the green material is in front (0.3 % of red leaks through).
    below = vertex_colors(_plane_prior(60.0), torch.zeros(1), vertices, -up, depth=0.05)
    torch.testing.assert_close(below, GREEN.expand(2, 3), atol=0.01, rtol=0)


def test_a_vertex_whose_ray_gathers_no_opacity_keeps_its_own_colour():
    prior = _AnalyticPrior(lambda p: torch.zeros_like(p[..., :1]), lambda p: torch.where(p[..., 2:] > 0, BLUE, RED))
    colors = vertex_colors(
        prior, torch.zeros(1), torch.tensor([[0.0, 0.0, -0.001]]), torch.tensor([[0.0, 0.0, 1.0]]), depth=0.05
    )
    torch.testing.assert_close(colors, RED[None])
