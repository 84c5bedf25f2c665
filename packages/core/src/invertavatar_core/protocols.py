"""Deprecated alias of :mod:`invertavatar_core.plugin.protocols`; kept for one minor version."""

import warnings

from invertavatar_core.plugin.protocols import (
    Aggregator,
    AggregatorState,
    CanonicalFeatures,
    Encoder,
    EncoderRole,
    EncoderState,
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

__all__ = [
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
]

warnings.warn(
    "invertavatar_core.protocols is deprecated; import from invertavatar_core.plugin.protocols instead",
    DeprecationWarning,
    stacklevel=2,
)
