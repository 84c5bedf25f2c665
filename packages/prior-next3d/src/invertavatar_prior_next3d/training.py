"""Training the prior as a 3D-aware GAN (supplement 6.1, docs/design/training.md), on the core trainer.

``objective: adversarial`` (the default) is the paper's GAN training below; ``objective:
supervised`` fits the prior to synthetic multi-view heads first (an auto-decoder,
:mod:`invertavatar_prior_next3d.supervised`), and ``init_prior`` starts either from an exported
prior (e.g. adversarial fine-tuning of a supervised one).

Every step runs the four phases of EG3D/StyleGAN2 training on one batch of real frames:

1. G: fakes from random ``z`` rendered at cameras and expressions drawn from the data;
   non-saturating loss through the dual discriminator. Generator pose conditioning: the
   mapping network sees the rendering camera, swapped for another sample's with probability
   ``gpc_prob`` (faded in from 1 over ``gpc_fade_kimg``);
2. G regularisation, every ``density_reg_interval`` steps: density regularisation (weight 0.25);
3. D: non-saturating loss on reals versus fresh fakes; reals' raw images are the images
   resized to the current neural resolution;
4. D regularisation, every ``r1_interval`` (16) steps: lazy R1 (gamma 8) on the real image and
   raw inputs of D.

Lazy regularisation scales each regulariser by its interval and Adam's learning rate and betas by
``interval / (interval + 1)`` (StyleGAN2). The neural rendering resolution fades from 64 to 128
over ``fade_kimg``; D's image input is blurred at the start (``blur_init_sigma`` fading over
``blur_fade_kimg``); ``G_ema`` follows G with a 10-kimg half-life. Resume, multi-process gradient
averaging (torchrun), precision, progress bar, CSV / TensorBoard log and sample grids come from
:class:`invertavatar_core.training.trainer.Trainer`; at each checkpoint ``G_ema`` is exported as a
component folder ``<run>/prior`` (what ``training.prior_weights`` of the encoder stages loads).
"""

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import kornia
import torch
from pydantic import Field
from torch import Tensor, nn

from invertavatar_core.config.experiment import ComponentField, Section, TrainingConfig, default_registry
from invertavatar_core.io.checkpoints import WEIGHTS_FILE, load_module_weights, save_component
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.losses import discriminator_loss, generator_loss, r1_penalty
from invertavatar_core.training.memory_estimate import MemoryEstimate, build_on_meta, count_parameters, ensure_fits
from invertavatar_core.training.trainer import StepContext, Trainer
from invertavatar_prior_next3d.density_regularization import density_regularization
from invertavatar_prior_next3d.ema import ema_beta, update_ema
from invertavatar_prior_next3d.gan_data import DatasetGanData, GanBatch, GanData, MultiViewData, RandomGanData
from invertavatar_prior_next3d.next3d import Next3DPrior
from invertavatar_prior_next3d.resample import resize

__all__ = [
    "PRIOR_DIR",
    "GanStage",
    "PriorTrainingConfig",
    "build_prior",
    "prior_memory_estimate",
    "r1_regularization",
    "train_prior",
]

log = logging.getLogger("invertavatar.prior_training")

PRIOR_DIR = "prior"
"""Component folder of the exported ``G_ema`` inside the run folder."""

LANDMARK_CHANNELS = 3
"""Channels of the landmark-contour image of the deformation-aware discriminator (paper Sec. 3.1, supplement 6.1)."""


