"""Tri-plane volume rendering (docs/design/prior.md): rays -> stratified + importance samples -> composite.

Rays come from :func:`invertavatar_core.geometry.cameras.rays` (through pixel centres by default, the
toolkit's convention shared with projection and rasterisation; ``pixel_offset=0`` gives the
release's rays through pixel corners). Depths span an adaptive range around each camera's
distance to the origin, ``[d - 0.45, d + 0.6]`` (2.25-3.3 at the FFHQ radius 2.7); the released
renderer uses the batch's mean distance (``batch_range=True``), we default to each camera's own
so that the frames of a batch stay independent. ``S`` stratified depths (jittered
within their interval in training, fixed in evaluation) are decoded and composited; ``S_i``
importance depths drawn from those weights are decoded too, merged and sorted, and the whole set
is composited again into the feature image and depth.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.geometry.cameras import rays
from invertavatar_prior_next3d.importance_sampler import importance_depths
from invertavatar_prior_next3d.ray_marcher import finish_depth, interval_weights, sample_weights
from invertavatar_prior_next3d.triplane_decoder import TriplaneDecoder
from invertavatar_prior_next3d.triplane_sampler import sample_triplane

__all__ = ["VolumeRender", "VolumeRenderer"]


@dataclass(frozen=True)
class VolumeRender:
    """``feature_image (B, C, n, n)`` in [-1, 1] (channels 0-2: raw RGB), ``depth`` and ``opacity`` ``(B, 1, n, n)``.

    ``opacity`` is each ray's accumulated weight in [0, 1] (what a silhouette loss compares with a mask).
    """

    feature_image: Tensor
    depth: Tensor
    opacity: Tensor | None = None


class VolumeRenderer(nn.Module):
    """``(planes (B, 3, C, R, R), camera (B, 25), n) -> VolumeRender``; owns the decoder MLP."""

    def __init__(
        self,
        plane_channels: int,
        *,
        hidden: int = 64,
        samples: int = 48,
        importance_samples: int = 48,
        box_size: float = 1.0,
        near_offset: float = 0.45,
        far_offset: float = 0.6,
        decoder_lr_multiplier: float = 1.0,
        pixel_offset: float = 0.5,
        batch_range: bool = False,
        midpoint_pdf: bool = False,
    ) -> None:
        super().__init__()
        self.samples, self.importance_samples = samples, importance_samples
        self.pixel_offset, self.batch_range, self.midpoint_pdf = pixel_offset, batch_range, midpoint_pdf
        self.box_size, self.near_offset, self.far_offset = box_size, near_offset, far_offset
        self.decoder = TriplaneDecoder(
            plane_channels, hidden=hidden, out_channels=plane_channels, lr_multiplier=decoder_lr_multiplier
        )

    def _decode(self, planes: Tensor, origins: Tensor, directions: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
        b, n, s, _ = depths.shape
        points = (origins.unsqueeze(2) + directions.unsqueeze(2) * depths).reshape(b, n * s, 3)
        density, color = self.decoder(sample_triplane(planes, points, self.box_size))
        return density.reshape(b, n, s, 1), color.reshape(b, n, s, -1)

    def density(self, planes: Float[Tensor, "B 3 C R R"], points: Float[Tensor, "B N 3"]) -> Float[Tensor, "B N 1"]:
        """Raw density (before the marcher's activation) at ``points`` (density regularisation)."""
        return self.decoder(sample_triplane(planes, points, self.box_size))[0]

    def forward(
        self, planes: Float[Tensor, "B 3 C R R"], camera: Float[Tensor, "B 25"], resolution: int
    ) -> VolumeRender:
        """Render ``resolution``-square feature images."""
        b = camera.shape[0]
        if planes.shape[0] != b:
            raise ValueError(f"renderer: {planes.shape[0]} tri-planes for {b} cameras")
        origins, directions = rays(camera, resolution, self.pixel_offset)  # (B, n*n, 3) each
        origins, directions = origins.to(planes.dtype), directions.to(planes.dtype)
        distance = origins[:, :1].norm(dim=-1, keepdim=True).unsqueeze(-1)  # (B, 1, 1, 1)
        if self.batch_range:
            distance = distance.mean().expand_as(distance)
        near, far = distance - self.near_offset, distance + self.far_offset
        steps = torch.linspace(0.0, 1.0, self.samples, device=camera.device, dtype=planes.dtype)
        depths = (near + (far - near) * steps.reshape(1, 1, -1, 1)).expand(b, origins.shape[1], -1, 1)
        if self.training:
            delta = (far - near) / max(self.samples - 1, 1)
            depths = depths + torch.rand_like(depths) * delta
        density, color = self._decode(planes, origins, directions, depths)
        if not self.importance_samples:
            per_sample = sample_weights(interval_weights(density, depths))
            composite = torch.einsum("bns,bnsc->bnc", per_sample.to(color.dtype), color).float()
            depth = finish_depth(per_sample, depths)
            opacity = per_sample.sum(2, keepdim=True)
        else:
            coarse = interval_weights(density.detach(), depths)
            fine_depths = importance_depths(
                depths, coarse, self.importance_samples, deterministic=not self.training, midpoints=self.midpoint_pdf
            )
            fine_density, fine_color = self._decode(planes, origins, directions, fine_depths)
            # Weights need the merged samples in depth order; colours do not (the composite is a
            # weighted sum), so only depths and densities are sorted and the weights scattered back.
            merged = torch.cat([depths, fine_depths], dim=2)
            order = merged.argsort(dim=2)
            merged = merged.gather(2, order)
            sorted_density = torch.cat([density, fine_density], dim=2).gather(2, order)
            per_sample_sorted = sample_weights(interval_weights(sorted_density, merged))
            per_sample = torch.zeros_like(per_sample_sorted).scatter(2, order.squeeze(-1), per_sample_sorted)
            s = self.samples
            composite = torch.einsum("bns,bnsc->bnc", per_sample[:, :, :s].to(color.dtype), color).float()
            composite = (
                composite + torch.einsum("bns,bnsc->bnc", per_sample[:, :, s:].to(fine_color.dtype), fine_color).float()
            )
            depth = finish_depth(per_sample_sorted, merged)
            opacity = per_sample_sorted.sum(2, keepdim=True)
        feature_image = (composite * 2 - 1).transpose(1, 2).reshape(b, -1, resolution, resolution)
        depth = depth.transpose(1, 2).reshape(b, 1, resolution, resolution)
        opacity = opacity.float().transpose(1, 2).reshape(b, 1, resolution, resolution)
        return VolumeRender(feature_image=feature_image, depth=depth, opacity=opacity)
