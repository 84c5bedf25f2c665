"""The two layers of a StyleGAN2 synthesis block: a modulated 3x3 conv with noise, and ToRGB.

:class:`SynthesisLayer`: affine(w) -> modulated, demodulated conv (optionally upsampling) ->
per-pixel noise times a learned strength -> bias, leaky ReLU with gain sqrt(2) -> clamp.
:class:`ToRGBLayer`: affine(w) -> modulated 1x1 conv without demodulation -> bias -> clamp. The
clamps (``conv_clamp``, 256 in StyleGAN2) keep fp16/bf16 activations finite.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.fully_connected import LRELU_GAIN, FullyConnected
from invertavatar_prior_next3d.modulated_conv import modulated_conv2d

__all__ = ["NoiseMode", "SynthesisLayer", "ToRGBLayer"]

NoiseMode = Literal["random", "const", "none"]
"""Per-pixel noise: fresh Gaussian noise, the layer's stored noise, or none."""


class SynthesisLayer(nn.Module):
    """``(x (B, I, H, W), w (S, D)) -> (B, O, H', W')`` with ``S`` = B or 1 (one style for all)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        up: bool = False,
        use_noise: bool = True,
        conv_clamp: float | None = 256.0,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.use_noise = use_noise
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(
        self,
        x: Float[Tensor, "B I H W"],
        w: Float[Tensor, "S D"],
        *,
        noise_mode: NoiseMode = "random",
        fused: bool = True,
    ) -> Float[Tensor, "B O h w"]:
        """Apply the layer; ``fused`` picks the grouped-conv execution (see ``modulated_conv``)."""
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, fused=fused)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        x = F.leaky_relu(x + self.bias.to(x.dtype)[:, None, None], 0.2) * LRELU_GAIN
        if self.conv_clamp is not None:
            limit = self.conv_clamp * LRELU_GAIN
            x = x.clamp(-limit, limit)
        return x

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"{self.in_channels} -> {self.out_channels} @ {self.resolution}, up={self.up}, noise={self.use_noise}"


class ToRGBLayer(nn.Module):
    """``(x (B, I, H, W), w (S, D)) -> (B, O, H, W)``: a modulated 1x1 conv without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = 256.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Without demodulation the 1/sqrt(fan_in) of the equalised learning rate goes on the styles.
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(
        self, x: Float[Tensor, "B I H W"], w: Float[Tensor, "S D"], *, fused: bool = True
    ) -> Float[Tensor, "B O H W"]:
        """Apply the layer."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        x = x + self.bias.to(x.dtype)[:, None, None]
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"{self.in_channels} -> {self.out_channels}"
