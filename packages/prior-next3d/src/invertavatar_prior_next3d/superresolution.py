"""Super-resolution from the neural render to the final image (EG3D's hybrid 8x "DC", docs/design/prior.md).

The input is the volume-rendered feature image and its first three channels (the raw RGB), both
at ``input_resolution`` (resized there, antialiased, when the render ran at another size, e.g.
64 early in training). Each stage is a StyleGAN2 synthesis block that doubles the resolution and
adds to the RGB skip image; every stage is modulated by the last w repeated (3 vectors per
block); there is no noise.
"""

from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.resample import resize
from invertavatar_prior_next3d.synthesis import BlockSpec, SynthesisBlock

__all__ = ["SuperResolution"]


class SuperResolution(nn.Module):
    """``(feature_image (B, C, n, n), ws (S, K, D)) -> image (B, 3, R, R)``."""

    def __init__(
        self,
        in_channels: int,
        *,
        w_dim: int,
        input_resolution: int,
        output_resolution: int,
        channels: tuple[int, ...],
        conv_clamp: float | None = 256.0,
    ) -> None:
        super().__init__()
        if input_resolution << len(channels) != output_resolution:
            raise ValueError(
                f"super-resolution with {len(channels)} doubling stages maps {input_resolution} to "
                f"{input_resolution << len(channels)}, not {output_resolution}"
            )
        self.input_resolution, self.output_resolution = input_resolution, output_resolution
        blocks = []
        resolution, previous = input_resolution, in_channels
        for c in channels:
            resolution *= 2
            spec = BlockSpec(name=f"sr{resolution}", resolution=resolution, channels=c)
            blocks.append(
                SynthesisBlock(spec, previous, w_dim=w_dim, img_channels=3, use_noise=False, conv_clamp=conv_clamp)
            )
            previous = c
        self.blocks = nn.ModuleList(blocks)

    def forward(
        self, feature_image: Float[Tensor, "B C n n"], ws: Float[Tensor, "S K D"], *, fused: bool | None = None
    ) -> Float[Tensor, "B 3 R R"]:
        """Upsample ``feature_image``; its first three channels seed the RGB skip image."""
        x = resize(feature_image, self.input_resolution)
        img = x[:, :3]
        if fused is None:
            fused = not self.training
        w = ws[:, -1:].expand(-1, 3, -1)  # the last w, three times per block (docs/design/prior.md)
        for block in self.blocks:
            x, img = block(x, img, w, batch_size=x.shape[0], noise_mode="none", fused=fused)
        return img
