"""Exponential moving average of the generator's weights (StyleGAN2's ``G_ema``, docs/design/training.md).

The half-life is ``ema_kimg`` thousand images (10 in the released recipe); with ``ema_rampup``
it is capped at ``rampup x images seen`` so that an EMA started from random weights follows the
generator early on (StyleGAN2-ADA's default when training from scratch).
"""

import torch
from torch import nn

__all__ = ["ema_beta", "update_ema"]


def ema_beta(batch_images: int, images_seen: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Decay of one update after ``batch_images`` more images (all processes together)."""
    ema_images = ema_kimg * 1000
    if ema_rampup is not None:
        ema_images = min(ema_images, images_seen * ema_rampup)
    return 0.5 ** (batch_images / max(ema_images, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    targets, sources = list(ema.parameters()), [p.detach() for p in model.parameters()]
    if len(targets) != len(sources):
        raise ValueError(f"EMA of a different model: {len(targets)} parameters, the model has {len(sources)}")
    torch._foreach_lerp_(targets, sources, 1.0 - beta)  # ema + (1 - beta) * (model - ema), one kernel
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
