"""Loss terms: named fallbacks when pretrained weights are absent, R1, D_W, Eq. 2/3 weighting."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from invertavatar_core.config.experiment import Stage2LossWeights, default_registry
from invertavatar_core.config.presets import TINY_PERCEPTUAL
from invertavatar_core.nn.ir_se import IRSENet
from invertavatar_core.plugin.protocols import CanonicalFeatures
from invertavatar_core.training.losses import (
    IdentityLoss,
    LatentDiscriminator,
    build_identity_loss,
    build_perceptual_loss,
    discriminator_loss,
    feature_losses,
    r1_penalty,
    weighted,
)


def test_perceptual_falls_back_to_the_named_alternative_and_says_why(caplog):
    registry = default_registry()
    lpips = registry.validate_config("metric", {"name": "lpips"})  # no weight files given
    fallback = registry.validate_config("metric", TINY_PERCEPTUAL)
    with caplog.at_level(logging.WARNING, logger="invertavatar.losses"):
        loss = build_perceptual_loss(lpips, fallback, registry)
    assert loss.name == "ms_ssim"
    assert "lpips" in caplog.text and "ms_ssim" in caplog.text
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    value = loss(y, x)
    value.backward()
    assert value.item() > 0.05 and y.grad.abs().sum() > 0


def test_perceptual_is_dropped_with_a_message_when_nothing_can_run(caplog):
    registry = default_registry()
    lpips = registry.validate_config("metric", {"name": "lpips"})
    with caplog.at_level(logging.WARNING, logger="invertavatar.losses"):
        assert build_perceptual_loss(lpips, None, registry) is None
    assert "dropped" in caplog.text


def test_id_loss_needs_weights_and_compares_identities(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="invertavatar.losses"):
        assert build_identity_loss(None) is None
    assert "training.id_weights" in caplog.text
    with pytest.raises(FileNotFoundError, match="model_ir_se50"):
        IdentityLoss(tmp_path / "model_ir_se50.pth")
    torch.manual_seed(0)
    net = IRSENet(head_resolution=112)
    path = tmp_path / "arcface.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loss = IdentityLoss(path)
    a = torch.rand(2, 3, 64, 64) * 2 - 1
    b = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(a, a).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(b, a).item() > 1e-3
    assert all(not p.requires_grad for p in loss.parameters()) and not loss.train().net.training


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    w = torch.tensor([[1.0, -2.0, 0.5]])
    x = torch.randn(4, 3, requires_grad=True)
    assert r1_penalty(x @ w.T, (x,)).item() == pytest.approx(float(w.square().sum()))


def test_latent_discriminator_learns_to_tell_codes_apart():
    torch.manual_seed(0)
    d = LatentDiscriminator(8, layers=2)
    optimizer = torch.optim.Adam(d.parameters(), lr=1e-2)
    real, fake = torch.randn(64, 8) + 2, torch.randn(64, 8) - 2
    first = discriminator_loss(d(real), d(fake)).item()
    for _ in range(50):
        loss = discriminator_loss(d(real), d(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert d(real).shape == (64, 1) and loss.item() < 0.1 * first


def test_eq3_weighting_and_feature_losses():
    features = CanonicalFeatures(
        ws=torch.zeros(1, 2, 4), texture={"a": torch.ones(1, 2, 4, 4)}, static={"triplane": torch.zeros(1, 6, 4, 4)}
    )
    target = CanonicalFeatures(
        ws=torch.zeros(1, 2, 4), texture={"a": torch.zeros(1, 2, 4, 4)}, static={"triplane": torch.ones(1, 6, 4, 4) * 2}
    )
    parts = feature_losses(features, target)
    assert parts["tex"].item() == pytest.approx(1.0) and parts["tri"].item() == pytest.approx(2.0)
    terms = weighted({"l1": torch.tensor(0.5), **parts}, Stage2LossWeights())
    assert terms.total.item() == pytest.approx(0.5 + 1e-3 * 1.0 + 1e-3 * 2.0)
    assert terms.scalars()["tri"] == pytest.approx(2.0)
    with pytest.raises(KeyError, match="bogus"):
        weighted({"bogus": torch.tensor(1.0)}, Stage2LossWeights())
