"""Core fixtures: a registry from a fresh plugin manager with small fake components registered."""

import pytest
from core_fakes import manager_with_fakes

from invertavatar_core import build_registry


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
