"""A latent encoder on any timm ``features_only`` backbone, with the e4e style pyramid on top.

An optional alternative to the IR-SE-50 ``e4e``: the last three feature levels of the backbone
feed the same :class:`~invertavatar_encoders.style_pyramid.StylePyramid`. timm is imported only
inside the factory: it imports torchvision, which has no CPU build for this project's torch, so
the encoder is available only where timm imports (``pip install invertavatar-encoders[timm]``).
Pretrained weights come from a local file, read by ``weight_files.read_state_dict`` (nothing is
unpickled) and handed to timm as ``pretrained_cfg_overlay=dict(state_dict=...)``;
nothing is downloaded.
"""

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.plugin.kinds import EncoderConfig
from invertavatar_core.plugin.protocols import EncoderRole, PriorFeatureInfo
from invertavatar_encoders.style_pyramid import StylePyramid

__all__ = ["TimmBackboneEncoder", "TimmBackboneEncoderConfig", "build_timm_backbone"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class TimmBackboneEncoderConfig(EncoderConfig):
    """A timm backbone (``features_only``) + the e4e style pyramid -> w+ offsets."""

    name: Literal["timm_backbone"] = "timm_backbone"
    model_name: str = "resnet50"
    """timm model name, e.g. ``resnet50``, ``convnext_tiny``, ``efficientnet_b3``."""
    weights: Path | None = None
    """Local pretrained backbone weights (``.safetensors``, or ``.pth`` read weights-only); ``None``: random."""
    input_resolution: int = Field(256, ge=32)  # as e4e's 256 input, docs/design/encoders.md
    """Square input size; must be divisible by the backbone's deepest reduction."""
    coarse_styles: int = Field(3, ge=1)  # as e4e's split, docs/design/encoders.md
    """Styles read from the coarsest feature level."""
    middle_styles: int = Field(4, ge=0)  # as e4e's split
    """Styles read from the middle level; the rest come from the finest of the three."""


class TimmBackboneEncoder(nn.Module):
    """Image -> w+ offsets from ``w_avg``; a :class:`~invertavatar_core.plugin.protocols.LatentEncoder`.

    Submodules: ``trunk`` (the timm backbone) and ``styles`` (the style pyramid).
    """

    role: ClassVar[EncoderRole] = "latent"

    def __init__(self, config: TimmBackboneEncoderConfig, *, prior_info: PriorFeatureInfo, timm: Any) -> None:
        super().__init__()
        self.config = config
        self.input_channels = 3
        self.input_resolution = config.input_resolution
        kwargs: dict[str, Any] = {"features_only": True, "in_chans": 3, "pretrained": False}
        if config.weights is not None:
            if not Path(config.weights).is_file():
                raise FileNotFoundError(
                    f"timm_backbone.weights: file not found: {config.weights} (nothing is downloaded)"
                )
            from invertavatar_core.io.weight_files import read_state_dict

            # Read the file ourselves (safetensors or weights-only torch.load): a config from
            # someone else names this path, and timm's own file loader may unpickle.
            state = read_state_dict(config.weights, "timm_backbone.weights")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"state_dict": state})
        self.trunk = timm.create_model(config.model_name, **kwargs)
        channels = list(self.trunk.feature_info.channels())
        reductions = list(self.trunk.feature_info.reduction())
        if len(channels) < 3:
            raise ValueError(f"timm_backbone: {config.model_name!r} exposes {len(channels)} feature levels, need 3")
        r = config.input_resolution
        if r % reductions[-1]:
            raise ValueError(
                f"timm_backbone.input_resolution {r} must be divisible by the deepest reduction "
                f"{reductions[-1]} of {config.model_name!r}"
            )
        cfg = getattr(self.trunk, "pretrained_cfg", None) or {}
        # timm backbones expect ImageNet-normalised [0, 1] images; ours are in [-1, 1].
        mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", _IMAGENET_STD), dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.styles = StylePyramid(
            in_channels=(channels[-3], channels[-2], channels[-1]),
            resolutions=(r // reductions[-3], r // reductions[-2], r // reductions[-1]),
            num_ws=prior_info.num_ws,
            w_dim=prior_info.w_dim,
            coarse_styles=config.coarse_styles,
            middle_styles=config.middle_styles,
        )

    def forward(self, image: Float[Tensor, "B 3 R R"]) -> Float[Tensor, "B K D"]:
        """``image: (B, 3, R, R)`` in [-1, 1] -> ``(B, num_ws, w_dim)`` offsets from ``w_avg``."""
        r = self.input_resolution
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, r, r):
            raise ValueError(f"timm_backbone expects images (B, 3, {r}, {r}) in [-1, 1], got {tuple(image.shape)}")
        features = self.trunk(((image + 1) / 2 - self.mean) / self.std)
        return self.styles(features[-3], features[-2], features[-1])


def build_timm_backbone(
    config: TimmBackboneEncoderConfig, *, prior_info: PriorFeatureInfo, **_: Any
) -> TimmBackboneEncoder:
    """Registry factory; imports timm here, raising an actionable error when it cannot.

    Example:
        >>> registry.create("encoder", {"name": "timm_backbone", "model_name": "resnet50",
        ...                 "weights": "resnet50.safetensors"}, prior_info=info, aggregator=None,
        ...                 registry=registry)  # doctest: +SKIP
    """
    try:
        import timm
    except Exception as exc:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
        raise ImportError(
            "encoder 'timm_backbone' needs timm, which imports torchvision; install "
            "`invertavatar-encoders[timm]` with a torchvision build matching torch "
            f"(import failed: {type(exc).__name__}: {exc})"
        ) from exc
    return TimmBackboneEncoder(config, prior_info=prior_info, timm=timm)
