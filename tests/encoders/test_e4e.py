"""E_latent (e4e) at tiny size: shapes, the style split, broadcast + deltas, gradients, a small overfit."""

import pytest
import torch

from invertavatar_core.plugin.protocols import LatentEncoder
from invertavatar_encoders import E4EEncoder
from invertavatar_encoders.style_pyramid import StylePyramid, style_split


def build(registry, info, **overrides) -> E4EEncoder:
    config = registry.tiny_config("encoder", "e4e", **overrides)
    return registry.create("encoder", config, prior_info=info, aggregator=None, registry=registry)


def images(n: int = 2, r: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_protocol(registry, tiny_info) -> None:
    enc = build(registry, tiny_info).eval()
    assert isinstance(enc, LatentEncoder) and enc.role == "latent"
    assert (enc.input_channels, enc.input_resolution) == (3, 64)
    with torch.no_grad():
        w = enc(images())
    assert w.shape == (2, tiny_info.num_ws, tiny_info.w_dim) and torch.isfinite(w).all()
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        enc(images(r=32))


def test_paper_style_split() -> None:
    """14 styles: 0-2 from the coarse 16² map, 3-6 from 32², 7-13 from 64² (docs/design/encoders.md)."""
    assert style_split(14, 3, 4) == (3, 4, 7)
    assert style_split(18, 3, 4) == (3, 4, 11)
    assert style_split(5, 3, 4) == (3, 2, 0)
    pyramid = StylePyramid((8, 8, 8), (64, 32, 16), num_ws=14, w_dim=4)
    assert pyramid.sources == (2,) * 3 + (1,) * 4 + (0,) * 7
    # Stride-2 convs down to 1x1: log2 of the map size.
    assert [sum(isinstance(m, torch.nn.Conv2d) for m in b.convs) for b in pyramid.styles[::3]] == [4, 5, 5, 6, 6]


def test_style_zero_is_broadcast_and_others_are_deltas(registry, tiny_info) -> None:
    enc = build(registry, tiny_info).eval()
    x = images()
    with torch.no_grad():
        full = enc(x)
        for block in enc.styles.styles[1:]:
            block.linear.weight.zero_()
            block.linear.bias.fill_(0.5)
        shifted = enc(x)
    torch.testing.assert_close(shifted[:, 0], full[:, 0], rtol=0, atol=0)
    # Every delta is now exactly 0.5, so each style is style 0 + 0.5.
    torch.testing.assert_close(shifted[:, 1:], full[:, :1].expand_as(shifted[:, 1:]) + 0.5)


def test_every_parameter_learns_and_loss_falls(registry, tiny_info) -> None:
    enc = build(registry, tiny_info)
    x = images(4)
    target = torch.randn(4, tiny_info.num_ws, tiny_info.w_dim, generator=torch.Generator().manual_seed(1)) * 0.5
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss = (enc(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, missing
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2, losses[::10]


def test_missing_trunk_weights_are_named(registry, tiny_info, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model_ir_se50.pth"):
        build(registry, tiny_info, ir_se50_weights=str(tmp_path / "model_ir_se50.pth"))


def test_trunk_weights_initialise_the_trunk(registry, tiny_info, tmp_path) -> None:
    from invertavatar_core.io.checkpoints import save_tensors

    donor = build(registry, tiny_info)
    path = save_tensors(tmp_path / "trunk.safetensors", donor.trunk.state_dict())
    enc = build(registry, tiny_info, ir_se50_weights=str(path))
    for k, v in donor.trunk.state_dict().items():
        assert torch.equal(enc.trunk.state_dict()[k], v), k
