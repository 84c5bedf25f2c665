"""invertavatar-prior-next3d: the animatable 3D GAN prior (generator, renderer, discriminator, training).

Registered prior: ``next3d`` (``registry.create("prior", {"name": "next3d", "preset": "tiny"})``);
``invertavatar train prior --config FILE`` trains it (:mod:`invertavatar_prior_next3d.training`).
"""

from invertavatar_prior_next3d.discriminator import DualDiscriminator
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig
from invertavatar_prior_next3d.presets import PRESETS, PriorSizes
from invertavatar_prior_next3d.training import GanStage, PriorTrainingConfig, train_prior

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
