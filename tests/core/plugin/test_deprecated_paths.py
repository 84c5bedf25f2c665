"""The old import paths a plugin may still use keep working for one minor version, with a warning."""

import importlib
import sys

import pytest

OLD_PATHS = {
    "invertavatar_core.components": (
        "invertavatar_core.plugin.kinds",
        [
            "AggregatorConfig",
            "BUILTIN_PROVIDERS",
            "ComponentConfig",
            "EncoderConfig",
            "InverterConfig",
            "KINDS",
            "Kind",
            "LandmarkDetectorConfig",
            "MetricConfig",
            "MorphableModelConfig",
            "PriorConfig",
            "RasterizerConfig",
            "kind_of",
        ],
    ),
    "invertavatar_core.protocols": (
        "invertavatar_core.plugin.protocols",
        [
            "Aggregator",
            "AggregatorState",
            "CanonicalFeatures",
            "Encoder",
            "EncoderRole",
            "EncoderState",
            "FeatureEdits",
            "FeatureEncoder",
            "FeatureLevel",
            "Fragments",
            "LandmarkDetector",
            "LatentEncoder",
            "Metric",
            "MorphableModel",
            "Prior",
            "PriorFeatureInfo",
            "PriorRender",
            "Rasterizer",
        ],
    ),
    "invertavatar_core.registry": (
        "invertavatar_core.plugin.registry",
        [
            "DuplicateComponentError",
            "NAME_PATTERN",
            "Registrar",
            "RegistrationError",
            "Registry",
            "RegistryEntry",
            "UnknownComponentError",
            "build_registry",
        ],
    ),
    "invertavatar_core.aggregation": ("invertavatar_core.plugin.bases", ["AggregatorBase"]),
}
"""Old module -> (new module, every name the old module exported)."""


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_path_warns_naming_the_new_one_and_exports_the_same_objects(old, monkeypatch):
    new_name, names = OLD_PATHS[old]
    monkeypatch.delitem(sys.modules, old, raising=False)  # a cached module would not warn again
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated; import from {new_name} instead"):
        module = importlib.import_module(old)
    new = importlib.import_module(new_name)
    assert sorted(module.__all__) == sorted(names)
    for name in names:
        assert getattr(module, name) is getattr(new, name), name


def test_old_from_import_of_a_plugin_still_works(monkeypatch):
    monkeypatch.delitem(sys.modules, "invertavatar_core.aggregation", raising=False)
    with pytest.warns(DeprecationWarning, match="invertavatar_core.plugin.bases"):
        from invertavatar_core.aggregation import AggregatorBase
    from invertavatar_core import AggregatorBase as current

    assert AggregatorBase is current
