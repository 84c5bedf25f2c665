"""Loss terms of the encoder stages (Eq. 2 and Eq. 3, docs/design/training.md) and the latent discriminator D_W.

- reconstruction: L1 and a perceptual distance on final images brought to at most 256 pixels
  (as released), L1 on the raw neural render (``L_raw``);
- feature losses on synthetic samples: L1 on every ``F_tex`` level (``L_tex``) and on the
  tri-plane (``L_tri``);
- identity: ``1 - cos`` of ArcFace (IR-SE-50) embeddings with user-supplied weights;
- adversarial: non-saturating logistic losses with an R1 penalty, for the dual discriminator
  of stage 2/3 and the latent-code discriminator D_W of stage 1 (e4e).

Pretrained networks are never downloaded. The perceptual term uses the metric named in
``training.perceptual`` (LPIPS with user weights) when it can run, else the named
``training.perceptual_fallback`` (e.g. MS-SSIM); when neither can run the term is dropped. The
ID term is dropped when no ArcFace weights are given. Each such decision is logged once, when
the loss is built.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.plugin.kinds import MetricConfig
from invertavatar_core.plugin.protocols import CanonicalFeatures
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "DifferentiableDistance",
    "IdentityLoss",
    "LatentDiscriminator",
    "LossTerms",
    "PerceptualLoss",
    "build_identity_loss",
    "build_perceptual_loss",
    "discriminator_loss",
    "feature_losses",
    "generator_loss",
    "r1_penalty",
    "reconstruction_size",
    "weighted",
    "weighted_l1",
]

log = logging.getLogger("invertavatar.losses")

LOSS_RESOLUTION = 256
"""Final images are compared at most at this size (the released losses downsample to 256)."""
ID_CROP = (35 / 256, 223 / 256, 32 / 256, 220 / 256)
"""Face crop (top, bottom, left, right as fractions) fed to ArcFace, the pSp/e4e ID-loss convention."""
ID_RESOLUTION = 112
"""ArcFace input size of the public IR-SE-50 weights."""


@runtime_checkable
class DifferentiableDistance(Protocol):
    """A metric that can also serve as a loss: a per-image distance with gradients."""

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)`` (e.g. missing weights)."""
        ...

    def distance(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``(B, 3, H, W)`` pairs in [-1, 1] -> ``(B,)`` distances, differentiable in ``prediction``."""
        ...


def weighted_l1(prediction: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean absolute error of ``(B, C, H, W)`` images, pixels weighed by ``weight (B, 1, H, W)`` (e.g. a head mask)."""
    weight = weight.expand_as(prediction)
    return ((prediction - target).abs() * weight).sum() / weight.sum().clamp_min(1e-8)


def reconstruction_size(image: Tensor) -> Tensor:
    """Downsample ``(B, C, H, W)`` to at most :data:`LOSS_RESOLUTION` (area), as the released losses do."""
    h = image.shape[-1]
    if h <= LOSS_RESOLUTION:
        return image
    return F.interpolate(image, size=(LOSS_RESOLUTION, LOSS_RESOLUTION), mode="area")


class PerceptualLoss(nn.Module):
    """Mean perceptual distance through a :class:`DifferentiableDistance`; ``name`` says which."""

    def __init__(self, metric: DifferentiableDistance, name: str) -> None:
        super().__init__()
        self.metric = metric
        self.name = name
        if isinstance(metric, nn.Module):
            metric.requires_grad_(False)

    def forward(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Tensor:
        """Scalar mean distance."""
        return self.metric.distance(reconstruction_size(prediction), reconstruction_size(target)).mean()


def build_perceptual_loss(
    primary: MetricConfig | None, fallback: MetricConfig | None, registry: Registry
) -> PerceptualLoss | None:
    """The first of ``primary`` / ``fallback`` that can run and is differentiable, else None (term dropped).

    Why a choice was skipped is logged once here (e.g. "lpips: weights file not given").
    """
    reasons = []
    for config in (primary, fallback):
        if config is None:
            continue
        metric = registry.create("metric", config)
        ok, why = metric.available()
        if not ok:
            reasons.append(f"{config.name}: {why}")
            continue
        if not isinstance(metric, DifferentiableDistance):
            reasons.append(f"{config.name}: has no differentiable distance()")
            continue
        if reasons:
            log.warning("perceptual loss: using %r instead (%s)", config.name, "; ".join(reasons))
        return PerceptualLoss(metric, config.name)
    log.warning(
        "perceptual loss: dropped (%s); set training.perceptual / training.perceptual_fallback",
        "; ".join(reasons) or "none configured",
    )
    return None


class IdentityLoss(nn.Module):
    """``1 - cos(ArcFace(prediction), ArcFace(target))`` on the face crop; IR-SE-50 with user weights, frozen."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from invertavatar_core.nn.ir_se import IRSENet, load_ir_se50_weights

        self.net = IRSENet(head_resolution=ID_RESOLUTION)
        load_ir_se50_weights(self.net, weights)
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "IdentityLoss":
        """Stays in eval mode (BatchNorm statistics and dropout of the pretrained network are fixed)."""
        return super().train(False)

    def _embed(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        top, bottom, left, right = ID_CROP
        crop = image[:, :, round(top * h) : round(bottom * h), round(left * w) : round(right * w)]
        return self.net.embed(F.adaptive_avg_pool2d(crop, ID_RESOLUTION))

    def forward(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Tensor:
        """Scalar mean of ``1 - cosine similarity``."""
        with torch.no_grad():
            reference = self._embed(target)
        return (1 - (self._embed(prediction) * reference).sum(1)).mean()


def build_identity_loss(weights: str | Path | None) -> IdentityLoss | None:
    """An :class:`IdentityLoss`, or None (term dropped, logged once) without weights."""
    if weights is None:
        log.warning("ID loss: dropped (no ArcFace IR-SE-50 weights; set training.id_weights to model_ir_se50.pth)")
        return None
    return IdentityLoss(weights)


def feature_losses(prediction: CanonicalFeatures, target: CanonicalFeatures) -> dict[str, Tensor]:
    """``tex``: mean L1 over the ``F_tex`` levels; ``tri``: L1 on the tri-plane (Eq. 3)."""
    tex = [F.l1_loss(prediction.texture[k], target.texture[k]) for k in target.texture]
    return {
        "tex": torch.stack(tex).mean() if tex else prediction.ws.new_zeros(()),
        "tri": F.l1_loss(prediction.static["triplane"], target.static["triplane"]),
    }


# ------------------------------------------------------------------------------------ adversarial


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Non-saturating logistic loss of the discriminator: ``softplus(fake) + softplus(-real)``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating loss of the generator / encoder: ``softplus(-fake)``."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: tuple[Tensor, ...]) -> Tensor:
    """``sum |d real_logits / d inputs|^2`` per sample, averaged (inputs must require grad)."""
    grads = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return sum(g.square().flatten(1).sum(1) for g in grads).mean()


class LatentDiscriminator(nn.Module):
    """D_W of e4e: an MLP telling mapping-network codes from encoder codes, ``(N, D) -> (N, 1)``."""

    def __init__(self, w_dim: int, layers: int = 4) -> None:  # four hidden FC layers as in e4e
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(w_dim, 1))

    def forward(self, w: Float[Tensor, "N D"]) -> Float[Tensor, "N 1"]:
        """Logits for each code."""
        return self.net(w)


@dataclass
class LossTerms:
    """Weighted terms of one step: ``total`` to back-propagate and ``parts`` (unweighted) to log."""

    total: Tensor
    parts: dict[str, Tensor]

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Detached floats for the log (``loss`` plus every part)."""
        out = {f"{prefix}loss": float(self.total.detach())}
        out.update({f"{prefix}{k}": float(v.detach()) for k, v in self.parts.items()})
        return out


def weighted(parts: Mapping[str, Tensor], weights: Mapping[str, float] | Any) -> LossTerms:
    """``sum(weight[k] * parts[k])`` over the parts present; ``weights`` is a mapping or a weights section."""
    lookup = weights if isinstance(weights, Mapping) else weights.model_dump()
    missing = sorted(set(parts) - set(lookup))
    if missing:
        raise KeyError(f"no loss weight for {missing}; weights are {sorted(lookup)}")
    total = sum(lookup[k] * v for k, v in parts.items() if lookup[k] != 0)
    if not isinstance(total, Tensor):
        total = next(iter(parts.values())).new_zeros(())
    return LossTerms(total=total, parts=dict(parts))