class PriorTrainingConfig(Section):
    """``invertavatar train prior --config FILE``: the prior, the data and the GAN recipe (defaults as released)."""

    # "released recipe": docs/design/training.md, stage 0.
    seed: int = 0
    """Seed of the initial weights and of every step's randomness."""
    prior: ComponentField("prior") = Field(default_factory=lambda: {"name": "next3d"}, validate_default=True)
    """The prior to train (``next3d``; ``preset: tiny`` for CPU runs)."""
    init_prior: Path | None = None
    """Prior component folder whose weights start G and G_ema (e.g. EG3D's, through ``invertavatar convert
    release-prior EG3D.pkl``, as the paper trains from EG3D); ``prior`` must build the same shapes. ``null``:
    random initialisation. A run that resumes from its own checkpoint ignores it."""
    data_root: Path | None = None
    """Dataset in the ``invertavatar preprocess`` (or official) layout; ``null`` = random images (smoke tests only).

    ``invertavatar synth-heads`` writes procedurally rendered heads in the fit layout.
    """
    out_dir: Path = Path("runs/prior")
    """Run folder: config, checkpoints, log, samples and the exported prior."""
    steps: int = Field(100_000, ge=1)
    """Training steps (each: G, D and their lazy regularisers on one batch)."""
    batch_size: int = Field(4, ge=1)
    """Images per step and process (8 GPUs x 4 = the released batch of 32)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision of the forward passes (bf16 is safe with the conv clamps)."""
    checkpoint_every: int = Field(1000, ge=1)
    """Steps between checkpoints (a crash loses at most this many)."""
    log_every: int = Field(10, ge=1)
    """Steps between rows of ``log.csv``."""
    sample_every: int = Field(1000, ge=1)
    """Steps between PNG sample grids of ``G_ema``."""
    sample_count: int = Field(8, ge=1)
    """Images in a sample grid."""
    sample_truncation: float = 0.7  # released sampler (docs/design/prior.md)
    """Truncation psi of the sample grids."""
    g_lr: float = 0.0025  # released recipe
    """Generator learning rate."""
    d_lr: float = 0.002  # released recipe
    """Discriminator learning rate."""
    betas: tuple[float, float] = (0.0, 0.99)  # released recipe
    """Adam betas of both networks."""
    r1_gamma: float = Field(8.0, ge=0)  # released recipe
    """R1 weight gamma (the penalty is gamma / 2 * |grad D|^2); 0 disables it."""
    r1_interval: int = Field(16, ge=1)  # StyleGAN2 lazy regularisation
    """D steps between R1 penalties."""
    density_reg: float = Field(0.25, ge=0)  # released recipe
    """Weight of the density regulariser; 0 disables it."""
    density_reg_interval: int = Field(4, ge=1)  # released recipe: every 4 iterations
    """G steps between density regularisations."""
    density_reg_p_dist: float = 0.004  # released recipe
    """Standard deviation of the point perturbation of the density regulariser."""
    density_reg_points: int = Field(1000, ge=1)  # EG3D
    """Random points per sample of the density regulariser."""
    gpc_prob: float | None = Field(0.5, ge=0, le=1)  # gpc_reg_prob, released recipe
    """Probability of conditioning the mapping on another sample's camera; ``null``: condition on zeros."""
    gpc_fade_kimg: float = Field(1000.0, ge=0)  # EG3D default when training from scratch
    """The swap probability fades from 1 to ``gpc_prob`` over this many thousand images (0: no fade)."""
    ema_kimg: float = Field(10.0, ge=0)  # released recipe
    """Half-life of G_ema in thousands of images."""
    ema_rampup: float | None = 0.05  # StyleGAN2-ADA default from scratch
    """Caps the EMA half-life at this fraction of the images seen; ``null`` when resuming a trained G."""
    neural_resolution_initial: int | None = Field(None, ge=8)
    """Neural rendering resolution at the start; ``null`` = half the prior's (64 at paper scale)."""
    fade_kimg: float = Field(1000.0, ge=0)  # released recipe: 64 -> 128 over 1000 kimg
    """Thousands of images over which the neural resolution fades to the prior's (0: start there)."""
    blur_init_sigma: float = Field(10.0, ge=0)  # EG3D
    """Initial blur of D's image input, in pixels of a 512 image (scaled with the image size)."""
    blur_fade_kimg: float = Field(200.0, ge=0)  # EG3D
    """Thousands of images over which that blur fades out (0: no blur)."""
    landmark_conditioning: bool = False  # supplement 6.1; off in the released command (docs/design/prior.md)
    """Deformation-aware D: also show it the landmark-contour image (the data must provide it)."""
    objective: Literal["adversarial", "supervised"] = "adversarial"
    """``adversarial``: the paper's GAN training; ``supervised``: auto-decoder pre-training on synthetic heads."""
    init_prior: Path | None = None
    """An exported prior folder (``<run>/prior``) whose weights G and G_ema start from (a fresh run only)."""
    data_in_memory: bool = False
    """Adversarial: hold a synth-heads data set in memory (:class:`MultiViewData`) instead of reading frames."""
    views: int = Field(2, ge=1)
    """Supervised: frames rendered per identity and step (``batch_size // views`` identities)."""
    latent_lr: float = Field(0.01, gt=0)
    """Supervised: learning rate of the identity latents."""
    background_weight: float = Field(0.1, ge=0)
    """Supervised: weight of background pixels in the image loss (head pixels weigh 1)."""
    raw_weight: float = Field(1.0, ge=0)
    """Supervised: weight of the raw neural render's L1 (against the frame over black)."""
    silhouette_weight: float = Field(1.0, ge=0)
    """Supervised: weight of the opacity-versus-head-mask L1."""
    texture_weight: float = Field(1.0, ge=0)
    """Supervised: weight of the neural texture's first three channels against the painted albedo."""
    texture_level: str = "x128"
    """Supervised: the texture level regressed onto the painted albedo (the finest by default)."""

    def trainer_config(self) -> TrainingConfig:
        """The subset the core :class:`~invertavatar_core.training.trainer.Trainer` reads."""
        return TrainingConfig(
            out_dir=self.out_dir,
            steps=self.steps,
            batch_size=self.batch_size,
            precision=self.precision,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
            sample_every=self.sample_every,
        )


