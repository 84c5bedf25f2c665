"""LPIPS (Zhang et al. 2018, paper ref. [58]) with an AlexNet trunk: a metric and a differentiable loss.

The network: inputs in [-1, 1] are standardised with the ImageNet statistics (expressed in that
range), passed through AlexNet's five conv + ReLU stages, and at each tap ``l`` the features of
both images are unit-normalised over channels, their squared difference weighted per channel by
a learned non-negative 1x1 head ``w_l`` and averaged over space; the five terms are summed:

    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

Weights are user-supplied (nothing is downloaded), two files named in the config:

- ``backbone_weights``: AlexNet trained on ImageNet, torchvision layout (``features.{0,3,6,8,10}.
  {weight,bias}``; ``classifier.*`` is ignored), e.g. ``alexnet-owt-7be5be79.pth``; the layout
  of a whole LPIPS model (``net.slice{k}.{i}.*``) is accepted too;
- ``head_weights``: the linear heads, LPIPS layout (``lin{k}.model.1.weight``, ``(1, C_k, 1, 1)``),
  e.g. LPIPS v0.1 ``alex.pth``; ``lin{k}.weight`` and our ``heads.{k}.weight`` also load.

Either may be ``.pth`` (read with ``torch.load(weights_only=True)``) or ``.safetensors``.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.checkpoint import CheckpointError, check_state_dict
from invertavatar_core.components import MetricConfig
from invertavatar_core.metrics.per_image import PerImageMetric
from invertavatar_core.weight_files import missing_weights_reason, read_state_dict

__all__ = [
    "LPIPS",
    "LPIPSConfig",
    "LPIPSNetwork",
    "alexnet_backbone_keys",
    "lpips_head_keys",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet channel means in [0, 1] (the statistics AlexNet was trained with)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations in [0, 1]."""
TAP_CHANNELS = (64, 192, 384, 256, 256)
"""Channels of AlexNet's five ReLU taps (Krizhevsky et al. 2012, torchvision's single-GPU widths)."""
_TAPS = (1, 4, 7, 9, 11)
"""Indices of those ReLUs in ``features`` (torchvision numbering)."""
_NORM_EPS = 1e-10
"""Added to the channel norm before dividing (all-zero feature vectors stay zero)."""

BACKBONE_WHAT = "ImageNet AlexNet weights in torchvision layout (e.g. alexnet-owt-7be5be79.pth)"
HEADS_WHAT = "LPIPS linear-head weights (e.g. LPIPS v0.1 alex.pth, keys lin0.model.1.weight ...)"


class LPIPSConfig(MetricConfig):
    """Config of :class:`LPIPS` (AlexNet variant, as the released losses use)."""

    name: Literal["lpips"] = "lpips"
    backbone_weights: Path | None = None
    """AlexNet ImageNet weights, torchvision layout (``.pth`` or ``.safetensors``); required."""
    head_weights: Path | None = None
    """LPIPS linear heads (``alex.pth`` of LPIPS v0.1, ``.pth`` or ``.safetensors``); required."""


def _alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional part with torchvision's module indices (so its keys load as they are)."""
    c1, c2, c3, c4, c5 = TAP_CHANNELS
    return nn.Sequential(
        nn.Conv2d(3, c1, 11, stride=4, padding=2),  # 0
        nn.ReLU(),  # 1
        nn.MaxPool2d(3, 2),  # 2
        nn.Conv2d(c1, c2, 5, padding=2),  # 3
        nn.ReLU(),  # 4
        nn.MaxPool2d(3, 2),  # 5
        nn.Conv2d(c2, c3, 3, padding=1),  # 6
        nn.ReLU(),  # 7
        nn.Conv2d(c3, c4, 3, padding=1),  # 8
        nn.ReLU(),  # 9
        nn.Conv2d(c4, c5, 3, padding=1),  # 10
        nn.ReLU(),  # 11
    )


