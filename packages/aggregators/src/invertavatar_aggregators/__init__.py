"""invertavatar-aggregators: temporal aggregators for incremental inversion (ConvGRU, ConvFusion, mean)."""

from invertavatar_aggregators.conv_fusion import ConvFusionAggregator, ConvFusionAggregatorConfig
from invertavatar_aggregators.conv_gru import ConvGRUAggregator, ConvGRUAggregatorConfig
from invertavatar_aggregators.mean import MeanAggregator, MeanAggregatorConfig

__all__ = [
    "ConvFusionAggregator",
    "ConvFusionAggregatorConfig",
    "ConvGRUAggregator",
    "ConvGRUAggregatorConfig",
    "MeanAggregator",
    "MeanAggregatorConfig",
]
