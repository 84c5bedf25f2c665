"""The sizes each ``preset`` builds: ``paper`` (the published networks) and ``tiny`` (CPU tests).

Every encoder config has ``preset: Literal["paper", "tiny"]``; the numbers live here once, beside
the section of docs/design/encoders.md they come from.
"""

from dataclasses import dataclass, replace
from typing import Literal

from invertavatar_core.nn.ir_se import IR_SE_50, IRSEArchitecture

__all__ = ["PRESETS", "Preset", "PresetSizes", "resolve_sizes"]

Preset = Literal["paper", "tiny"]
"""Names of the size presets."""


@dataclass(frozen=True)
class PresetSizes:
    """Sizes shared by the encoders of one preset."""

    trunk: IRSEArchitecture
    """The IR-SE trunk (E_latent, E_tex and E_tri all use the same one)."""
    input_resolution: int
    """Square input resolution (a multiple of 16)."""
    decoder_channels: tuple[int, int, int, int]
    """UNet decoder widths at R/16, R/8, R/4, R/2 (after each level's DoubleConv)."""
    tail_channels: int
    """Width of the UNet tail at full input resolution (E_tri's 256 level)."""


PRESETS: dict[str, PresetSizes] = {
    "paper": PresetSizes(
        trunk=IR_SE_50,  # IR-SE-50 trunk (supplement 6.3)
        input_resolution=256,  # 512 input avg-pooled to 256, inputs and flow
        decoder_channels=(512, 384, 256, 96),  # up1..up4, E_tex
        tail_channels=96,  # pixel-shuffle 96 -> 24, conv 24 -> 96 -> 96, E_tri
    ),
    "tiny": PresetSizes(
        trunk=IRSEArchitecture(
            stem_channels=8, stage_channels=(8, 16, 16, 32), stage_units=(1, 1, 1, 1), se_reduction=4
        ),
        input_resolution=64,
        decoder_channels=(32, 16, 16, 8),
        tail_channels=8,
    ),
}
"""Preset name -> sizes."""


def resolve_sizes(
    preset: Preset,
    *,
    trunk_channels: tuple[int, ...] | None = None,
    decoder_channels: tuple[int, int, int, int] | None = None,
    tail_channels: int | None = None,
) -> PresetSizes:
    """The preset's sizes with explicit widths replacing its own (checkpoints converted at other widths).

    ``trunk_channels`` = (stem, stage 1, ..., stage 4); depths and SE reduction stay the preset's.
    """
    sizes = PRESETS[preset]
    if trunk_channels is not None:
        if len(trunk_channels) != 1 + len(sizes.trunk.stage_channels):
            raise ValueError(
                f"trunk_channels must give the stem and {len(sizes.trunk.stage_channels)} stage widths, "
                f"got {tuple(trunk_channels)}"
            )
        trunk = replace(sizes.trunk, stem_channels=trunk_channels[0], stage_channels=tuple(trunk_channels[1:]))
        sizes = replace(sizes, trunk=trunk)
    if decoder_channels is not None:
        sizes = replace(sizes, decoder_channels=tuple(decoder_channels))
    if tail_channels is not None:
        sizes = replace(sizes, tail_channels=tail_channels)
    return sizes
