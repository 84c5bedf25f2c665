"""ConvGRU temporal aggregation, the paper's Eq. 1 (Sec. 3.3).

    z_t, r_t = sigmoid(Conv([f_t, h_{t-1}]))
    o_t      = tanh(Conv([f_t, r_t * h_{t-1}]))
    h_t      = z_t * h_{t-1} + (1 - z_t) * o_t,      h_0 = 0

The paper's form is followed exactly: z weights the *previous* state (the released code writes
the complementary convention, which is the same model with z and 1 - z swapped).
"""

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.aggregation import AggregatorBase
from invertavatar_core.components import AggregatorConfig
from invertavatar_core.protocols import AggregatorState

__all__ = ["ConvGRUAggregator", "ConvGRUAggregatorConfig"]


class ConvGRUAggregatorConfig(AggregatorConfig):
    """Eq. 1 with a configurable kernel; hidden size = feature size, as in the released model."""

    name: Literal["conv_gru"] = "conv_gru"
    kernel_size: int = Field(3, ge=1)
    """Spatial kernel of both convolutions (odd; 3 in the released model)."""


class ConvGRUAggregator(AggregatorBase):
    """Convolutional GRU over frames; state = hidden map ``h: (B, C, H, W)``."""

    def __init__(self, config: ConvGRUAggregatorConfig, *, channels: int) -> None:
        super().__init__(channels)
        if config.kernel_size % 2 == 0:
            raise ValueError(f"conv_gru.kernel_size must be odd, got {config.kernel_size}")
        self.config = config
        padding = config.kernel_size // 2
        self.gates = nn.Conv2d(2 * channels, 2 * channels, config.kernel_size, padding=padding)
        """Conv([f_t, h_{t-1}]) -> (z_t, r_t) pre-activations."""
        self.candidate = nn.Conv2d(2 * channels, channels, config.kernel_size, padding=padding)
        """Conv([f_t, r_t * h_{t-1}]) -> o_t pre-activation."""

    def init_state(self, like: Tensor) -> AggregatorState:
        """``h_0 = 0`` shaped like ``like: (B, C, H, W)``."""
        return {"h": torch.zeros_like(like)}

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        """One step of Eq. 1 with ``frame = f_t: (B, C, H, W)``."""
        h = state["h"]
        z, r = torch.sigmoid(self.gates(torch.cat([frame, h], dim=1))).chunk(2, dim=1)
        o = torch.tanh(self.candidate(torch.cat([frame, r * h], dim=1)))
        return {"h": z * h + (1 - z) * o}

    def read(self, state: AggregatorState) -> Tensor:
        """The hidden state ``h_t`` is the output (seq2one)."""
        return state["h"]
