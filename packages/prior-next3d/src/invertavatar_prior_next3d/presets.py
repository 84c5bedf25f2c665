"""The sizes each ``preset`` builds: ``paper`` (Next3D++ as released) and ``tiny`` (CPU tests and demos).

A :class:`~invertavatar_prior_next3d.next3d.Next3DPriorConfig` names a preset and may override any
of these fields; the numbers live here once, each tagged with the section of docs/design/prior.md
(architecture) or docs/design/training.md (recipe) it comes from.
"""

from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["PRESETS", "Preset", "PriorSizes"]

Preset = Literal["paper", "tiny"]
"""Names of the size presets."""


@dataclass(frozen=True)
class PriorSizes:
    """Every preset-dependent size of the prior and its discriminator."""

    z_dim: int
    """Latent z width."""
    w_dim: int
    """Intermediate latent w width."""
    mapping_layers: int
    """Fully connected layers of the mapping network."""
    channel_base: int
    """Synthesis channels at nominal resolution r: ``min(channel_base // r, channel_max)``."""
    channel_max: int
    """Upper bound of the synthesis channels."""
    plane_resolution: int
    """Tri-plane (and UV texture) resolution; the synthesis networks end here."""
    plane_channels: int
    """Channels per tri-plane = neural texture channels = rendered feature channels."""
    neural_resolution: int
    """Volume-rendering resolution at inference (the super-resolution input)."""
    image_resolution: int
    """Final image resolution after super-resolution."""
    superresolution_channels: tuple[int, ...]
    """Channels of each x2 super-resolution stage."""
    decoder_hidden: int
    """Hidden width of the tri-plane decoder MLP."""
    samples_per_ray: int
    """Stratified depth samples per ray."""
    importance_samples_per_ray: int
    """Importance depth samples per ray."""
    discriminator_channel_base: int
    """Discriminator channels at resolution r: ``min(base // r, max)``."""
    discriminator_channel_max: int
    """Upper bound of the discriminator channels."""
    discriminator_mapping_layers: int
    """Layers of the discriminator's camera mapping."""
    mbstd_group: int
    """Minibatch-standard-deviation group size."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every field (the config's overridable sizes)."""
        return tuple(f.name for f in fields(cls))


PRESETS: dict[str, PriorSizes] = {
    "paper": PriorSizes(
        z_dim=512,  # mapping network
        w_dim=512,  # mapping network
        mapping_layers=2,  # --map-depth 2, mapping network
        channel_base=32768,  # synthesis backbones
        channel_max=512,  # synthesis backbones
        plane_resolution=256,  # 3 x 32 x 256^2 tri-plane, synthesis backbones
        plane_channels=32,  # synthesis backbones
        neural_resolution=128,  # paper Sec. 3.1; volume rendering
        image_resolution=512,  # super-resolution
        superresolution_channels=(256, 128),  # SuperresolutionHybrid8XDC, super-resolution
        decoder_hidden=64,  # FC 32 -> 64 -> 33, volume rendering
        samples_per_ray=48,  # volume rendering
        importance_samples_per_ray=48,  # volume rendering
        discriminator_channel_base=32768,  # discriminator
        discriminator_channel_max=512,  # discriminator
        discriminator_mapping_layers=8,  # discriminator
        mbstd_group=4,  # training.md, stage 0
    ),
    "tiny": PriorSizes(
        z_dim=32,
        w_dim=32,
        mapping_layers=2,
        channel_base=2048,
        channel_max=16,
        plane_resolution=64,
        plane_channels=8,
        neural_resolution=32,
        image_resolution=64,
        superresolution_channels=(16,),
        decoder_hidden=16,
        samples_per_ray=12,
        importance_samples_per_ray=12,
        discriminator_channel_base=1024,
        discriminator_channel_max=32,
        discriminator_mapping_layers=2,
        mbstd_group=4,
    ),
}
"""Preset name -> sizes."""
