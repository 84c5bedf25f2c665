"""The equalised-learning-rate fully connected layer of StyleGAN2 (mapping networks, affines, decoder).

Weights are stored as unit Gaussians divided by ``lr_multiplier`` and rescaled by
``lr_multiplier / sqrt(fan_in)`` at every call, so Adam's effective step is the same for every
layer whatever its fan-in, and ``lr_multiplier`` slows a layer down (0.01 in mapping networks).
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["LRELU_GAIN", "FullyConnected"]

LRELU_GAIN = math.sqrt(2.0)
"""Gain after leaky ReLU (slope 0.2) that keeps activations at unit variance (StyleGAN2)."""


class FullyConnected(nn.Module):
    """``y = act(x @ (W * gain)^T + b * lr_multiplier)``: ``(..., in_features) -> (..., out_features)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: Literal["linear", "lrelu"] = "linear",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Float[Tensor, "... I"]) -> Float[Tensor, "... O"]:
        """Apply the layer (and leaky ReLU with gain sqrt(2) when ``activation="lrelu"``)."""
        weight = self.weight * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"{self.in_features} -> {self.out_features}, activation={self.activation}"
