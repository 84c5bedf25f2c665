"""The shared fold behind every aggregator: a sequence call is ``update`` over frames, then ``read``."""

from torch import Tensor, nn

from invertavatar_core.plugin.protocols import AggregatorState

__all__ = ["AggregatorBase"]


class AggregatorBase(nn.Module):
    """Optional base class for aggregators: subclasses write ``init_state``, ``update``, ``read``.

    ``forward(frames: (B, T, C, H, W)) -> (B, C, H, W)`` folds ``update`` over T, so the batch
    and streaming paths are one mechanism and agree exactly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def init_state(self, like: Tensor) -> AggregatorState:
        """Empty state for frames like ``like: (B, C, H, W)``."""
        raise NotImplementedError

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        """Fold one frame ``(B, C, H, W)`` into ``state``."""
        raise NotImplementedError

    def read(self, state: AggregatorState) -> Tensor:
        """The fused map ``(B, C, H, W)``."""
        raise NotImplementedError

    def forward(self, frames: Tensor) -> Tensor:
        """``frames: (B, T, C, H, W)`` -> ``(B, C, H, W)``."""
        if frames.ndim != 5 or frames.shape[2] != self.channels:
            raise ValueError(f"{type(self).__name__} expects (B, T, {self.channels}, H, W), got {tuple(frames.shape)}")
        state = self.init_state(frames[:, 0])
        for t in range(frames.shape[1]):
            state = self.update(state, frames[:, t])
        return self.read(state)
