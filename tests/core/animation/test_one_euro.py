"""The one-euro filter: removes jitter from a still signal, follows a step with bounded lag, checks its input."""

import math

import pytest
import torch

from invertavatar_core.animation.live import frame_to_frame_change
from invertavatar_core.animation.one_euro import OneEuroFilter, smoothing_factor

RATE = 25.0


def _run(smooth: OneEuroFilter, samples: torch.Tensor) -> torch.Tensor:
    return torch.stack([smooth(x, t / RATE) for t, x in enumerate(samples)])


def test_smoothing_factor_is_the_first_order_low_pass_blend():
    # tau = 1 / (2 pi f) equal to dt blends half and half; a far higher cutoff passes almost everything.
    dt = 1 / RATE
    assert smoothing_factor(1 / (2 * math.pi * dt), dt) == pytest.approx(0.5)
    assert smoothing_factor(1000.0, dt) > 0.99 > 0.1 > smoothing_factor(0.1, dt)


def test_a_noisy_constant_signal_is_smoothed_and_stays_on_its_value():
    generator = torch.Generator().manual_seed(0)
    samples = 0.7 + 0.05 * torch.randn(200, 3, generator=generator)
    smoothed = _run(OneEuroFilter(min_cutoff=1.0, beta=0.5), samples)
    raw_jitter, smooth_jitter = frame_to_frame_change(samples), frame_to_frame_change(smoothed)
    assert smooth_jitter < 0.25 * raw_jitter
    assert (smoothed[50:].mean(0) - 0.7).abs().max() < 0.02  # no drift away from the value
    assert torch.equal(smoothed[0], samples[0])  # the first sample passes through


def test_a_step_is_followed_with_bounded_lag_and_no_overshoot():
    samples = torch.cat([torch.zeros(20, 1), torch.ones(40, 1)])
    for beta, within in ((0.0, 12), (5.0, 4)):
        smoothed = _run(OneEuroFilter(min_cutoff=1.0, beta=beta), samples)[:, 0]
        assert float(smoothed.max()) <= 1.0 and float(smoothed.min()) >= 0.0  # first order: no overshoot
        reached = int(torch.nonzero(smoothed >= 0.9)[0]) - 20
        assert 0 < reached <= within, (beta, reached)
    # A higher beta (speed-adaptive cutoff) follows the step sooner than a fixed cutoff.
    slow = _run(OneEuroFilter(min_cutoff=1.0, beta=0.0), samples)[22, 0]
    fast = _run(OneEuroFilter(min_cutoff=1.0, beta=5.0), samples)[22, 0]
    assert fast > slow + 0.2


def test_bad_settings_and_times_are_refused_and_reset_forgets():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroFilter(beta=-1.0)
    smooth = OneEuroFilter()
    smooth(torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="increase"):
        smooth(torch.ones(2), 0.0)
    moved = smooth(torch.ones(2), 0.04)
    assert bool(((moved > 0) & (moved < 1)).all())  # part of the way towards the new value
    smooth.reset()
    assert torch.equal(smooth(torch.full((2,), 5.0), 1.0), torch.full((2,), 5.0))
