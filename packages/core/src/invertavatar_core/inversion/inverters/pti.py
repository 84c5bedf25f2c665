"""The ``pti`` baseline (Next3D-PTI in Tables 1-2): optimise w+, then fine-tune the generator around that pivot.

Pivotal tuning (Roich et al.) on the prior, through the protocol and ``parameters()`` only:

1. optimise w+ (from ``w_avg``, or from E_latent's prediction) to reproduce every source frame
   rendered at its camera and expression (L2 + perceptual);
2. keep that pivot fixed and fine-tune a copy of the prior with the same loss. Only the copy's
   canonical path is used in the loss (``original.render(copy.canonical(ws))``), so the tuning
   changes exactly what an :class:`Avatar` stores -- the canonical features -- and the avatar
   animates with the shared, unmodified prior like every other inverter's.

Sessions collect frames; the optimisation runs when :meth:`PTISession.avatar` is asked for.
"""

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from tqdm import tqdm

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.inversion.pipeline import InversionPipeline, conform_to_prior, resize_square
from invertavatar_core.plugin.kinds import InverterConfig
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.training.losses import PerceptualLoss, build_perceptual_loss, reconstruction_size

__all__ = ["PTIInverter", "PTIInverterConfig", "PTISession", "build_pti_inverter"]


class PTIInverterConfig(InverterConfig):
    """Iteration counts and learning rates of the two PTI phases (PTI's published defaults)."""

    name: Literal["pti"] = "pti"
    w_steps: int = Field(450, ge=0)  # PTI first_inv_steps
    """Adam steps optimising w+."""
    w_lr: float = 5e-3  # PTI first_inv_lr
    """Learning rate of the w+ optimisation."""
    tune_steps: int = Field(350, ge=0)  # PTI max_pti_steps
    """Adam steps fine-tuning the prior's canonical path around the pivot."""
    tune_lr: float = 3e-4  # PTI pti_learning_rate
    """Learning rate of the fine-tuning."""
    l2_weight: float = 1.0  # PTI pt_l2_lambda
    """Weight of the pixel L2 term."""
    perceptual_weight: float = 1.0  # PTI pt_lpips_lambda
    """Weight of the perceptual term (the experiment's ``training.perceptual`` / fallback)."""
    init: Literal["w_avg", "encoder"] = "w_avg"
    """Start of the w+ optimisation: the prior's mean code (PTI) or E_latent's prediction for frame 0."""
    progress: bool = True
    """Show a progress bar over the optimisation steps."""


class PTISession:
    """Collects frames; :meth:`avatar` optimises on all of them (cached until more frames arrive)."""

    def __init__(self, inverter: "PTIInverter", first: Observation | None) -> None:
        self.inverter = inverter
        self.frames: Observation | None = None
        self._avatar: Avatar | None = None
        if first is not None:
            self.add(first)

    def add(self, frames: Observation) -> "PTISession":
        """Remember more frames (no optimisation yet)."""
        models = self.inverter.models
        frames = conform_to_prior(frames.to(models.device), models.prior.info.uv_resolution)
        self.frames = frames if self.frames is None else Observation.cat([self.frames, frames])
        self._avatar = None
        return self

    def avatar(self) -> Avatar:
        """Run both PTI phases on every frame so far."""
        if self.frames is None:
            raise RuntimeError("PTISession.avatar: no frame added yet")
        if self._avatar is None:
            self._avatar = self.inverter.fit(self.frames)
        return self._avatar

    def state_dict(self) -> dict[str, Tensor]:
        """The collected frames as ``frames.<field>`` tensors."""
        if self.frames is None:
            raise RuntimeError("PTISession.state_dict: no frame added yet")
        fields = ("image", "camera", "expression_uv", "unwrap_grid", "visibility", "identity", "expression", "eyes")
        return {f"frames.{k}": getattr(self.frames, k) for k in fields if getattr(self.frames, k) is not None}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> "PTISession":
        """Restore the collected frames."""
        values = {k.removeprefix("frames."): v for k, v in state.items() if k.startswith("frames.")}
        if "image" not in values:
            raise KeyError(f"pti session state lacks 'frames.image'; it has {sorted(state)}")
        self.frames = Observation(**values).to(self.inverter.models.device)
        self._avatar = None
        return self


class PTIInverter:
    """Optimisation-based inversion on the prior (no fine-stage encoders)."""

    def __init__(self, config: PTIInverterConfig, models: InversionModels, perceptual: PerceptualLoss | None) -> None:
        self.config = config
        self.models = models.eval()
        self.pipeline = InversionPipeline(models)
        self.perceptual = perceptual

    def start(self, first: Observation) -> PTISession:
        """A session over ``first``."""
        return PTISession(self, first)

    def invert(self, frames: Observation) -> Avatar:
        """PTI on all ``frames``."""
        if len(frames) == 0:
            raise ValueError("invert needs at least one frame")
        return self.start(frames).avatar()

    def _loss(self, render_image: Tensor, target: Tensor) -> Tensor:
        image = resize_square(render_image, target.shape[-1])
        loss = self.config.l2_weight * F.mse_loss(reconstruction_size(image), reconstruction_size(target))
        if self.perceptual is not None and self.config.perceptual_weight:
            loss = loss + self.config.perceptual_weight * self.perceptual(image, target)
        return loss

    def fit(self, frames: Observation) -> Avatar:
        """Both phases on ``frames`` of one identity -> the avatar of the tuned canonical path."""
        c = self.config
        prior = self.models.prior
        frozen = {p: p.requires_grad for p in prior.parameters()}
        prior.requires_grad_(False)
        try:
            with torch.enable_grad():
                if c.init == "encoder":
                    with torch.no_grad():
                        start = self.pipeline.latent(frames.image[:1])
                else:
                    start = prior.w_avg.reshape(1, 1, -1).expand(1, prior.info.num_ws, -1)
                ws = start.detach().clone().requires_grad_(True)
                optimizer = torch.optim.Adam([ws], lr=c.w_lr)
                for _ in tqdm(range(c.w_steps), desc="pti: w+", disable=not c.progress, leave=False):
                    render = prior.render(prior.canonical(ws), frames.expression_uv, frames.camera)
                    loss = self._loss(render.image, frames.image)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                pivot = ws.detach()
                tuned = copy.deepcopy(prior)
                tuned.requires_grad_(True)
                optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.is_floating_point()], lr=c.tune_lr)
                for _ in tqdm(range(c.tune_steps), desc="pti: tune", disable=not c.progress, leave=False):
                    render = prior.render(tuned.canonical(pivot), frames.expression_uv, frames.camera)
                    loss = self._loss(render.image, frames.image)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    features = tuned.canonical(pivot)
        finally:
            for p, flag in frozen.items():
                p.requires_grad_(flag)
        return Avatar(
            features=features,
            prior_config=self.models.experiment.prior.model_dump(mode="json"),
            identity=frames.identity[:1] if frames.identity is not None else None,
            frame_count=len(frames),
            inverter=c.name,
        )


def build_pti_inverter(
    config: PTIInverterConfig,
    *,
    registry: Registry,
    experiment: ExperimentConfig,
    models: InversionModels | None = None,
    **_: Any,
) -> PTIInverter:
    """Registry factory; the perceptual term follows ``experiment.training.perceptual`` / fallback."""
    training = experiment.training
    perceptual = build_perceptual_loss(training.perceptual, training.perceptual_fallback, registry)
    return PTIInverter(config, models or InversionModels.build(experiment, registry), perceptual)
