"""E_tex: the UV-space texture encoder (paper Sec. 3.2, docs/design/encoders.md).

Input per frame, 7 channels in UV space: the UV unwrap of the image (3), of the residual
``I - I_hat`` with -1 where unseen (3), and the visibility (1). Output: additive offsets for the
prior's texture levels (``F_tex`` at 32, 64 and 128 in the paper) through 1x1 heads.
"""

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torch import Tensor

from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import EncoderRole, FeatureEdits, PriorFeatureInfo
from invertavatar_core.plugin.registry import Registry
from invertavatar_encoders.output_heads import PointwiseHead
from invertavatar_encoders.unet import UNetEncoderConfig, UNetFeatureEncoder

__all__ = ["TextureUNet", "TextureUNetConfig", "build_texture_unet"]


class TextureUNetConfig(UNetEncoderConfig):
    """E_tex (one-shot, or recurrent with the experiment's aggregator)."""

    name: Literal["texture_unet"] = "texture_unet"


class TextureUNet(UNetFeatureEncoder):
    """UV unwrap ``(B, T, 7, R, R)`` -> ``FeatureEdits(texture_offsets=...)`` at ``prior_info.texture_levels``."""

    role: ClassVar[EncoderRole] = "texture"

    def __init__(
        self,
        config: TextureUNetConfig,
        *,
        prior_info: PriorFeatureInfo,
        aggregator: AggregatorConfig | None = None,
        registry: Registry | None = None,
    ) -> None:
        if not prior_info.texture_levels:
            raise ValueError("texture_unet: the prior exposes no texture_levels to offset")
        super().__init__(
            config,
            input_channels=7,  # image unwrap 3 + residual unwrap 3 + visibility 1, paper Sec. 3.2
            outputs=prior_info.texture_levels,
            make_head=lambda level, channels: PointwiseHead(channels, level.channels),
            aggregator=aggregator,
            registry=registry,
        )

    def edits(self, outputs: Mapping[str, Tensor]) -> FeatureEdits:
        """Offsets added to the matching ``F_tex`` levels."""
        return FeatureEdits(texture_offsets=dict(outputs))


def build_texture_unet(
    config: TextureUNetConfig,
    *,
    prior_info: PriorFeatureInfo,
    aggregator: AggregatorConfig | None,
    registry: Registry,
    **_: Any,
) -> TextureUNet:
    """Registry factory.

    Example:
        >>> registry.create("encoder", {"name": "texture_unet", "preset": "tiny"}, prior_info=info,
        ...                 aggregator={"name": "conv_gru"}, registry=registry)  # doctest: +SKIP
    """
    return TextureUNet(config, prior_info=prior_info, aggregator=aggregator, registry=registry)
