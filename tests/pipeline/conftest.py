"""Pipeline fixtures: fixed tiny models, a drive bank of the procedural head model, synthetic frames."""

import pytest
import torch

from invertavatar_core.config import ExperimentConfig
from invertavatar_core.experiment_presets import preset_experiment
from invertavatar_core.inversion_models import InversionModels
from invertavatar_core.synthetic_samples import DriveBank, SyntheticSampler


@pytest.fixture(scope="session")
def tiny_base(full_registry) -> ExperimentConfig:
    return preset_experiment(full_registry, "tiny")


@pytest.fixture(scope="session")
def tiny_models(full_registry, tiny_base) -> InversionModels:
    """Fixed tiny models (seeded random init), eval mode."""
    return InversionModels.build(tiny_base, full_registry).eval()


@pytest.fixture(scope="session")
def tiny_drives(full_registry, tiny_base, tiny_models) -> DriveBank:
    info = tiny_models.prior.info
    return DriveBank.procedural(
        full_registry.create("morphable_model", tiny_base.morphable_model),
        full_registry.create("rasterizer", tiny_base.rasterizer),
        sequences=2,
        length=4,
        expression_resolution=info.uv_resolution,
        unwrap_resolution=info.uv_resolution,
        image_resolution=info.image_resolution,
        generator=torch.Generator().manual_seed(1),
    )


@pytest.fixture(scope="session")
def tiny_frames(tiny_models, tiny_drives):
    """Four frames of one synthetic identity (prior renders on one drive sequence)."""
    sampler = SyntheticSampler(tiny_models.prior, tiny_drives)
    return sampler.sample(1, 4, 0, torch.Generator().manual_seed(3)).sources
