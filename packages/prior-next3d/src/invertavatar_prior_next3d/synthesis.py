"""StyleGAN2 "skip" synthesis networks that expose their intermediate features (docs/design/prior.md).

A network is a ladder of :class:`SynthesisBlock` s, one per resolution, each described by a
:class:`BlockSpec`. Blocks are named by their *nominal* (paper-scale) resolution, ``"4"`` ...
``"256"``, whatever the actual size, so the feature levels keep the paper's names at every preset
(``x32`` = the features after block ``"32"``, ``rgb32`` = the skip image after it).

Two hooks let the rest of the prior steer a network without subclassing it:

- CS-SFT (G_static): ``sft[name] = (scale, shift)``; after the block's first (upsampling) conv
  the channels are split in half and the second half becomes ``x * scale + shift`` (docs/design/prior.md;
  multiplicative as given, not ``1 + scale``);
- conditions (G_face): ``conditions[name]`` alpha-replaces the block's features and/or its skip
  image with given maps: ``x <- x + alpha * (features - x)``. The features are replaced before
  the block's ToRGB reads them, or after it with ``condition_after_torgb`` (the released model).
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.resample import upsample2d
from invertavatar_prior_next3d.synthesis_layer import NoiseMode, SynthesisLayer, ToRGBLayer

__all__ = ["NOMINAL_TOP", "BlockCondition", "BlockSpec", "SynthesisBlock", "SynthesisNetwork", "ladder"]


@dataclass(frozen=True)
class BlockSpec:
    """One block of a ladder: its name, actual resolution, output channels and optional parts."""

    name: str
    """Nominal (paper-scale) resolution, e.g. ``"32"``."""
    resolution: int
    channels: int
    torgb: bool = True
    """Whether the block adds to the skip image (False above the last image a network must produce)."""
    sft: bool = False
    """Whether the block accepts CS-SFT modulation after its first conv."""


@dataclass(frozen=True)
class BlockCondition:
    """Maps that replace a block's output where ``alpha`` is 1: ``alpha: (B, 1, H, W)`` in [0, 1]."""

    alpha: Tensor
    features: Tensor | None = None
    """``(B, C, H, W)`` replaces the block's features (before its ToRGB)."""
    image: Tensor | None = None
    """``(B, C_img, H, W)`` replaces the skip image after the block."""


NOMINAL_TOP = 256
"""Nominal resolution of the last block of the paper's 256-resolution synthesis networks."""


