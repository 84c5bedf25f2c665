"""invertavatar core: protocols, plugin registry, configs, checkpoints, pipeline and CLI.

The public API is re-exported here; everything else is importable from its own module.
"""

from invertavatar_core.checkpoint import CheckpointError, load_component, save_component
from invertavatar_core.components import (
    KINDS,
    AggregatorConfig,
    ComponentConfig,
    EncoderConfig,
    InverterConfig,
    LandmarkDetectorConfig,
    MetricConfig,
    MorphableModelConfig,
    PriorConfig,
    RasterizerConfig,
)
from invertavatar_core.config import ExperimentConfig, load_experiment
from invertavatar_core.plugins import PROJECT_NAME, get_plugin_manager, hookimpl
from invertavatar_core.registry import (
    DuplicateComponentError,
    RegistrationError,
    Registry,
    UnknownComponentError,
    build_registry,
)
from invertavatar_core.version import __version__

__all__ = [
    "KINDS",
    "PROJECT_NAME",
    "AggregatorConfig",
    "CheckpointError",
    "ComponentConfig",
    "DuplicateComponentError",
    "EncoderConfig",
    "ExperimentConfig",
    "InverterConfig",
    "LandmarkDetectorConfig",
    "MetricConfig",
    "MorphableModelConfig",
    "PriorConfig",
    "RasterizerConfig",
    "RegistrationError",
    "Registry",
    "UnknownComponentError",
    "__version__",
    "build_registry",
    "get_plugin_manager",
    "hookimpl",
    "load_component",
    "load_experiment",
    "save_component",
]
