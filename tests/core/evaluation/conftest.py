"""Evaluation fixtures (helpers live in evaluation_fakes.py)."""

import pytest
from evaluation_fakes import RenderedSequences, StubRasterizerPlugin

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.testing.fake_prior import FakePrior, FakePriorPlugin


@pytest.fixture(scope="session")
def eval_registry():
    pm = get_plugin_manager(autoload=True)
    pm.register(FakePriorPlugin(), name="testing-fake-prior")
    pm.register(StubRasterizerPlugin(), name="testing-stub-rasterizer")
    return build_registry(pm)


@pytest.fixture(scope="session")
def fake_prior():
    return FakePrior().eval()


@pytest.fixture(scope="session")
def rendered(fake_prior):
    return RenderedSequences(fake_prior)
