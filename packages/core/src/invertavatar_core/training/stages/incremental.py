"""Training stage 3 (supplement 6.2.3): the recurrent decoders of E_tex.rec / E_tri.rec, loss of Eq. 3.

Initialised from stage 2's model checkpoint (``training.init_from``); the aggregator parameters
the recurrent decoders add start fresh. Encoder trunks stay frozen (an encoder that exposes a
``trunk`` module has it frozen and in eval mode), E_latent and the prior too.

Each step takes sequences of L frames, L drawn uniformly from ``data.frames_per_sequence`` ..
``data.max_sequence_length``: the first ``L - frames_per_sequence`` frames are folded into the
aggregator states without gradients (h_0 != 0 for the rest, the paper's cycling), then the last
``frames_per_sequence`` frames are folded with gradients. The avatar of the whole sequence is
rendered and supervised at ``frames_per_sequence`` of its frames (``data.supervised_frames``: drawn
from all L, or the last ones) and at ``data.novel_views`` other views (real clips: at ``data.unseen_frames``
frames of the clip that were not folded). Synthetic videos: a random identity from the prior on a drive
sequence; with ``data.root`` every other step uses real fitted clips.
"""

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Literal

import torch

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.plugin.protocols import FeatureEdits, PriorRender
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.stages.oneshot import FeatureEncoderStage
from invertavatar_core.training.stages.runner import run_stage
from invertavatar_core.training.trainer import StepContext

__all__ = ["IncrementalStage", "supervised_indices", "train_incremental"]


class IncrementalStage(FeatureEncoderStage):
    """Stage 3: recurrent decoders (the experiment's ``aggregator`` must be set)."""

    label = "train incremental"

    init_parts = ("prior", "latent", "texture", "static")

    @classmethod
    def images_per_step(cls, experiment: ExperimentConfig) -> int:
        """Each item's supervised frames and novel views (or unseen frames), plus one frame of the prefix at a time.

        The frames before the supervised ones run without gradients, so only one of them is alive at a time.
        """
        data = experiment.data
        extra = max(data.novel_views, data.unseen_frames)
        return experiment.training.batch_size * (1 + data.frames_per_sequence + extra)

    @classmethod
    def real_frames_per_clip(cls, experiment: ExperimentConfig) -> int:
        """With ``data.unseen_frames``, a clip holds a sequence and its unseen frames without repeats."""
        data = experiment.data
        return data.max_sequence_length + data.unseen_frames if data.unseen_frames else 1

    def __init__(self, experiment: ExperimentConfig, registry: Registry, runtime: Runtime | None = None) -> None:
        if experiment.aggregator is None:
            raise ValueError("stage 3 (train incremental) needs an aggregator; the experiment sets aggregator: null")
        data = experiment.data
        if not 1 <= data.frames_per_sequence <= data.max_sequence_length:
            raise ValueError(
                f"data.frames_per_sequence ({data.frames_per_sequence}) must be between 1 and "
                f"data.max_sequence_length ({data.max_sequence_length})"
            )
        super().__init__(experiment, registry, runtime)

    def freeze_frozen_parts(self) -> None:
        """Keep each encoder's ``trunk`` frozen and in eval mode (only the decoders learn)."""
        for part in self.trainable:
            trunk = getattr(getattr(self.models, part), "trunk", None)
            if trunk is not None:
                trunk.requires_grad_(False).eval()

    def fold(self, inputs: Mapping[str, torch.Tensor], batch: int, length: int, supervised: int) -> FeatureEdits:
        """Fold ``length`` frames per sequence; only the last ``supervised`` ones carry gradients."""
        edits = FeatureEdits()
        for role, encoder in self.models.feature_encoders().items():
            x = inputs[role].reshape(batch, length, *inputs[role].shape[1:])
            state = encoder.init_state(batch)
            with torch.no_grad():
                for t in range(length - supervised):
                    state = encoder.update(state, x[:, t])
            state = {k: v.detach() for k, v in state.items()}
            for t in range(length - supervised, length):
                state = encoder.update(state, x[:, t])
            edits = edits.merge(encoder.read(state))
        return edits

    def step(self, ctx: StepContext) -> Mapping[str, float]:
        """One batch of sequences (synthetic, or real every other step with ``data.root``)."""
        training, data = self.experiment.training, self.experiment.data
        b, f = training.batch_size, data.frames_per_sequence
        length = int(torch.randint(f, data.max_sequence_length + 1, (1,), generator=ctx.generator))
        unseen = data.unseen_frames
        real = self.real_frames(b, length, ctx.generator, unseen) if (self.real and ctx.step % 2) else None
        batch = None
        if real is None:
            batch = self.sampler.sample(b, length, data.novel_views, ctx.generator, device=ctx.device)
            frames = batch.sources
        else:
            span = torch.arange(b).unsqueeze(1) * (length + unseen)
            frames = real[(span + torch.arange(length)).reshape(-1).to(ctx.device)]
        with ctx.autocast():
            with torch.no_grad():
                ws = self.pipeline.latent(frames.image[::length])
                inputs = self.pipeline.encoder_inputs(self.models.prior.canonical(ws), frames).inputs
            features = self.pipeline.fine(ws, self.fold(inputs, b, length, f))
            chosen = supervised_indices(b, length, f, data.supervised_frames, ctx.generator).to(ctx.device)
            supervised = frames[chosen]
            if batch is None:
                if unseen:  # each avatar's f folded frames, then its unseen ones (avatar-major, as render_views wants)
                    folded = chosen.reshape(b, f) // length * (length + unseen) + chosen.reshape(b, f) % length
                    later = (span + length + torch.arange(unseen)).to(ctx.device)
                    supervised = real[torch.cat([folded, later], 1).reshape(-1)]
                prediction = self.render_views(features, supervised, f + unseen)
                weight = self.loss_weight(supervised.head_mask)
                total, scalars = self.eq3_loss([(prediction, supervised.image)], None, None, weight)
                real_render = None
            else:
                prediction = self.render_views(features, supervised, f)
                renders = [(prediction, _select(batch.source_render, chosen))]
                if data.novel_views:
                    renders.append((self.render_views(features, batch.views, data.novel_views), batch.view_render))
                total, scalars = self.eq3_loss(renders, features, batch.features)
                real_render = renders[0][1]
        ctx.optimize("encoders", total)
        if self.discriminator is not None and real_render is not None:
            scalars.update(self.discriminator_step(ctx, self.discriminator, real_render, prediction))
        scalars["frames"] = float(length)
        return scalars


