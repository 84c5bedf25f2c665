"""Volume rendering: tri-plane lookup, compositing, importance sampling, and a known surface end to end."""

import math

import pytest
import torch
from torch import nn

from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_prior_next3d.importance_sampler import importance_depths
from invertavatar_prior_next3d.ray_marcher import march
from invertavatar_prior_next3d.triplane_decoder import TriplaneDecoder
from invertavatar_prior_next3d.triplane_sampler import sample_triplane
from invertavatar_prior_next3d.volume_renderer import VolumeRenderer


def test_triplane_projections_and_average():
    r = 8
    planes = torch.zeros(1, 3, 2, r, r)
    ramp = torch.linspace(-1, 1, r)
    planes[0, 0, 0] = ramp.reshape(1, r)  # plane 0 (XY): columns follow x
    planes[0, 1, 1] = ramp.reshape(r, 1)  # plane 1 (XZ): rows follow z
    planes[0, 2, 1] = 5.0 * ramp.reshape(1, r)  # plane 2 (ZX): columns follow z
    pts = torch.tensor([[[0.25, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.25]]])
    out = sample_triplane(planes, pts)
    col = lambda c: (c + 0.5) * r - 0.5  # grid coordinate -> pixel index, align_corners=False  # noqa: E731
    at = lambda idx: float(torch.lerp(ramp[int(idx)], ramp[int(idx) + 1], idx - int(idx)))  # noqa: E731
    # x moves only channel 0 (plane 0 columns); y moves nothing; z moves channel 1 through planes 1 and 2.
    torch.testing.assert_close(out[0, 0], torch.tensor([at(col(0.25)) / 3, (at(col(0.0)) + 5 * at(col(0.0))) / 3]))
    torch.testing.assert_close(out[0, 1], torch.tensor([at(col(0.0)) / 3, 6 * at(col(0.0)) / 3]))
    torch.testing.assert_close(out[0, 2], torch.tensor([at(col(0.0)) / 3, 6 * at(col(0.25)) / 3]))
    # Outside the box every plane pads with zeros.
    assert torch.equal(
        sample_triplane(planes, torch.tensor([[[0.0, 0.0, 0.9]]]))[0, 0, 1], torch.tensor(at(col(0.0)) / 3)
    )


def test_march_matches_closed_form_for_constant_density():
    s, sigma = 9, 0.7
    depths = torch.linspace(2.0, 3.0, s).reshape(1, 1, s, 1)
    raw_density = torch.full((1, 1, s, 1), math.log(math.expm1(sigma)) + 1.0)  # softplus(raw - 1) = sigma
    colors = torch.full((1, 1, s, 4), 0.25)
    out = march(colors, raw_density, depths)
    delta = 1.0 / (s - 1)
    alpha = 1 - math.exp(-sigma * delta)
    weights = torch.tensor([alpha * (1 - alpha) ** i for i in range(s - 1)])
    torch.testing.assert_close(out.weights[0, 0], weights, rtol=1e-5, atol=1e-7)
    total = float(weights.sum())
    torch.testing.assert_close(out.color[0, 0], torch.full((4,), 0.25 * total * 2 - 1), rtol=1e-5, atol=1e-6)
    mids = (depths[0, 0, 1:, 0] + depths[0, 0, :-1, 0]) / 2
    torch.testing.assert_close(out.depth[0, 0, 0], (weights * mids).sum() / total, rtol=1e-5, atol=1e-6)
    empty = march(colors, torch.full((1, 1, s, 1), -50.0), depths)
    assert float(empty.depth) == pytest.approx(3.0) and float(empty.color[0, 0, 0]) == pytest.approx(-1.0, abs=1e-4)


def test_importance_samples_follow_the_weights():
    depths = torch.linspace(0.0, 1.0, 11).reshape(1, 1, 11, 1)
    weights = torch.zeros(1, 1, 10)
    weights[0, 0, 6] = 1.0  # all mass in [0.6, 0.7]
    fine = importance_depths(depths, weights, 64, deterministic=True)
    assert fine.shape == (1, 1, 64, 1)
    assert torch.equal(fine, importance_depths(depths, weights, 64, deterministic=True))
    inside = ((fine >= 0.5) & (fine <= 0.8)).float().mean()
    assert inside > 0.8  # smoothing spreads the peak over its neighbours; the 0.01 floor keeps a little elsewhere
    assert float(fine.min()) >= 0.0 and float(fine.max()) <= 1.0
    random = importance_depths(depths, weights, 64, deterministic=False)
    assert ((random >= 0.5) & (random <= 0.8)).float().mean() > 0.7


class _Wall(nn.Module):
    """Analytic decoder: opaque where feature channel 0 (the mean over planes) is set, colour = features."""

    def forward(self, features):
        return 60.0 * features[..., :1] - 5.0, features.clamp(0, 1)


def test_renderer_finds_a_known_surface():
    r, c = 64, 4
    planes = torch.zeros(1, 3, c, r, r)
    rows = torch.arange(r)
    # Plane 1 is XZ (rows follow z): channel 0 = 3 where z < 0, so the plane mean is 1 behind z = 0.
    planes[0, 1, 0, rows < r // 2, :] = 3.0
    planes[0, :, 1] = 0.9
    renderer = VolumeRenderer(c, samples=24, importance_samples=24).eval()
    renderer.decoder = _Wall()
    camera = look_at_camera(torch.zeros(1), torch.zeros(1))
    out = renderer(planes, camera, 16)
    assert out.feature_image.shape == (1, c, 16, 16) and out.depth.shape == (1, 1, 16, 16)
    # The frontal camera sits at z = 2.7: the wall z = 0 is 2.7 away along the central rays.
    centre = out.depth[0, 0, 7:9, 7:9]
    assert (centre - 2.7).abs().max() < 0.03
    # Depths stay inside the adaptive range [2.7 - 0.45, 2.7 + 0.6]; the wall colour is composited.
    assert float(out.depth.min()) >= 2.25 - 1e-5 and float(out.depth.max()) <= 3.3 + 1e-5
    assert float(out.feature_image[0, 1, 8, 8]) == pytest.approx(0.9 * 2 - 1, abs=0.05)
    # Every ray ends in the wall: opaque; with the wall removed (density softplus(-6)) nearly nothing.
    assert out.opacity.shape == (1, 1, 16, 16) and float(out.opacity.min()) > 0.99
    empty = renderer(torch.zeros_like(planes), camera, 16).opacity
    assert float(empty.max()) < 0.01
    assert torch.equal(out.depth, renderer(planes, camera, 16).depth)  # evaluation is deterministic
    renderer.train()
    assert not torch.equal(out.depth, renderer(planes, camera, 16).depth)  # training jitters the samples


def test_decoder_output_ranges():
    decoder = TriplaneDecoder(8, hidden=16, out_channels=8)
    with torch.no_grad():
        density, color = decoder(torch.randn(2, 100, 8) * 100)
    assert density.shape == (2, 100, 1) and color.shape == (2, 100, 8)
    # sigmoid * 1.002 - 0.001: saturated logits reach just past 0 and 1, never further.
    assert -0.001 - 1e-6 <= float(color.min()) < 0 and 1 < float(color.max()) <= 1.001 + 1e-6
