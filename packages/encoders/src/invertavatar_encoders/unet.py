"""The UNet feature encoders (E_tex, E_tri and the tri-plane-offset ablation): trunk + decoder + heads.

One class implements the :class:`~invertavatar_core.plugin.protocols.FeatureEncoder` protocol for all
three; a variant only chooses its input channels, its output levels and heads, and how the head
outputs become :class:`~invertavatar_core.plugin.protocols.FeatureEdits`. The one-shot and recurrent
encoders are the same class: the factory's ``aggregator`` (``None`` = one-shot) decides the fold
in :class:`~invertavatar_encoders.unet_decoder.UNetDecoder`.

Streaming and batch are one mechanism: ``forward(frames)`` is ``init_state`` then ``update`` per
frame then ``read``, so both give bit-identical results. Stage 3 (supplement 6.2.3) freezes
``trunk`` and trains ``decoder`` (levels, aggregators, tail and heads).

``group_size > 1`` reproduces the released recurrent decoder (docs/release-weights.md): ``fold``
(and so the batch call and each ``InversionSession.add``) folds the frames it is given in the
released groups, level by level (:func:`frame_groups`); ``update`` folds one frame as a group of one.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.nn.ir_se import IRSENet, load_ir_se50_weights
from invertavatar_core.plugin.kinds import AggregatorConfig, EncoderConfig
from invertavatar_core.plugin.protocols import EncoderRole, EncoderState, FeatureEdits, FeatureLevel
from invertavatar_core.plugin.registry import Registry
from invertavatar_encoders.presets import Preset, resolve_sizes
from invertavatar_encoders.unet_decoder import UNetDecoder

__all__ = ["FRAMES_KEY", "UNetEncoderConfig", "UNetFeatureEncoder", "frame_groups"]

FRAMES_KEY = "frames"
"""State key of the per-sequence count of folded frames ``(B,)`` int64 (a cycled frame counts each time)."""


class UNetEncoderConfig(EncoderConfig):
    """Fields shared by the UNet encoders (each variant narrows ``name``)."""

    preset: Preset = "paper"
    """Network sizes: ``paper`` (the published UNets) or ``tiny`` (a few channels, CPU tests)."""
    input_resolution: int | None = Field(None, ge=32, multiple_of=16)
    """Square input size; ``None`` = the preset's (256 for ``paper``, 64 for ``tiny``)."""
    ir_se50_weights: Path | None = None
    """Optional IR-SE-50 weights initialising the trunk; extra input channels start at zero.

    For initialisation only: save trained checkpoints with this cleared (their weights contain
    the trunk), otherwise loading them needs this file to exist.
    """
    trunk_channels: tuple[int, int, int, int, int] | None = None
    """Stem and stage widths replacing the preset's (set by converters for other widths)."""
    decoder_channels: tuple[int, int, int, int] | None = None
    """Decoder widths at R/16 ... R/2 replacing the preset's."""
    tail_channels: int | None = Field(None, ge=1)
    """Width of the full-resolution tail replacing the preset's."""
    group_size: int = Field(1, ge=1)
    """Frames folded together level by level in a batch call (1: per frame, the paper; 4: the release)."""
    skip_first: bool = False
    """Decoder concatenation order ``[skip, upsampled]`` (the release) instead of ``[upsampled, skip]``."""
    final_prelus: int = Field(1, ge=1, le=2)
    """PReLUs closing each DoubleConv (2 in the release)."""

    init_only_fields: ClassVar[tuple[str, ...]] = ("ir_se50_weights",)


