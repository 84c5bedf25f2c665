"""A small, fast, differentiable stand-in for a 3D GAN prior, for tests of code written against :class:`Prior`.

It honours every shape and batch rule of the protocol (w+, texture levels, CS-SFT levels, the
tri-plane, expression UV renders, cameras, the discriminator signature) at toy sizes, and its
renders really depend on the canonical features, the expression and the camera (yaw and pitch
shift the tri-plane planes), so inversion code can be exercised end to end in well under a
second. It is not a generative model of faces and is not registered by default; third-party
authors can use it directly or register it under the name ``testing_fake_prior``::

    from invertavatar_core.testing.fake_prior import FakePrior, FakePriorPlugin
    prior = FakePrior()
    pm = get_plugin_manager(); pm.register(FakePriorPlugin(), name="fake-prior")
"""

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.plugin.kinds import PriorConfig
from invertavatar_core.plugin.manager import hookimpl
from invertavatar_core.plugin.protocols import (
    CanonicalFeatures,
    FeatureEdits,
    FeatureLevel,
    PriorFeatureInfo,
    PriorRender,
)

__all__ = ["FAKE_PRIOR_INFO", "FakeDiscriminator", "FakePrior", "FakePriorConfig", "FakePriorPlugin"]

FAKE_PRIOR_INFO = PriorFeatureInfo(
    num_ws=6,
    w_dim=32,
    z_dim=32,
    c_dim=25,
    image_resolution=64,
    neural_resolution=32,
    uv_resolution=64,
    texture_levels=(FeatureLevel("tex16", 16, 16), FeatureLevel("tex32", 8, 32)),
    sft_levels=(FeatureLevel("sft8", 8, 8), FeatureLevel("sft16", 8, 16), FeatureLevel("sft32", 8, 32)),
    triplane_channels=8,
    triplane_resolution=32,
)
"""The shapes :class:`FakePrior` exposes by default."""


