"""The prior's release settings (docs/release-weights.md): each does what it says; the defaults stay the paper's."""

import torch
import torch.nn.functional as F

from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_prior_next3d.importance_sampler import importance_depths
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig
from invertavatar_prior_next3d.release.prior import RELEASE_SETTINGS
from invertavatar_prior_next3d.resample import resize
from invertavatar_prior_next3d.synthesis import BlockCondition, BlockSpec, SynthesisBlock
from invertavatar_prior_next3d.volume_renderer import VolumeRenderer


def _block(after: bool) -> SynthesisBlock:
    torch.manual_seed(0)
    return SynthesisBlock(BlockSpec("32", 8, 4), 4, w_dim=6, img_channels=3, condition_after_torgb=after).eval()


def test_condition_order_decides_what_the_torgb_sees():
    x, img, ws = torch.randn(1, 4, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 6)
    alpha = torch.ones(1, 1, 8, 8)
    outputs = {}
    for after in (False, True):
        block = _block(after)
        for name, features in (("a", torch.zeros(1, 4, 8, 8)), ("b", torch.ones(1, 4, 8, 8))):
            condition = BlockCondition(alpha=alpha, features=features)
            with torch.no_grad():
                outputs[after, name] = block(x, img, ws, batch_size=1, noise_mode="const", condition=condition)
    for after in (False, True):
        # Alpha 1 replaces the features whatever the order.
        torch.testing.assert_close(outputs[after, "b"][0], torch.ones(1, 4, 8, 8))
    # Before the ToRGB (ours) the image follows the replaced features; after it (release) it does not.
    assert not torch.allclose(outputs[False, "a"][1], outputs[False, "b"][1])
    assert torch.equal(outputs[True, "a"][1], outputs[True, "b"][1])


def test_batch_mean_range_couples_the_frames_of_a_batch():
    torch.manual_seed(0)
    planes = torch.randn(2, 3, 4, 16, 16)
    single = look_at_camera(radius=2.7)
    cameras = torch.cat([single, look_at_camera(radius=3.0)])
    for batch_range in (False, True):
        renderer = VolumeRenderer(4, hidden=8, samples=6, importance_samples=4, batch_range=batch_range).eval()
        with torch.no_grad():
            pair = renderer(planes, cameras, 4).feature_image[:1]
            alone = renderer(planes[:1], single, 4).feature_image
        # Per camera (ours), a frame renders the same alone or in a batch; the release's batch mean does not.
        assert torch.allclose(pair, alone, atol=1e-6) != batch_range


def test_midpoint_pdf_is_eg3d_sampling():
    depths = torch.linspace(2.0, 3.0, 11).reshape(1, 1, 11, 1)
    weights = torch.ones(1, 1, 10)
    ours = importance_depths(depths, weights, 5, deterministic=True)
    release = importance_depths(depths, weights, 5, deterministic=True, midpoints=True)
    # Uniform weights: ours spreads the quantiles 1/6 ... 5/6 over the whole range; EG3D's
    # quantiles 0 ... 1 run over the midpoints 2.05 ... 2.85 (the last midpoint is never a bin).
    torch.testing.assert_close(ours.flatten(), torch.linspace(2.0, 3.0, 7)[1:-1])
    torch.testing.assert_close(release.flatten(), torch.linspace(2.05, 2.85, 5))


def test_full_uv_sampling_samples_at_the_uv_resolution():
    torch.manual_seed(0)
    face = Next3DPrior(Next3DPriorConfig(preset="tiny", texture_sampling="full_uv")).face_module
    hu, r = face.uv_resolution, face.level_resolution["x64"]
    uv = torch.rand(1, 3, hu, hu) * 2 - 1
    uv[:, 2] = 1.0  # all face: each map is the sampled texture itself
    texture = {
        level: torch.randn(1, 4, size, size) for level, size in (("rgb32", 8), ("x32", 8), ("x64", 16), ("x128", 32))
    }
    crops = {f"face_{k}": torch.zeros(1, 4, face.level_resolution[k], face.level_resolution[k]) for k in texture}
    conditions, _ = face.conditions(texture, crops, uv)
    sampled = F.grid_sample(texture["x64"], uv[:, :2].permute(0, 2, 3, 1), padding_mode="border", align_corners=False)
    assert hu > 2 * r  # the default would sample at 2 r
    torch.testing.assert_close(conditions["64"].features, resize(sampled, r))


def test_release_settings_are_not_the_defaults():
    defaults = Next3DPriorConfig()
    for name, value in RELEASE_SETTINGS.items():
        assert getattr(defaults, name) != value, name
    prior = Next3DPrior(Next3DPriorConfig(preset="tiny", **RELEASE_SETTINGS))
    renderer = prior.renderer
    assert (renderer.pixel_offset, renderer.batch_range, renderer.midpoint_pdf) == (0.0, True, True)
    assert prior.face_module.supersampling is None
    assert all(b.condition_after_torgb for b in prior.face_module.synthesis.blocks)
