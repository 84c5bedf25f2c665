"""Testing kit for plugin authors: conformance base classes and example inputs.

Enable in a test suite by subclassing, e.g. ``class TestMine(AggregatorConformance): name = "acme_x"``.
Nothing here is registered as a pytest11 plugin, so it never loads into unrelated test runs.
"""

from invertavatar_core.testing.conformance import (
    AggregatorConformance,
    ComponentConformance,
    EncoderConformance,
    MetricConformance,
    MorphableModelConformance,
    PriorConformance,
    RasterizerConformance,
)
from invertavatar_core.testing.inputs import example_camera, example_expression_uv

__all__ = [
    "AggregatorConformance",
    "ComponentConformance",
    "EncoderConformance",
    "MetricConformance",
    "MorphableModelConformance",
    "PriorConformance",
    "RasterizerConformance",
    "example_camera",
    "example_expression_uv",
]
