"""Fake components for core tests: one of each kind an experiment config needs, and a manager with them."""

from typing import Literal

from invertavatar_core import (
    EncoderConfig,
    InverterConfig,
    MorphableModelConfig,
    PriorConfig,
    RasterizerConfig,
    get_plugin_manager,
    hookimpl,
)


class FakePriorConfig(PriorConfig):
    """A prior that exists only for config tests."""

    name: Literal["fake_prior"] = "fake_prior"
    width: int = 4
    """Some number."""


class FakeEncoderConfig(EncoderConfig):
    """A latent encoder that exists only for config tests."""

    name: Literal["fake_encoder"] = "fake_encoder"


class FakeMorphableConfig(MorphableModelConfig):
    """A morphable model that exists only for config tests."""

    name: Literal["fake_morphable"] = "fake_morphable"


class FakeRasterizerConfig(RasterizerConfig):
    """A rasterizer that exists only for config tests."""

    name: Literal["fake_rasterizer"] = "fake_rasterizer"


class FakeInverterConfig(InverterConfig):
    """An inverter that exists only for config tests."""

    name: Literal["fake_inverter"] = "fake_inverter"


def _build(config, **context):
    return ("built", config, context)


class FakePlugin:
    """Registers one fake component of each kind the experiment config needs."""

    @hookimpl
    def invertavatar_register_priors(self, registrar):
        registrar.add("fake_prior", _build, FakePriorConfig, description="fake prior for tests")

    @hookimpl
    def invertavatar_register_encoders(self, registrar):
        registrar.add("fake_encoder", _build, FakeEncoderConfig, description="fake encoder for tests")

    @hookimpl
    def invertavatar_register_morphable_models(self, registrar):
        registrar.add("fake_morphable", _build, FakeMorphableConfig, description="fake model for tests")

    @hookimpl
    def invertavatar_register_rasterizers(self, registrar):
        registrar.add("fake_rasterizer", _build, FakeRasterizerConfig, description="fake rasterizer for tests")

    @hookimpl
    def invertavatar_register_inverters(self, registrar):
        registrar.add("fake_inverter", _build, FakeInverterConfig, description="fake inverter for tests")


def manager_with_fakes(autoload: bool = False):
    """A fresh manager with the fakes; without autoload it registers the aggregators plugin by hand."""
    import invertavatar_aggregators.plugin

    pm = get_plugin_manager(autoload=autoload)
    if not pm.has_plugin("aggregators"):
        pm.register_plugin(invertavatar_aggregators.plugin, "aggregators", "invertavatar-aggregators")
    pm.register_plugin(FakePlugin(), "fakes", "tests")
    return pm
