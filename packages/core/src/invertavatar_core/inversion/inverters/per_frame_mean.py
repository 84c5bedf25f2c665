"""The ``per_frame_mean`` baseline (Table 2's "Ours-OS"): one-shot inversion of each frame, features averaged.

Every frame is inverted on its own (its own w+, coarse render and one-shot edits); the canonical
texture and tri-plane features of all frames are averaged. The w+ that drives the face module at
animation time is frame 0's (``ws: first``) or the mean of the frames' (``ws: mean``).
"""

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.inversion.pipeline import InversionPipeline, InversionSession
from invertavatar_core.plugin.kinds import InverterConfig
from invertavatar_core.plugin.protocols import CanonicalFeatures
from invertavatar_core.plugin.registry import Registry

__all__ = ["PerFrameMeanInverter", "PerFrameMeanInverterConfig", "PerFrameMeanSession", "build_per_frame_mean_inverter"]


class PerFrameMeanInverterConfig(InverterConfig):
    """Settings of the per-frame averaging baseline."""

    name: Literal["per_frame_mean"] = "per_frame_mean"
    ws: Literal["first", "mean"] = "first"
    """Which w+ the averaged avatar keeps: frame 0's (as our inverter) or the frames' mean."""
    image_fill: float = 1.0  # white, docs/design/preprocessing.md
    """Value of the image's UV unwrap where a texel is not visible."""
    residual_fill: float = -1.0  # docs/design/encoders.md
    """Value of the residual's UV unwrap where a texel is not visible."""


class PerFrameMeanSession:
    """Running sums of every frame's one-shot canonical features; state = the sums and the count."""

    def __init__(self, inverter: "PerFrameMeanInverter", first: Observation | None) -> None:
        self.inverter = inverter
        self.sums: dict[str, Tensor] = {}
        self.first_ws: Tensor | None = None
        self.identity: Tensor | None = None
        self.frames = 0
        if first is not None:
            self.add(first)

    @torch.no_grad()
    def add(self, frames: Observation) -> "PerFrameMeanSession":
        """Invert each frame alone and add its features to the sums."""
        for t in range(len(frames)):
            one = frames[t]
            features = InversionSession(self.inverter.pipeline, one).avatar().features
            if self.first_ws is None:
                self.first_ws = features.ws
                self.identity = one.identity
            for key, value in features.tensors().items():
                self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.frames += 1
        return self

    @torch.no_grad()
    def avatar(self) -> Avatar:
        """The averaged avatar."""
        if not self.frames:
            raise RuntimeError("PerFrameMeanSession.avatar: no frame added yet")
        mean = {k: v / self.frames for k, v in self.sums.items()}
        if self.inverter.config.ws == "first":
            mean["ws"] = self.first_ws
        return Avatar(
            features=CanonicalFeatures.from_tensors(mean),
            prior_config=self.inverter.models.experiment.prior.model_dump(mode="json"),
            identity=self.identity,
            frame_count=self.frames,
            inverter=self.inverter.config.name,
        )

    def state_dict(self) -> dict[str, Tensor]:
        """``sum.<key>``, ``first_ws``, ``frames`` (and ``identity`` when known)."""
        if not self.frames:
            raise RuntimeError("PerFrameMeanSession.state_dict: no frame added yet")
        state = {f"sum.{k}": v for k, v in self.sums.items()}
        state.update(first_ws=self.first_ws, frames=torch.tensor(self.frames))
        if self.identity is not None:
            state["identity"] = self.identity
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> "PerFrameMeanSession":
        """Restore from :meth:`state_dict`."""
        for key in ("first_ws", "frames"):
            if key not in state:
                raise KeyError(f"per_frame_mean session state lacks {key!r}; it has {sorted(state)}")
        device = self.inverter.models.device
        self.sums = {k.removeprefix("sum."): v.to(device) for k, v in state.items() if k.startswith("sum.")}
        self.first_ws = state["first_ws"].to(device)
        self.frames = int(state["frames"])
        self.identity = state["identity"].to(device) if "identity" in state else None
        return self


class PerFrameMeanInverter:
    """One-shot per frame, canonical features averaged."""

    def __init__(self, config: PerFrameMeanInverterConfig, models: InversionModels) -> None:
        self.config = config
        self.models = models.eval()
        self.pipeline = InversionPipeline(models, image_fill=config.image_fill, residual_fill=config.residual_fill)

    def start(self, first: Observation) -> PerFrameMeanSession:
        """A session over ``first`` (more frames with ``add``)."""
        return PerFrameMeanSession(self, first)

    def invert(self, frames: Observation) -> Avatar:
        """The averaged avatar of all ``frames``."""
        if len(frames) == 0:
            raise ValueError("invert needs at least one frame")
        return self.start(frames).avatar()


def build_per_frame_mean_inverter(
    config: PerFrameMeanInverterConfig,
    *,
    registry: Registry,
    experiment: ExperimentConfig,
    models: InversionModels | None = None,
    **_: Any,
) -> PerFrameMeanInverter:
    """Registry factory: networks from ``models`` or built fresh from ``experiment``."""
    return PerFrameMeanInverter(config, models or InversionModels.build(experiment, registry))
