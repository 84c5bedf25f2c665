"""E_latent: the e4e encoder on an IR-SE-50 trunk (paper Sec. 3.2 and supplement 6.3, docs/design/encoders.md).

Image ``(B, 3, 256, 256)`` in [-1, 1] -> w+ offsets ``(B, num_ws, w_dim)`` from the prior's
``w_avg``. The trunk's stage 2 / 3 / 4 outputs (64², 32², 16² at a 256 input) feed the
:class:`~invertavatar_encoders.style_pyramid.StylePyramid`.
"""

from pathlib import Path
from typing import Any, ClassVar, Literal

from jaxtyping import Float
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.nn.ir_se import IRSENet, load_ir_se50_weights
from invertavatar_core.plugin.kinds import EncoderConfig
from invertavatar_core.plugin.protocols import EncoderRole, PriorFeatureInfo
from invertavatar_encoders.presets import Preset, resolve_sizes
from invertavatar_encoders.style_pyramid import StylePyramid

__all__ = ["E4EEncoder", "E4EEncoderConfig", "build_e4e"]


class E4EEncoderConfig(EncoderConfig):
    """E_latent (e4e on IR-SE-50); sizes from ``preset``, w+ shape from the prior."""

    name: Literal["e4e"] = "e4e"
    preset: Preset = "paper"
    """Network sizes: ``paper`` (about 209 M parameters for 14 x 512 styles) or ``tiny``."""
    input_resolution: int | None = Field(None, ge=32, multiple_of=16)
    """Square input size; ``None`` = the preset's (256 for ``paper``, 64 for ``tiny``)."""
    coarse_styles: int = Field(3, ge=1)  # styles 0-2 from the 16x16 map, docs/design/encoders.md
    """Styles read from the coarsest map."""
    middle_styles: int = Field(4, ge=0)  # styles 3-6 from the 32x32 map, as released
    """Styles read from the middle map; the remaining ones come from the finest map."""
    fpn_align_corners: bool = False
    """FPN resize convention (``True`` reproduces the released e4e; docs/release-weights.md)."""
    trunk_channels: tuple[int, int, int, int, int] | None = None
    """Stem and stage widths replacing the preset's (set by converters for other widths)."""
    ir_se50_weights: Path | None = None
    """Optional ``model_ir_se50.pth`` / ``.safetensors`` that initialises the trunk (supplement 6.3).

    For initialisation only: save trained checkpoints with this cleared, their weights already
    contain the trunk (otherwise loading them needs this file to exist).
    """

    init_only_fields: ClassVar[tuple[str, ...]] = ("ir_se50_weights",)


class E4EEncoder(nn.Module):
    """Image -> w+ offsets from ``w_avg``; satisfies :class:`~invertavatar_core.plugin.protocols.LatentEncoder`.

    Submodules: ``trunk`` (:class:`~invertavatar_core.nn.ir_se.IRSENet`) and ``styles``
    (:class:`~invertavatar_encoders.style_pyramid.StylePyramid`).
    """

    role: ClassVar[EncoderRole] = "latent"

    def __init__(self, config: E4EEncoderConfig, *, prior_info: PriorFeatureInfo) -> None:
        super().__init__()
        sizes = resolve_sizes(config.preset, trunk_channels=config.trunk_channels)
        self.config = config
        self.input_channels = 3
        self.input_resolution = config.input_resolution or sizes.input_resolution
        self.num_ws, self.w_dim = prior_info.num_ws, prior_info.w_dim
        self.trunk = IRSENet(sizes.trunk, in_channels=3)
        if config.ir_se50_weights is not None:
            load_ir_se50_weights(self.trunk, config.ir_se50_weights)
        r = self.input_resolution
        channels = sizes.trunk.stage_channels
        self.styles = StylePyramid(
            in_channels=(channels[-3], channels[-2], channels[-1]),
            resolutions=(r // 4, r // 8, r // 16),
            num_ws=prior_info.num_ws,
            w_dim=prior_info.w_dim,
            coarse_styles=config.coarse_styles,
            middle_styles=config.middle_styles,
            align_corners=config.fpn_align_corners,
        )

    def forward(self, image: Float[Tensor, "B 3 R R"]) -> Float[Tensor, "B K D"]:
        """``image: (B, 3, R, R)`` in [-1, 1] -> ``(B, num_ws, w_dim)`` offsets from ``w_avg``."""
        r = self.input_resolution
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, r, r):
            raise ValueError(f"e4e expects images (B, 3, {r}, {r}) in [-1, 1], got {tuple(image.shape)}")
        stages = self.trunk(image).stages
        return self.styles(stages[-3], stages[-2], stages[-1])


def build_e4e(config: E4EEncoderConfig, *, prior_info: PriorFeatureInfo, **_: Any) -> E4EEncoder:
    """Registry factory; latent encoders ignore ``aggregator`` and ``registry``.

    Example:
        >>> registry.create("encoder", {"name": "e4e", "preset": "tiny"}, prior_info=info,
        ...                 aggregator=None, registry=registry)  # doctest: +SKIP
    """
    return E4EEncoder(config, prior_info=prior_info)
