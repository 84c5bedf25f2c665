"""Registrar validation, duplicates, unknown names with suggestions, creation by config."""

from typing import Literal

import pytest

from invertavatar_core import (
    AggregatorConfig,
    DuplicateComponentError,
    PriorConfig,
    RegistrationError,
    UnknownComponentError,
    build_registry,
    hookimpl,
)
from invertavatar_core.plugin.registry import Registrar


class OtherMeanConfig(AggregatorConfig):
    """A second provider of the name 'mean'."""

    name: Literal["mean"] = "mean"


def test_builtin_names_and_providers(registry):
    assert registry.names("aggregator") == ["conv_fusion", "conv_gru", "mean"]
    entry = registry.entry("aggregator", "conv_gru")
    assert entry.distribution == "invertavatar-aggregators"
    assert entry.plugin == "aggregators"
    assert registry.names("aggregator", pattern="conv_*") == ["conv_fusion", "conv_gru"]


def test_duplicate_name_names_both_providers(plugin_manager):
    class Clash:
        @hookimpl
        def invertavatar_register_aggregators(self, registrar):
            registrar.add("mean", lambda c, **k: None, OtherMeanConfig, description="clash")

    plugin_manager.register_plugin(Clash(), "acme", "acme-aggregators")
    with pytest.raises(DuplicateComponentError) as info:
        build_registry(plugin_manager)
    message = str(info.value)
    assert "invertavatar-aggregators" in message and "acme-aggregators" in message and "'mean'" in message


def test_replace_is_explicit(plugin_manager):
    class Override:
        @hookimpl
        def invertavatar_register_aggregators(self, registrar):
            registrar.add("mean", lambda c, **k: "mine", OtherMeanConfig, description="override", replace=True)

    plugin_manager.register_plugin(Override(), "override", "tests")
    registry = build_registry(plugin_manager)
    assert registry.create("aggregator", "mean", channels=3) == "mine"


def test_unknown_name_suggests_close_matches(registry):
    with pytest.raises(UnknownComponentError) as info:
        registry.entry("aggregator", "conv_gur")
    message = str(info.value)
    assert "Did you mean 'conv_gru'" in message
    assert "Known aggregators: conv_fusion, conv_gru, mean" in message
    assert isinstance(info.value, KeyError)


def test_unknown_builtin_names_its_extra(registry):
    with pytest.raises(UnknownComponentError, match=r"install `invertavatar-core\[prior-next3d\]`"):
        registry.entry("prior", "next3d")


@pytest.mark.parametrize(
    ("name", "config_cls", "match"),
    [
        ("Bad-Name", OtherMeanConfig, "must match"),
        ("other", OtherMeanConfig, "Literal\\['other'\\]"),
        ("mean", PriorConfig, "must subclass AggregatorConfig"),
    ],
)
def test_registrar_validates(name, config_cls, match):
    registrar = Registrar("aggregator", {}, "p", "dist")
    with pytest.raises(RegistrationError, match=match):
        registrar.add(name, lambda c: None, config_cls, description="x")


def test_registrar_checks_tiny_overrides():
    registrar = Registrar("aggregator", {}, "p", "dist")
    with pytest.raises(ValueError, match="no_such_field"):
        registrar.add("mean", lambda c: None, OtherMeanConfig, description="x", tiny={"no_such_field": 1})


def test_create_from_name_mapping_and_instance(registry):
    gru = registry.create("aggregator", "conv_gru", channels=4)
    assert gru.channels == 4 and gru.config.kernel_size == 3
    wide = registry.create("aggregator", {"name": "conv_gru", "kernel_size": 5}, channels=4)
    assert wide.gates.kernel_size == (5, 5)
    config = registry.default_config("aggregator", "conv_fusion", window=3)
    assert registry.create("aggregator", config, channels=2).config.window == 3


def test_config_union_schema(registry):
    from pydantic import TypeAdapter

    schema = TypeAdapter(registry.config_union("aggregator")).json_schema()
    assert set(schema["discriminator"]["mapping"]) == {"conv_fusion", "conv_gru", "mean"}
