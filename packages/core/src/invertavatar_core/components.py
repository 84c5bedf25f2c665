"""Deprecated alias of :mod:`invertavatar_core.plugin.kinds`; kept for one minor version."""

import warnings

from invertavatar_core.plugin.kinds import (
    BUILTIN_PROVIDERS,
    KINDS,
    AggregatorConfig,
    ComponentConfig,
    EncoderConfig,
    InverterConfig,
    Kind,
    LandmarkDetectorConfig,
    MetricConfig,
    MorphableModelConfig,
    PriorConfig,
    RasterizerConfig,
    kind_of,
)

__all__ = [
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
]

warnings.warn(
    "invertavatar_core.components is deprecated; import from invertavatar_core.plugin.kinds instead",
    DeprecationWarning,
    stacklevel=2,
)
