"""ConvFusion, the fixed-window baseline of the ablation (Sec. 4.3.1, Fig. 5-6).

A window of ``window`` frames is concatenated along channels and fused by a 3x3 convolution with
leaky ReLU. The window capacity is fixed, so beyond it the fused windows are averaged (the
paper's "ConvFusion_avg"); a partly filled window is completed by repeating its frames
cyclically (as the released inference tiles 1-2 frames up to 4) and counts as one window.
"""

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.aggregation import AggregatorBase
from invertavatar_core.components import AggregatorConfig
from invertavatar_core.protocols import AggregatorState

__all__ = ["ConvFusionAggregator", "ConvFusionAggregatorConfig"]


class ConvFusionAggregatorConfig(AggregatorConfig):
    """Window size and fusion kernel."""

    name: Literal["conv_fusion"] = "conv_fusion"
    window: int = Field(4, ge=1)
    """Frames fused at once (4 in the released baseline)."""
    kernel_size: int = Field(3, ge=1)
    """Kernel of the fusion convolution (odd)."""
    negative_slope: float = 0.2
    """Leaky ReLU slope after the fusion convolution."""


class ConvFusionAggregator(AggregatorBase):
    """Fixed-window convolutional fusion, averaged over windows.

    State: ``buffer (B, window, C, H, W)`` of the current window, ``filled ()`` frames in it,
    ``fused_sum (B, C, H, W)`` over completed windows and ``windows ()`` completed.
    """

    def __init__(self, config: ConvFusionAggregatorConfig, *, channels: int) -> None:
        super().__init__(channels)
        if config.kernel_size % 2 == 0:
            raise ValueError(f"conv_fusion.kernel_size must be odd, got {config.kernel_size}")
        self.config = config
        self.fuse = nn.Conv2d(config.window * channels, channels, config.kernel_size, padding=config.kernel_size // 2)
        self.activation = nn.LeakyReLU(config.negative_slope)

    def _fuse(self, frames: Tensor) -> Tensor:
        """``frames: (B, window, C, H, W)`` -> ``(B, C, H, W)``."""
        return self.activation(self.fuse(frames.flatten(1, 2)))

    def init_state(self, like: Tensor) -> AggregatorState:
        """Empty window and no completed windows."""
        b, c, h, w = like.shape
        zero = torch.zeros((), dtype=torch.long, device=like.device)
        return {
            "buffer": like.new_zeros(b, self.config.window, c, h, w),
            "filled": zero,
            "fused_sum": torch.zeros_like(like),
            "windows": zero.clone(),
        }

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        """Put ``frame (B, C, H, W)`` in the window; fuse and bank it when full."""
        filled = int(state["filled"])
        buffer = state["buffer"].clone()
        buffer[:, filled] = frame
        filled += 1
        if filled < self.config.window:
            return {**state, "buffer": buffer, "filled": state["filled"] + 1}
        return {
            "buffer": torch.zeros_like(buffer),
            "filled": torch.zeros_like(state["filled"]),
            "fused_sum": state["fused_sum"] + self._fuse(buffer),
            "windows": state["windows"] + 1,
        }

    def read(self, state: AggregatorState) -> Tensor:
        """Mean of the fused windows, the partial window (tiled) counting as one."""
        filled, windows = int(state["filled"]), int(state["windows"])
        if filled == 0 and windows == 0:
            raise ValueError("conv_fusion aggregator read before any frame was added")
        total, count = state["fused_sum"], windows
        if filled:
            order = [i % filled for i in range(self.config.window)]
            total = total + self._fuse(state["buffer"][:, order])
            count += 1
        return total / count
