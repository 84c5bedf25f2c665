"""invertavatar-aggregators: temporal aggregators for incremental inversion (ConvGRU, ConvFusion, mean)."""

from invertavatar_core.plugin.lazy_exports import lazy_exports

_EXPORTS = {
    "ConvFusionAggregator": "invertavatar_aggregators.conv_fusion",
    "ConvFusionAggregatorConfig": "invertavatar_aggregators.conv_fusion",
    "ConvGRUAggregator": "invertavatar_aggregators.conv_gru",
    "ConvGRUAggregatorConfig": "invertavatar_aggregators.conv_gru",
    "MeanAggregator": "invertavatar_aggregators.mean",
    "MeanAggregatorConfig": "invertavatar_aggregators.mean",
}
"""Public name -> the module defining it (imported on first use)."""

__all__ = [
    "ConvFusionAggregator",
    "ConvFusionAggregatorConfig",
    "ConvGRUAggregator",
    "ConvGRUAggregatorConfig",
    "MeanAggregator",
    "MeanAggregatorConfig",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