class _Modulated(nn.Module):
    """A 3x3 conv whose input channels are scaled by an affine map of one w (StyleGAN-like, no demod)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.ones_(self.affine.bias)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """``x: (B, C_in, H, W)``, ``w: (B, D)`` -> ``(B, C_out, H, W)``."""
        return self.conv(x * self.affine(w)[:, :, None, None])


class FakeDiscriminator(nn.Module):
    """``D(image, raw, camera | None) -> (B, 1)`` logits, a few strided convs plus a camera projection."""

    def __init__(self, info: PriorFeatureInfo, width: int = 16) -> None:
        super().__init__()
        self.resolution = info.image_resolution
        self.body = nn.Sequential(
            nn.Conv2d(6, width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out = nn.Linear(width, 1)
        self.camera = nn.Linear(info.c_dim, width)

    def forward(self, image: Tensor, raw: Tensor, camera: Tensor | None = None) -> Tensor:
        """``image: (B, 3, Hi, Wi)``, ``raw: (B, 3, Hn, Wn)``, ``camera: (B, 25)`` -> ``(B, 1)``."""
        raw_up = F.interpolate(raw, size=image.shape[-2:], mode="bilinear", align_corners=False)
        h = self.body(torch.cat([image, raw_up], 1))
        logits = self.out(h)
        if camera is not None:
            logits = logits + (self.camera(camera) * h).sum(1, keepdim=True) / math.sqrt(h.shape[1])
        return logits


class FakePrior(nn.Module):
    """A toy prior with the protocol's structure: mapping -> F_tex, F_tri (CS-SFT) -> face blend -> render."""

    def __init__(self, info: PriorFeatureInfo = FAKE_PRIOR_INFO, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.info = info
        d, k = info.w_dim, info.num_ws
        self.camera_embed = nn.Linear(info.c_dim, d)
        self.mapping_net = nn.Sequential(nn.Linear(info.z_dim + d, d), nn.LeakyReLU(0.2), nn.Linear(d, d))
        self.texture_const = nn.ParameterDict(
            {
                lv.name: nn.Parameter(torch.randn(lv.channels, lv.resolution, lv.resolution, generator=generator))
                for lv in info.texture_levels
            }
        )
        self.texture_style = nn.ModuleDict({lv.name: nn.Linear(d, 2 * lv.channels) for lv in info.texture_levels})
        levels = info.sft_levels
        first = levels[0]
        self.static_const = nn.Parameter(
            torch.randn(2 * first.channels, first.resolution, first.resolution, generator=generator)
        )
        self.static_blocks = nn.ModuleList()
        in_ch = 2 * first.channels
        for lv in levels:
            self.static_blocks.append(_Modulated(in_ch, 2 * lv.channels, d))
            in_ch = 2 * lv.channels
        self.to_planes = _Modulated(in_ch, 3 * info.triplane_channels, d)
        self.decoder = nn.Sequential(
            nn.Conv2d(info.triplane_channels, 16, 1), nn.Softplus(), nn.Conv2d(16, info.triplane_channels + 1, 1)
        )
        self.superres = nn.Sequential(
            nn.Conv2d(info.triplane_channels, 16, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(16, 3, 3, padding=1)
        )
        self._ws_index = [min(i, k - 1) for i in range(len(levels) + 1)]
        with torch.no_grad():
            z = torch.randn(256, info.z_dim, generator=generator)
            c = torch.zeros(256, info.c_dim)
            self.register_buffer("_w_avg", self._map(z, c).mean(0))

    @property
    def w_avg(self) -> Tensor:
        """``(D,)`` mean mapping output."""
        return self._w_avg

    def _map(self, z: Tensor, camera: Tensor) -> Tensor:
        return self.mapping_net(
            torch.cat([F.normalize(z, dim=1) * math.sqrt(z.shape[1]), self.camera_embed(camera)], 1)
        )

    def mapping(
        self, z: Float[Tensor, "B Z"], camera: Float[Tensor, "B 25"], truncation_psi: float = 1.0
    ) -> Float[Tensor, "B K D"]:
        """``z: (B, z_dim)``, ``camera: (B, 25)`` -> ``ws: (B, K, D)``."""
        w = self._map(z, camera)
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w[:, None].expand(-1, self.info.num_ws, -1).clone()

    def canonical(self, ws: Float[Tensor, "B K D"], edits: FeatureEdits | None = None) -> CanonicalFeatures:
        """``ws`` (+ edits) -> F_tex levels, F_tri with ``"triplane"`` ``(B, 3C, R, R)``."""
        info = self.info
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (info.num_ws, info.w_dim):
            raise ValueError(f"FakePrior.canonical expects ws (B, {info.num_ws}, {info.w_dim}), got {tuple(ws.shape)}")
        edits = edits or FeatureEdits()
        b = ws.shape[0]
        texture = {}
        for i, lv in enumerate(info.texture_levels):
            scale, bias = self.texture_style[lv.name](ws[:, min(i, info.num_ws - 1)]).chunk(2, dim=1)
            level = self.texture_const[lv.name] * (1 + scale[:, :, None, None]) + bias[:, :, None, None]
            if lv.name in edits.texture_offsets:
                level = level + edits.texture_offsets[lv.name]
            texture[lv.name] = level
        x = self.static_const.expand(b, -1, -1, -1)
        for block, lv, wi in zip(self.static_blocks, info.sft_levels, self._ws_index, strict=False):
            x = F.interpolate(x, size=(lv.resolution, lv.resolution), mode="bilinear", align_corners=False)
            x = F.leaky_relu(block(x, ws[:, wi]), 0.2)
            if lv.name in edits.static_sft:
                keep, modulated = x.chunk(2, dim=1)
                scale, shift = edits.static_sft[lv.name]
                x = torch.cat([keep, modulated * scale + shift], 1)
        r = info.triplane_resolution
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        planes = self.to_planes(x, ws[:, -1])
        if edits.triplane_offset is not None:
            planes = planes + edits.triplane_offset.reshape(b, -1, r, r)
        return CanonicalFeatures(ws=ws, texture=texture, static={"triplane": planes})

    def render(
        self,
        features: CanonicalFeatures,
        expression_uv: Float[Tensor, "B 3 Hu Wu"],
        camera: Float[Tensor, "B 25"],
        *,
        neural_resolution: int | None = None,
    ) -> PriorRender:
        """Blend the texture into plane 0 through ``expression_uv``; shift the planes by the camera's yaw/pitch."""
        info = self.info
        b = camera.shape[0]
        if features.batch_size not in (1, b) or expression_uv.shape[0] != b:
            raise ValueError(
                f"FakePrior.render: features hold {features.batch_size} avatars, "
                f"expression_uv {expression_uv.shape[0]}, "
                f"camera {b}; features must hold 1 or B"
            )
        c, r = info.triplane_channels, info.triplane_resolution
        planes = features.static["triplane"].expand(b, -1, -1, -1).reshape(b, 3, c, r, r)
        # Face module: sample the texture at the expression's UVs, paste into plane 0's face window.
        level = info.texture_levels[-1]
        texture = features.texture[level.name].expand(b, -1, -1, -1)[:, :c]
        uv, mask = expression_uv[:, :2], expression_uv[:, 2:3]
        face = F.grid_sample(
            texture, uv.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False
        )
        window = face_window(r)
        size = (window.size, window.size)
        face = F.interpolate(face, size=size, mode="bilinear", align_corners=False)
        alpha = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        plane0 = planes[:, 0]
        crop = plane0[:, :, window.row0 : window.row1, window.col0 : window.col1]
        blended = crop * (1 - alpha) + face * alpha
        plane0 = torch.cat(
            [
                plane0[:, :, : window.row0],
                torch.cat(
                    [
                        plane0[:, :, window.row0 : window.row1, : window.col0],
                        blended,
                        plane0[:, :, window.row0 : window.row1, window.col1 :],
                    ],
                    3,
                ),
                plane0[:, :, window.row1 :],
            ],
            2,
        )
        animated = torch.stack([plane0, planes[:, 1], planes[:, 2]], 1)
        # "Volume rendering": the camera's viewing direction shifts each plane before summing.
        n = neural_resolution or info.neural_resolution
        forward = camera[:, :16].reshape(b, 4, 4)[:, :3, 2]
        yaw, pitch = forward[:, 0], forward[:, 1]
        feats = 0
        for i, (sx, sy) in enumerate(((1.0, 1.0), (0.6, 0.0), (0.0, 0.6))):
            theta = torch.zeros(b, 2, 3, device=camera.device, dtype=animated.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
            theta[:, 0, 2] = -sx * yaw
            theta[:, 1, 2] = -sy * pitch
            grid = F.affine_grid(theta, [b, c, n, n], align_corners=False)
            feats = feats + F.grid_sample(
                animated[:, i], grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        decoded = self.decoder(feats / 3)
        feature_image = torch.sigmoid(decoded[:, 1:]) * 2 - 1
        depth = 2.7 - 0.45 * torch.sigmoid(decoded[:, :1])
        raw = feature_image[:, :3]
        up = F.interpolate(feature_image, size=(info.image_resolution,) * 2, mode="bilinear", align_corners=False)
        image = torch.tanh(self.superres(up) + up[:, :3])
        return PriorRender(image=image, raw=raw, feature_image=feature_image, depth=depth, triplane=animated)

    def build_discriminator(self) -> Any:
        """A :class:`FakeDiscriminator` matched to this prior's renders."""
        return FakeDiscriminator(self.info)


class FakePriorConfig(PriorConfig):
    """Config of the registrable :class:`FakePrior`."""

    name: Literal["testing_fake_prior"] = "testing_fake_prior"
    seed: int = 0
    """Seed of the fixed random constants."""


class FakePriorPlugin:
    """Registers :class:`FakePrior` as ``testing_fake_prior`` (register an instance with a plugin manager)."""

    @hookimpl
    def invertavatar_register_priors(self, registrar) -> None:
        """Add ``testing_fake_prior``."""
        registrar.add(
            "testing_fake_prior",
            lambda config, **_: FakePrior(seed=config.seed),
            FakePriorConfig,
            description="toy prior for tests of code written against the Prior protocol",
        )
