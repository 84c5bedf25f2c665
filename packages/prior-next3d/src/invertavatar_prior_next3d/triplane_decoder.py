"""The small MLP that turns averaged tri-plane features into density and colour features (docs/design/prior.md).

FC ``C -> hidden`` (64), softplus, FC ``hidden -> 1 + C_out`` (33): the first output is the raw
density, the rest go through ``sigmoid * (1 + 2 * 0.001) - 0.001`` (EG3D's widened sigmoid, so
that 0 and 1 stay reachable with finite logits).
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.fully_connected import FullyConnected

__all__ = ["COLOR_MARGIN", "TriplaneDecoder"]

COLOR_MARGIN = 0.001
"""The sigmoid is widened by this much at both ends (EG3D, as released)."""


class TriplaneDecoder(nn.Module):
    """``features (B, N, C) -> (density (B, N, 1), colour features (B, N, C_out))``."""

    def __init__(
        self, in_channels: int, *, hidden: int = 64, out_channels: int = 32, lr_multiplier: float = 1.0
    ) -> None:
        super().__init__()
        self.hidden = FullyConnected(in_channels, hidden, lr_multiplier=lr_multiplier)
        self.out = FullyConnected(hidden, 1 + out_channels, lr_multiplier=lr_multiplier)

    def forward(self, features: Float[Tensor, "B N C"]) -> tuple[Float[Tensor, "B N 1"], Float[Tensor, "B N O"]]:
        """Decode every sample point."""
        x = self.out(F.softplus(self.hidden(features)))
        density = x[..., :1]
        color = torch.sigmoid(x[..., 1:]) * (1 + 2 * COLOR_MARGIN) - COLOR_MARGIN
        return density, color
