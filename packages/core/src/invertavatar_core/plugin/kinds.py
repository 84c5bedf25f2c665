"""The kinds of swappable component, their config base classes, and the built-in name table.

A *kind* (``prior``, ``encoder``, ...) has one registration hook, one config base class and one
protocol. Every concrete config subclasses its kind's base, narrows ``name`` to a ``Literal`` of
its registry name, and carries only data (names, numbers, paths).
"""

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from invertavatar_core.plugin import protocols

__all__ = [
    "AggregatorConfig",
    "BUILTIN_PROVIDERS",
    "ComponentConfig",
    "EncoderConfig",
    "EvaluationProtocolConfig",
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


class ComponentConfig(BaseModel):
    """Base of every component config: frozen, strict about unknown keys, self-documenting."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: str
    """Registry name of the component (the discriminator)."""

    init_only_fields: ClassVar[tuple[str, ...]] = ()
    """Fields that only initialise weights (e.g. a pretrained trunk's file); a saved checkpoint clears them,
    since its weights already hold what they loaded (and loading must not need those files)."""


class PriorConfig(ComponentConfig):
    """Base config of a :class:`~invertavatar_core.plugin.protocols.Prior`."""


class EncoderConfig(ComponentConfig):
    """Base config of an :class:`~invertavatar_core.plugin.protocols.Encoder`."""


class AggregatorConfig(ComponentConfig):
    """Base config of an :class:`~invertavatar_core.plugin.protocols.Aggregator`."""


class MorphableModelConfig(ComponentConfig):
    """Base config of a :class:`~invertavatar_core.plugin.protocols.MorphableModel`."""


class RasterizerConfig(ComponentConfig):
    """Base config of a :class:`~invertavatar_core.plugin.protocols.Rasterizer`."""


class LandmarkDetectorConfig(ComponentConfig):
    """Base config of a :class:`~invertavatar_core.plugin.protocols.LandmarkDetector`."""


class MetricConfig(ComponentConfig):
    """Base config of a :class:`~invertavatar_core.plugin.protocols.Metric`."""


class InverterConfig(ComponentConfig):
    """Base config of an inversion method (ours, per-frame averaging, PTI, ...)."""


class EvaluationProtocolConfig(ComponentConfig):
    """Base config of an :class:`~invertavatar_core.plugin.protocols.EvaluationProtocol` (paper Sec. 4)."""


@dataclass(frozen=True)
class Kind:
    """One kind of component: its name, plural (for the hook), config base and protocol."""

    name: str
    plural: str
    config_base: type[ComponentConfig]
    protocol: type
    build_context: str
    """What the factory receives besides the config (documentation for plugin authors)."""

    @property
    def hook_name(self) -> str:
        """The registration hook, e.g. ``invertavatar_register_aggregators``."""
        return f"invertavatar_register_{self.plural}"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("prior", "priors", PriorConfig, protocols.Prior, "nothing"),
        Kind(
            "encoder",
            "encoders",
            EncoderConfig,
            protocols.Encoder,
            "prior_info: PriorFeatureInfo, aggregator: AggregatorConfig | None, registry: Registry",
        ),
        Kind("aggregator", "aggregators", AggregatorConfig, protocols.Aggregator, "channels: int"),
        Kind("morphable_model", "morphable_models", MorphableModelConfig, protocols.MorphableModel, "nothing"),
        Kind("rasterizer", "rasterizers", RasterizerConfig, protocols.Rasterizer, "nothing"),
        Kind("landmark_detector", "landmark_detectors", LandmarkDetectorConfig, protocols.LandmarkDetector, "nothing"),
        Kind("metric", "metrics", MetricConfig, protocols.Metric, "nothing"),
        Kind(
            "inverter",
            "inverters",
            InverterConfig,
            object,
            "registry: Registry, experiment: ExperimentConfig, models: InversionModels | None",
        ),
        Kind(
            "evaluation_protocol",
            "evaluation_protocols",
            EvaluationProtocolConfig,
            protocols.EvaluationProtocol,
            "nothing",
        ),
    )
}
"""Every kind, by name."""


def kind_of(config_cls: type[ComponentConfig]) -> str:
    """The kind a config class belongs to (by its base class)."""
    for kind in KINDS.values():
        if issubclass(config_cls, kind.config_base):
            return kind.name
    raise TypeError(f"{config_cls.__qualname__} does not subclass any kind's config base")


_PRIOR = "invertavatar-core[prior-next3d]"
_ENCODERS = "invertavatar-core[encoders]"
_AGGREGATORS = "invertavatar-core[aggregators]"
_FACEVERSE = "invertavatar-core[faceverse]"

BUILTIN_PROVIDERS: dict[tuple[str, str], str] = {
    ("prior", "next3d"): _PRIOR,
    ("encoder", "e4e"): _ENCODERS,
    ("encoder", "timm_backbone"): _ENCODERS,
    ("encoder", "texture_unet"): _ENCODERS,
    ("encoder", "triplane_sft_unet"): _ENCODERS,
    ("encoder", "triplane_offset_unet"): _ENCODERS,
    ("aggregator", "conv_gru"): _AGGREGATORS,
    ("aggregator", "conv_fusion"): _AGGREGATORS,
    ("aggregator", "mean"): _AGGREGATORS,
    ("morphable_model", "procedural"): _FACEVERSE,
    ("morphable_model", "ict"): _FACEVERSE,
    ("morphable_model", "faceverse"): _FACEVERSE,
    # mediapipe needs numpy<2, hence its own extra on the faceverse distribution.
    ("landmark_detector", "mediapipe"): "invertavatar-faceverse[mediapipe]",
}
"""Names our own distributions provide: (kind, name) -> the requirement that installs them.

Used only to tell a user which extra to install when a known name is missing.
"""
