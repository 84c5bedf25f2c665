"""Core fixtures: a registry of small fakes (unit tests); fixed tiny models, drives and frames (pipeline tests)."""

import pytest
import torch
from core_fakes import manager_with_fakes

from invertavatar_core import build_registry
from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.data.synthetic import DriveBank, SyntheticSampler
from invertavatar_core.inversion.models import InversionModels


@pytest.fixture
def plugin_manager():
    """A fresh manager: no entry points, core defaults, the aggregators plugin and the fakes."""
    return manager_with_fakes()


@pytest.fixture
def registry(plugin_manager):
    return build_registry(plugin_manager)


@pytest.fixture
def experiment_data():
    """A complete experiment mapping that validates against the ``registry`` fixture."""
    return {
        "name": "unit",
        "morphable_model": {"name": "fake_morphable"},
        "rasterizer": "fake_rasterizer",
        "prior": {"name": "fake_prior", "width": 8},
        "encoders": {"latent": {"name": "fake_encoder"}, "texture": None, "static": None},
        "aggregator": {"name": "conv_gru", "kernel_size": 5},
        "inverter": {"name": "fake_inverter"},
    }


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
