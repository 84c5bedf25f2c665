"""Deprecated alias of :mod:`invertavatar_core.plugin.bases` (the aggregator base class); kept for one minor version."""

import warnings

from invertavatar_core.plugin.bases import (
    AggregatorBase,
)

__all__ = [
    "AggregatorBase",
]

warnings.warn(
    "invertavatar_core.aggregation is deprecated; import from invertavatar_core.plugin.bases instead",
    DeprecationWarning,
    stacklevel=2,
)
