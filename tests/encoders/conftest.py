"""Fixtures of the encoder tests: prior feature infos (tiny and paper) and a registry with a test aggregator."""

from typing import Literal

import pytest
import torch
from torch import Tensor, nn

from invertavatar_core import Registry, build_registry, get_plugin_manager, hookimpl
from invertavatar_core.plugin.bases import AggregatorBase
from invertavatar_core.plugin.kinds import AggregatorConfig
from invertavatar_core.plugin.protocols import AggregatorState, FeatureLevel, PriorFeatureInfo

TINY_INFO = PriorFeatureInfo(
    num_ws=6,
    w_dim=16,
    z_dim=16,
    c_dim=25,
    image_resolution=64,
    neural_resolution=16,
    uv_resolution=64,
    texture_levels=(
        FeatureLevel("rgb32", 4, 8),
        FeatureLevel("x32", 8, 8),
        FeatureLevel("x64", 8, 16),
        FeatureLevel("x128", 4, 32),
    ),
    sft_levels=(
        FeatureLevel("x16", 8, 4),
        FeatureLevel("x32", 8, 8),
        FeatureLevel("x64", 8, 16),
        FeatureLevel("x128", 4, 32),
        FeatureLevel("x256", 2, 64),
    ),
    triplane_channels=4,
    triplane_resolution=64,
)
"""A tiny prior's shapes, level names as the next3d prior uses them (64 input -> maps 4..64)."""

PAPER_INFO = PriorFeatureInfo(
    num_ws=14,
    w_dim=512,
    z_dim=512,
    c_dim=25,
    image_resolution=512,
    neural_resolution=128,
    uv_resolution=256,
    texture_levels=(
        FeatureLevel("rgb32", 32, 32),
        FeatureLevel("x32", 512, 32),
        FeatureLevel("x64", 512, 64),
        FeatureLevel("x128", 256, 128),
    ),
    sft_levels=(
        FeatureLevel("x16", 256, 16),
        FeatureLevel("x32", 256, 32),
        FeatureLevel("x64", 256, 64),
        FeatureLevel("x128", 128, 128),
        FeatureLevel("x256", 64, 256),
    ),
    triplane_channels=32,
    triplane_resolution=256,
)
"""Next3D++ shapes (docs/design/prior.md, docs/design/encoders.md)."""


class DecayAggregatorConfig(AggregatorConfig):
    """A test-only aggregator with parameters: a learned per-channel exponential moving average."""

    name: Literal["test_decay"] = "test_decay"


class DecayAggregator(AggregatorBase):
    """``h_t = a * h_{t-1} + (1 - a) * f_t`` with ``a = sigmoid(p)`` per channel, ``h_0 = 0``."""

    def __init__(self, config: DecayAggregatorConfig, *, channels: int) -> None:
        super().__init__(channels)
        self.logit = nn.Parameter(torch.linspace(-1.0, 1.0, channels))

    def init_state(self, like: Tensor) -> AggregatorState:
        return {"h": torch.zeros_like(like)}

    def update(self, state: AggregatorState, frame: Tensor) -> AggregatorState:
        a = torch.sigmoid(self.logit).view(1, -1, 1, 1)
        return {"h": a * state["h"] + (1 - a) * frame}

    def read(self, state: AggregatorState) -> Tensor:
        return state["h"]


class _TestAggregators:
    @hookimpl
    def invertavatar_register_aggregators(self, registrar) -> None:
        registrar.add(
            "test_decay", DecayAggregator, DecayAggregatorConfig, description="test-only learned moving average"
        )


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Every installed plugin plus the test aggregator ``test_decay``."""
    pm = get_plugin_manager(autoload=True)
    pm.register(_TestAggregators(), name="encoders-test-aggregators")
    return build_registry(pm)


@pytest.fixture(scope="session")
def tiny_info() -> PriorFeatureInfo:
    return TINY_INFO


@pytest.fixture(scope="session")
def paper_info() -> PriorFeatureInfo:
    return PAPER_INFO


@pytest.fixture(scope="session")
def aggregator_config(registry: Registry):
    """``aggregator_config(name)``: the tiny config of an aggregator (skips when not installed); None stays None."""

    def make(name: str | None) -> AggregatorConfig | None:
        if name is None:
            return None
        if ("aggregator", name) not in registry:
            pytest.skip(f"aggregator {name!r} is not installed")
        return registry.tiny_config("aggregator", name)

    return make
