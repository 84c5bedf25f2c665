"""Fitting a frozen prior to a few frames of an unseen head: one w, optimised (auto-decoder inference).

How much of an unseen identity a prior can express, independent of any encoder: start from the
mean latent ``w_avg``, optimise one ``w`` (shared by all w+ layers) so that the renders of the
source frames match them over the head mask, then render the identity's other frames (their
cameras and expressions) and score them over their head masks. Used by ``recipes/`` to measure
a supervised prior on held-out synthetic heads.
"""

import torch
from torch import Tensor

from invertavatar_core.training.losses import weighted_l1

__all__ = ["fit_w", "head_psnr"]


def head_psnr(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``(B,)`` PSNR in dB over ``mask (B, 1, H, W)`` of images ``(B, 3, H, W)`` in [-1, 1] (peak-to-peak 2)."""
    mse = ((prediction.float() - target.float()) ** 2 * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3))).clamp_min(1)
    return 10 * torch.log10(4 / mse.clamp_min(1e-10))


def fit_w(
    prior,
    image: Tensor,
    mask: Tensor,
    camera: Tensor,
    expression_uv: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.03,
    background_weight: float = 0.1,
) -> Tensor:
    """w+ ``(1, K, D)`` fitted to ``N`` frames ``image (N, 3, R, R)``, ``mask (N, 1, R, R)``, cameras, UV renders.

    The prior stays frozen; Adam on one ``w`` (all layers share it), head-weighted L1 of the final image.
    """
    info = prior.info
    prior.requires_grad_(False)
    w = prior.w_avg.detach().clone().reshape(1, 1, -1).requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.99))
    weight = mask + background_weight * (1 - mask)
    for _ in range(steps):
        ws = w.expand(1, info.num_ws, -1)
        render = prior.render(prior.canonical(ws), expression_uv, camera)
        loss = weighted_l1(render.image, image, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return w.detach().expand(1, info.num_ws, -1)