def _lazy(interval: int, active: bool) -> float:
    """Adam's lr / betas exponent under lazy regularisation (StyleGAN2): ``interval / (interval + 1)``."""
    return interval / (interval + 1) if active else 1.0


def blur_images(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (identity when ``sigma`` is 0)."""
    if sigma <= 0:
        return image
    radius = max(int(3 * sigma), 1)
    return kornia.filters.gaussian_blur2d(image, 2 * radius + 1, (sigma, sigma), border_type="reflect")


def r1_regularization(
    discriminator: nn.Module,
    image: Tensor,
    raw: Tensor,
    camera: Tensor | None,
    *,
    landmarks: Tensor | None = None,
    blur_sigma: float = 0.0,
) -> Tensor:
    """R1 penalty ``mean_b sum |dD/d(image, raw)|^2`` at real inputs (EG3D penalises both D inputs)."""
    image = image.detach().requires_grad_(True)
    raw = raw.detach().requires_grad_(True)
    extra = {"landmarks": landmarks} if landmarks is not None else {}
    logits = discriminator(blur_images(image, blur_sigma), raw, camera, **extra)
    return r1_penalty(logits.float(), (image, raw))


def build_prior(config: PriorTrainingConfig, registry: Registry) -> Next3DPrior:
    """The prior to train, seeded by ``config.seed``; loaded from ``config.init_prior`` when given."""
    weights = None if config.init_prior is None else Path(config.init_prior) / WEIGHTS_FILE
    if weights is not None and not weights.is_file():  # before the prior is built
        raise FileNotFoundError(
            f"init_prior {config.init_prior}: no {WEIGHTS_FILE} (expected an exported prior folder, <run>/prior)"
        )
    torch.manual_seed(config.seed)
    prior = registry.create("prior", config.prior)
    if not isinstance(prior, Next3DPrior):
        raise TypeError(
            f"invertavatar train prior trains Next3DPrior priors (it needs animate() and density()); "
            f"prior {config.prior.name!r} built a {type(prior).__name__}"
        )
    if weights is not None:
        load_module_weights(prior, weights)
    return prior


class GanStage:
    """The GAN's :class:`~invertavatar_core.training.trainer.Stage`: modules G, G_ema, D; optimisers G, D."""

    def __init__(
        self,
        config: PriorTrainingConfig,
        *,
        registry: Registry | None = None,
        runtime: Runtime | None = None,
        data: GanData | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime or Runtime()
        registry = registry or default_registry()
        device = self.runtime.device
        self.G = build_prior(config, registry).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D = self.G.build_discriminator(landmark_channels=LANDMARK_CHANNELS if config.landmark_conditioning else 0)
        self.D.to(device).train()
        if data is None:
            if config.data_root is None:
                log.warning("data_root is null: training on random images, which only tests the machinery")
                data = RandomGanData(self.G.info, device=device)
            elif config.data_in_memory:
                data = MultiViewData(config.data_root, self.G.info, device=device)
            else:
                data = DatasetGanData(config.data_root, self.G.info, device=device)
        if config.landmark_conditioning and not data.has_landmarks:
            raise ValueError(
                "landmark_conditioning needs landmark-contour images in the data, and this data source has none; "
                "set landmark_conditioning: false"
            )
        self.data = data
        c_g = _lazy(config.density_reg_interval, config.density_reg > 0)
        c_d = _lazy(config.r1_interval, config.r1_gamma > 0)
        b0, b1 = config.betas
        # foreach: one multi-tensor kernel per update instead of a Python loop over ~400 tensors.
        self.optimizers = {
            "G": torch.optim.Adam(
                self.G.parameters(), lr=config.g_lr * c_g, betas=(b0**c_g, b1**c_g), eps=1e-8, foreach=True
            ),
            "D": torch.optim.Adam(
                self.D.parameters(), lr=config.d_lr * c_d, betas=(b0**c_d, b1**c_d), eps=1e-8, foreach=True
            ),
        }
        self.modules = {"G": self.G, "G_ema": self.G_ema, "D": self.D}

    # ------------------------------------------------------------------ schedules

    def images_seen(self, step: int) -> int:
        """Images seen by all processes before ``step``."""
        return step * self.config.batch_size * self.runtime.world_size

    def neural_resolution(self, seen: int) -> int:
        """Rendering resolution after ``seen`` images: initial -> the prior's over ``fade_kimg``."""
        final = self.G.info.neural_resolution
        initial = self.config.neural_resolution_initial or final // 2
        if self.config.fade_kimg <= 0:
            return final
        alpha = min(seen / (self.config.fade_kimg * 1000), 1.0)
        return int(round(initial * (1 - alpha) + final * alpha))

    def blur_sigma(self, seen: int) -> float:
        """Blur of D's image input after ``seen`` images, in pixels of this prior's images."""
        c = self.config
        if c.blur_fade_kimg <= 0 or c.blur_init_sigma <= 0:
            return 0.0
        scale = self.G.info.image_resolution / 512
        return c.blur_init_sigma * scale * max(1 - seen / (c.blur_fade_kimg * 1000), 0.0)

    def swap_probability(self, seen: int) -> float | None:
        """Generator-pose-conditioning swap probability after ``seen`` images (None: zero conditioning)."""
        c = self.config
        if c.gpc_prob is None:
            return None
        alpha = min(seen / (c.gpc_fade_kimg * 1000), 1.0) if c.gpc_fade_kimg > 0 else 1.0
        return (1 - alpha) + alpha * c.gpc_prob

    # ------------------------------------------------------------------ pieces

    def _conditioning(self, camera: Tensor, probability: float | None, generator: torch.Generator) -> Tensor:
        if probability is None:
            return torch.zeros_like(camera)
        swap = (torch.rand(camera.shape[0], generator=generator) < probability).to(camera.device)
        return torch.where(swap[:, None], camera.roll(1, dims=0), camera)

    def _ws(self, drive: GanBatch, generator: torch.Generator, seen: int, *, update_w_avg: bool = False) -> Tensor:
        z = torch.randn(drive.camera.shape[0], self.G.info.z_dim, generator=generator).to(drive.camera.device)
        condition = self._conditioning(drive.camera, self.swap_probability(seen), generator)
        return self.G.mapping(z, condition, update_w_avg=update_w_avg)

    def discriminate(self, image: Tensor, raw: Tensor, batch: GanBatch, sigma: float) -> Tensor:
        """D logits of ``image`` / ``raw`` shown with ``batch``'s camera (and landmark image)."""
        extra = {"landmarks": batch.landmarks} if self.config.landmark_conditioning else {}
        return self.D(blur_images(image, sigma), raw, batch.camera, **extra)

    # ------------------------------------------------------------------ Stage protocol

    def step(self, ctx: StepContext) -> Mapping[str, float]:
        """One iteration: G, (density reg), D, (R1), EMA."""
        c, gen = self.config, ctx.generator
        b = c.batch_size
        seen = self.images_seen(ctx.step)
        resolution = self.neural_resolution(seen)
        sigma = self.blur_sigma(seen)
        real = self.data.sample(b, gen)
        drive_g = self.data.sample(b, gen, images=False)
        drive_d = self.data.sample(b, gen, images=False)
        scalars: dict[str, float] = {"neural_resolution": float(resolution), "blur_sigma": sigma}

        self.D.requires_grad_(False)
        with ctx.autocast():
            ws = self._ws(drive_g, gen, seen, update_w_avg=True)
            fake = self.G.render(
                self.G.canonical(ws), drive_g.expression_uv, drive_g.camera, neural_resolution=resolution
            )
            g_loss = generator_loss(self.discriminate(fake.image, fake.raw, drive_g, sigma).float())
        ctx.optimize("G", g_loss)
        scalars["g_loss"] = float(g_loss.detach())

        if c.density_reg > 0 and ctx.step % c.density_reg_interval == 0:
            with ctx.autocast():
                ws = self._ws(drive_g, gen, seen)
                planes = self.G.animate(self.G.canonical(ws), drive_g.expression_uv)
                reg = density_regularization(self.G, planes, points=c.density_reg_points, p_dist=c.density_reg_p_dist)
            ctx.optimize("G", reg * (c.density_reg * c.density_reg_interval))
            scalars["density_reg"] = float(reg.detach())
        self.D.requires_grad_(True)

        with torch.no_grad(), ctx.autocast():
            ws = self._ws(drive_d, gen, seen)
            fake = self.G.render(
                self.G.canonical(ws), drive_d.expression_uv, drive_d.camera, neural_resolution=resolution
            )
        real_raw = resize(real.image, resolution)
        with ctx.autocast():
            real_logits = self.discriminate(real.image, real_raw, real, sigma).float()
            fake_logits = self.discriminate(fake.image, fake.raw, drive_d, sigma).float()
            d_loss = discriminator_loss(real_logits, fake_logits)
        ctx.optimize("D", d_loss)
        scalars.update(
            d_loss=float(d_loss.detach()),
            d_real=float(real_logits.detach().mean()),
            d_fake=float(fake_logits.detach().mean()),
        )

        if c.r1_gamma > 0 and ctx.step % c.r1_interval == 0:
            with ctx.autocast():
                penalty = r1_regularization(
                    self.D,
                    real.image,
                    real_raw,
                    real.camera,
                    landmarks=real.landmarks if c.landmark_conditioning else None,
                    blur_sigma=sigma,
                )
            ctx.optimize("D", penalty * (c.r1_gamma / 2 * c.r1_interval))
            scalars["r1"] = float(penalty.detach())

        batch_images = b * self.runtime.world_size
        update_ema(self.G_ema, self.G, ema_beta(batch_images, seen + batch_images, c.ema_kimg, c.ema_rampup))
        return scalars

    @torch.no_grad()
    def sample(self, ctx: StepContext) -> Tensor:
        """``sample_count`` G_ema images of fixed latents and drives: ``(N, 3, R, R)``."""
        c = self.config
        generator = torch.Generator().manual_seed(c.seed + 4242)
        drive = self.data.sample(c.sample_count, generator, images=False)
        z = torch.randn(c.sample_count, self.G_ema.info.z_dim, generator=generator).to(drive.camera.device)
        ws = self.G_ema.mapping(z, drive.camera, truncation_psi=c.sample_truncation)
        return self.G_ema.render(self.G_ema.canonical(ws), drive.expression_uv, drive.camera).image

    def export(self, run_dir: Path, step: int) -> None:
        """Write ``G_ema`` as the component folder ``<run>/prior`` (what the encoder stages load)."""
        save_component(self.G_ema, self.config.prior, Path(run_dir) / PRIOR_DIR)


def prior_memory_estimate(config: PriorTrainingConfig, registry: Registry) -> MemoryEstimate:
    """Memory of ``train_prior(config)``, estimated from the config (networks built on the meta device only)."""

    def build() -> tuple[nn.Module, nn.Module]:
        prior = registry.create("prior", config.prior)
        landmarks = LANDMARK_CHANNELS if config.landmark_conditioning else 0
        return prior, prior.build_discriminator(landmark_channels=landmarks)

    generator, discriminator = build_on_meta(build)
    info = generator.info
    return MemoryEstimate(
        what="train prior",
        trained_parameters=count_parameters([generator, discriminator]),
        frozen_parameters=count_parameters([generator]),  # G_ema
        # The G phase's fakes, the D phase's reals and fresh fakes.
        images=3 * config.batch_size,
        image_resolution=info.image_resolution,
        neural_resolution=info.neural_resolution,
    )


def train_prior(
    config: PriorTrainingConfig,
    *,
    registry: Registry | None = None,
    runtime: Runtime | None = None,
    data: GanData | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train (or resume) into ``config.out_dir``; returns the last logged scalars.

    Example:
        >>> config = PriorTrainingConfig(prior={"name": "next3d", "preset": "tiny"}, steps=200)  # doctest: +SKIP
        >>> train_prior(config)  # doctest: +SKIP
    """
    runtime = runtime or Runtime.from_env()
    registry = registry or default_registry()
    ensure_fits(prior_memory_estimate(config, registry), runtime.device)
    if config.objective == "supervised":
        from invertavatar_prior_next3d.supervised import SupervisedStage

        stage = SupervisedStage(config, registry=registry, runtime=runtime, data=data)
    else:
        stage = GanStage(config, registry=registry, runtime=runtime, data=data)
    trainer = Trainer(
        stage, config.trainer_config(), runtime=runtime, config=config, seed=config.seed, progress=progress
    )
    return trainer.fit()
