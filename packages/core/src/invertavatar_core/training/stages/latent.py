"""Training stage 1 (supplement 6.2.1): E_latent, loss of Eq. 2.

``L = L1 + lambda_lpips L_lpips + lambda_id L_ID + L_adv^{E}`` (+ e4e's w-delta regulariser) on
the coarse render of each training image at its own camera and expression, with the
latent-code discriminator D_W of e4e telling mapping-network codes (truncation 0.8, at the
batch's data cameras) from encoder codes. The prior is frozen (``training.prior_weights``).
Training images are synthetic samples of the prior, and real fitted frames every other step when ``data.root`` is set.
"""

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.pipeline import resize_square
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.losses import (
    LatentDiscriminator,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    reconstruction_size,
    weighted,
)
from invertavatar_core.training.stages.runner import EncoderStage, image_l1, run_stage
from invertavatar_core.training.trainer import StepContext

__all__ = ["LatentStage", "train_latent"]


class LatentStage(EncoderStage):
    """Stage 1: E_latent against its coarse renders, with D_W."""

    label = "train latent"

    trainable = ("latent",)
    init_parts = ("prior",)
    sample_columns = 4

    def __init__(self, experiment: ExperimentConfig, registry: Registry, runtime: Runtime | None = None) -> None:
        super().__init__(experiment, registry, runtime)
        training = experiment.training
        self.latent_discriminator = LatentDiscriminator(self.models.prior.info.w_dim).to(self.runtime.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "latent": torch.optim.Adam(self.models.latent.parameters(), lr=training.lr, betas=training.betas),
            "latent_discriminator": torch.optim.Adam(
                self.latent_discriminator.parameters(), lr=training.latent_discriminator_lr, betas=training.betas
            ),
        }

    def _uses_identity(self) -> bool:
        return self.experiment.training.stage1_losses.id > 0

    @property
    def modules(self) -> dict[str, nn.Module]:
        """E_latent and D_W."""
        return {"latent": self.models.latent, "latent_discriminator": self.latent_discriminator}

    def step(self, ctx: StepContext) -> Mapping[str, float]:
        """One batch: encoder update (Eq. 2), then a D_W update."""
        training = self.experiment.training
        weights = training.stage1_losses
        prior = self.models.prior
        frames = self.real_frames(training.batch_size, 1, ctx.generator) if (self.real and ctx.step % 2) else None
        known_ws = None
        if frames is None:
            batch = self.sampler.sample(training.batch_size, 1, 0, ctx.generator, device=ctx.device)
            frames, known_ws = batch.sources, batch.ws
        with ctx.autocast():
            ws = self.pipeline.latent(frames.image)
            render = prior.render(prior.canonical(ws), frames.expression_uv, frames.camera)
            image = reconstruction_size(resize_square(render.image, frames.image.shape[-1]))
            target = reconstruction_size(frames.image)
            weight = self.loss_weight(frames.head_mask)
            parts = {"l1": image_l1(image, target, weight), "lpips": self.perceptual_term(image, target)}
            if self.identity_loss is not None:
                parts["id"] = self.identity_loss(image, target)
            if weights.latent_adv:
                parts["latent_adv"] = generator_loss(self.latent_discriminator(ws.flatten(0, 1)))
            # e4e's delta regulariser: styles 1..K-1 stay close to style 0.
            parts["w_delta"] = (ws[:, 1:] - ws[:, :1]).norm(dim=2).sum(1).mean()
            if weights.w_code and known_ws is not None:
                # Synthetic samples know their codes: a direct target that a short CPU run reaches far
                # sooner than through the renders alone (docs/design/training.md, stage 1).
                parts["w_code"] = (ws - known_ws).pow(2).mean()
            terms = weighted(parts, weights)
        ctx.optimize("latent", terms.total)
        scalars = self.loss_scalars(terms)
        if weights.latent_adv:
            scalars.update(self._discriminator_step(ctx, ws.detach(), frames.camera))
        return scalars

    def _discriminator_step(self, ctx: StepContext, fake_ws: Tensor, camera: Tensor) -> dict[str, float]:
        """One D_W update; ``fake_ws (B, K, D)`` from E_latent, ``camera (B, 25)`` the batch's data cameras."""
        info = self.models.prior.info
        training = self.experiment.training
        with torch.no_grad():
            z = torch.randn(fake_ws.shape[0], info.z_dim, generator=ctx.generator).to(ctx.device)
            # The real codes are what the mapping gives at the cameras of the training data, the condition
            # the prior was trained with, so D_W does not learn to tell codes apart by their camera.
            real = self.models.prior.mapping(z, camera.detach(), truncation_psi=training.real_w_truncation)[:, 0]
        real = real.requires_grad_(training.r1_gamma > 0)
        real_logits = self.latent_discriminator(real)
        fake_logits = self.latent_discriminator(fake_ws.flatten(0, 1))
        loss = discriminator_loss(real_logits, fake_logits)
        penalty = r1_penalty(real_logits, (real,)) if training.r1_gamma > 0 else loss.new_zeros(())
        ctx.optimize("latent_discriminator", loss + training.r1_gamma / 2 * penalty)
        return {"dw_loss": float(loss.detach()), "dw_r1": float(penalty.detach())}

    @torch.no_grad()
    def sample(self, ctx: StepContext) -> Tensor:
        """Rows: source image, its coarse render."""
        self.models.latent.eval()
        try:
            generator = torch.Generator().manual_seed(self.experiment.seed + 99)
            frames = self.sampler.sample(4, 1, 0, generator, device=self.runtime.device).sources
            prior = self.models.prior
            render = prior.render(
                prior.canonical(self.pipeline.latent(frames.image)), frames.expression_uv, frames.camera
            )
            return torch.cat([frames.image, resize_square(render.image, frames.image.shape[-1])])
        finally:
            self.models.latent.train()


def train_latent(experiment: ExperimentConfig, *args, **kwargs) -> dict[str, float]:
    """Run stage 1: E_latent (Eq. 2); arguments as :func:`~invertavatar_core.training.stages.runner.run_stage`."""
    return run_stage(LatentStage, experiment, *args, **kwargs)
