"""Run the conformance kit over every registered name of every kind (ours or a third party's)."""

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.testing import (
    AggregatorConformance,
    EncoderConformance,
    MetricConformance,
    MorphableModelConformance,
    PriorConformance,
    RasterizerConformance,
)

_BASES = {
    "aggregator": AggregatorConformance,
    "encoder": EncoderConformance,
    "metric": MetricConformance,
    "morphable_model": MorphableModelConformance,
    "prior": PriorConformance,
    "rasterizer": RasterizerConformance,
}

# Collection needs the names, so the registry is built once here (not at package import time).
_REGISTRY = build_registry(get_plugin_manager(autoload=True))

for _kind, _base in _BASES.items():
    for _name in _REGISTRY.names(_kind):
        _cls = type(f"Test_{_kind}_{_name}", (_base,), {"name": _name, "__module__": __name__})
        globals()[_cls.__name__] = _cls
