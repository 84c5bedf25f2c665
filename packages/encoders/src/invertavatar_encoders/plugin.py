"""Hook implementations only: registers every component of invertavatar-encoders."""

from invertavatar_core import hookimpl

__all__ = ["invertavatar_add_commands", "invertavatar_register_encoders"]


@hookimpl
def invertavatar_register_encoders(registrar) -> None:
    """Register E_latent (``e4e``, ``timm_backbone``), E_tex and the two E_tri variants."""
    # Imported here: loading the plugin (e.g. to build the command line) must not import torch models.
    from invertavatar_encoders.e4e import E4EEncoderConfig, build_e4e
    from invertavatar_encoders.texture_unet import TextureUNetConfig, build_texture_unet
    from invertavatar_encoders.timm_backbone import TimmBackboneEncoderConfig, build_timm_backbone
    from invertavatar_encoders.triplane_offset_unet import TriplaneOffsetUNetConfig, build_triplane_offset_unet
    from invertavatar_encoders.triplane_sft_unet import TriplaneSFTUNetConfig, build_triplane_sft_unet

    tiny = {"preset": "tiny"}
    registrar.add(
        "e4e", build_e4e, E4EEncoderConfig, description="E_latent: e4e on IR-SE-50 (image -> w+ offsets)", tiny=tiny
    )
    registrar.add(
        "timm_backbone",
        build_timm_backbone,
        TimmBackboneEncoderConfig,
        description="E_latent on a timm features_only backbone (needs timm + torchvision)",
        tiny={"model_name": "resnet18", "input_resolution": 64},
    )
    registrar.add(
        "texture_unet",
        build_texture_unet,
        TextureUNetConfig,
        description="E_tex: UV-space UNet -> texture feature offsets (one-shot or recurrent)",
        tiny=tiny,
    )
    registrar.add(
        "triplane_sft_unet",
        build_triplane_sft_unet,
        TriplaneSFTUNetConfig,
        description="E_tri: image-space UNet -> CS-SFT scale/shift for G_static (one-shot or recurrent)",
        tiny=tiny,
    )
    registrar.add(
        "triplane_offset_unet",
        build_triplane_offset_unet,
        TriplaneOffsetUNetConfig,
        description="E_tri ablation: image-space UNet -> tri-plane offsets (Table 3)",
        tiny=tiny,
    )


@hookimpl
def invertavatar_add_commands(subparsers, groups) -> None:
    """Add ``invertavatar convert release-encoders``."""
    from invertavatar_encoders.release.command import register

    register(subparsers, groups)
