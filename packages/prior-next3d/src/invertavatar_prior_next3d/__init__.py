"""invertavatar-prior-next3d: the animatable 3D GAN prior (generator, renderer, discriminator, training).

Registered prior: ``next3d`` (``registry.create("prior", {"name": "next3d", "preset": "tiny"})``);
``invertavatar train prior --config FILE`` trains it (:mod:`invertavatar_prior_next3d.training`).
"""

from invertavatar_core.plugin.lazy_exports import lazy_exports

_EXPORTS = {
    "DualDiscriminator": "invertavatar_prior_next3d.discriminator",
    "Next3DPrior": "invertavatar_prior_next3d.next3d",
    "Next3DPriorConfig": "invertavatar_prior_next3d.next3d",
    "PRESETS": "invertavatar_prior_next3d.presets",
    "PriorSizes": "invertavatar_prior_next3d.presets",
    "GanStage": "invertavatar_prior_next3d.training",
    "PriorTrainingConfig": "invertavatar_prior_next3d.training",
    "train_prior": "invertavatar_prior_next3d.training",
}
"""Public name -> the module defining it (imported on first use)."""

__all__ = [
    "PRESETS",
    "DualDiscriminator",
    "GanStage",
    "Next3DPrior",
    "Next3DPriorConfig",
    "PriorSizes",
    "PriorTrainingConfig",
    "train_prior",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
