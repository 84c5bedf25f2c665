"""The Table 3 ablation of E_tri: predict tri-plane offsets directly instead of CS-SFT modulation.

Same input (image + residual, 6 channels) and UNet as ``triplane_sft_unet``; one
:class:`~invertavatar_encoders.output_heads.ConvHead` produces ``(B, 3 * C, R, R)`` at the
prior's tri-plane resolution, returned as ``triplane_offset (B, 3, C, R, R)``.
"""

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torch import Tensor

from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import EncoderRole, FeatureEdits, FeatureLevel, PriorFeatureInfo
from invertavatar_core.plugin.registry import Registry
from invertavatar_encoders.output_heads import ConvHead
from invertavatar_encoders.unet import UNetEncoderConfig, UNetFeatureEncoder

__all__ = ["TriplaneOffsetUNet", "TriplaneOffsetUNetConfig", "build_triplane_offset_unet"]

_OUTPUT = "triplane"


class TriplaneOffsetUNetConfig(UNetEncoderConfig):
    """E_tri predicting tri-plane offsets (Table 3 ablation)."""

    name: Literal["triplane_offset_unet"] = "triplane_offset_unet"


class TriplaneOffsetUNet(UNetFeatureEncoder):
    """Image + residual ``(B, T, 6, R, R)`` -> ``FeatureEdits(triplane_offset=(B, 3, C, Rt, Rt))``."""

    role: ClassVar[EncoderRole] = "static"

    def __init__(
        self,
        config: TriplaneOffsetUNetConfig,
        *,
        prior_info: PriorFeatureInfo,
        aggregator: AggregatorConfig | None = None,
        registry: Registry | None = None,
    ) -> None:
        r = prior_info.triplane_resolution
        super().__init__(
            config,
            input_channels=6,  # image 3 + residual 3, as E_tri
            outputs=[FeatureLevel(_OUTPUT, 3 * prior_info.triplane_channels, r)],
            make_head=lambda level, channels: ConvHead(channels, level.channels),
            aggregator=aggregator,
            registry=registry,
        )
        self.plane_channels = prior_info.triplane_channels
        """Channels C of one tri-plane."""

    def edits(self, outputs: Mapping[str, Tensor]) -> FeatureEdits:
        """The offset added to the static tri-plane."""
        planes = outputs[_OUTPUT]
        b, _, h, w = planes.shape
        return FeatureEdits(triplane_offset=planes.reshape(b, 3, self.plane_channels, h, w))


def build_triplane_offset_unet(
    config: TriplaneOffsetUNetConfig,
    *,
    prior_info: PriorFeatureInfo,
    aggregator: AggregatorConfig | None,
    registry: Registry,
    **_: Any,
) -> TriplaneOffsetUNet:
    """Registry factory.

    Example:
        >>> registry.create("encoder", "triplane_offset_unet", prior_info=info, aggregator=None,
        ...                 registry=registry)  # doctest: +SKIP
    """
    return TriplaneOffsetUNet(config, prior_info=prior_info, aggregator=aggregator, registry=registry)
