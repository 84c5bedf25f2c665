"""What the three encoder training stages share: models and their initialisation, frozen parts, data, losses, export.

A stage trains some parts of an :class:`InversionModels` (``trainable``) and keeps the rest
frozen in eval mode: the prior always (loaded from ``training.prior_weights`` or the previous
stage's checkpoint), E_latent after stage 1. ``training.init_from`` (the previous stage's model
checkpoint) initialises the parts listed in ``init_parts``. At every checkpoint and at the end the
stage writes the model checkpoint folder (``docs/checkpoints.md``) into the run folder, so the
run folder is what ``invertavatar reconstruct --checkpoint`` and the next stage's ``init_from`` read.

Data: synthetic identities from the prior on a :class:`DriveBank` (always), plus real fitted
frames when ``data.root`` is set; the drives then come from the real clips (supplement 6.2.3),
else from the morphable model with random coefficients and cameras.
"""

import logging
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invertavatar_core.config.experiment import ExperimentConfig, default_registry
from invertavatar_core.data.synthetic import DriveBank, SyntheticSampler
from invertavatar_core.inversion.models import InversionModels, component_dir
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.inversion.pipeline import InversionPipeline, conform_to_prior, resize_square
from invertavatar_core.io.checkpoints import CheckpointError, load_module_weights, read_component_config
from invertavatar_core.plugin.protocols import PriorRender
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.losses import (
    LossTerms,
    build_identity_loss,
    build_perceptual_loss,
    discriminator_loss,
    r1_penalty,
    weighted_l1,
)
from invertavatar_core.training.memory_estimate import MemoryEstimate, build_on_meta, count_parameters, ensure_fits
from invertavatar_core.training.trainer import Trainer

__all__ = ["EncoderStage"]

log = logging.getLogger("invertavatar.training")


