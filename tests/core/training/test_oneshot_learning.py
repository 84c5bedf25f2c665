"""Acceptance: stage 2 on the fixed tiny prior's own samples beats the coarse stage on held-out novel views.

Setup: the real tiny prior (its widths, tri-planes and textures) rendering at 16 px and
super-resolving to 32 px, with a seeded random init (fixed, frozen); an untrained tiny E_latent
(frozen, so the coarse stage is the baseline); tiny one-shot E_tex + E_tri at 32 px trained with
Eq. 3 for 40 steps of 4 synthetic identities each (lr 2e-3; no perceptual term, it would only cost
time here). Held out: 16 other identities, each inverted from one source frame and rendered at 2
other frames of its drive (other cameras and expressions). Measured: coarse novel-view L1 0.583,
untrained encoders 0.584, after stage 2 0.318 (a 45 % reduction; 25 steps gave 32 %, 100 steps
49 %); the test asks for at least 25 %. The same test at 64 px and 300 steps (26 %) took 7 min
on 2 busy cores; the prior's synthesis networks, not the render size, set the cost of a step.
"""

import pytest
import torch

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.inversion.pipeline import repeat_features
from invertavatar_core.training.stages.oneshot import OneShotStage
from invertavatar_core.training.trainer import Trainer

REQUIRED_REDUCTION = 0.25
"""Stage 2's held-out novel-view L1 must be at most (1 - this) times the coarse stage's."""

PRIOR_32PX = {
    "name": "next3d",
    "preset": "tiny",
    "neural_resolution": 16,
    "image_resolution": 32,
    "superresolution_channels": [16],
}
"""The tiny prior rendering at 16 px, one x2 super-resolution stage."""
ENCODER_32PX = {"preset": "tiny", "input_resolution": 32}
ENCODERS = {"latent": "e4e", "texture": "texture_unet", "static": "triplane_sft_unet"}


def _novel_view_l1(stage: OneShotStage, held, fine: bool) -> float:
    with torch.no_grad():
        if fine:
            features, _ = stage.pipeline.invert(held.sources, 1)
        else:
            features = stage.models.prior.canonical(stage.pipeline.latent(held.sources.image))
        views = len(held.views) // len(held.sources)
        render = stage.models.prior.render(
            repeat_features(features, views), held.views.expression_uv, held.views.camera
        )
    return float((render.image - held.views.image).abs().mean())


@pytest.mark.slow
def test_stage2_lowers_held_out_novel_view_error_versus_the_coarse_stage(full_registry, tmp_path):
    experiment = preset_experiment(
        full_registry,
        "tiny",
        prior=PRIOR_32PX,
        encoders={role: {"name": name, **ENCODER_32PX} for role, name in ENCODERS.items()},
        aggregator=None,
        data={"synthetic_drives": 8, "max_sequence_length": 4, "novel_views": 1},
        training={
            "out_dir": str(tmp_path),
            "steps": 40,
            "batch_size": 4,
            "lr": 2e-3,
            "log_every": 100,
            "checkpoint_every": 1000,
            "sample_every": 1000,
            "perceptual": None,
            "perceptual_fallback": None,
        },
    )
    stage = OneShotStage(experiment, full_registry)
    held = stage.sampler.sample(16, 1, 2, torch.Generator().manual_seed(12345))  # identities never trained on
    stage.models.eval()
    coarse = _novel_view_l1(stage, held, fine=False)
    untrained = _novel_view_l1(stage, held, fine=True)
    for part in stage.trainable:
        getattr(stage.models, part).train()

    Trainer(stage, experiment.training, config=experiment, progress=False).fit()

    stage.models.eval()
    assert _novel_view_l1(stage, held, fine=False) == coarse  # the coarse stage is frozen
    trained = _novel_view_l1(stage, held, fine=True)
    assert abs(untrained - coarse) < 0.05 * coarse  # fresh encoders barely edit the features
    assert trained <= (1 - REQUIRED_REDUCTION) * coarse, f"coarse {coarse:.4f}, after stage 2 {trained:.4f}"
