"""The ``copy_source`` baseline: every output is the first source frame, unchanged.

The floor any avatar has to clear (issue 13's acceptance: a 1-frame avatar at least 3 dB of head
PSNR above it): copying the source gets identity, colours and background right and pose and
expression wrong. It runs through the evaluation like any inverter
(``evaluation.models: [{label: copy-the-source, checkpoint: RUN, overrides: {inverter.name: copy_source}}]``)
and its rows sit in the same tables. Its "avatar" is no :class:`~invertavatar_core.inversion.avatar.Avatar`:
it has no canonical features to save or to render from new views, only :meth:`SourceFrame.animate`,
which returns the source frame for every camera and expression.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.errors import UserError
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.kinds import InverterConfig
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "CopySourceInverter",
    "CopySourceInverterConfig",
    "CopySourceSession",
    "SourceFrame",
    "build_copy_source_inverter",
]


class CopySourceInverterConfig(InverterConfig):
    """The copy-the-source baseline has nothing to configure."""

    name: Literal["copy_source"] = "copy_source"


@dataclass(frozen=True)
class _Render:
    """What :meth:`SourceFrame.animate` returns: only the final image (no volume render exists)."""

    image: Float[Tensor, "B 3 H W"]


@dataclass(frozen=True)
class SourceFrame:
    """The copy-the-source "avatar": ``image (1, 3, H, W)`` in [-1, 1], the first source frame."""

    image: Float[Tensor, "1 3 H W"]
    frame_count: int = 1
    inverter: str = "copy_source"

    def animate(self, prior: Any, expression_uv: Float[Tensor, "B 3 Hu Wu"], camera: Float[Tensor, "B 25"]) -> _Render:
        """The source frame once per driving frame, ``image (B, 3, H, W)``, whatever the expression and camera."""
        return _Render(self.image.to(camera.device).expand(camera.shape[0], -1, -1, -1))

    def save(self, path: Any) -> None:
        """Refused: the baseline makes no avatar to save."""
        raise UserError("inverter copy_source is an evaluation baseline (the source frame as every output); it makes "
                        "no avatar to save or render from new views")  # fmt: skip


class CopySourceSession:
    """Keeps the first frame it was given; later frames change nothing."""

    def __init__(self, first: Observation) -> None:
        if len(first) == 0:
            raise ValueError("copy_source needs at least one frame")
        self.image = first.image[:1].detach().clone()
        self.frames = len(first)

    def add(self, frames: Observation) -> "CopySourceSession":
        """Count more frames (the output stays the first one)."""
        self.frames += len(frames)
        return self

    def avatar(self) -> SourceFrame:
        """The first frame as the output of every animation."""
        return SourceFrame(self.image, frame_count=self.frames)

    def state_dict(self) -> dict[str, Tensor]:
        """``image`` and ``frames``."""
        return {"image": self.image, "frames": torch.tensor(self.frames)}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> "CopySourceSession":
        """Restore from :meth:`state_dict`."""
        missing = [k for k in ("image", "frames") if k not in state]
        if missing:
            raise KeyError(f"copy_source session state lacks {missing}; it has {sorted(state)}")
        self.image, self.frames = state["image"], int(state["frames"])
        return self


class CopySourceInverter:
    """``start`` / ``invert`` keep the first source frame; ``models`` are carried for the protocols only."""

    def __init__(self, config: CopySourceInverterConfig, models: InversionModels | None) -> None:
        self.config = config
        self.models = models

    def start(self, first: Observation) -> CopySourceSession:
        """A session holding ``first[0]``."""
        return CopySourceSession(first)

    def invert(self, frames: Observation) -> SourceFrame:
        """The first of ``frames``."""
        return self.start(frames).avatar()


def build_copy_source_inverter(
    config: CopySourceInverterConfig,
    *,
    registry: Registry,
    experiment: ExperimentConfig,
    models: InversionModels | None = None,
    **_: Any,
) -> CopySourceInverter:
    """Registry factory: no network is needed (none is built when ``models`` is absent)."""
    return CopySourceInverter(config, models)
