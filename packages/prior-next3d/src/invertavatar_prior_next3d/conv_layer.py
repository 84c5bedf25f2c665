"""The equalised-learning-rate convolution of StyleGAN2's discriminator, optionally downsampling.

``down=True`` low-passes with the [1, 3, 3, 1] filter before a stride-2 convolution (StyleGAN2's
anti-aliased downsampling); activations are leaky ReLU with gain sqrt(2) and clamped to
``conv_clamp`` for half-precision safety.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.fully_connected import LRELU_GAIN
from invertavatar_prior_next3d.resample import blur2d

__all__ = ["Conv2dLayer"]


class Conv2dLayer(nn.Module):
    """``(B, I, H, W) -> (B, O, H', W')``; ``gain`` scales the output (sqrt(0.5) in residual sums)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: Literal["linear", "lrelu"] = "linear",
        down: bool = False,
        conv_clamp: float | None = 256.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.down, self.activation = in_channels, out_channels, down, activation
        self.conv_clamp = conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Float[Tensor, "B I H W"], gain: float = 1.0) -> Float[Tensor, "B O h w"]:
        """Apply the layer."""
        weight = (self.weight * self.weight_gain).to(x.dtype)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        k = weight.shape[-1]
        if self.down:
            # Filter then stride-2 conv: padding (k - 1) + 2 in total keeps exactly half the size.
            p = (k - 1 + 2) // 2
            x = F.conv2d(blur2d(x, (p, p, p, p)), weight, bias, stride=2)
        else:
            x = F.conv2d(x, weight, bias, padding=k // 2)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * (LRELU_GAIN * gain)
        elif gain != 1:
            x = x * gain
        if self.conv_clamp is not None:
            limit = self.conv_clamp * gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
            x = x.clamp(-limit, limit)
        return x

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"{self.in_channels} -> {self.out_channels}, down={self.down}, activation={self.activation}"
