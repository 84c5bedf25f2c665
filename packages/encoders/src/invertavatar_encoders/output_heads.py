"""Output heads of the UNet encoders: map decoder features to the prior's feature levels.

``E_tex`` uses 1x1 convs (per-texel linear maps, docs/design/encoders.md); ``E_tri`` uses
:class:`ConvHead` (conv3x3, LeakyReLU 0.2, conv3x3, as released) for each CS-SFT scale and
shift, and the tri-plane-offset ablation uses the same head for its single output.
"""

from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["ConvHead", "PointwiseHead"]


class ConvHead(nn.Sequential):
    """conv3x3 (C -> C), LeakyReLU 0.2, conv3x3 (C -> out): ``(B, C, H, W) -> (B, out, H, W)``.

    ``bias`` initialises the last conv's bias (1 for a multiplicative SFT scale, so that a fresh
    encoder starts close to leaving the generator unchanged instead of zeroing half its channels).
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: float = 0.0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, 1, 1),
            nn.LeakyReLU(0.2),  # as released
            nn.Conv2d(in_channels, out_channels, 3, 1, 1),
        )
        nn.init.constant_(self[-1].bias, bias)

    def forward(self, x: Float[Tensor, "B C H W"]) -> Float[Tensor, "B O H W"]:
        """Apply the head."""
        return super().forward(x)


class PointwiseHead(nn.Conv2d):
    """1x1 conv ``(B, C, H, W) -> (B, out, H, W)`` (E_tex's per-level heads)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)
