"""invertavatar-aggregators: Temporal aggregators for incremental inversion: ConvGRU, ConvFusion, mean."""

__all__: list[str] = []
