"""The averaging baseline (Table 2's feature averaging, OTAvatar-style): the mean of all frames."""

from typing import Literal

import torch
from torch import Tensor

from invertavatar_core.plugin.bases import AggregatorBase
from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import AggregatorState

__all__ = ["MeanAggregator", "MeanAggregatorConfig"]


class MeanAggregatorConfig(AggregatorConfig):
    """The mean has nothing to configure."""

    name: Literal["mean"] = "mean"


class MeanAggregator(AggregatorBase):
    """Running mean of per-frame maps: state = running sum ``(B, C, H, W)`` and frame count ``(B,)``."""

    def __init__(self, config: MeanAggregatorConfig, *, channels: int) -> None:
        super().__init__(channels)
        self.config = config

    def init_state(self, like: Tensor) -> AggregatorState:
        """Zero sum and count for frames like ``like: (B, C, H, W)``."""
        return {"sum": torch.zeros_like(like), "count": like.new_zeros(like.shape[0])}

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        """Add one frame ``(B, C, H, W)``."""
        return {"sum": state["sum"] + frame, "count": state["count"] + 1}

    def read(self, state: AggregatorState) -> Tensor:
        """The mean so far ``(B, C, H, W)``; reading before any frame is an error."""
        count = state["count"]
        if bool((count <= 0).any()):
            raise ValueError("mean aggregator read before any frame was added")
        return state["sum"] / count.view(-1, 1, 1, 1)
