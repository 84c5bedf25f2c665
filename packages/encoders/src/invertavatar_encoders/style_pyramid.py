"""The e4e style head: an FPN over three trunk maps and one small conv tower per w+ vector.

Shared by every latent encoder (the IR-SE-50 ``e4e`` and the ``timm_backbone`` variant). With
the paper's 14 styles (docs/design/encoders.md): styles 0-2 come from the coarse (16x16) map, 3-6 from the
middle (32x32) map, 7-13 from the fine (64x64) map. Style 0 is broadcast to every position and
the others are added to it as deltas (e4e's progressive design); the result is an offset from
the prior's ``w_avg``, which the pipeline adds.
"""

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["GradualStyleBlock", "StylePyramid", "style_split"]


def style_split(num_ws: int, coarse_styles: int, middle_styles: int) -> tuple[int, int, int]:
    """How many of ``num_ws`` styles come from the coarse, middle and fine maps."""
    coarse = min(coarse_styles, num_ws)
    middle = min(middle_styles, num_ws - coarse)
    return coarse, middle, num_ws - coarse - middle


class GradualStyleBlock(nn.Module):
    """``(B, C, r, r) -> (B, D)``: ceil(log2 r) stride-2 conv3x3 + LeakyReLU down to 1x1, then a linear layer."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        if resolution < 2:
            raise ValueError(f"GradualStyleBlock needs a map of at least 2x2, got {resolution}")
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(math.ceil(math.log2(resolution))):
            layers += [nn.Conv2d(width, out_channels, 3, 2, 1), nn.LeakyReLU()]
            width = out_channels
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(out_channels, out_channels)

    def forward(self, x: Float[Tensor, "B C r r"]) -> Float[Tensor, "B D"]:
        """One style vector per map."""
        return self.linear(self.convs(x).flatten(1))


class StylePyramid(nn.Module):
    """Three trunk maps (fine, middle, coarse) -> w+ offsets ``(B, num_ws, w_dim)``.

    Args:
        in_channels: channels of the fine, middle and coarse maps.
        resolutions: their square resolutions (64, 32, 16 for a 256 IR-SE-50 input).
        num_ws: number of w+ vectors K.
        w_dim: latent width D.
        coarse_styles: styles read from the coarse map (3 as released).
        middle_styles: styles read from the middle map (4); the rest come from the fine map.
        align_corners: how the FPN resizes the coarser map (``False``: pixel-area centres;
            the released e4e resizes with ``align_corners=True``).
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int],
        resolutions: tuple[int, int, int],
        num_ws: int,
        w_dim: int,
        coarse_styles: int = 3,
        middle_styles: int = 4,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        if num_ws < 1:
            raise ValueError(f"StylePyramid needs num_ws >= 1, got {num_ws}")
        self.num_ws, self.w_dim = num_ws, w_dim
        self.resolutions = tuple(resolutions)
        coarse, middle, fine = style_split(num_ws, coarse_styles, middle_styles)
        width = in_channels[2]  # the FPN runs at the coarse map's width (512 in e4e)
        # Laterals only for maps that feed a style, so every parameter is trained.
        self.lateral_middle = nn.Conv2d(in_channels[1], width, 1) if middle or fine else None
        self.lateral_fine = nn.Conv2d(in_channels[0], width, 1) if fine else None
        self.sources = (2,) * coarse + (1,) * middle + (0,) * fine
        """Index into (fine, middle, coarse) of the map each style reads."""
        self.styles = nn.ModuleList(GradualStyleBlock(width, w_dim, resolutions[s]) for s in self.sources)

    def forward(
        self,
        fine: Float[Tensor, "B C0 H0 W0"],
        middle: Float[Tensor, "B C1 H1 W1"],
        coarse: Float[Tensor, "B C2 H2 W2"],
    ) -> Float[Tensor, "B K D"]:
        """w+ offsets: style 0 broadcast, styles 1..K-1 added to it as deltas."""
        maps: list[Tensor | None] = [None, None, coarse]
        if self.lateral_middle is not None:
            maps[1] = _upsample_add(coarse, self.lateral_middle(middle), self.align_corners)
        if self.lateral_fine is not None:
            maps[0] = _upsample_add(maps[1], self.lateral_fine(fine), self.align_corners)
        styles = torch.stack([block(maps[s]) for block, s in zip(self.styles, self.sources, strict=True)], dim=1)
        deltas = torch.cat([torch.zeros_like(styles[:, :1]), styles[:, 1:]], dim=1)
        return styles[:, :1] + deltas


def _upsample_add(top: Tensor, lateral: Tensor, align_corners: bool) -> Tensor:
    """FPN merge: ``top`` bilinearly resized to ``lateral``'s size, plus ``lateral``."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=align_corners) + lateral
