"""Hook implementations only: registers every aggregator of invertavatar-aggregators."""

from invertavatar_core import hookimpl

__all__ = ["invertavatar_register_aggregators"]


@hookimpl
def invertavatar_register_aggregators(registrar) -> None:
    """Register ``conv_gru`` (ours, Eq. 1), ``conv_fusion`` and ``mean`` (the baselines)."""
    # Imported here: loading the plugin (e.g. to build the command line) must not import torch models.
    from invertavatar_aggregators.conv_fusion import ConvFusionAggregator, ConvFusionAggregatorConfig
    from invertavatar_aggregators.conv_gru import ConvGRUAggregator, ConvGRUAggregatorConfig
    from invertavatar_aggregators.mean import MeanAggregator, MeanAggregatorConfig

    registrar.add(
        "conv_gru", ConvGRUAggregator, ConvGRUAggregatorConfig, description="ConvGRU of the paper's Eq. 1 (ours)"
    )
    registrar.add(
        "conv_fusion",
        ConvFusionAggregator,
        ConvFusionAggregatorConfig,
        description="fixed-window conv fusion, averaged beyond the window (ablation baseline)",
        tiny={"window": 2},
    )
    registrar.add("mean", MeanAggregator, MeanAggregatorConfig, description="average of per-frame features (baseline)")
