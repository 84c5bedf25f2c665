"""PSNR, L1, SSIM and MS-SSIM on inputs with known answers."""

import math

import pytest
import torch

from invertavatar_core.evaluation.metrics import (
    L1,
    MSSSIM,
    PSNR,
    SSIM,
    L1Config,
    MSSSIMConfig,
    PSNRConfig,
    SSIMConfig,
    ms_ssim,
    psnr,
)


def _unit_to_model(image01: torch.Tensor) -> torch.Tensor:
    return image01 * 2 - 1


def _images(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=g)  # [0.25, 0.75]: noise never clips


def test_psnr_identical_images_reach_the_cap_and_match_the_definition():
    x = _unit_to_model(_images())
    metric = PSNR(PSNRConfig(max_db=80.0))
    metric.update(x, x)
    assert metric.compute() == pytest.approx(80.0)
    assert metric.count == 4


def test_psnr_of_known_gaussian_noise_is_analytic():
    clean = _images(n=4, size=128)
    sigma = 0.05  # in [0, 1] units
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    metric = PSNR(PSNRConfig())
    metric.update(_unit_to_model(noisy), _unit_to_model(clean))
    expected = -10 * math.log10(sigma**2)  # 26.02 dB; MSE estimate from 49k samples: +-0.03 dB
    assert metric.compute() == pytest.approx(expected, abs=0.1)


def test_psnr_is_the_mean_of_per_image_values_and_reset_forgets():
    clean = _images(n=2)
    noisy = clean.clone()
    noisy[0] += 0.1  # MSE 0.01 -> 20 dB
    noisy[1] += 0.01  # MSE 1e-4 -> 40 dB
    values = psnr(_unit_to_model(noisy), _unit_to_model(clean))
    torch.testing.assert_close(values, torch.tensor([20.0, 40.0]), atol=1e-3, rtol=0)
    metric = PSNR(PSNRConfig())
    metric.update(_unit_to_model(noisy[:1]), _unit_to_model(clean[:1]))
    metric.update(_unit_to_model(noisy[1:]), _unit_to_model(clean[1:]))
    assert metric.compute() == pytest.approx(30.0, abs=1e-3)
    metric.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_l1_is_measured_in_unit_range():
    clean = _images()
    metric = L1(L1Config())
    metric.update(_unit_to_model(clean), _unit_to_model(clean))
    assert metric.compute() == 0.0
    metric.reset()
    metric.update(_unit_to_model(clean + 0.1), _unit_to_model(clean))
    assert metric.compute() == pytest.approx(0.1, rel=1e-5)


def test_ssim_identical_is_one_and_constant_images_follow_the_luminance_formula():
    x = _unit_to_model(_images())
    metric = SSIM(SSIMConfig())
    metric.update(x, x)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    a, b = 0.5, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances are 0: the cs term is exactly 1
    metric.reset()
    metric.update(_unit_to_model(torch.full((1, 3, 32, 32), a)), _unit_to_model(torch.full((1, 3, 32, 32), b)))
    # float32 E[x^2] - mu^2 leaves ~1e-8 of variance; against C2 = 9e-4 that is ~3e-5 of cs.
    assert metric.compute() == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_known_values_and_monotone_in_noise():
    config = MSSSIMConfig(window_size=3)
    metric = MSSSIM(config)
    x = _unit_to_model(_images())
    metric.update(x, x)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    a, b = 0.5, 0.6
    c1 = 0.01**2
    luminance = (2 * a * b + c1) / (a * a + b * b + c1)
    value = ms_ssim(
        _unit_to_model(torch.full((1, 3, 64, 64), a)), _unit_to_model(torch.full((1, 3, 64, 64), b)), config
    )
    # Only the coarsest scale sees the luminance term: MS-SSIM = l ** w_5.
    assert float(value) == pytest.approx(luminance ** config.scale_weights[-1], abs=1e-4)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=g)
    values = [float(ms_ssim(x + s * noise, x, config).mean()) for s in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]


def test_ms_ssim_distance_is_differentiable_and_small_images_get_a_clear_error():
    metric = MSSSIM(MSSSIMConfig(window_size=3))
    target = _unit_to_model(_images(n=2))
    prediction = (target + 0.1 * torch.randn(target.shape)).requires_grad_(True)
    distance = metric.distance(prediction, target)
    assert distance.shape == (2,) and (distance > 0).all()
    distance.sum().backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="too small for 5 scales"):
        ms_ssim(target, target, MSSSIMConfig())  # 64 px with an 11-px window


def test_bad_shapes_are_named(without_shape_checker):  # the checker would refuse them first
    metric = PSNR(PSNRConfig())
    with pytest.raises(ValueError, match=r"prediction must be \(B, 3, H, W\)"):
        metric.update(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16))