def ladder(
    resolution: int,
    channel_base: int,
    channel_max: int,
    *,
    up_to: int = NOMINAL_TOP,
    torgb_until: int | None = None,
    sft_from: int | None = None,
) -> tuple[BlockSpec, ...]:
    """Block specs of nominal resolutions 4, 8, ... ``up_to``, where nominal 256 is ``resolution`` pixels.

    Args:
        resolution: actual size of the nominal-256 block (256 at paper scale, 64 for ``tiny``).
        channel_base: channels at nominal resolution r are ``min(channel_base // r, channel_max)``
            (StyleGAN2; 32768 and 512 give 512 up to 64, 256 at 128, 128 at 256, as released).
        channel_max: see ``channel_base``.
        up_to: last nominal resolution built (a shorter ladder, e.g. 128 for G_tex).
        torgb_until: last nominal resolution with a ToRGB (default: every block).
        sft_from: first nominal resolution with CS-SFT (None: no SFT).
    """
    if resolution * 4 % NOMINAL_TOP:
        raise ValueError(
            f"resolution {resolution} must be a multiple of {NOMINAL_TOP // 4} (the ladder starts at 4/256 of it)"
        )
    specs = []
    nominal = 4
    while nominal <= up_to:
        specs.append(
            BlockSpec(
                name=str(nominal),
                resolution=nominal * resolution // NOMINAL_TOP,
                channels=min(channel_base // nominal, channel_max),
                torgb=torgb_until is None or nominal <= torgb_until,
                sft=sft_from is not None and nominal >= sft_from,
            )
        )
        nominal *= 2
    return tuple(specs)


class SynthesisBlock(nn.Module):
    """One resolution: [const | upsampling conv] -> (CS-SFT) -> conv -> (condition) -> ToRGB + skip."""

    def __init__(
        self,
        spec: BlockSpec,
        in_channels: int,
        *,
        w_dim: int,
        img_channels: int,
        use_noise: bool = True,
        conv_clamp: float | None = 256.0,
        condition_after_torgb: bool = False,
    ) -> None:
        """``in_channels = 0`` makes the first block, which starts from a learned constant."""
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.condition_after_torgb = condition_after_torgb
        r, c = spec.resolution, spec.channels
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(c, r, r))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(
                in_channels, c, w_dim=w_dim, resolution=r, up=True, use_noise=use_noise, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(c, c, w_dim=w_dim, resolution=r, use_noise=use_noise, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(c, img_channels, w_dim=w_dim, conv_clamp=conv_clamp) if spec.torgb else None
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_ws = self.num_conv + (1 if spec.torgb else 0)
        """w vectors this block reads; consecutive blocks overlap by one (the ToRGB's)."""

    @property
    def sft_channels(self) -> int:
        """Channels of the CS-SFT-modulated half (0 when the block takes no SFT)."""
        return self.spec.channels // 2 if self.spec.sft else 0

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Float[Tensor, "S N D"],
        *,
        batch_size: int,
        noise_mode: NoiseMode = "random",
        fused: bool = True,
        sft: tuple[Tensor, Tensor] | None = None,
        condition: BlockCondition | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(x, img) -> (x, img)`` at this block's resolution; ``ws`` holds this block's ``num_ws`` vectors."""
        i = 0
        if self.conv0 is None:
            x = self.const.unsqueeze(0).expand(batch_size, -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, i], noise_mode=noise_mode, fused=fused)
            i += 1
        if sft is not None:
            x = self._apply_sft(x, sft)
        x = self.conv1(x, ws[:, i], noise_mode=noise_mode, fused=fused)
        i += 1
        replace_features = condition is not None and condition.features is not None
        if replace_features and not self.condition_after_torgb:
            x = x + condition.alpha.to(x.dtype) * (condition.features.to(x.dtype) - x)
        if img is not None:
            img = upsample2d(img)
        if self.torgb is not None:
            y = self.torgb(x, ws[:, i], fused=fused)
            img = y if img is None else img + y.to(img.dtype)
        if replace_features and self.condition_after_torgb:
            x = x + condition.alpha.to(x.dtype) * (condition.features.to(x.dtype) - x)
        if condition is not None and condition.image is not None:
            if img is None:
                raise ValueError(f"block {self.spec.name} has no skip image to condition")
            img = img + condition.alpha.to(img.dtype) * (condition.image.to(img.dtype) - img)
        return x, img

    def _apply_sft(self, x: Tensor, sft: tuple[Tensor, Tensor]) -> Tensor:
        if not self.spec.sft:
            raise ValueError(f"block {self.spec.name} takes no CS-SFT modulation")
        half = self.sft_channels
        scale, shift = sft
        expected = (half, x.shape[-2], x.shape[-1])
        for what, t in (("scale", scale), ("shift", shift)):
            if tuple(t.shape[1:]) != expected or t.shape[0] not in (1, x.shape[0]):
                raise ValueError(
                    f"CS-SFT {what} for block x{self.spec.name} must be (B, {half}, {expected[1]}, {expected[2]}), "
                    f"got {tuple(t.shape)}"
                )
        keep, modulated = x[:, : x.shape[1] - half], x[:, x.shape[1] - half :]
        return torch.cat([keep, modulated * scale.to(x.dtype) + shift.to(x.dtype)], dim=1)


class SynthesisNetwork(nn.Module):
    """``ws (S, K, D) -> (image, features)``: a ladder of blocks with the SFT and condition hooks."""

    def __init__(
        self,
        specs: tuple[BlockSpec, ...],
        *,
        w_dim: int,
        img_channels: int,
        use_noise: bool = True,
        conv_clamp: float | None = 256.0,
        condition_after_torgb: bool = False,
    ) -> None:
        super().__init__()
        self.specs = specs
        self.img_channels = img_channels
        blocks = []
        in_channels = 0
        for spec in specs:
            blocks.append(
                SynthesisBlock(
                    spec,
                    in_channels,
                    w_dim=w_dim,
                    img_channels=img_channels,
                    use_noise=use_noise,
                    conv_clamp=conv_clamp,
                    condition_after_torgb=condition_after_torgb,
                )
            )
            in_channels = spec.channels
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_conv for b in self.blocks) + (1 if specs[-1].torgb else 0)
        """w vectors read (the first ``num_ws`` of the w+ it is given)."""

    def block(self, name: str) -> SynthesisBlock:
        """The block of nominal resolution ``name``."""
        for b in self.blocks:
            if b.spec.name == name:
                return b
        raise KeyError(f"no block {name!r}; blocks are {[b.spec.name for b in self.blocks]}")

    def forward(
        self,
        ws: Float[Tensor, "S K D"],
        *,
        batch_size: int | None = None,
        noise_mode: NoiseMode = "random",
        fused: bool | None = None,
        sft: Mapping[str, tuple[Tensor, Tensor]] | None = None,
        conditions: Mapping[str, BlockCondition] | None = None,
        keep: Collection[str] = (),
    ) -> tuple[Tensor | None, dict[str, Tensor]]:
        """Run the ladder.

        Args:
            ws: w+; ``S`` is the batch, or 1 to share one style over ``batch_size`` samples.
            batch_size: samples to synthesise (default ``S``).
            noise_mode: see :data:`NoiseMode`.
            fused: grouped-conv execution (default: when not training, as StyleGAN2).
            sft: block name (``"16"`` ...) -> ``(scale, shift)``.
            conditions: block name -> :class:`BlockCondition`.
            keep: feature names to return, ``"x<name>"`` (features) or ``"rgb<name>"`` (skip image).

        Returns:
            ``(image, features)``: the final skip image ``(B, img_channels, R, R)`` (None when the
            last block has no ToRGB) and the kept features.
        """
        if ws.ndim != 3 or ws.shape[1] < self.num_ws:
            raise ValueError(f"synthesis expects ws (B, >= {self.num_ws}, D), got {tuple(ws.shape)}")
        sft = dict(sft or {})
        conditions = dict(conditions or {})
        names = {b.spec.name for b in self.blocks}
        for what, given in (("CS-SFT", sft), ("condition", conditions)):
            unknown = sorted(set(given) - names)
            if unknown:
                raise ValueError(f"{what} for unknown blocks {unknown}; blocks are {sorted(names, key=int)}")
        batch = batch_size or ws.shape[0]
        if fused is None:
            fused = not self.training
        x = img = None
        out: dict[str, Tensor] = {}
        index = 0
        for block in self.blocks:
            name = block.spec.name
            x, img = block(
                x,
                img,
                ws[:, index : index + block.num_ws],
                batch_size=batch,
                noise_mode=noise_mode,
                fused=fused,
                sft=sft.get(name),
                condition=conditions.get(name),
            )
            index += block.num_conv
            if f"x{name}" in keep:
                out[f"x{name}"] = x
            if f"rgb{name}" in keep and img is not None:
                out[f"rgb{name}"] = img
        return img, out
