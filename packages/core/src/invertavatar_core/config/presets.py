"""Built-in experiments by size preset: ``tiny`` (CPU seconds), ``small`` (CPU hours) and ``paper``.

All use the paper's components: the ``next3d`` prior, ``e4e`` + ``texture_unet`` +
``triplane_sft_unet`` encoders, the ``conv_gru`` aggregator and the ``procedural`` head model.
``tiny`` takes every component's registered tiny config; ``small`` the tiny widths at 128 px
(:data:`SMALL_COMPONENTS`); ``paper`` every component's default (paper) config. ``configs/`` at
the repository root holds these presets as commented YAML (``invertavatar config init``).
"""

from pathlib import Path
from typing import Any, Literal

from invertavatar_core.config.experiment import ExperimentConfig, commented_yaml
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "PRESETS",
    "SMALL_COMPONENTS",
    "TINY_PERCEPTUAL",
    "Preset",
    "preset_experiment",
    "preset_experiment_data",
    "preset_experiment_yaml",
]

Preset = Literal["tiny", "small", "paper"]
"""Names of the experiment presets."""

PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
"""Names accepted by :func:`preset_experiment_data`."""

TINY_PERCEPTUAL: dict[str, Any] = {"name": "ms_ssim", "scale_weights": [0.5, 0.5], "window_size": 5}
"""Perceptual stand-in at tiny size: MS-SSIM with two scales and a 5 px window fits 64 px renders
(the default five scales need at least 176 px); LPIPS weights are never shipped."""

_COMPONENTS: dict[str, tuple[str, str]] = {
    "prior": ("prior", "next3d"),
    "morphable_model": ("morphable_model", "procedural"),
    "rasterizer": ("rasterizer", "torch"),
    "latent": ("encoder", "e4e"),
    "texture": ("encoder", "texture_unet"),
    "static": ("encoder", "triplane_sft_unet"),
    "aggregator": ("aggregator", "conv_gru"),
}
"""Experiment slot -> (kind, registry name) of the paper's method."""

SMALL_COMPONENTS: dict[str, dict[str, Any]] = {
    # Twice the tiny widths and a second x2 super-resolution stage: 128 px images from 32 px renders.
    "prior": {
        "channel_max": 32,
        "plane_channels": 16,
        "decoder_hidden": 32,
        "image_resolution": 128,
        "superresolution_channels": [32, 16],
    },
    "latent": {"input_resolution": 128},
    "texture": {"input_resolution": 128},
    "static": {"input_resolution": 128},
}
"""Slot -> overrides of the component's tiny config in the ``small`` preset."""

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "data": {
            "image_resolution": 64,
            "synthetic_drives": 4,
            "max_sequence_length": 4,
            "frames_per_sequence": 2,
            "novel_views": 1,
        },
        "training": {"batch_size": 2, "steps": 2, "log_every": 1, "checkpoint_every": 1000, "sample_every": 1000},
    },
    "small": {
        "data": {
            "image_resolution": 128,
            "synthetic_drives": 32,
            "max_sequence_length": 8,
            "frames_per_sequence": 2,
            "novel_views": 1,
        },
        "training": {"batch_size": 2, "steps": 2000, "log_every": 10, "checkpoint_every": 250, "sample_every": 250},
    },
    "paper": {"data": {}, "training": {}},
}
"""Data and training sections of each preset (``paper``: the defaults, which are the paper's)."""

_DESCRIPTIONS: dict[str, str] = {
    "tiny": "every component at its test size (64 px): a smoke run of 2 steps, each taking seconds on one CPU core",
    "small": "the tiny widths at 128 px; trains on a CPU in hours, on a GPU in minutes",
    "paper": "the published sizes (512 px); needs a large GPU (the memory estimate refuses it elsewhere)",
}


def preset_experiment_data(
    registry: Registry,
    preset: Preset = "tiny",
    out_dir: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A complete experiment mapping of ``preset``; ``overrides`` replace (dicts: update) top-level sections."""
    if preset not in PRESETS:
        raise ValueError(f"unknown experiment preset {preset!r}; known: {', '.join(PRESETS)}")
    config_of = registry.default_config if preset == "paper" else registry.tiny_config
    overrides_of = SMALL_COMPONENTS if preset == "small" else {}
    slot = {
        key: config_of(kind, name, **overrides_of.get(key, {})).model_dump(mode="json")
        for key, (kind, name) in _COMPONENTS.items()
    }
    data: dict[str, Any] = {
        "name": preset,
        "seed": 0,
        "prior": slot["prior"],
        "morphable_model": slot["morphable_model"],
        "rasterizer": slot["rasterizer"],
        "encoders": {"latent": slot["latent"], "texture": slot["texture"], "static": slot["static"]},
        "aggregator": slot["aggregator"],
        "training": {"out_dir": str(out_dir or f"runs/{preset}")},
    }
    sizes = _SIZES[preset]
    if sizes["data"]:
        data["data"] = dict(sizes["data"])
    data["training"].update(sizes["training"])
    if preset != "paper":
        data["training"]["perceptual_fallback"] = TINY_PERCEPTUAL
    for key, value in overrides.items():
        current = data.get(key)
        data[key] = {**current, **value} if isinstance(value, dict) and isinstance(current, dict) else value
    return data


def preset_experiment(
    registry: Registry,
    preset: Preset = "tiny",
    out_dir: str | Path | None = None,
    **overrides: Any,
) -> ExperimentConfig:
    """The validated experiment of ``preset`` (see :func:`preset_experiment_data`)."""
    data = preset_experiment_data(registry, preset, out_dir, **overrides)
    return ExperimentConfig.model_validate(data, context={"registry": registry})


def _compact(registry: Registry, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the fields equal to its component's defaults (the name always stays)."""
    default = registry.default_config(kind, config["name"]).model_dump(mode="json")
    return {k: v for k, v in config.items() if k == "name" or v != default.get(k)}


def preset_experiment_yaml(registry: Registry, preset: Preset = "tiny") -> str:
    """The experiment of ``preset`` as commented YAML, components reduced to what differs from their defaults."""
    data = preset_experiment_data(registry, preset)
    for key, (kind, _) in _COMPONENTS.items():
        section = data["encoders"] if key in ("latent", "texture", "static") else data
        section[key] = _compact(registry, kind, section[key])
    data["training"].pop("out_dir")
    data["training"] = {"out_dir": f"runs/{preset}", "prior_weights": None, **data["training"]}
    data["data"] = {"root": None, **data.get("data", {})}
    header = (
        f"invertavatar experiment, preset {preset!r}:\n{_DESCRIPTIONS[preset]}.\n"
        f"Written by `invertavatar config init --preset {preset}`; omitted fields take their defaults,\n"
        "`invertavatar config show FILE` prints every resolved field and `invertavatar config schema KIND NAME`\n"
        "documents a component's fields."
    )
    return commented_yaml(ExperimentConfig, data, header)
