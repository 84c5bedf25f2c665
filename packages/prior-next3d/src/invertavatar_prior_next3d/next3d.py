"""The animatable 3D GAN prior "Next3D++" (paper Sec. 3.1, supplement 6.1, docs/design/prior.md).

``z`` and a camera label -> w+ (14 x 512) -> three StyleGAN2 synthesis networks that share it:

- G_tex: the neural texture ``F_tex`` in UV space; its levels ``rgb32`` (the 32-channel skip
  image at 32), ``x32``, ``x64``, ``x128`` are what G_face is conditioned on. The ladder stops at
  128 and its skip image at 32, because nothing reads the rest (supplement 6.1: levels 32, 64, 128);
- G_static: the static tri-plane ``F_tri`` (3 x 32 x 256^2), CS-SFT-modulated at 16 ... 256 by
  E_tri's scale/shift maps;
- G_face: per frame, synthesises the face region of plane 0 from the texture rasterised
  through the expression UV render (:mod:`invertavatar_prior_next3d.face_module`).

``canonical`` runs G_tex and G_static once per avatar; ``render`` runs only G_face, the volume
renderer and super-resolution. Images are float RGB in [-1, 1] (the EG3D convention); conversion
to uint8 happens only when writing files.

Level names are the paper's at every preset (``x32`` is "after the nominal-32 block" even when a
tiny preset runs it at 8 pixels); :attr:`Next3DPrior.info` gives the actual shapes.
"""

from typing import Literal

import torch.nn.functional as F
from jaxtyping import Float
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.plugin.kinds import PriorConfig
from invertavatar_core.plugin.protocols import (
    CanonicalFeatures,
    FeatureEdits,
    FeatureLevel,
    PriorFeatureInfo,
    PriorRender,
)
from invertavatar_prior_next3d.discriminator import DualDiscriminator
from invertavatar_prior_next3d.face_module import CONDITION_LEVELS, FaceModule
from invertavatar_prior_next3d.mapping import MappingNetwork
from invertavatar_prior_next3d.presets import PRESETS, Preset, PriorSizes
from invertavatar_prior_next3d.ray_marcher import DENSITY_SHIFT
from invertavatar_prior_next3d.superresolution import SuperResolution
from invertavatar_prior_next3d.synthesis import SynthesisNetwork, ladder
from invertavatar_prior_next3d.synthesis_layer import NoiseMode
from invertavatar_prior_next3d.triplane_sampler import sample_triplane
from invertavatar_prior_next3d.volume_renderer import VolumeRenderer

__all__ = ["CAMERA_DIM", "Next3DPrior", "Next3DPriorConfig", "build_next3d"]

CAMERA_DIM = 25
"""EG3D camera label: 16 cam-to-world values + 9 normalised intrinsics (docs/design/preprocessing.md)."""

_TEXTURE_TOP = 128  # G_tex's last used level (supplement 6.1: rgb32, x32, x64, x128)
_TEXTURE_RGB_TOP = 32  # G_tex's skip image is read only at 32
_SFT_FROM = 16  # CS-SFT at 16 ... 256, docs/design/prior.md