class EncoderStage:
    """Base of the stages in :mod:`train_latent`, :mod:`train_oneshot`, :mod:`train_incremental`."""

    trainable: tuple[str, ...] = ()
    """Parts trained by the stage (``latent``, ``texture``, ``static``)."""
    init_parts: tuple[str, ...] = ()
    """Parts initialised from ``training.init_from`` when it is set."""
    required_parts: tuple[str, ...] = ()
    """Parts the experiment must configure for this stage."""
    label: str = "encoder training"
    """What messages call the stage (``train latent``)."""

    def __init__(self, experiment: ExperimentConfig, registry: Registry, runtime: Runtime | None = None) -> None:
        self.experiment = experiment
        self.registry = registry
        self.runtime = runtime or Runtime()
        training = experiment.training
        device = self.runtime.device
        self.models = InversionModels.build(experiment, registry, device=device)
        for part in self.required_parts:
            if part != "latent" and getattr(self.models, part) is None:
                raise ValueError(f"this stage trains encoders.{part}, but the experiment sets it to null")
        self._load_prior(training.prior_weights)
        if training.init_from is not None:
            fresh = self.models.load_matching(training.init_from, self.init_parts)
            if fresh:
                log.info(
                    "initialised from %s; %d tensors start fresh (e.g. %s)", training.init_from, len(fresh), fresh[0]
                )
        self.pipeline = InversionPipeline(self.models)
        self.models.requires_grad_(False).eval()
        for part in self.trainable:
            module = getattr(self.models, part)
            if module is not None:  # a fine-stage encoder the experiment removes (Table 3 ablations)
                module.requires_grad_(True).train()
        self.perceptual = build_perceptual_loss(training.perceptual, training.perceptual_fallback, registry)
        if self.perceptual is not None:
            self.perceptual.to(device)
        self.identity_loss = build_identity_loss(training.id_weights) if self._uses_identity() else None
        if self.identity_loss is not None:
            self.identity_loss.to(device)
        self.real = self._real_sequences()
        self.sampler = SyntheticSampler(
            self.models.prior, self._drive_bank(), truncation_psi=training.sample_truncation
        )

    # ------------------------------------------------------------------ setup

    @classmethod
    def images_per_step(cls, experiment: ExperimentConfig) -> int:
        """Images rendered per optimiser step (what the memory estimate scales activations by)."""
        return experiment.training.batch_size

    @classmethod
    def memory_estimate(cls, experiment: ExperimentConfig, registry: Registry) -> MemoryEstimate:
        """The stage's memory estimate from its config (the networks are built on the meta device only)."""
        models = build_on_meta(lambda: InversionModels.build(experiment, registry, device="meta"))
        parts = {name: module for name, module, _ in models.parts()}
        trained = count_parameters(parts[p] for p in cls.trainable if p in parts)
        frozen = count_parameters(m for p, m in parts.items() if p not in cls.trainable)
        info = models.prior.info
        # Encoders may run above the prior's resolution (paper: 256 px encoders on a 512 px prior, or a tiny prior).
        inputs = [getattr(m, "input_resolution", 0) for p, m in parts.items() if p != "prior"]
        return MemoryEstimate(
            what=f"{cls.label} (experiment {experiment.name!r})",
            trained_parameters=trained,
            frozen_parameters=frozen,
            images=cls.images_per_step(experiment),
            image_resolution=max([info.image_resolution, *inputs]),
            neural_resolution=info.neural_resolution,
        )

    def _uses_identity(self) -> bool:
        return False

    def _load_prior(self, path: Path | None) -> None:
        if path is None:
            if self.experiment.training.init_from is None or "prior" not in self.init_parts:
                log.warning(
                    "training.prior_weights is not set: the prior has RANDOM weights, so the encoders learn to "
                    "invert an untrained generator; train one with 'invertavatar train prior' and set "
                    "training.prior_weights to its run folder's prior/"
                )
            return
        config = read_component_config(path, self.registry, "prior")
        if config != self.experiment.prior:
            raise CheckpointError(
                f"training.prior_weights {path} holds prior {config.model_dump()}, but the experiment's prior is "
                f"{self.experiment.prior.model_dump()}; make them agree"
            )
        load_module_weights(self.models.prior, Path(path) / "model.safetensors")

    def _drive_bank(self) -> DriveBank:
        data = self.experiment.data
        info = self.models.prior.info
        length = max(data.max_sequence_length, data.frames_per_sequence + data.novel_views)
        if self.real:
            # The paper's synthetic videos: random identities with poses and expressions of real clips.
            return DriveBank.from_observations([conform_to_prior(s, info.uv_resolution) for s in self.real], length)
        # Every process builds the same bank (its own seed): the drives are data, not randomness of a step.
        generator = torch.Generator().manual_seed(self.experiment.seed + 7)
        model = self.registry.create("morphable_model", self.experiment.morphable_model)
        rasterizer = self.registry.create("rasterizer", self.experiment.rasterizer)
        return DriveBank.procedural(
            model,
            rasterizer,
            sequences=data.synthetic_drives,
            length=length,
            expression_resolution=info.uv_resolution,
            unwrap_resolution=info.uv_resolution,
            image_resolution=info.image_resolution,
            generator=generator,
        )

    def _real_sequences(self) -> list[Observation] | None:
        root = self.experiment.data.root
        if root is None:
            return None
        from invertavatar_core.data.datasets import open_dataset

        dataset = open_dataset(root)
        sequences = {name: dataset.sequence(name) for name in dataset.sequences()}
        need = self.real_frames_per_clip(self.experiment)
        short = [f"{name} ({len(s)})" for name, s in sequences.items() if len(s) < need]
        if short:
            raise ValueError(
                f"{root}: {self.label} takes {need} frames from each clip (data.max_sequence_length + "
                f"data.unseen_frames), but clips {', '.join(short[:3])} are shorter; lower those settings"
            )
        return list(sequences.values())

    @classmethod
    def real_frames_per_clip(cls, experiment: ExperimentConfig) -> int:
        """The fewest frames a real clip must have for this stage (1: one frame at a time)."""
        return 1

    # ------------------------------------------------------------------ Stage protocol

    @property
    def modules(self) -> dict[str, nn.Module]:
        """Checkpointed modules: the trained parts (+ discriminators, added by subclasses)."""
        return {part: getattr(self.models, part) for part in self.trainable}

    def export(self, run_dir: Path, step: int) -> None:
        """Write the model checkpoint folder into the run folder (the prior once: it is frozen)."""
        parts = None if not component_dir(run_dir, "prior").is_dir() else ("latent", "texture", "static")
        self.models.save(run_dir, parts=parts)

    # ------------------------------------------------------------------ data

    def real_frames(
        self, count: int, frames: int, generator: torch.Generator, unseen: int = 0
    ) -> Observation | None:
        """``count`` random real sequences of ``frames`` consecutive frames each (avatar-major), or None.

        ``unseen`` > 0 appends to each sequence that many other frames of its clip, drawn from outside the
        consecutive ones (``count * (frames + unseen)`` frames in all).
        """
        if not self.real:
            return None
        picks = []
        for _ in range(count):
            sequence = self.real[int(torch.randint(len(self.real), (1,), generator=generator))]
            start = int(torch.randint(len(sequence), (1,), generator=generator))
            window = (start + torch.arange(frames)) % len(sequence)
            if unseen:
                rest = (start + frames + torch.randperm(len(sequence) - frames, generator=generator)) % len(sequence)
                window = torch.cat([window, rest[:unseen]])
            picks.append(sequence[window])
        info = self.models.prior.info
        obs = conform_to_prior(Observation.cat(picks).to(self.runtime.device), info.uv_resolution)
        size = info.image_resolution
        if obs.image.shape[-1] == size:
            return obs
        mask = None if obs.head_mask is None else resize_square(obs.head_mask, size)
        return replace(obs, image=resize_square(obs.image, size), head_mask=mask)

    def loss_weight(self, head_mask: Tensor | None) -> Tensor | None:
        """Per-pixel image-loss weight of real frames: 1 on the head, ``background_weight`` elsewhere (None: plain)."""
        background = self.experiment.training.background_weight
        if head_mask is None or background >= 1:
            return None
        return head_mask + background * (1 - head_mask)

    # ------------------------------------------------------------------ losses

    def loss_scalars(self, terms: LossTerms) -> dict[str, float]:
        """``terms.scalars()`` with the perceptual term logged under the metric that computed it.

        The loss weight is lambda_lpips (Eq. 2, 3) whichever metric runs; a stand-in such as MS-SSIM
        is logged as ``perceptual_ms_ssim`` so a curve is never mistaken for LPIPS, and a dropped term
        is not logged.
        """
        name = self.perceptual.name if self.perceptual is not None else None
        scalars = {}
        for key, value in terms.scalars().items():
            if key != "lpips" or name == "lpips":
                scalars[key] = value
            elif name is not None:
                scalars[f"perceptual_{name}"] = value
        return scalars

    def perceptual_term(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Perceptual distance (zero when the term is dropped)."""
        if self.perceptual is None:
            return prediction.new_zeros(())
        return self.perceptual(prediction, target)

    def discriminator_step(
        self, ctx, discriminator: nn.Module, real: PriorRender, fake: PriorRender
    ) -> dict[str, float]:
        """One update of the dual discriminator: prior renders are real, encoder renders fake (camera zeroed)."""
        gamma = self.experiment.training.r1_gamma
        real_image = real.image.detach().requires_grad_(gamma > 0)
        real_raw = real.raw.detach().requires_grad_(gamma > 0)
        with ctx.autocast():
            real_logits = discriminator(real_image, real_raw, None)
            fake_logits = discriminator(fake.image.detach(), fake.raw.detach(), None)
            loss = discriminator_loss(real_logits, fake_logits)
        penalty = r1_penalty(real_logits.float(), (real_image, real_raw)) if gamma > 0 else loss.new_zeros(())
        ctx.optimize("discriminator", loss + gamma / 2 * penalty)
        return {"d_loss": float(loss.detach()), "d_r1": float(penalty.detach())}


def image_l1(prediction: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """L1 after bringing ``prediction`` to the target's resolution; ``weight (B, 1, H, W)`` weighs pixels."""
    prediction = resize_square(prediction, target.shape[-1])
    if weight is None:
        return F.l1_loss(prediction, target)
    return weighted_l1(prediction, target, resize_square(weight, target.shape[-1]))


def run_stage(
    stage_class: type[EncoderStage],
    experiment: ExperimentConfig,
    registry: Registry | None = None,
    runtime: Runtime | None = None,
    *,
    progress: bool = True,
) -> dict[str, float]:
    """Train ``stage_class`` into ``experiment.training.out_dir``, resuming from its checkpoint; the last scalars."""
    registry = registry or default_registry()
    runtime = runtime or Runtime.from_env()
    ensure_fits(stage_class.memory_estimate(experiment, registry), runtime.device)
    stage = stage_class(experiment, registry, runtime)
    trainer = Trainer(
        stage, experiment.training, runtime=runtime, config=experiment, seed=experiment.seed, progress=progress
    )
    return trainer.fit()
