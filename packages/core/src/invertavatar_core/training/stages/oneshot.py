"""Training stage 2 (supplement 6.2.2): the one-shot fine-stage encoders E_tex and E_tri, loss of Eq. 3.

E_latent and the prior are frozen (initialised from stage 1's model checkpoint,
``training.init_from``). Synthetic identities from the prior give ground truth for every
intermediate: ``L_tex`` on ``F_tex``, ``L_tri`` on the tri-plane, ``L_raw`` on the neural
rendering feature image (all channels), plus L1 and the perceptual term on the final images at the source frame and at
``data.novel_views`` other views. With ``data.root`` set, every other step uses real fitted frames
(image losses only, at the source camera). With ``training.adversarial`` the prior's dual
discriminator (camera zeroed) judges prior renders against encoder renders.
"""

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.pipeline import repeat_features, resize_square
from invertavatar_core.plugin.protocols import CanonicalFeatures, PriorRender
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.losses import feature_losses, generator_loss, reconstruction_size, weighted
from invertavatar_core.training.stages.runner import EncoderStage, image_l1, run_stage
from invertavatar_core.training.trainer import StepContext

__all__ = ["FeatureEncoderStage", "OneShotStage", "train_oneshot"]


class FeatureEncoderStage(EncoderStage):
    """Shared by stages 2 and 3: optimisers of the fine-stage encoders, Eq. 3 loss, discriminator, samples."""

    trainable = ("texture", "static")
    sample_columns = 4
    """Identities per row of the sample grid."""

    def __init__(self, experiment: ExperimentConfig, registry: Registry, runtime: Runtime | None = None) -> None:
        super().__init__(experiment, registry, runtime)
        training = experiment.training
        self.trainable = tuple(p for p in type(self).trainable if getattr(self.models, p) is not None)
        if not self.trainable:
            raise ValueError(
                "encoders.texture and encoders.static are both null: there is nothing to train in this stage"
            )
        self.freeze_frozen_parts()
        params = [p for part in self.trainable for p in getattr(self.models, part).parameters() if p.requires_grad]
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "encoders": torch.optim.Adam(params, lr=training.lr, betas=training.betas)
        }
        self.discriminator: nn.Module | None = None
        if training.adversarial:
            self.discriminator = self.models.prior.build_discriminator().to(self.runtime.device)
            self.optimizers["discriminator"] = torch.optim.Adam(
                self.discriminator.parameters(), lr=training.discriminator_lr, betas=training.betas
            )

    def freeze_frozen_parts(self) -> None:
        """Stage-specific freezing inside the trained encoders (none in stage 2)."""

    @property
    def modules(self) -> dict[str, nn.Module]:
        """The trained encoders and the discriminator (when adversarial)."""
        modules = dict(super().modules)
        if self.discriminator is not None:
            modules["discriminator"] = self.discriminator
        return modules

    def eq3_loss(
        self,
        renders: list[tuple[PriorRender, PriorRender | Tensor]],
        features: CanonicalFeatures | None,
        target_features: CanonicalFeatures | None,
        image_weight: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Eq. 3 over ``(prediction, target)`` render pairs; a target that is only an image gets image terms only.

        ``image_weight (B, 1, H, W)`` weighs the pixels of the image L1 (head-masked real frames).
        """
        weights = self.experiment.training.stage2_losses
        l1, perceptual, raw = [], [], []
        for prediction, target in renders:
            image = target if isinstance(target, Tensor) else target.image
            prediction_image = reconstruction_size(resize_square(prediction.image, image.shape[-1]))
            image = reconstruction_size(image)
            l1.append(image_l1(prediction_image, image, image_weight))
            perceptual.append(self.perceptual_term(prediction_image, image))
            if not isinstance(target, Tensor):
                # L_raw compares the neural rendering feature maps I_raw (supplement 6.2.2, Eq. 3): every
                # channel of the volume-rendered feature image, not only its first three (RGB).
                raw.append(image_l1(prediction.feature_image, target.feature_image))
        parts = {"l1": torch.stack(l1).mean(), "lpips": torch.stack(perceptual).mean()}
        if raw:
            parts["raw"] = torch.stack(raw).mean()
        if features is not None and target_features is not None:
            parts.update(feature_losses(features, target_features))
        if self.discriminator is not None and weights.adv:
            prediction = renders[0][0]
            parts["adv"] = generator_loss(self.discriminator(prediction.image, prediction.raw, None))
        terms = weighted(parts, weights)
        return terms.total, self.loss_scalars(terms)

    def render_views(self, features: CanonicalFeatures, frames, per_avatar: int) -> PriorRender:
        """Render B avatars at their ``per_avatar`` frames each (avatar-major)."""
        return self.models.prior.render(repeat_features(features, per_avatar), frames.expression_uv, frames.camera)

    @torch.no_grad()
    def sample(self, ctx: StepContext) -> Tensor:
        """Rows: source, coarse render, our render, a novel view's ground truth, our novel view."""
        training = [m for m in self.modules.values() if m.training]
        for module in training:
            module.eval()
        try:
            generator = torch.Generator().manual_seed(self.experiment.seed + 99)
            batch = self.sampler.sample(4, 1, 1, generator, device=self.runtime.device)
            features, inputs = self.pipeline.invert(batch.sources, 1)
            ours = self.render_views(features, batch.sources, 1).image
            view = self.render_views(features, batch.views, 1).image
            size = batch.sources.image.shape[-1]
            rows = [batch.sources.image, inputs.coarse.image, ours, batch.views.image, view]
            return torch.cat([resize_square(r, size) for r in rows])
        finally:
            for module in training:
                module.train()


class OneShotStage(FeatureEncoderStage):
    """Stage 2: one-shot E_tex / E_tri; the experiment's ``aggregator`` should be null."""

    label = "train oneshot"

    init_parts = ("prior", "latent")

    @classmethod
    def images_per_step(cls, experiment: ExperimentConfig) -> int:
        """Each item's source frame and its novel views."""
        return experiment.training.batch_size * (1 + experiment.data.novel_views)

    def step(self, ctx: StepContext) -> Mapping[str, float]:
        """One synthetic (or, every other step with ``data.root``, real) batch."""
        training, data = self.experiment.training, self.experiment.data
        real = self.real_frames(training.batch_size, 1, ctx.generator) if (self.real and ctx.step % 2) else None
        with ctx.autocast():
            if real is None:
                batch = self.sampler.sample(training.batch_size, 1, data.novel_views, ctx.generator, device=ctx.device)
                features, _ = self.pipeline.invert(batch.sources, 1)
                renders = [(self.render_views(features, batch.sources, 1), batch.source_render)]
                if data.novel_views:
                    renders.append((self.render_views(features, batch.views, data.novel_views), batch.view_render))
                total, scalars = self.eq3_loss(renders, features, batch.features)
                real_render = batch.source_render
            else:
                features, _ = self.pipeline.invert(real, 1)
                pair = [(self.render_views(features, real, 1), real.image)]
                total, scalars = self.eq3_loss(pair, None, None, self.loss_weight(real.head_mask))
                real_render = None
        ctx.optimize("encoders", total)
        if self.discriminator is not None and real_render is not None:
            scalars.update(self.discriminator_step(ctx, self.discriminator, real_render, renders[0][0]))
        return scalars


def train_oneshot(experiment: ExperimentConfig, *args, **kwargs) -> dict[str, float]:
    """Run stage 2: one-shot E_tex + E_tri (Eq. 3); arguments as :func:`.runner.run_stage`."""
    return run_stage(OneShotStage, experiment, *args, **kwargs)
