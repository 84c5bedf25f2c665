"""E_tri: the image-space encoder of CS-SFT scale and shift for G_static (paper Sec. 3.2, docs/design/encoders.md).

Input per frame, 6 channels: the image (3) and the residual ``I - I_hat`` (3). Output: for every
CS-SFT level of the prior (16 ... 256 in the paper) a ``(scale, shift)`` pair, each from its own
:class:`~invertavatar_encoders.output_heads.ConvHead`, applied by the prior as ``x * scale + shift``.
"""

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torch import Tensor

from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import EncoderRole, FeatureEdits, FeatureLevel, PriorFeatureInfo
from invertavatar_core.plugin.registry import Registry
from invertavatar_encoders.output_heads import ConvHead
from invertavatar_encoders.unet import UNetEncoderConfig, UNetFeatureEncoder

__all__ = ["TriplaneSFTUNet", "TriplaneSFTUNetConfig", "build_triplane_sft_unet"]

_SCALE, _SHIFT = "_scale", "_shift"


class TriplaneSFTUNetConfig(UNetEncoderConfig):
    """E_tri with CS-SFT outputs (one-shot, or recurrent with the experiment's aggregator)."""

    name: Literal["triplane_sft_unet"] = "triplane_sft_unet"


class TriplaneSFTUNet(UNetFeatureEncoder):
    """Image + residual ``(B, T, 6, R, R)`` -> ``FeatureEdits(static_sft=...)`` at ``prior_info.sft_levels``."""

    role: ClassVar[EncoderRole] = "static"

    def __init__(
        self,
        config: TriplaneSFTUNetConfig,
        *,
        prior_info: PriorFeatureInfo,
        aggregator: AggregatorConfig | None = None,
        registry: Registry | None = None,
    ) -> None:
        if not prior_info.sft_levels:
            raise ValueError("triplane_sft_unet: the prior exposes no sft_levels to modulate")
        outputs = [
            FeatureLevel(level.name + suffix, level.channels, level.resolution)
            for level in prior_info.sft_levels
            for suffix in (_SCALE, _SHIFT)
        ]
        super().__init__(
            config,
            input_channels=6,  # image 3 + residual 3, paper Sec. 3.3
            outputs=outputs,
            # The scale is multiplicative as given (docs/design/prior.md): start it at 1.
            make_head=lambda level, channels: ConvHead(
                channels, level.channels, bias=1.0 if level.name.endswith(_SCALE) else 0.0
            ),
            aggregator=aggregator,
            registry=registry,
        )
        self.sft_levels = tuple(level.name for level in prior_info.sft_levels)
        """Names of the CS-SFT levels edited, in the prior's order."""

    def edits(self, outputs: Mapping[str, Tensor]) -> FeatureEdits:
        """``level -> (scale, shift)`` for every CS-SFT level."""
        return FeatureEdits(
            static_sft={name: (outputs[name + _SCALE], outputs[name + _SHIFT]) for name in self.sft_levels}
        )


def build_triplane_sft_unet(
    config: TriplaneSFTUNetConfig,
    *,
    prior_info: PriorFeatureInfo,
    aggregator: AggregatorConfig | None,
    registry: Registry,
    **_: Any,
) -> TriplaneSFTUNet:
    """Registry factory.

    Example:
        >>> registry.create("encoder", "triplane_sft_unet", prior_info=info, aggregator=None,
        ...                 registry=registry)  # doctest: +SKIP
    """
    return TriplaneSFTUNet(config, prior_info=prior_info, aggregator=aggregator, registry=registry)
