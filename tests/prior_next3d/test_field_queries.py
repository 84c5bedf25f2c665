"""Point queries of the animated field (mesh export): the renderer's density activation and raw colour."""

import torch
import torch.nn.functional as F

from invertavatar_core.plugin.protocols import VolumetricPrior
from invertavatar_core.testing.inputs import example_expression_uv
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig
from invertavatar_prior_next3d.triplane_sampler import sample_triplane


def test_query_field_is_what_the_renderer_integrates():
    prior = Next3DPrior(Next3DPriorConfig(preset="tiny", box_size=0.9)).eval()
    assert isinstance(prior, VolumetricPrior)
    assert prior.box_size == 0.9
    sizes = prior.sizes
    assert prior.sample_spacing == (0.45 + 0.6) / (sizes.samples_per_ray - 1)
    with torch.no_grad():
        ws = prior.mapping(torch.randn(1, prior.info.z_dim), torch.zeros(1, 25))
        planes = prior.animate(prior.canonical(ws), example_expression_uv(1, prior.info.uv_resolution))
        points = (torch.rand(1, 50, 3) - 0.5) * 0.9
        sigma, rgb = prior.query_field(planes, points)
        raw, color = prior.renderer.decoder(sample_triplane(planes, points, 0.9))
    assert sigma.shape == (1, 50, 1) and rgb.shape == (1, 50, 3)
    torch.testing.assert_close(sigma, F.softplus(raw - 1))
    torch.testing.assert_close(sigma, F.softplus(prior.density(planes, points) - 1))
    torch.testing.assert_close(rgb, color[..., :3])
    assert (sigma >= 0).all() and rgb.min() >= -0.001 and rgb.max() <= 1.001