def supervised_indices(
    batch: int, length: int, count: int, which: Literal["any", "last"], generator: torch.Generator | None = None
) -> torch.Tensor:
    """The frames each sequence's avatar is rendered at: ``(batch * count,)`` int64 into ``batch * length`` frames.

    Frames are sequence-major (frame t of sequence b at ``b * length + t``). ``last``: frames
    ``length - count .. length - 1`` of each sequence; ``any``: ``count`` distinct frames of each
    sequence drawn with ``generator``.
    """
    if not 1 <= count <= length:
        raise ValueError(f"supervised frames: count must be between 1 and the sequence length {length}, got {count}")
    if which == "last":
        offsets = torch.arange(length - count, length).expand(batch, count)
    elif which == "any":
        offsets = torch.stack([torch.randperm(length, generator=generator)[:count] for _ in range(batch)])
    else:
        raise ValueError(f"data.supervised_frames must be 'any' or 'last', got {which!r}")
    return (offsets + length * torch.arange(batch).unsqueeze(1)).reshape(-1)


def _select(render: PriorRender, index: torch.Tensor) -> PriorRender:
    """The frames ``index`` of a :class:`PriorRender`."""
    return replace(render, **{f.name: getattr(render, f.name)[index] for f in fields(render)})


def train_incremental(experiment: ExperimentConfig, *args, **kwargs) -> dict[str, float]:
    """Run stage 3: recurrent decoders (Eq. 1, 3); arguments as :func:`.runner.run_stage`."""
    return run_stage(IncrementalStage, experiment, *args, **kwargs)
