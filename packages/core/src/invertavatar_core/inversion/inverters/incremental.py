"""Our inverter, ``incremental`` (paper Sec. 3.2-3.3): E_latent on frame 0, recurrent E_tex / E_tri over all frames.

With the experiment's ``aggregator: null`` the encoders are one-shot and this is the one-shot
model; the Table 3 ablations are encoder choices in the experiment (``encoders.texture`` /
``encoders.static`` null, or ``encoders.static: triplane_offset_unet``), all through the same code.
"""

from typing import Any, Literal

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.inversion.pipeline import InversionPipeline, InversionSession
from invertavatar_core.plugin.kinds import InverterConfig
from invertavatar_core.plugin.registry import Registry

__all__ = ["IncrementalInverter", "IncrementalInverterConfig", "build_incremental_inverter"]


class IncrementalInverterConfig(InverterConfig):
    """Settings of our inverter (the networks come from the experiment)."""

    name: Literal["incremental"] = "incremental"
    image_fill: float = 1.0  # unseen texels of the image unwrap are white, docs/design/preprocessing.md
    """Value of the image's UV unwrap where a texel is not visible."""
    residual_fill: float = -1.0  # as released, docs/design/encoders.md
    """Value of the residual's UV unwrap where a texel is not visible."""
    residual: Literal["image_minus_render", "render_minus_image"] = "image_minus_render"
    """The residual the encoders see: ``I - I_hat`` (paper) or ``I_hat - I`` (the released encoders)."""


class IncrementalInverter:
    """Streaming (``start`` / ``add``) and batch (``invert``) inversion; both run :class:`InversionSession`."""

    def __init__(self, config: IncrementalInverterConfig, models: InversionModels) -> None:
        self.config = config
        self.models = models.eval()
        self.pipeline = InversionPipeline(
            models, image_fill=config.image_fill, residual_fill=config.residual_fill, residual=config.residual
        )

    def start(self, first: Observation) -> InversionSession:
        """A session whose w+ comes from ``first[0]``; every frame of ``first`` is folded in."""
        return InversionSession(self.pipeline, first, inverter=self.config.name)

    def invert(self, frames: Observation) -> Avatar:
        """One avatar from all ``frames`` of one identity."""
        if len(frames) == 0:
            raise ValueError("invert needs at least one frame")
        return self.start(frames).avatar()


def build_incremental_inverter(
    config: IncrementalInverterConfig,
    *,
    registry: Registry,
    experiment: ExperimentConfig,
    models: InversionModels | None = None,
    **_: Any,
) -> IncrementalInverter:
    """Registry factory: networks from ``models`` or built fresh from ``experiment``."""
    return IncrementalInverter(config, models or InversionModels.build(experiment, registry))
