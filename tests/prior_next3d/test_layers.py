"""StyleGAN2 building blocks: modulated convs, mapping, synthesis hooks, resampling, minibatch std."""

import math

import pytest
import torch
import torch.nn.functional as F

from invertavatar_prior_next3d.discriminator import minibatch_std
from invertavatar_prior_next3d.fully_connected import FullyConnected
from invertavatar_prior_next3d.mapping import MappingNetwork
from invertavatar_prior_next3d.modulated_conv import modulated_conv2d
from invertavatar_prior_next3d.resample import downsample2d, upsample2d
from invertavatar_prior_next3d.synthesis import BlockCondition, SynthesisNetwork, ladder


def _reference_modulated_conv(x, weight, styles, demodulate):
    """Per-sample loop: scale the weight, demodulate, convolve."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i % styles.shape[0]][None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        outs.append(F.conv2d(x[i : i + 1], w, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_per_sample_reference(demodulate):
    g = torch.Generator().manual_seed(0)
    x, w, s = torch.randn(3, 5, 7, 7, generator=g), torch.randn(4, 5, 3, 3, generator=g), torch.randn(3, 5, generator=g)
    expected = _reference_modulated_conv(x, w, s, demodulate)
    for fused in (True, False):
        torch.testing.assert_close(
            modulated_conv2d(x, w, s, demodulate=demodulate, fused=fused), expected, rtol=1e-4, atol=1e-5
        )
    # One style shared by the batch is the same as that style repeated.
    shared = modulated_conv2d(x, w, s[:1], demodulate=demodulate)
    torch.testing.assert_close(
        shared, _reference_modulated_conv(x, w, s[:1].expand(3, -1), demodulate), rtol=1e-4, atol=1e-5
    )


def test_upsampling_conv_paths_agree_and_double_the_size():
    g = torch.Generator().manual_seed(1)
    x, w, s = torch.randn(2, 4, 5, 6, generator=g), torch.randn(3, 4, 3, 3, generator=g), torch.randn(2, 4, generator=g)
    fused = modulated_conv2d(x, w, s, up=True, fused=True)
    unfused = modulated_conv2d(x, w, s, up=True, fused=False)
    assert fused.shape == (2, 3, 10, 12)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-5)
    # A constant input stays constant in the interior, scaled by the kernel sum (low-pass, no checkerboard).
    ones = modulated_conv2d(torch.ones(1, 1, 6, 6), torch.ones(1, 1, 3, 3), torch.ones(1, 1), demodulate=False, up=True)
    torch.testing.assert_close(ones[0, 0, 2:-2, 2:-2], torch.full((8, 8), 9.0))


def test_demodulation_normalises_output_scale():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 64, 16, 16, generator=g)
    w = torch.randn(64, 64, 3, 3, generator=g)
    small, large = torch.rand(8, 64, generator=g) + 0.1, (torch.rand(8, 64, generator=g) + 0.1) * 100
    assert 0.8 < modulated_conv2d(x, w, small).std() < 1.2
    assert 0.8 < modulated_conv2d(x, w, large).std() < 1.2
    assert modulated_conv2d(x, w, large, demodulate=False).std() > 100


def test_resampling_is_the_1331_filter():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)
    up = upsample2d(x)
    assert up.shape == (1, 1, 8, 8)
    # Output pixels 2k and 2k+1 weigh their two nearest inputs 1/4 : 3/4 and 3/4 : 1/4.
    torch.testing.assert_close(up[0, 0, 3, 2:6], torch.tensor([0.75, 1.25, 1.75, 2.25]))
    # Outside the image the signal is zero (StyleGAN2's upfirdn2d), not the border value: the
    # outermost outputs keep 3/4 of the border input.
    torch.testing.assert_close(up[0, 0, 3, [0, 7]], torch.tensor([0.0, 0.75 * 3]))
    torch.testing.assert_close(up[0, 0, [0, 7], 4], torch.tensor([0.75 * 1.75, 0.75 * 1.75]))
    ramp = torch.linspace(0, 1, 16).reshape(1, 1, 1, 16).expand(1, 1, 16, 16)
    down = downsample2d(ramp)
    assert down.shape == (1, 1, 8, 8)
    # A linear ramp stays linear in the interior after the symmetric low-pass.
    diffs = down[0, 0, 4, 1:-1].diff()
    torch.testing.assert_close(diffs, torch.full_like(diffs, diffs.mean().item()))


def test_fully_connected_equalised_learning_rate():
    layer = FullyConnected(256, 8, lr_multiplier=0.01, bias_init=1.0)
    x = torch.randn(4096, 256)
    with torch.no_grad():
        y = layer(x)
    assert 0.9 < float(y.std()) < 1.1  # unit-variance output at init whatever the fan-in
    torch.testing.assert_close(y.mean(), torch.tensor(1.0), atol=0.1, rtol=0)


def test_mapping_truncation_and_w_avg():
    mapping = MappingNetwork(z_dim=16, c_dim=25, w_dim=8, num_ws=5)
    z, c = torch.randn(64, 16), torch.randn(64, 25)
    ws = mapping(z, c)
    assert ws.shape == (64, 5, 8) and torch.equal(ws[:, 0], ws[:, 4])
    assert torch.equal(mapping.w_avg, torch.zeros(8))
    mapping(z, c, update_w_avg=True)
    torch.testing.assert_close(mapping.w_avg, 0.002 * ws[:, 0].mean(0))
    mapping.w_avg.copy_(torch.ones(8))
    half = mapping(z, c, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(half[:, :3], 1 + 0.5 * (ws[:, :3] - 1))
    torch.testing.assert_close(half[:, 3:], ws[:, 3:])
    with pytest.raises(ValueError, match=r"camera \(B, 25\)"):
        mapping(z, torch.randn(64, 24))


def test_ladder_channels_follow_the_paper():
    specs = ladder(256, 32768, 512, sft_from=16)
    assert [s.name for s in specs] == ["4", "8", "16", "32", "64", "128", "256"]
    assert [s.channels for s in specs] == [512, 512, 512, 512, 512, 256, 128]
    assert [s.sft for s in specs] == [False, False, True, True, True, True, True]
    tiny = ladder(64, 2048, 16, up_to=128, torgb_until=32)
    assert [s.resolution for s in tiny] == [1, 2, 4, 8, 16, 32]
    assert [s.torgb for s in tiny] == [True, True, True, True, False, False]


def test_synthesis_hooks_sft_and_conditions():
    net = SynthesisNetwork(ladder(64, 512, 8, sft_from=16), w_dim=16, img_channels=6).eval()
    assert net.num_ws == 14
    ws = torch.randn(2, 14, 16)
    img, feats = net(ws, keep={"x32", "rgb32", "x16"})
    assert img.shape == (2, 6, 64, 64) and feats["x32"].shape == (2, 8, 8, 8) and feats["rgb32"].shape == (2, 6, 8, 8)
    # Identity SFT (scale 1, shift 0) changes nothing; a shift changes the output.
    r = feats["x16"].shape[-1]
    same, _ = net(ws, sft={"16": (torch.ones(2, 4, r, r), torch.zeros(2, 4, r, r))})
    assert torch.equal(same, img)
    moved, _ = net(ws, sft={"16": (torch.ones(2, 4, r, r), torch.ones(2, 4, r, r))})
    assert not torch.allclose(moved, img)
    # A full-alpha condition replaces the block's features and skip image exactly.
    target_x, target_rgb = torch.randn(2, 8, 8, 8), torch.randn(2, 6, 8, 8)
    cond = BlockCondition(alpha=torch.ones(2, 1, 8, 8), features=target_x, image=target_rgb)
    _, replaced = net(ws, conditions={"32": cond}, keep={"x32", "rgb32"})
    torch.testing.assert_close(replaced["x32"], target_x)
    torch.testing.assert_close(replaced["rgb32"], target_rgb)
    with pytest.raises(ValueError, match=r"CS-SFT scale for block x16 must be \(B, 4, 4, 4\)"):
        net(ws, sft={"16": (torch.ones(2, 3, r, r), torch.zeros(2, 3, r, r))})
    with pytest.raises(ValueError, match="unknown blocks"):
        net(ws, sft={"17": (torch.ones(1), torch.ones(1))})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_synthesis_is_finite_in_half_precision(dtype):
    net = SynthesisNetwork(ladder(64, 512, 8), w_dim=16, img_channels=3).eval()
    ws = torch.randn(2, 14, 16) * 30  # large styles: the pre-normalisation and clamps keep fp16 finite
    with torch.autocast("cpu", dtype=dtype):
        img, _ = net(ws)
    assert torch.isfinite(img).all()
    reference, _ = net(ws)
    assert F.cosine_similarity(img.float().flatten(), reference.flatten(), dim=0) > 0.95


def test_minibatch_std_appends_group_statistic():
    x = torch.randn(6, 4, 3, 3)
    y = minibatch_std(x, group_size=4)  # 6 is not divisible by 4: groups of 3
    assert y.shape == (6, 5, 3, 3) and torch.equal(y[:, :4], x)
    groups = x.reshape(3, 2, 4, 3, 3)  # sample i belongs to group i % 2
    expected = groups.std(dim=0, unbiased=False).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y[:, 4, 0, 0], expected.repeat(3), rtol=1e-4, atol=1e-6)
    assert math.isfinite(float(minibatch_std(torch.randn(1, 2, 2, 2), 4).sum()))