class Next3DPriorConfig(PriorConfig):
    """The Next3D++ prior: a ``preset`` fills every size left ``None``."""

    name: Literal["next3d"] = "next3d"
    preset: Preset = "paper"
    """Size preset: ``paper`` (about 88 M generator parameters, 512^2 images) or ``tiny`` (CPU tests)."""
    z_dim: int | None = Field(None, ge=1)
    """Latent z width (paper 512)."""
    w_dim: int | None = Field(None, ge=1)
    """Intermediate latent w width (paper 512)."""
    mapping_layers: int | None = Field(None, ge=1)
    """Fully connected layers of the mapping network (paper 2)."""
    channel_base: int | None = Field(None, ge=1)
    """Synthesis channels at nominal resolution r are ``min(channel_base // r, channel_max)`` (paper 32768)."""
    channel_max: int | None = Field(None, ge=2)
    """Upper bound of the synthesis channels (paper 512)."""
    plane_resolution: int | None = Field(None, ge=64, multiple_of=64)
    """Tri-plane and UV-texture resolution (paper 256)."""
    plane_channels: int | None = Field(None, ge=3)
    """Channels per plane = neural texture channels = rendered feature channels (paper 32)."""
    neural_resolution: int | None = Field(None, ge=8)
    """Volume-rendering resolution at inference (paper 128; training fades 64 -> 128)."""
    image_resolution: int | None = Field(None, ge=16)
    """Final image resolution (paper 512)."""
    superresolution_channels: tuple[int, ...] | None = None
    """Channels of each x2 super-resolution stage (paper (256, 128): 128 -> 512)."""
    decoder_hidden: int | None = Field(None, ge=1)
    """Hidden width of the tri-plane decoder (paper 64)."""
    samples_per_ray: int | None = Field(None, ge=2)
    """Stratified samples per ray (paper 48)."""
    importance_samples_per_ray: int | None = Field(None, ge=0)
    """Importance samples per ray (paper 48; 0 disables the second pass)."""
    discriminator_channel_base: int | None = Field(None, ge=1)
    """Discriminator channels at resolution r are ``min(base // r, max)`` (paper 32768)."""
    discriminator_channel_max: int | None = Field(None, ge=1)
    """Upper bound of the discriminator channels (paper 512)."""
    discriminator_mapping_layers: int | None = Field(None, ge=1)
    """Layers of the discriminator's camera mapping (paper 8)."""
    mbstd_group: int | None = Field(None, ge=1)
    """Minibatch-standard-deviation group size of the discriminator (paper 4)."""
    conv_clamp: float | None = 256.0  # StyleGAN2
    """Activation clamp of every conv (keeps fp16/bf16 finite); ``null`` disables it."""
    box_size: float = 1.0  # box_warp, docs/design/prior.md (volume rendering)
    """Side of the tri-plane box in canonical units."""
    near_offset: float = 0.45  # docs/design/prior.md (volume rendering)
    """Rays start this far in front of the camera's distance to the origin."""
    far_offset: float = 0.6  # docs/design/prior.md (volume rendering)
    """Rays end this far behind the camera's distance to the origin."""
    texture_supersampling: int = Field(2, ge=1)
    """Each texture level is grid-sampled at this multiple of its resolution, then shrunk (antialiasing)."""
    mouth_condition_row: float | None = Field(87 / 256, ge=0, le=1)  # rows >= 87 of 256, docs/design/prior.md
    """Mouth-hole rows at or below this fraction of the UV render are conditioned on static features; ``null``: none."""
    truncation_cutoff: int | None = Field(None, ge=0)
    """How many of the w+ copies truncation applies to (``null``: all 14, as the released sampler)."""
    superresolution_conv_clamp: float | None = 256.0  # StyleGAN2
    """Activation clamp of the super-resolution convs (the release clamps them even when the rest is not)."""

    # Where the authors' released model computes something other than the paper's text, these
    # reproduce the release; `invertavatar convert release-prior` sets them (docs/release-weights.md).
    face_condition_order: Literal["before_torgb", "after_torgb"] = "before_torgb"
    """G_face blends the rasterised texture into a block's features before its ToRGB reads them
    (``before_torgb``: the ToRGB sees the texture, as the paper's conditioning reads) or after the
    whole block (``after_torgb``: the release)."""
    texture_sampling: Literal["supersampled", "full_uv"] = "supersampled"
    """Texture levels are grid-sampled at ``texture_supersampling`` times their resolution
    (``supersampled``) or at the full expression-UV resolution (``full_uv``: the release), then shrunk."""
    ray_pixel_offset: float = 0.5
    """Rays pass through pixel ``(col, row) + offset``: 0.5 = centres (our projection, rasteriser), 0 = the release."""
    ray_range: Literal["per_camera", "batch_mean"] = "per_camera"
    """Depth range around each camera's own distance, or around the batch's mean distance (the release)."""
    importance_pdf: Literal["intervals", "midpoints"] = "intervals"
    """Importance sampling inverts the CDF over the coarse intervals between samples (``intervals``),
    or over the coarse midpoints without the end weights, with quantiles ``linspace(0, 1, n)``
    (``midpoints``: EG3D and the release)."""

    def sizes(self) -> PriorSizes:
        """The preset's sizes with this config's overrides applied."""
        preset = PRESETS[self.preset]
        overrides = {k: getattr(self, k) for k in PriorSizes.field_names() if getattr(self, k) is not None}
        values = {**{k: getattr(preset, k) for k in PriorSizes.field_names()}, **overrides}
        return PriorSizes(**values)