class UNetFeatureEncoder(nn.Module):
    """IR-SE trunk + :class:`UNetDecoder`; frames -> :class:`FeatureEdits`.

    Subclasses set ``role``, pass their output levels and head builder, and implement
    :meth:`edits`. Submodules: ``trunk`` and ``decoder``.
    """

    role: ClassVar[EncoderRole]

    def __init__(
        self,
        config: UNetEncoderConfig,
        *,
        input_channels: int,
        outputs: Sequence[FeatureLevel],
        make_head: Callable[[FeatureLevel, int], nn.Module],
        aggregator: AggregatorConfig | None,
        registry: Registry | None,
    ) -> None:
        super().__init__()
        sizes = resolve_sizes(
            config.preset,
            trunk_channels=config.trunk_channels,
            decoder_channels=config.decoder_channels,
            tail_channels=config.tail_channels,
        )
        self.config = config
        self.input_channels = input_channels
        self.input_resolution = config.input_resolution or sizes.input_resolution
        self.aggregator_name = aggregator.name if aggregator is not None else None
        """Name of the per-level aggregator (``None``: one-shot)."""
        self.trunk = IRSENet(sizes.trunk, in_channels=input_channels)
        if config.ir_se50_weights is not None:
            load_ir_se50_weights(self.trunk, config.ir_se50_weights, adapt_input_channels=True)
        self.decoder = UNetDecoder(
            trunk_channels=sizes.trunk.stage_channels,
            input_resolution=self.input_resolution,
            channels=sizes.decoder_channels,
            tail_channels=sizes.tail_channels,
            outputs=outputs,
            make_head=make_head,
            aggregator=aggregator,
            registry=registry,
            skip_first=config.skip_first,
            final_prelus=config.final_prelus,
        )

    def _check_frame(self, frame: Tensor, what: str) -> None:
        c, r = self.input_channels, self.input_resolution
        if frame.ndim != 4 or tuple(frame.shape[1:]) != (c, r, r):
            raise ValueError(f"{type(self).__name__}: {what} must be (B, {c}, {r}, {r}), got {tuple(frame.shape)}")

    def init_state(self, batch_size: int, device=None, dtype=None) -> EncoderState:
        """An empty state for ``batch_size`` sequences (device and dtype default to the weights')."""
        weight = next(self.parameters())
        device = weight.device if device is None else torch.device(device)
        dtype = weight.dtype if dtype is None else dtype
        state = self.decoder.init_state(batch_size, device, dtype)
        state[FRAMES_KEY] = torch.zeros(batch_size, dtype=torch.int64, device=device)
        return state

    def update(self, state: EncoderState, frame: Float[Tensor, "B C R R"]) -> EncoderState:
        """Fold one frame ``(B, C_in, R, R)`` into the state; returns a new state."""
        self._check_frame(frame, "a frame")
        if FRAMES_KEY not in state:
            raise KeyError(f"{type(self).__name__}: not an encoder state (no {FRAMES_KEY!r}); use init_state()")
        new = self.decoder.update(state, self.trunk(frame))
        new[FRAMES_KEY] = state[FRAMES_KEY] + 1
        return new

    def update_group(self, state: EncoderState, frames: Float[Tensor, "B T C R R"]) -> EncoderState:
        """Fold a group of T frames level by level (group-final state to the next level); returns a new state."""
        if frames.ndim != 5 or frames.shape[1] < 1:
            raise ValueError(f"{type(self).__name__}: a group must be (B, T, C, R, R), got {tuple(frames.shape)}")
        self._check_frame(frames[:, 0], "a group's frame")
        if FRAMES_KEY not in state:
            raise KeyError(f"{type(self).__name__}: not an encoder state (no {FRAMES_KEY!r}); use init_state()")
        group = frames.shape[1]
        new = self.decoder.update(state, self.trunk(frames.flatten(0, 1)), group_size=group)
        new[FRAMES_KEY] = state[FRAMES_KEY] + group
        return new

    def read(self, state: EncoderState) -> FeatureEdits:
        """Edits predicted from every frame folded in so far (at least one)."""
        if FRAMES_KEY not in state or bool((state[FRAMES_KEY] < 1).any()):
            raise ValueError(f"{type(self).__name__}.read needs at least one frame per sequence; call update() first")
        return self.edits(self.decoder.read(state))

    def forward(self, frames: Float[Tensor, "B T C R R"]) -> FeatureEdits:
        """Whole sequence ``(B, T, C_in, R, R)`` -> edits; exactly the streaming fold."""
        if frames.ndim != 5 or frames.shape[1] < 1:
            raise ValueError(
                f"{type(self).__name__} expects frames (B, T, {self.input_channels}, R, R) with T >= 1, "
                f"got {tuple(frames.shape)}"
            )
        state = self.init_state(frames.shape[0], frames.device, frames.dtype)
        return self.read(self.fold(state, frames))

    def frame_groups(self, count: int) -> list[list[int]] | None:
        """The groups ``count`` frames are folded in (``None``: one by one, the paper's default)."""
        return frame_groups(count, self.config.group_size) if self.config.group_size > 1 else None

    def fold(self, state: EncoderState, frames: Float[Tensor, "B T C R R"]) -> EncoderState:
        """Fold T frames into ``state``: one by one, or in the released groups when ``group_size > 1``."""
        groups = self.frame_groups(frames.shape[1])
        if groups is not None:
            for group in groups:
                state = self.update_group(state, frames[:, group])
            return state
        for t in range(frames.shape[1]):
            state = self.update(state, frames[:, t])
        return state

    def edits(self, outputs: Mapping[str, Tensor]) -> FeatureEdits:
        """Package the head outputs ``name -> (B, C, H, W)`` as :class:`FeatureEdits`."""
        raise NotImplementedError


def frame_groups(count: int, group_size: int) -> list[list[int]]:
    """The released grouping of ``count`` frames: cycle them up to a multiple of ``group_size``, then interleave.

    Frames are repeated from the first (1 -> [0, 0, 0, 0], 5 -> [0..4, 0, 1, 2]) and group k takes
    every ``num_groups``-th of them from k (5 -> [0, 2, 4, 1], [1, 3, 0, 2]).
    """
    if count < 1 or group_size < 1:
        raise ValueError(f"frame_groups needs count >= 1 and group_size >= 1, got {count}, {group_size}")
    groups = -(-count // group_size)
    order = [i % count for i in range(groups * group_size)]
    return [order[k::groups] for k in range(groups)]
