"""The testing kit's fake prior satisfies the Prior protocol and runs through the whole pipeline."""

import torch

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.plugin.protocols import Prior
from invertavatar_core.testing.fake_prior import FakePrior, FakePriorPlugin


def test_fake_prior_is_a_prior_and_drives_the_pipeline(tiny_frames):
    prior = FakePrior()
    assert isinstance(prior, Prior)
    pm = get_plugin_manager()
    pm.register(FakePriorPlugin(), name="fake-prior")
    registry = build_registry(pm)
    tiny = lambda kind, name: registry.tiny_config(kind, name).model_dump(mode="json")  # noqa: E731
    experiment = ExperimentConfig.model_validate(
        {
            "prior": "testing_fake_prior",
            "encoders": {
                "latent": tiny("encoder", "e4e"),
                "texture": tiny("encoder", "texture_unet"),
                "static": tiny("encoder", "triplane_sft_unet"),
            },
            "aggregator": "mean",
        },
        context={"registry": registry},
    )
    inverter = registry.create("inverter", "incremental", registry=registry, experiment=experiment)
    info = inverter.models.prior.info
    frames = tiny_frames[:2]  # the pipeline brings expression UV renders to the prior's size
    avatar = inverter.invert(frames)
    expression = torch.nn.functional.interpolate(frames.expression_uv, size=(info.uv_resolution,) * 2)
    render = avatar.animate(inverter.models.prior, expression, frames.camera)
    assert render.image.shape == (2, 3, info.image_resolution, info.image_resolution)
    assert torch.isfinite(render.image).all() and avatar.features.ws.shape == (1, info.num_ws, info.w_dim)
