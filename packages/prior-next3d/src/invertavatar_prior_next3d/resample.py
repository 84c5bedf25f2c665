"""Low-pass resampling by 2 with the separable [1, 3, 3, 1] filter of StyleGAN2.

Upsampling by 2 inserts zeros between the pixels and filters with the kernel (gain 4), the
signal outside the image being zero as in StyleGAN2's definition: inside the image this equals
bilinear interpolation at half-pixel centres, but the outermost output pixels keep only 3/4 of
the border input (bilinear ``F.interpolate`` would clamp and keep all of it, which shifts every
skip image near its borders). Downsampling and the blur after a transposed convolution are
depthwise convolutions with the same kernel.
"""

import functools

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

__all__ = ["blur2d", "downsample2d", "resize", "upsample2d"]

_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's resample filter


@functools.cache
def _base_kernel(gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    taps = torch.tensor(_TAPS, dtype=torch.float64)
    kernel = torch.outer(taps, taps)
    return (kernel * (gain / kernel.sum())).to(dtype=dtype, device=device)


def _kernel(channels: int, gain: float, like: Tensor) -> Tensor:
    return _base_kernel(gain, like.dtype, like.device).expand(channels, 1, 4, 4)


def blur2d(
    x: Float[Tensor, "B C H W"], padding: tuple[int, int, int, int], gain: float = 1.0
) -> Float[Tensor, "B C h w"]:
    """Zero-pad ``(left, right, top, bottom)`` and filter with the 4x4 kernel (output shrinks by 3)."""
    x = F.pad(x, padding)
    return F.conv2d(x, _kernel(x.shape[1], gain, x), groups=x.shape[1])


def upsample2d(x: Float[Tensor, "B C H W"]) -> Float[Tensor, "B C 2*H 2*W"]:
    """Double the resolution with the [1, 3, 3, 1] filter, zero outside the image (StyleGAN2)."""
    # A stride-2 transposed conv with the 4x4 kernel is zero insertion followed by the filter;
    # padding 1 trims it to exactly 2H (the kernel is symmetric, so no flip is needed).
    return F.conv_transpose2d(x, _kernel(x.shape[1], 4.0, x), stride=2, padding=1, groups=x.shape[1])


def downsample2d(x: Float[Tensor, "B C H W"]) -> Float[Tensor, "B C H/2 W/2"]:
    """Halve the resolution: low-pass with the [1, 3, 3, 1] filter, then keep every other pixel."""
    return blur2d(x, (1, 1, 1, 1))[:, :, ::2, ::2]


def resize(x: Float[Tensor, "B C H W"], size: int) -> Float[Tensor, "B C S S"]:
    """Square bilinear resize, antialiased when shrinking; returns ``x`` itself when already ``size``."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < x.shape[-1] or size < x.shape[-2]
    if shrink and x.dtype in (torch.float16, torch.bfloat16):
        # The antialiased kernel has no half-precision CPU implementation; it is memory-bound anyway.
        y = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return y.to(x.dtype)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
