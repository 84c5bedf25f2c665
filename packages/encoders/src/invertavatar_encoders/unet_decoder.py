"""The UNet decoder of E_tex / E_tri, written once for one-shot and recurrent use (docs/design/encoders.md).

Levels at R/16, R/8, R/4, R/2 of the input resolution R (16, 32, 64, 128 at R = 256):

    level 0: DoubleConv(concat(c3, bottleneck))          c3 = first unit of the last trunk stage
    level i: DoubleConv(concat(pixel_shuffle(y_{i-1}), skip_i))   skips: stage 3, 2, 1 outputs

After each level's DoubleConv an aggregator folds that frame's map ``f_i`` into the level's state
and the read-out ``y_i`` continues down the decoder for the same frame, so streaming frame t uses
the state aggregated over frames 1..t at every level (paper Sec. 3.3: a ConvGRU at each scale).
A group of frames can also be folded level by level: every frame of the group passes a level's
DoubleConv, the aggregator steps through them, and the group-final read-out continues down for
all of them (the released decoder, groups of 4; a group of one is the per-frame fold above).
With no aggregator (one-shot) the fold keeps the last frame, so one frame gives exactly the
plain UNet. An optional tail (pixel-shuffle, conv, PReLU, conv, PReLU) reaches R for E_tri's
256 level. Output heads read the aggregated maps: each output level takes the decoder map of the
nearest resolution (resized when the prior's level differs, e.g. a tiny prior).
"""

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.nn.ir_se import IRSEFeatures
from invertavatar_core.plugin.bases import AggregatorBase
from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import AggregatorState, EncoderState, FeatureLevel
from invertavatar_core.plugin.registry import Registry

__all__ = ["DoubleConv", "LastFrame", "UNetDecoder"]


class DoubleConv(nn.Sequential):
    """BN -> conv3x3 -> PReLU -> conv3x3 -> PReLU: ``(B, C_in, H, W) -> (B, C_out, H, W)`` (docs/design/encoders.md).

    ``final_prelus=2`` appends a second PReLU with its own slopes, as the released block has (two
    PReLUs in a row are one piecewise-linear map, so the default keeps one).
    """

    def __init__(self, in_channels: int, out_channels: int, final_prelus: int = 1) -> None:
        if final_prelus not in (1, 2):
            raise ValueError(f"DoubleConv: final_prelus must be 1 or 2, got {final_prelus}")
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            *(nn.PReLU(out_channels) for _ in range(final_prelus)),
        )


class LastFrame(AggregatorBase):
    """The one-shot fold: the state is the latest frame's map, ``(B, C, H, W)``; no parameters."""

    def init_state(self, like: Tensor) -> AggregatorState:
        """A zero map shaped like ``like``."""
        return {"last": torch.zeros_like(like)}

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        """Replace the state with ``frame``."""
        return {"last": frame}

    def read(self, state: AggregatorState) -> Tensor:
        """The latest frame's map."""
        return state["last"]


def _nearest(resolutions: Sequence[int], target: int) -> int:
    """Index of the resolution closest to ``target`` on a log scale (ties: the larger map)."""
    return min(range(len(resolutions)), key=lambda i: (abs(math.log2(resolutions[i] / target)), -resolutions[i]))


def _resize(x: Tensor, resolution: int) -> Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(
        x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=x.shape[-1] > resolution
    )


