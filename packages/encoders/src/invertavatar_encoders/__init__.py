"""invertavatar-encoders: Image encoders for GAN inversion: E_latent (e4e on IR-SE-50), E_tex and E_tri UNets.

Registered encoders: ``e4e`` and ``timm_backbone`` (role ``latent``), ``texture_unet`` (role
``texture``), ``triplane_sft_unet`` and ``triplane_offset_unet`` (role ``static``).
"""

from invertavatar_core.plugin.lazy_exports import lazy_exports

_EXPORTS = {
    "E4EEncoder": "invertavatar_encoders.e4e",
    "E4EEncoderConfig": "invertavatar_encoders.e4e",
    "TextureUNet": "invertavatar_encoders.texture_unet",
    "TextureUNetConfig": "invertavatar_encoders.texture_unet",
    "TimmBackboneEncoder": "invertavatar_encoders.timm_backbone",
    "TimmBackboneEncoderConfig": "invertavatar_encoders.timm_backbone",
    "TriplaneOffsetUNet": "invertavatar_encoders.triplane_offset_unet",
    "TriplaneOffsetUNetConfig": "invertavatar_encoders.triplane_offset_unet",
    "TriplaneSFTUNet": "invertavatar_encoders.triplane_sft_unet",
    "TriplaneSFTUNetConfig": "invertavatar_encoders.triplane_sft_unet",
    "UNetEncoderConfig": "invertavatar_encoders.unet",
    "UNetFeatureEncoder": "invertavatar_encoders.unet",
}
"""Public name -> the module defining it (imported on first use)."""

__all__ = [
    "E4EEncoder",
    "E4EEncoderConfig",
    "TextureUNet",
    "TextureUNetConfig",
    "TimmBackboneEncoder",
    "TimmBackboneEncoderConfig",
    "TriplaneOffsetUNet",
    "TriplaneOffsetUNetConfig",
    "TriplaneSFTUNet",
    "TriplaneSFTUNetConfig",
    "UNetEncoderConfig",
    "UNetFeatureEncoder",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
