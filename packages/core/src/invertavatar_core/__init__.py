"""invertavatar core: protocols, plugin registry, configs, checkpoints, pipeline and CLI.

The public API is re-exported here: what a user needs to build, run and save an inversion
(``default_registry``, ``preset_experiment``, ``InversionModels``, ``Observation``, ``Avatar``)
and what a plugin author implements (the protocols, ``AggregatorBase``, the component configs,
``hookimpl``). Everything else is importable from its room (``invertavatar_core.geometry``, ...).
"""

from invertavatar_core.config.experiment import ExperimentConfig, default_registry, load_experiment
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.errors import UserError
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.inversion.pipeline import Inverter, InverterSession
from invertavatar_core.io.checkpoints import CheckpointError, load_component, save_component
from invertavatar_core.plugin.bases import AggregatorBase
from invertavatar_core.plugin.kinds import (
    KINDS,
    AggregatorConfig,
    ComponentConfig,
    EncoderConfig,
    EvaluationProtocolConfig,
    InverterConfig,
    LandmarkDetectorConfig,
    MetricConfig,
    MorphableModelConfig,
    PriorConfig,
    RasterizerConfig,
)
from invertavatar_core.plugin.manager import PROJECT_NAME, get_plugin_manager, hookimpl
from invertavatar_core.plugin.protocols import (
    Aggregator,
    AggregatorState,
    CanonicalFeatures,
    Encoder,
    EncoderRole,
    EncoderState,
    EvaluationJob,
    EvaluationProtocol,
    FeatureEdits,
    FeatureEncoder,
    FeatureLevel,
    Fragments,
    LandmarkDetector,
    LatentEncoder,
    Metric,
    MorphableModel,
    Prior,
    PriorFeatureInfo,
    PriorRender,
    Rasterizer,
)
from invertavatar_core.plugin.registry import (
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
    "Aggregator",
    "AggregatorBase",
    "AggregatorConfig",
    "AggregatorState",
    "Avatar",
    "CanonicalFeatures",
    "CheckpointError",
    "ComponentConfig",
    "DuplicateComponentError",
    "Encoder",
    "EncoderConfig",
    "EncoderRole",
    "EncoderState",
    "EvaluationJob",
    "EvaluationProtocol",
    "EvaluationProtocolConfig",
    "ExperimentConfig",
    "FeatureEdits",
    "FeatureEncoder",
    "FeatureLevel",
    "Fragments",
    "InversionModels",
    "Inverter",
    "InverterConfig",
    "InverterSession",
    "LandmarkDetector",
    "LandmarkDetectorConfig",
    "LatentEncoder",
    "Metric",
    "MetricConfig",
    "MorphableModel",
    "MorphableModelConfig",
    "Observation",
    "Prior",
    "PriorConfig",
    "PriorFeatureInfo",
    "PriorRender",
    "Rasterizer",
    "RasterizerConfig",
    "RegistrationError",
    "Registry",
    "UnknownComponentError",
    "UserError",
    "__version__",
    "build_registry",
    "default_registry",
    "get_plugin_manager",
    "hookimpl",
    "load_component",
    "load_experiment",
    "preset_experiment",
    "save_component",
]