class LPIPSNetwork(nn.Module):
    """The LPIPS distance network: ``(x, y)`` both ``(B, 3, H, W)`` in [-1, 1] -> ``(B,)``.

    Differentiable in its inputs; a loss freezes its parameters (``requires_grad_(False)``).
    Images should be at least 32 px (AlexNet's stride-4 stem and two max-pools).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS)
        # ImageNet standardisation rewritten for inputs in [-1, 1]: (x - (2m - 1)) / (2s).
        self.register_buffer(
            "shift", torch.tensor([2 * m - 1 for m in IMAGENET_MEAN]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("scale", torch.tensor([2 * s for s in IMAGENET_STD]).view(1, 3, 1, 1), persistent=False)

    def taps(self, image: Float[Tensor, "B 3 H W"]) -> list[Tensor]:
        """The five unit-normalised ReLU feature maps of ``image``."""
        x = (image - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + _NORM_EPS))
        return out

    def forward(self, x: Float[Tensor, "B 3 H W"], y: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image LPIPS distance (0 for identical images)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPSNetwork expects two (B, 3, H, W) images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        total = x.new_zeros(x.shape[0])
        for head, fx, fy in zip(self.heads, self.taps(x), self.taps(y), strict=True):
            total = total + head((fx - fy).pow(2)).mean((1, 2, 3))
        return total


_SLICE = re.compile(r"^(?:net\.)?slice\d+\.(\d+)\.(weight|bias)$")
_LIN = re.compile(r"^lin(\d+)\.(?:model\.1\.)?weight$")


def alexnet_backbone_keys(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """``(our features.* tensors, unrecognised keys)`` from a torchvision-AlexNet or LPIPS-model state dict.

    ``classifier.*``, LPIPS heads and the LPIPS scaling constants are not part of the trunk and are
    dropped silently; anything else unrecognised is returned so the caller can name it.
    """
    out, unknown = {}, []
    for key, value in state.items():
        match = _SLICE.match(key)
        if key.startswith("features."):
            out[key] = value
        elif match:
            out[f"features.{match.group(1)}.{match.group(2)}"] = value
        elif not (key.startswith(("classifier.", "scaling_layer.")) or _LIN.match(key)):
            unknown.append(key)
    return out, unknown


def lpips_head_keys(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """``(our heads.* tensors, unrecognised keys)`` from an LPIPS head file (``lin{k}.model.1.weight``).

    Trunk keys (a whole LPIPS model given as the head file) are dropped silently.
    """
    out, unknown = {}, []
    for key, value in state.items():
        match = _LIN.match(key)
        if key.startswith("heads."):
            out[key] = value
        elif match:
            out[f"heads.{match.group(1)}.weight"] = value
        elif not (key.startswith(("features.", "classifier.", "scaling_layer.", "net.")) or _SLICE.match(key)):
            unknown.append(key)
    return out, unknown


def _load_part(network: LPIPSNetwork, path: Path, what: str, prefix: str, convert) -> None:
    tensors, unknown = convert(read_state_dict(path, what))
    expected = {k: v for k, v in network.state_dict().items() if k.startswith(prefix)}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    found.update({k: () for k in unknown})  # reported as unexpected by the strict check
    check_state_dict(expected, found, f"{what} {path}")
    network.load_state_dict(tensors, strict=False)


class LPIPS(PerImageMetric):
    """Mean per-image LPIPS (AlexNet); lower is better. Unavailable until both weight files are given.

    :attr:`network` is the :class:`LPIPSNetwork`; :meth:`distance` is its differentiable call.
    """

    higher_is_better = False

    def __init__(self, config: LPIPSConfig) -> None:
        super().__init__()
        self.config = config
        self.network = LPIPSNetwork().eval().requires_grad_(False)
        self._missing = "; ".join(
            r
            for r in (
                missing_weights_reason(config.backbone_weights, "lpips.backbone_weights", BACKBONE_WHAT),
                missing_weights_reason(config.head_weights, "lpips.head_weights", HEADS_WHAT),
            )
            if r
        )
        if not self._missing:
            _load_part(self.network, Path(config.backbone_weights), BACKBONE_WHAT, "features.", alexnet_backbone_keys)
            _load_part(self.network, Path(config.head_weights), HEADS_WHAT, "heads.", lpips_head_keys)
            if any((h.weight < 0).any() for h in self.network.heads):
                raise CheckpointError(
                    f"{config.head_weights}: LPIPS head weights must be non-negative (is this an LPIPS alex.pth?)"
                )

    def available(self) -> tuple[bool, str]:
        """Whether both weight files were supplied (the reason names the missing field / file)."""
        return (not self._missing, self._missing)

    def train(self, mode: bool = True) -> "LPIPS":
        """Stays in eval mode: the pretrained network is fixed."""
        return super().train(False)

    def scores(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image LPIPS distance."""
        return self.network(prediction, target)

    def distance(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Differentiable per-image LPIPS (for the perceptual loss); raises if unavailable."""
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"LPIPS cannot run here: {reason}")
        device = self.network.shift.device
        return self.network(prediction.to(device, torch.float32), target.to(device, torch.float32))