class Next3DPrior(nn.Module):
    """The Next3D++ prior; implements :class:`invertavatar_core.plugin.protocols.Prior`.

    Submodules: ``mapping_network``, ``texture_generator`` (G_tex), ``static_generator``
    (G_static), ``face_module`` (G_face), ``renderer`` (with the decoder MLP), ``superresolution``.
    """

    def __init__(self, config: Next3DPriorConfig) -> None:
        super().__init__()
        self.config = config
        s = self.sizes = config.sizes()
        r, c = s.plane_resolution, s.plane_channels
        if s.image_resolution != s.neural_resolution << len(s.superresolution_channels):
            raise ValueError(
                f"next3d: image_resolution {s.image_resolution} must be neural_resolution {s.neural_resolution} "
                f"doubled once per super-resolution stage ({len(s.superresolution_channels)})"
            )
        static_specs = ladder(r, s.channel_base, s.channel_max, sft_from=_SFT_FROM)
        texture_specs = ladder(r, s.channel_base, s.channel_max, up_to=_TEXTURE_TOP, torgb_until=_TEXTURE_RGB_TOP)
        face_specs = ladder(r, s.channel_base, s.channel_max)
        clamp = config.conv_clamp
        self.texture_generator = SynthesisNetwork(texture_specs, w_dim=s.w_dim, img_channels=c, conv_clamp=clamp)
        self.static_generator = SynthesisNetwork(static_specs, w_dim=s.w_dim, img_channels=3 * c, conv_clamp=clamp)
        self.face_module = FaceModule(
            face_specs,
            w_dim=s.w_dim,
            plane_channels=c,
            plane_resolution=r,
            supersampling=None if config.texture_sampling == "full_uv" else config.texture_supersampling,
            mouth_condition_row=config.mouth_condition_row,
            conv_clamp=clamp,
            condition_after_torgb=config.face_condition_order == "after_torgb",
        )
        num_ws = max(self.static_generator.num_ws, self.face_module.synthesis.num_ws, self.texture_generator.num_ws)
        self.mapping_network = MappingNetwork(
            z_dim=s.z_dim, c_dim=CAMERA_DIM, w_dim=s.w_dim, num_ws=num_ws, num_layers=s.mapping_layers
        )
        self.renderer = VolumeRenderer(
            c,
            hidden=s.decoder_hidden,
            samples=s.samples_per_ray,
            importance_samples=s.importance_samples_per_ray,
            box_size=config.box_size,
            near_offset=config.near_offset,
            far_offset=config.far_offset,
            pixel_offset=config.ray_pixel_offset,
            batch_range=config.ray_range == "batch_mean",
            midpoint_pdf=config.importance_pdf == "midpoints",
        )
        self.superresolution = SuperResolution(
            c,
            w_dim=s.w_dim,
            input_resolution=s.neural_resolution,
            output_resolution=s.image_resolution,
            channels=s.superresolution_channels,
            conv_clamp=config.superresolution_conv_clamp,
        )
        tex = {b.spec.name: b.spec for b in self.texture_generator.blocks}
        texture_levels = tuple(
            FeatureLevel(
                lvl,
                c if lvl.startswith("rgb") else tex[lvl[1:]].channels,
                tex[lvl.removeprefix("rgb").removeprefix("x")].resolution,
            )
            for lvl in CONDITION_LEVELS
        )
        sft_levels = tuple(
            FeatureLevel(f"x{b.spec.name}", b.sft_channels, b.spec.resolution)
            for b in self.static_generator.blocks
            if b.spec.sft
        )
        self.info = PriorFeatureInfo(
            num_ws=num_ws,
            w_dim=s.w_dim,
            z_dim=s.z_dim,
            c_dim=CAMERA_DIM,
            image_resolution=s.image_resolution,
            neural_resolution=s.neural_resolution,
            uv_resolution=self.face_module.uv_resolution,
            texture_levels=texture_levels,
            sft_levels=sft_levels,
            triplane_channels=c,
            triplane_resolution=r,
        )

    # ------------------------------------------------------------------ protocol

    @property
    def w_avg(self) -> Float[Tensor, " D"]:
        """Running mean of the mapping output (truncation centre, e4e's offset base)."""
        return self.mapping_network.w_avg

    @property
    def noise_mode(self) -> NoiseMode:
        """Fresh noise in training, the stored noise in evaluation (deterministic renders)."""
        return "random" if self.training else "const"

    def mapping(
        self,
        z: Float[Tensor, "B Z"],
        camera: Float[Tensor, "B 25"],
        truncation_psi: float = 1.0,
        *,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Float[Tensor, "B K D"]:
        """``z (B, z_dim)`` and the conditioning camera ``(B, 25)`` -> w+ ``(B, num_ws, w_dim)``."""
        cutoff = self.config.truncation_cutoff if truncation_cutoff is None else truncation_cutoff
        return self.mapping_network(
            z, camera, truncation_psi=truncation_psi, truncation_cutoff=cutoff, update_w_avg=update_w_avg
        )

    def canonical(self, ws: Float[Tensor, "B K D"], edits: FeatureEdits | None = None) -> CanonicalFeatures:
        """Run G_tex and G_static (with the encoders' edits) once: the avatar's cache.

        Returns ``texture`` = the :attr:`info` texture levels and ``static`` = ``"triplane"``
        ``(B, 3 * C, R, R)`` plus the plane-0 face-window crops ``"face_<level>"`` G_face blends with.
        """
        info = self.info
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (info.num_ws, info.w_dim):
            raise ValueError(f"next3d.canonical expects ws (B, {info.num_ws}, {info.w_dim}), got {tuple(ws.shape)}")
        edits = edits or FeatureEdits()
        self._check_edits(edits, ws.shape[0])
        keep = set(CONDITION_LEVELS)
        _, texture = self.texture_generator(ws, noise_mode=self.noise_mode, keep=keep)
        texture = {
            k: v + edits.texture_offsets[k].to(v.dtype) if k in edits.texture_offsets else v for k, v in texture.items()
        }
        sft = {name.removeprefix("x"): pair for name, pair in edits.static_sft.items()}
        triplane, static = self.static_generator(ws, noise_mode=self.noise_mode, sft=sft, keep=keep)
        if edits.triplane_offset is not None:
            triplane = triplane + edits.triplane_offset.reshape(
                edits.triplane_offset.shape[0], -1, *triplane.shape[-2:]
            ).to(triplane.dtype)
        return CanonicalFeatures(
            ws=ws, texture=texture, static={"triplane": triplane, **self.face_module.static_crops(static)}
        )

    def animate(
        self, features: CanonicalFeatures, expression_uv: Float[Tensor, "B 3 Hu Hu"]
    ) -> Float[Tensor, "B 3 C R R"]:
        """The tri-plane of each frame: G_face composited into plane 0 (planes 1-2 untouched)."""
        b = expression_uv.shape[0]
        if features.batch_size not in (1, b):
            raise ValueError(
                f"next3d: features hold {features.batch_size} avatars for {b} frames; they must hold 1 or {b}"
            )
        info = self.info
        triplane = features.static["triplane"]
        planes = triplane.reshape(triplane.shape[0], 3, info.triplane_channels, *triplane.shape[-2:])
        return self.face_module(
            features.ws, features.texture, features.static, planes, expression_uv, noise_mode=self.noise_mode
        )

    def render(
        self,
        features: CanonicalFeatures,
        expression_uv: Float[Tensor, "B 3 Hu Hu"],
        camera: Float[Tensor, "B 25"],
        *,
        neural_resolution: int | None = None,
    ) -> PriorRender:
        """Animate and render ``B`` frames: G_face, volume rendering at ``neural_resolution``, super-resolution."""
        b = camera.shape[0]
        if camera.ndim != 2 or camera.shape[1] != CAMERA_DIM:
            raise ValueError(f"next3d.render expects camera (B, {CAMERA_DIM}) EG3D labels, got {tuple(camera.shape)}")
        if expression_uv.shape[0] != b:
            raise ValueError(f"next3d.render: {expression_uv.shape[0]} expression UV renders for {b} cameras")
        planes = self.animate(features, expression_uv)
        volume = self.renderer(planes, camera, neural_resolution or self.info.neural_resolution)
        image = self.superresolution(volume.feature_image, features.ws)
        return PriorRender(
            image=image,
            raw=volume.feature_image[:, :3],
            feature_image=volume.feature_image,
            depth=volume.depth,
            triplane=planes,
        )

    def build_discriminator(self, *, landmark_channels: int = 0) -> DualDiscriminator:
        """A dual discriminator for this prior's renders (``landmark_channels=3``: deformation-aware)."""
        s = self.sizes
        return DualDiscriminator(
            image_resolution=s.image_resolution,
            c_dim=CAMERA_DIM,
            channel_base=s.discriminator_channel_base,
            channel_max=s.discriminator_channel_max,
            mbstd_group=s.mbstd_group,
            mapping_layers=s.discriminator_mapping_layers,
            landmark_channels=landmark_channels,
            conv_clamp=self.config.conv_clamp,
        )

    # ------------------------------------------------------------------ field queries (VolumetricPrior)

    @property
    def box_size(self) -> float:
        """Side of the tri-plane box ``[-box/2, box/2]^3`` that holds the field (canonical units)."""
        return float(self.config.box_size)

    @property
    def sample_spacing(self) -> float:
        """Depth between the renderer's stratified samples: its ray span ``near_offset + far_offset`` over ``S - 1``."""
        s = self.sizes
        return (self.config.near_offset + self.config.far_offset) / max(s.samples_per_ray - 1, 1)

    def query_field(
        self, planes: Float[Tensor, "B 3 C R R"], points: Float[Tensor, "B N 3"]
    ) -> tuple[Float[Tensor, "B N 1"], Float[Tensor, "B N 3"]]:
        """Density ``sigma >= 0`` (the marcher's ``softplus(raw - 1)``) and raw RGB in [0, 1] at canonical ``points``.

        The RGB is the first three colour features, the ones volume rendering composites into
        :attr:`PriorRender.raw` (there mapped to [-1, 1]).
        """
        density, color = self.renderer.decoder(sample_triplane(planes, points, self.config.box_size))
        return F.softplus(density.float() - DENSITY_SHIFT), color[..., :3].float()

    # ------------------------------------------------------------------ helpers

    def density(self, planes: Float[Tensor, "B 3 C R R"], points: Float[Tensor, "B N 3"]) -> Float[Tensor, "B N 1"]:
        """Raw density at canonical ``points`` of animated tri-planes (density regularisation)."""
        return self.renderer.density(planes, points)

    def _check_edits(self, edits: FeatureEdits, batch: int) -> None:
        info = self.info
        for kind, given, levels in (
            ("texture offset", edits.texture_offsets, info.texture_levels),
            ("CS-SFT", edits.static_sft, info.sft_levels),
        ):
            known = {lvl.name: lvl for lvl in levels}
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise ValueError(f"next3d: {kind} for unknown levels {unknown}; this prior has {sorted(known)}")
            for name, value in given.items():
                lvl = known[name]
                for t in value if isinstance(value, tuple) else (value,):
                    if tuple(t.shape[1:]) != (lvl.channels, lvl.resolution, lvl.resolution) or t.shape[0] not in (
                        1,
                        batch,
                    ):
                        raise ValueError(
                            f"next3d: {kind} {name!r} must be (B, {lvl.channels}, {lvl.resolution}, {lvl.resolution}), "
                            f"got {tuple(t.shape)}"
                        )
        if edits.triplane_offset is not None:
            r, c = info.triplane_resolution, info.triplane_channels
            if tuple(edits.triplane_offset.shape[1:]) != (3, c, r, r):
                raise ValueError(
                    f"next3d: triplane_offset must be (B, 3, {c}, {r}, {r}), got {tuple(edits.triplane_offset.shape)}"
                )


def build_next3d(config: Next3DPriorConfig, **_: object) -> Next3DPrior:
    """Registry factory.

    Example:
        >>> prior = registry.create("prior", {"name": "next3d", "preset": "tiny"})  # doctest: +SKIP
        >>> prior.info.image_resolution  # doctest: +SKIP
        64
    """
    return Next3DPrior(config)
