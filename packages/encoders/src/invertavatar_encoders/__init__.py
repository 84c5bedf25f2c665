"""invertavatar-encoders: Image encoders for GAN inversion: E_latent (e4e on IR-SE-50), E_tex and E_tri UNets.

Registered encoders: ``e4e`` and ``timm_backbone`` (role ``latent``), ``texture_unet`` (role
``texture``), ``triplane_sft_unet`` and ``triplane_offset_unet`` (role ``static``).
"""

from invertavatar_encoders.e4e import E4EEncoder, E4EEncoderConfig
from invertavatar_encoders.texture_unet import TextureUNet, TextureUNetConfig
from invertavatar_encoders.timm_backbone import TimmBackboneEncoder, TimmBackboneEncoderConfig
from invertavatar_encoders.triplane_offset_unet import TriplaneOffsetUNet, TriplaneOffsetUNetConfig
from invertavatar_encoders.triplane_sft_unet import TriplaneSFTUNet, TriplaneSFTUNetConfig
from invertavatar_encoders.unet import UNetEncoderConfig, UNetFeatureEncoder

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
