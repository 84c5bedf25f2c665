"""Supervised pre-training of the prior on synthetic multi-view heads (``objective: supervised``).

The adversarial objective (:mod:`invertavatar_prior_next3d.training`) needs hundreds of thousands
of images before a 3D GAN of this kind draws heads; synthetic heads come with exact cameras,
expressions, head masks and painted albedos, so the prior can first be fitted to them directly
(packages/prior-next3d/README.md, "Supervised pre-training"):

- an *auto-decoder*: every training identity owns a learned latent ``z`` (a row of
  ``latents``), mapped to w+ by the prior's own mapping network conditioned on the frontal
  camera; G and the latents are optimised together, so random ``z`` later draw heads in between;
- each step renders ``views`` frames of each of ``identities`` identities (their cameras and
  expression UV renders) and compares them with the frames:
  the final image (L1, the head weighted 1 and the background ``background_weight``), the raw
  neural render (L1 against the frame over a black background, what compositing gives empty
  rays), the rays' opacity against the head mask (silhouette), and the first three channels of
  the neural texture against the painted albedo (the texture generator regressed onto it);
- ``G_ema`` follows G as in GAN training and is exported as ``<run>/prior``; the adversarial
  objective then fine-tunes it (``init_prior``).
"""

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_core.inversion.pipeline import repeat_features
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.losses import weighted_l1
from invertavatar_core.training.trainer import StepContext
from invertavatar_prior_next3d.ema import ema_beta, update_ema
from invertavatar_prior_next3d.gan_data import GanBatch, MultiViewData
from invertavatar_prior_next3d.resample import resize

__all__ = ["SAMPLE_YAWS", "SupervisedStage", "render_yaw_sweep"]

SAMPLE_YAWS = (-0.6, -0.3, 0.0, 0.3, 0.6)
"""Yaw (radians) of each column of the sample grids."""


