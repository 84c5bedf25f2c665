"""The dual, camera-conditioned discriminator (EG3D's ``DualDiscriminator``, docs/design/prior.md).

Input: the final image concatenated with the raw neural render resized to the image size (6
channels), optionally plus a 3-channel landmark-contour image (the paper's deformation-aware
discriminator, Sec. 3.1: mouth/eye contours of the fitted mesh, so that the generator must follow
the expression). A resnet StyleGAN2 discriminator halves the resolution block by block down to 4;
the epilogue adds the minibatch standard deviation, a conv and two fully connected layers, and
projects onto an embedding of the camera label (a mapping network of the 25 numbers). Without a
camera (``None``, the encoder stages) the label is zero, as the released encoder losses do.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.conv_layer import Conv2dLayer
from invertavatar_prior_next3d.fully_connected import FullyConnected
from invertavatar_prior_next3d.mapping import MappingNetwork
from invertavatar_prior_next3d.resample import resize

__all__ = ["DiscriminatorBlock", "DualDiscriminator", "minibatch_std"]


def minibatch_std(x: Float[Tensor, "B C H W"], group_size: int, channels: int = 1) -> Float[Tensor, "B Cs H W"]:
    """Append the standard deviation over groups of samples, averaged per group and channel split (Cs = C + channels).

    The group is the largest divisor of the batch not above ``group_size`` (StyleGAN2 needs equal
    groups); each sample gets its group's statistic.
    """
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.float().reshape(g, b // g, channels, c // channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (B/g, n, C/n, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(b // g, channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Resnet block: (fromRGB) -> conv 3x3 -> conv 3x3 down, plus a 1x1 down skip, summed * sqrt(0.5)."""

    def __init__(
        self, in_channels: int, tmp_channels: int, out_channels: int, *, image_channels: int, conv_clamp: float | None
    ) -> None:
        """``in_channels = 0`` makes the first block, which reads the image through a 1x1 fromRGB."""
        super().__init__()
        self.fromrgb = (
            Conv2dLayer(image_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
            if in_channels == 0
            else None
        )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=True, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=True, conv_clamp=conv_clamp)

    def forward(self, x: Tensor) -> Tensor:
        """Halve the resolution."""
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class DualDiscriminator(nn.Module):
    """``D(image (B, 3, R, R), raw (B, 3, n, n), camera (B, 25) | None, landmarks (B, 3, h, w) | None) -> (B, 1)``."""

    def __init__(
        self,
        *,
        image_resolution: int,
        c_dim: int = 25,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group: int = 4,
        mapping_layers: int = 8,
        landmark_channels: int = 0,
        conv_clamp: float | None = 256.0,
    ) -> None:
        super().__init__()
        self.image_resolution, self.c_dim, self.landmark_channels = image_resolution, c_dim, landmark_channels
        self.mbstd_group = mbstd_group
        image_channels = 6 + landmark_channels  # image + upsampled raw (+ contour map, supplement 6.1)

        def channels(r: int) -> int:
            return min(channel_base // r, channel_max)

        blocks = []
        r = image_resolution
        previous = 0
        while r > 4:
            blocks.append(
                DiscriminatorBlock(
                    previous, channels(r), channels(r // 2), image_channels=image_channels, conv_clamp=conv_clamp
                )
            )
            previous = channels(r // 2)
            r //= 2
        self.blocks = nn.ModuleList(blocks)
        c4 = channels(4)
        self.cmap_dim = c4
        self.mapping = MappingNetwork(
            z_dim=0, c_dim=c_dim, w_dim=c4, num_ws=None, num_layers=mapping_layers, w_avg_beta=None
        )
        self.conv = Conv2dLayer(c4 + 1, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnected(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnected(c4, self.cmap_dim)

    def forward(
        self,
        image: Float[Tensor, "B 3 R R"],
        raw: Float[Tensor, "B 3 n n"],
        camera: Float[Tensor, "B 25"] | None = None,
        landmarks: Float[Tensor, "B 3 h w"] | None = None,
    ) -> Float[Tensor, "B 1"]:
        """Logits (higher = judged real)."""
        b, r = image.shape[0], self.image_resolution
        if tuple(image.shape[1:]) != (3, r, r):
            raise ValueError(f"discriminator expects images (B, 3, {r}, {r}), got {tuple(image.shape)}")
        parts = [image, resize(raw, r)]
        if self.landmark_channels:
            if landmarks is None:
                raise ValueError(
                    f"this discriminator is landmark-conditioned: pass landmarks (B, {self.landmark_channels}, H, W)"
                )
            parts.append(resize(landmarks, r).to(image.dtype))
        elif landmarks is not None:
            raise ValueError("this discriminator was built without landmark conditioning (landmark_channels=0)")
        x = torch.cat(parts, dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_std(x, self.mbstd_group))
        x = self.out(self.fc(x.flatten(1)))
        if camera is None:
            camera = torch.zeros(b, self.c_dim, device=image.device, dtype=torch.float32)
        cmap = self.mapping(None, camera)
        return (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
