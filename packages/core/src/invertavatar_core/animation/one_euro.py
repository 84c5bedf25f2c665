"""The one-euro filter (Casiez, Roussel and Vogel's "1 euro filter"): adaptive low-pass smoothing of a live signal.

A first-order low-pass filter whose cutoff frequency rises with the signal's speed: a still signal
is smoothed hard (cutoff ``min_cutoff``), which removes jitter, while a moving one is followed
closely (cutoff ``min_cutoff + beta |speed|``), which keeps the lag small. The speed is itself the
low-pass-filtered (cutoff ``d_cutoff``) finite difference of the filtered signal. Each component
of a vector is filtered on its own, with its own cutoff.

For one step of length ``dt`` seconds a low-pass filter with cutoff ``f`` Hz blends
``x_hat = a x + (1 - a) x_hat_prev`` with ``a = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi f)``.
"""

import math

import torch

from invertavatar_core.tensor_types import Float, Tensor

__all__ = ["OneEuroFilter", "smoothing_factor"]


def smoothing_factor(cutoff: Float[Tensor, "..."] | float, dt: float) -> Float[Tensor, "..."] | float:
    """The blend ``a = 1 / (1 + tau / dt)`` of a first-order low-pass filter with ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Smooths a stream of ``(..., D)`` tensors; call it with each sample and its time in seconds.

    Args:
        min_cutoff: cutoff (Hz) of a still signal; lower removes more jitter and adds lag.
        beta: how fast the cutoff rises with speed (per signal unit per second); higher follows
            fast motion more closely.
        d_cutoff: cutoff (Hz) of the speed estimate.

    Example:
        >>> smooth = OneEuroFilter(min_cutoff=1.0, beta=0.5)
        >>> smoothed = [smooth(x, t / 25) for t, x in enumerate(samples)]  # doctest: +SKIP
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not value > 0:
                raise ValueError(f"OneEuroFilter: {name} must be > 0 Hz, got {value}")
        if beta < 0:
            raise ValueError(f"OneEuroFilter: beta must be >= 0, got {beta}")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._value: Tensor | None = None
        self._speed: Tensor | None = None
        self._time: float | None = None

    def __call__(self, value: Float[Tensor, "*shape"], time: float) -> Float[Tensor, "*shape"]:
        """The filtered sample at ``time`` seconds (strictly after the previous sample's)."""
        value = value.detach()
        if self._value is None or self._time is None:
            self._value, self._speed, self._time = value.clone(), torch.zeros_like(value), time
            return value.clone()
        dt = time - self._time
        if not dt > 0:
            raise ValueError(f"OneEuroFilter: sample times must increase, got {time} after {self._time}")
        speed = (value - self._value) / dt
        self._speed = self._speed + smoothing_factor(self.d_cutoff, dt) * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * self._speed.abs()
        self._value = self._value + smoothing_factor(cutoff, dt) * (value - self._value)
        self._time = time
        return self._value.clone()
