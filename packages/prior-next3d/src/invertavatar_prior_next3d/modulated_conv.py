"""StyleGAN2's modulated (and demodulated) convolution, in plain PyTorch.

Each sample's style scales the input channels of the shared weight; demodulation rescales each
output channel of that per-sample weight to unit norm. Three equivalent executions:

- *shared*: one style for the whole batch (an animated avatar rendered for many frames) -> one
  ordinary convolution with the modulated weight;
- *fused*: per-sample weights run as one grouped convolution (``groups = B``), the fastest for
  small batches and inference;
- *unfused*: scale the input by the styles, convolve with the shared weight, scale the output by
  the demodulation coefficients; one large ordinary convolution, the fastest in training.

``up=True`` is StyleGAN2's upsampling convolution: a stride-2 transposed convolution followed by
the [1, 3, 3, 1] low-pass filter. Under fp16 the weight and styles are pre-normalised by their
largest magnitude (exact with demodulation) so the products cannot overflow.
"""

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from invertavatar_prior_next3d.resample import blur2d

__all__ = ["modulated_conv2d"]


def _half_precision(x: Tensor) -> bool:
    if x.dtype == torch.float16:
        return True
    device = x.device.type
    return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16


def modulated_conv2d(
    x: Float[Tensor, "B I H W"],
    weight: Float[Tensor, "O I k k"],
    styles: Float[Tensor, "S I"],
    *,
    demodulate: bool = True,
    up: bool = False,
    fused: bool = True,
) -> Float[Tensor, "B O h w"]:
    """Convolve ``x`` with ``weight`` modulated per sample by ``styles`` (``S`` = B, or 1 = shared).

    Padding keeps the size (``k // 2``); ``up=True`` doubles it.
    """
    batch, in_channels = x.shape[:2]
    out_channels, _, kh, kw = weight.shape
    if styles.shape[0] not in (1, batch) or styles.shape[1] != in_channels:
        raise ValueError(f"styles {tuple(styles.shape)} do not match input {tuple(x.shape)}")
    weight = weight.float()
    styles = styles.float()
    if demodulate and _half_precision(x):
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.abs().amax(dim=(1, 2, 3), keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    shared = styles.shape[0] == 1
    if shared or fused:
        w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # (S, O, I, k, k)
        if demodulate:
            w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
        if shared:
            return _conv(x, w[0], up=up, groups=1)
        h, wd = x.shape[-2:]
        y = _conv(
            x.reshape(1, batch * in_channels, h, wd),
            w.reshape(batch * out_channels, in_channels, kh, kw),
            up=up,
            groups=batch,
        )
        return y.reshape(batch, out_channels, *y.shape[-2:])
    coefficients = None
    if demodulate:
        # |w * s|^2 summed over (I, k, k) = s^2 @ (sum_k w^2)^T: no (B, O, I, k, k) tensor is built.
        coefficients = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
    y = _conv(x * styles.to(x.dtype)[:, :, None, None], weight, up=up, groups=1)
    if coefficients is not None:
        y = y * coefficients.to(y.dtype)[:, :, None, None]
    return y


def _conv(x: Tensor, weight: Tensor, *, up: bool, groups: int) -> Tensor:
    """Same-size convolution, or the upsampling one (transposed stride 2 + low-pass)."""
    weight = weight.to(x.dtype) if not torch.is_autocast_enabled(x.device.type) else weight
    k = weight.shape[-1]
    if not up:
        return F.conv2d(x, weight, padding=k // 2, groups=groups)
    out_channels, in_channels = weight.shape[0] // groups, weight.shape[1]
    # conv_transpose2d wants (groups * I, O, k, k); the kernel is learned, so it is not flipped.
    w = weight.reshape(groups, out_channels, in_channels, k, k).transpose(1, 2)
    w = w.reshape(groups * in_channels, out_channels, k, k)
    y = F.conv_transpose2d(x, w, stride=2, groups=groups)  # (2H + k - 2) per side
    # The [1, 3, 3, 1] filter (gain 4 for the zeros a stride-2 transposed conv inserts) trims it to 2H.
    pad = (4 - 2) - (k - 1)
    p0, p1 = (pad + 1) // 2 + 1, pad // 2 + 1
    return blur2d(y, (p0, p1, p0, p1), gain=4.0)
