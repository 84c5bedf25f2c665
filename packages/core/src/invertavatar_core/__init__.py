"""invertavatar core: protocols, plugin registry, configs, checkpoints, pipeline and CLI.

The public API is re-exported here; everything else is importable from its own module.
"""

from invertavatar_core.lazy_exports import lazy_exports
from invertavatar_core.version import __version__

_EXPORTS = {
    "CheckpointError": "invertavatar_core.checkpoint",
    "load_component": "invertavatar_core.checkpoint",
    "save_component": "invertavatar_core.checkpoint",
    "KINDS": "invertavatar_core.components",
    "AggregatorConfig": "invertavatar_core.components",
    "ComponentConfig": "invertavatar_core.components",
    "EncoderConfig": "invertavatar_core.components",
    "InverterConfig": "invertavatar_core.components",
    "LandmarkDetectorConfig": "invertavatar_core.components",
    "MetricConfig": "invertavatar_core.components",
    "MorphableModelConfig": "invertavatar_core.components",
    "PriorConfig": "invertavatar_core.components",
    "RasterizerConfig": "invertavatar_core.components",
    "ExperimentConfig": "invertavatar_core.config",
    "load_experiment": "invertavatar_core.config",
    "PROJECT_NAME": "invertavatar_core.plugins",
    "get_plugin_manager": "invertavatar_core.plugins",
    "hookimpl": "invertavatar_core.plugins",
    "DuplicateComponentError": "invertavatar_core.registry",
    "RegistrationError": "invertavatar_core.registry",
    "Registry": "invertavatar_core.registry",
    "UnknownComponentError": "invertavatar_core.registry",
    "build_registry": "invertavatar_core.registry",
}
"""Public name -> the module defining it (imported on first use)."""

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