class SupervisedStage:
    """The auto-decoder's :class:`~invertavatar_core.training.trainer.Stage`: modules ``G``, ``G_ema``, ``latents``."""

    sample_columns = len(SAMPLE_YAWS)

    def __init__(self, config, *, registry: Registry, runtime, data: MultiViewData | None = None) -> None:
        from invertavatar_prior_next3d.training import build_prior

        if config.data_root is None and data is None:
            raise ValueError("objective supervised needs data_root: a folder written by `invertavatar synth-heads`")
        self.config, self.runtime = config, runtime
        device = runtime.device
        self.G = build_prior(config, registry).to(device).train()
        self.G_ema = _copy_frozen(self.G)
        self.data = data or MultiViewData(config.data_root, self.G.info, device=device)
        generator = torch.Generator().manual_seed(config.seed + 17)
        self.latents = nn.Embedding(self.data.identities, self.G.info.z_dim).to(device)
        with torch.no_grad():
            self.latents.weight.copy_(torch.randn(self.latents.weight.shape, generator=generator))
        self.condition = look_at_camera(0.0, 0.0).to(device)
        """The mapping's conditioning camera: frontal for every identity (its look is view-independent)."""
        self.optimizers = {
            "G": torch.optim.Adam(
                [
                    {"params": list(self.G.parameters()), "lr": config.g_lr},
                    {"params": list(self.latents.parameters()), "lr": config.latent_lr},
                ],
                betas=tuple(config.betas),
                eps=1e-8,
                foreach=True,
            )
        }
        self.modules = {"G": self.G, "G_ema": self.G_ema, "latents": self.latents}

    def mapping(self, prior, z: Tensor, **kwargs) -> Tensor:
        """w+ ``(N, K, D)`` of latents ``z (N, z_dim)`` under the frontal conditioning camera."""
        return prior.mapping(z, self.condition.expand(z.shape[0], -1), **kwargs)

    def losses(self, batch: GanBatch, views: int) -> dict[str, Tensor]:
        """Every loss term of one multi-view batch (identity-major, ``views`` frames per identity)."""
        c, G = self.config, self.G
        ids = batch.identity_index.view(-1, views)[:, 0]
        ws = self.mapping(G, self.latents(ids), update_w_avg=True)
        features = G.canonical(ws)
        planes = G.animate(repeat_features(features, views), batch.expression_uv)
        n = G.info.neural_resolution
        volume = G.renderer(planes, batch.camera, n)
        image = G.superresolution(volume.feature_image, ws.repeat_interleave(views, dim=0))
        mask = batch.mask
        out = {"image_l1": weighted_l1(image, batch.image, mask + c.background_weight * (1 - mask))}
        small_mask = resize(mask, n)
        raw_target = resize(batch.image, n) * small_mask - (1 - small_mask)
        out["raw_l1"] = (volume.feature_image[:, :3] - raw_target).abs().mean()
        out["silhouette"] = (volume.opacity - small_mask).abs().mean()
        level = features.texture[c.texture_level]
        texture_target = resize(batch.texture.view(-1, views, *batch.texture.shape[1:])[:, 0], level.shape[-1])
        out["texture_l1"] = (level[:, :3] - texture_target).abs().mean()
        with torch.no_grad():  # watched, not optimised: PSNR over the head (images in [-1, 1], peak-to-peak 2)
            mse = ((image.float() - batch.image) ** 2 * mask).sum() / (3 * mask.sum()).clamp_min(1)
            out["head_psnr"] = 10 * torch.log10(4 / mse.clamp_min(1e-10))
        return out

    def step(self, ctx: StepContext) -> Mapping[str, float]:
        """One optimiser step of G and the latents on ``batch_size`` frames."""
        c = self.config
        views = min(c.views, c.batch_size)
        batch = self.data.sample_views(max(c.batch_size // views, 1), views, ctx.generator)
        with ctx.autocast():
            terms = self.losses(batch, views)
            total = (
                terms["image_l1"]
                + c.raw_weight * terms["raw_l1"]
                + c.silhouette_weight * terms["silhouette"]
                + c.texture_weight * terms["texture_l1"]
            )
        ctx.optimize("G", total)
        images = len(batch.camera) * self.runtime.world_size
        seen = ctx.step * images
        update_ema(self.G_ema, self.G, ema_beta(images, seen + images, c.ema_kimg, c.ema_rampup))
        scalars = {k: float(v.detach()) for k, v in terms.items()}
        scalars["loss"] = float(total.detach())
        return scalars

    @torch.no_grad()
    def sample(self, ctx: StepContext) -> Tensor:
        """Rows: the first training identities, then random ``z``; columns: :data:`SAMPLE_YAWS`."""
        c = self.config
        generator = torch.Generator().manual_seed(c.seed + 4242)
        known = min(4, self.data.identities)
        z = torch.cat(
            [self.latents.weight[:known].detach().cpu(), torch.randn(2, self.G.info.z_dim, generator=generator)]
        ).to(self.condition.device)
        ws = self.mapping(self.G_ema, z, truncation_psi=1.0)
        expression = self.data.expression_uv[self.data.frames_of[0][:1]].to(self.condition.device)
        return render_yaw_sweep(self.G_ema, ws, expression, SAMPLE_YAWS)

    def export(self, run_dir: Path, step: int) -> None:
        """Write ``G_ema`` as ``<run>/prior`` and the identity latents as ``<run>/latents.safetensors``."""
        from invertavatar_core.io.checkpoints import save_component, save_tensors
        from invertavatar_prior_next3d.training import PRIOR_DIR

        save_component(self.G_ema, self.config.prior, Path(run_dir) / PRIOR_DIR)
        save_tensors(Path(run_dir) / "latents.safetensors", {"latents": self.latents.weight})


def _copy_frozen(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).eval().requires_grad_(False)


@torch.no_grad()
def render_yaw_sweep(prior, ws: Tensor, expression_uv: Tensor, yaws: tuple[float, ...]) -> Tensor:
    """``(N * len(yaws), 3, R, R)``: each of ``N`` w+ ``(N, K, D)`` rendered at every yaw, row by row."""
    features = prior.canonical(ws)
    views = len(yaws)
    camera = look_at_camera(torch.tensor(yaws)).to(ws.device).repeat(ws.shape[0], 1)
    expression = expression_uv.expand(ws.shape[0] * views, -1, -1, -1)
    return prior.render(repeat_features(features, views), expression, camera).image
