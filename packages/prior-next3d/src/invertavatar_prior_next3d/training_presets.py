"""Prior-training configs by size preset, matching the experiment presets' priors (``tiny``, ``small``, ``paper``).

The prior of each preset is exactly the experiment preset's (the encoder stages' ``training.prior_weights``
must hold the prior their experiment names); ``configs/<preset>/prior.yaml`` is this as commented YAML.
"""

from typing import Any

from invertavatar_core.config.experiment import commented_yaml
from invertavatar_core.config.presets import PRESETS, Preset, preset_experiment_data
from invertavatar_core.plugin.registry import Registry
from invertavatar_prior_next3d.training import PriorTrainingConfig

__all__ = ["preset_prior_training_data", "preset_prior_training_yaml"]

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"steps": 2, "batch_size": 2, "log_every": 1, "checkpoint_every": 1000, "sample_every": 1000},
    "small": {"steps": 20_000, "batch_size": 4, "log_every": 10, "checkpoint_every": 500, "sample_every": 500},
    "paper": {},
}
"""Training settings of each preset (``paper``: the defaults, which are the released recipe's)."""


def preset_prior_training_data(registry: Registry, preset: Preset = "tiny") -> dict[str, Any]:
    """The prior-training mapping of ``preset``: the experiment preset's prior, no data (random images), its sizes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    prior = preset_experiment_data(registry, preset)["prior"]
    default = registry.default_config("prior", prior["name"]).model_dump(mode="json")
    prior = {k: v for k, v in prior.items() if k == "name" or v != default.get(k)}
    return {"prior": prior, "data_root": None, "out_dir": f"runs/prior-{preset}", **_SIZES[preset]}


def preset_prior_training_yaml(registry: Registry, preset: Preset = "tiny") -> str:
    """:func:`preset_prior_training_data` as commented YAML."""
    header = (
        f"invertavatar prior training (`invertavatar train prior --config FILE`), preset {preset!r}.\n"
        f"Written by `invertavatar config init --kind prior --preset {preset}`; omitted fields take their defaults.\n"
        "Set data_root to a folder written by `invertavatar preprocess` or `invertavatar synth-heads`; null trains on\n"
        "random images, which only exercises the machinery."
    )
    data = preset_prior_training_data(registry, preset)
    PriorTrainingConfig.model_validate(data, context={"registry": registry})
    return commented_yaml(PriorTrainingConfig, data, header)