class UNetDecoder(nn.Module):
    """Pixel-shuffle UNet decoder with one aggregator per level and per-output heads.

    Args:
        trunk_channels: output channels of the four trunk stages (64, 128, 256, 512).
        input_resolution: R, the encoder's square input size (a multiple of 16).
        channels: decoder widths at R/16, R/8, R/4, R/2 (512, 384, 256, 96).
        tail_channels: width of the full-resolution tail (96); built only if an output needs it.
        outputs: the levels to predict (name, channels, resolution).
        make_head: ``make_head(level, in_channels)`` builds the head of one output.
        aggregator: config of the per-level aggregator, ``None`` for one-shot.
        registry: builds the aggregators (``registry.create("aggregator", config, channels=C)``).
        skip_first: concatenate ``[skip, upsampled]`` at levels 1-3 (the release) instead of
            ``[upsampled, skip]``.
        final_prelus: PReLUs closing each DoubleConv (1, or 2 as released).

    Submodules: ``levels`` (DoubleConvs), ``aggregators``, ``tail`` (or None), ``heads``. The
    decoder is only as deep as its outputs need, so every parameter reaches some output.
    """

    def __init__(
        self,
        *,
        trunk_channels: Sequence[int],
        input_resolution: int,
        channels: Sequence[int],
        tail_channels: int,
        outputs: Sequence[FeatureLevel],
        make_head: Callable[[FeatureLevel, int], nn.Module],
        aggregator: AggregatorConfig | None,
        registry: Registry | None,
        skip_first: bool = False,
        final_prelus: int = 1,
    ) -> None:
        super().__init__()
        self.skip_first = skip_first
        if len(trunk_channels) != 4 or len(channels) != 4:
            raise ValueError(
                f"UNetDecoder needs a 4-stage trunk and 4 decoder widths, got {trunk_channels}, {channels}"
            )
        if any(c % 4 for c in channels):
            raise ValueError(f"UNetDecoder widths must be divisible by 4 (pixel shuffle x2), got {tuple(channels)}")
        if input_resolution % 16:
            raise ValueError(f"UNetDecoder input resolution must be a multiple of 16, got {input_resolution}")
        if not outputs:
            raise ValueError("UNetDecoder needs at least one output level")
        base = input_resolution // 16
        self.resolutions = tuple(base * 2**i for i in range(4)) + (input_resolution,)
        """Resolution of each decoder map: the four levels, then the tail."""
        widths = tuple(channels) + (tail_channels,)
        self.sources = {level.name: _nearest(self.resolutions, level.resolution) for level in outputs}
        """Output name -> index of the decoder map its head reads (4 = tail)."""
        self.outputs = tuple(outputs)
        depth = max(self.sources.values()) + 1
        n_levels = min(depth, 4)
        skips = (trunk_channels[2], trunk_channels[1], trunk_channels[0])
        in_channels = [2 * trunk_channels[3]] + [channels[i - 1] // 4 + skips[i - 1] for i in range(1, n_levels)]
        self.levels = nn.ModuleList(DoubleConv(c_in, channels[i], final_prelus) for i, c_in in enumerate(in_channels))
        self.aggregators = nn.ModuleList(_build_aggregator(aggregator, registry, channels[i]) for i in range(n_levels))
        self.tail: nn.Module | None = None
        if depth == 5:
            self.tail = nn.Sequential(
                nn.PixelShuffle(2),
                nn.Conv2d(channels[3] // 4, tail_channels, 3, 1, 1),
                nn.PReLU(tail_channels),
                nn.Conv2d(tail_channels, tail_channels, 3, 1, 1),
                nn.PReLU(tail_channels),
            )
        for level in outputs:
            if not level.name or "." in level.name:
                raise ValueError(f"output level name {level.name!r} must be non-empty and contain no '.'")
        self.heads = nn.ModuleDict(
            {level.name: make_head(level, widths[self.sources[level.name]]) for level in outputs}
        )

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> EncoderState:
        """Each level's empty aggregator state, keys prefixed ``level<i>.``."""
        state: EncoderState = {}
        for i, (level, aggregator) in enumerate(zip(self.levels, self.aggregators, strict=True)):
            r = self.resolutions[i]
            like = torch.zeros(batch_size, level[1].out_channels, r, r, device=device, dtype=dtype)
            state.update(_prefixed(i, aggregator.init_state(like)))
        return state

    def update(self, state: EncoderState, features: IRSEFeatures, group_size: int = 1) -> EncoderState:
        """Fold a group of frames into every level; returns the new state.

        ``features`` holds ``B * group_size`` frames, sequence-major (frame t of sequence b at
        ``b * group_size + t``). Each level runs its DoubleConv on all of them, steps its
        aggregator through the group in order, and passes the group-final read-out to the next
        level for every frame of the group. ``group_size=1`` is the per-frame fold.
        """
        skips = (features.stages[2], features.stages[1], features.stages[0])
        new: EncoderState = {}
        y = features.stages[3]
        for i, (level, aggregator) in enumerate(zip(self.levels, self.aggregators, strict=True)):
            if i == 0:
                x = torch.cat([features.first_units[3], y], 1)
            else:
                pair = [F.pixel_shuffle(y, 2), skips[i - 1]]
                x = torch.cat(pair[::-1] if self.skip_first else pair, 1)
            f = level(x)
            f = f.reshape(-1, group_size, *f.shape[1:])
            level_state = _level_state(state, i)
            for t in range(group_size):
                level_state = aggregator.update(level_state, f[:, t])
            new.update(_prefixed(i, level_state))
            y = aggregator.read(level_state)
            if group_size > 1:
                y = y.repeat_interleave(group_size, dim=0)
        return new

    def maps(self, state: EncoderState) -> list[Tensor]:
        """The aggregated decoder maps (and the tail's map when built)."""
        out = [aggregator.read(_level_state(state, i)) for i, aggregator in enumerate(self.aggregators)]
        if self.tail is not None:
            out.append(self.tail(out[-1]))
        return out

    def read(self, state: EncoderState) -> dict[str, Float[Tensor, "B C H W"]]:
        """Every output level, ``name -> (B, channels, resolution, resolution)``."""
        maps = self.maps(state)
        return {
            level.name: _resize(self.heads[level.name](maps[self.sources[level.name]]), level.resolution)
            for level in self.outputs
        }


def _build_aggregator(config: AggregatorConfig | None, registry: Registry | None, channels: int) -> nn.Module:
    if config is None:
        return LastFrame(channels)
    if registry is None:
        raise ValueError("a recurrent UNet decoder needs the registry to build its aggregator")
    aggregator = registry.create("aggregator", config, channels=channels)
    if not isinstance(aggregator, nn.Module):
        raise TypeError(
            f"aggregator {config.name!r} built a {type(aggregator).__name__}; the UNet decoder trains it, "
            "so it must be a torch.nn.Module"
        )
    return aggregator


def _prefixed(index: int, state: AggregatorState) -> EncoderState:
    return {f"level{index}.{k}": v for k, v in state.items()}


def _level_state(state: EncoderState, index: int) -> AggregatorState:
    prefix = f"level{index}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
