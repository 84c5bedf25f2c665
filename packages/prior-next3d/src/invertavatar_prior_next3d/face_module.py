"""G_face: the face synthesis module, conditioned on the rasterised texture (paper Sec. 3.1, docs/design/prior.md).

Per frame, from the *expression UV render* ``(B, 3, Hu, Hu)`` = (u, v, face mask) that covers the
face window of plane 0 at twice the plane resolution (:mod:`invertavatar_core.geometry.triplane_space`):

1. masks: the face mask (channel 2 > 0.5); the mouth hole inside it
   (:func:`invertavatar_core.geometry.uv_maps.mouth_hole`); *full alpha* = face + hole; *condition alpha*
   = face + the part of the hole at or below ``mouth_condition_row`` (87/256 of the height in
   the released model);
2. for each conditioning level (``rgb32``, ``x32``, ``x64``, ``x128``): grid-sample the texture
   level with (u, v) at ``supersampling`` times the level's resolution (``None``: at the full
   UV-render resolution, as the release does), shrink it to the level (antialiased), lay it over
   the matching crop of the static plane 0 through the face mask;
3. run G_face driven by w+; at block 32 its features and skip image, at 64 and 128 its features,
   are alpha-replaced by those maps (condition alpha), before the block's ToRGB reads them or,
   with ``condition_after_torgb`` (the release), after it. Where no texture exists (the mouth
   interior) G_face keeps its own features: it inpaints the mouth from the global context;
4. the 32-channel output is shrunk to the face window and composited into plane 0 with the full
   alpha; planes 1 and 2 stay static.

The static crops depend only on the canonical features, so :meth:`FaceModule.static_crops` runs
once per avatar (in ``canonical``) and animation reuses them.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.geometry.uv_maps import mouth_hole
from invertavatar_prior_next3d.resample import resize
from invertavatar_prior_next3d.synthesis import BlockCondition, BlockSpec, SynthesisNetwork
from invertavatar_prior_next3d.synthesis_layer import NoiseMode

__all__ = ["CONDITION_LEVELS", "STATIC_PREFIX", "FaceModule"]

CONDITION_LEVELS = ("rgb32", "x32", "x64", "x128")
"""Texture levels rasterised into G_face (supplement 6.1: resolutions 32, 64, 128)."""

STATIC_PREFIX = "face_"
"""``CanonicalFeatures.static`` key prefix of the static plane-0 crops the texture is laid over."""


def _block_of(level: str) -> str:
    """``"x64" -> "64"``, ``"rgb32" -> "32"``."""
    return level.removeprefix("rgb").removeprefix("x")


class FaceModule(nn.Module):
    """G_face plus rasterisation and compositing: ``(ws, F_tex, static crops, planes, expression) -> planes``."""

    def __init__(
        self,
        specs: tuple[BlockSpec, ...],
        *,
        w_dim: int,
        plane_channels: int,
        plane_resolution: int,
        supersampling: int | None = 2,
        mouth_condition_row: float | None = 87 / 256,
        use_noise: bool = True,
        conv_clamp: float | None = 256.0,
        condition_after_torgb: bool = False,
    ) -> None:
        super().__init__()
        if specs[-1].resolution != plane_resolution:
            raise ValueError(
                f"G_face must end at the plane resolution {plane_resolution}, ends at {specs[-1].resolution}"
            )
        self.synthesis = SynthesisNetwork(
            specs,
            w_dim=w_dim,
            img_channels=plane_channels,
            use_noise=use_noise,
            conv_clamp=conv_clamp,
            condition_after_torgb=condition_after_torgb,
        )
        self.plane_channels, self.plane_resolution = plane_channels, plane_resolution
        self.window = face_window(plane_resolution)
        self.uv_resolution = 2 * self.window.size
        """Side of the expression UV render: the face window at twice the plane resolution."""
        self.supersampling, self.mouth_condition_row = supersampling, mouth_condition_row
        self.level_resolution = {lvl: self.synthesis.block(_block_of(lvl)).spec.resolution for lvl in CONDITION_LEVELS}
        """Resolution of each conditioning level (its G_face block's)."""

    # ------------------------------------------------------------------ per avatar

    def static_crops(self, static: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Plane-0 face-window crops of G_static's levels, resized to the levels' resolutions.

        ``static`` holds ``rgb32`` (the skip image, all three planes), ``x32``, ``x64``, ``x128``.
        """
        out = {}
        for level in CONDITION_LEVELS:
            x = static[level]
            if level.startswith("rgb"):
                x = x[:, : self.plane_channels]  # plane 0 of the three stacked planes
            r = x.shape[-1]
            w = face_window(r)
            crop = x[:, :, w.row0 : w.row1, w.col0 : w.col1]
            out[STATIC_PREFIX + level] = resize(crop, self.level_resolution[level])
        return out

    # ------------------------------------------------------------------ per frame

    def masks(self, expression_uv: Float[Tensor, "B 3 Hu Hu"]) -> tuple[Tensor, Tensor, Tensor]:
        """``(face, full alpha, condition alpha)``, each ``(B, 1, Hu, Hu)`` float in {0, 1}."""
        face = expression_uv[:, 2:3] > 0.5
        hole = mouth_hole(face.float()) > 0.5
        full = face | hole
        condition = face
        if self.mouth_condition_row is not None:
            rows = torch.arange(face.shape[-2], device=face.device).reshape(1, 1, -1, 1)
            condition = face | (hole & (rows >= round(self.mouth_condition_row * face.shape[-2])))
        dtype = expression_uv.dtype
        return face.to(dtype), full.to(dtype), condition.to(dtype)

    def conditions(
        self,
        texture: Mapping[str, Tensor],
        static_crops: Mapping[str, Tensor],
        expression_uv: Float[Tensor, "B 3 Hu Hu"],
    ) -> tuple[dict[str, BlockCondition], Tensor]:
        """G_face block conditions and the full alpha ``(B, 1, Hu, Hu)`` for compositing."""
        b, hu = expression_uv.shape[0], expression_uv.shape[-1]
        face, full, condition_alpha = self.masks(expression_uv)
        maps: dict[str, Tensor] = {}
        alphas: dict[str, Tensor] = {}
        for level in CONDITION_LEVELS:
            r = self.level_resolution[level]
            s = hu if self.supersampling is None else min(hu, self.supersampling * r)
            uv = expression_uv[:, :2]
            if s != hu:
                uv = F.interpolate(uv, size=(s, s), mode="bilinear", align_corners=False)
            tex = texture[level]
            tex = tex.expand(b, *tex.shape[1:]) if tex.shape[0] == 1 else tex
            sampled = F.grid_sample(
                tex, uv.permute(0, 2, 3, 1).to(tex.dtype), mode="bilinear", padding_mode="border", align_corners=False
            )
            sampled = resize(sampled, r)
            m = resize(face, r)
            maps[level] = sampled * m + static_crops[STATIC_PREFIX + level] * (1 - m)
            alphas[level] = resize(condition_alpha, r)
        conditions = {
            "32": BlockCondition(alpha=alphas["x32"], features=maps["x32"], image=maps["rgb32"]),
            "64": BlockCondition(alpha=alphas["x64"], features=maps["x64"]),
            "128": BlockCondition(alpha=alphas["x128"], features=maps["x128"]),
        }
        return conditions, full

    def forward(
        self,
        ws: Float[Tensor, "S K D"],
        texture: Mapping[str, Tensor],
        static_crops: Mapping[str, Tensor],
        planes: Float[Tensor, "S 3 C R R"],
        expression_uv: Float[Tensor, "B 3 Hu Hu"],
        *,
        noise_mode: NoiseMode = "random",
    ) -> Float[Tensor, "B 3 C R R"]:
        """Animate: plane 0 gets the synthesised face inside the face window; ``S`` is 1 or B."""
        b = expression_uv.shape[0]
        hu = self.uv_resolution
        if expression_uv.ndim != 4 or tuple(expression_uv.shape[1:]) != (3, hu, hu):
            raise ValueError(
                f"expression_uv must be (B, 3, {hu}, {hu}) = (u, v, face mask) covering the face window at twice "
                f"the plane resolution {self.plane_resolution}; got {tuple(expression_uv.shape)}"
            )
        conditions, full_alpha = self.conditions(texture, static_crops, expression_uv)
        face, _ = self.synthesis(ws, batch_size=b, noise_mode=noise_mode, conditions=conditions)
        w = self.window
        face = resize(face, w.size)
        alpha = resize(full_alpha, w.size).to(face.dtype)
        plane0 = planes[:, 0]
        crop = plane0[:, :, w.row0 : w.row1, w.col0 : w.col1]
        r = self.plane_resolution
        # Padding the blended difference leaves plane 0 bit-identical outside the window.
        delta = F.pad(alpha * (face - crop), (w.col0, r - w.col1, w.row0, r - w.row1))
        plane0 = plane0 + delta.to(plane0.dtype)
        rest = planes[:, 1:]
        if rest.shape[0] != b:
            rest = rest.expand(b, -1, -1, -1, -1)
        return torch.cat([plane0.unsqueeze(1), rest], dim=1)
