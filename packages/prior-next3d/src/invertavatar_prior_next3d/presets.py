"""The sizes each ``preset`` builds: ``paper`` (Next3D++ as released) and ``tiny`` (CPU tests and demos).

A :class:`~invertavatar_prior_next3d.next3d.Next3DPriorConfig` names a preset and may override any
of these fields; the numbers live here once, beside the reference section they come from.
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
        z_dim=512,  # reference 2.2
        w_dim=512,  # reference 2.2
        mapping_layers=2,  # --map-depth 2, reference 2.2
        channel_base=32768,  # reference 2.3
        channel_max=512,  # reference 2.3
        plane_resolution=256,  # 3 x 32 x 256^2 tri-plane, reference 2.3
        plane_channels=32,  # reference 2.3
        neural_resolution=128,  # reference 2.5
        image_resolution=512,  # reference 2.6
        superresolution_channels=(256, 128),  # SuperresolutionHybrid8XDC, reference 2.6
        decoder_hidden=64,  # FC 32 -> 64 -> 33, reference 2.5
        samples_per_ray=48,  # reference 2.5
        importance_samples_per_ray=48,  # reference 2.5
        discriminator_channel_base=32768,  # reference 2.7
        discriminator_channel_max=512,  # reference 2.7
        discriminator_mapping_layers=8,  # reference 2.7
        mbstd_group=4,  # reference 1.6
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
