"""Built-in experiments by size preset: ``tiny`` (CPU seconds; demo, tests) and ``paper`` (the published sizes).

Both use the paper's components: the ``next3d`` prior, ``e4e`` + ``texture_unet`` +
``triplane_sft_unet`` encoders, the ``conv_gru`` aggregator and the ``procedural`` head model.
``tiny`` takes every component's registered tiny config; ``paper`` its default (paper) config.
"""

from pathlib import Path
from typing import Any, Literal

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.plugin.registry import Registry

__all__ = ["PRESETS", "TINY_PERCEPTUAL", "preset_experiment", "preset_experiment_data"]

PRESETS = ("tiny", "paper")
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


def preset_experiment_data(
    registry: Registry,
    preset: Literal["tiny", "paper"] = "tiny",
    out_dir: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A complete experiment mapping of ``preset``; ``overrides`` replace (dicts: update) top-level sections."""
    if preset not in PRESETS:
        raise ValueError(f"unknown experiment preset {preset!r}; known: {', '.join(PRESETS)}")
    config_of = registry.tiny_config if preset == "tiny" else registry.default_config
    slot = {key: config_of(kind, name).model_dump(mode="json") for key, (kind, name) in _COMPONENTS.items()}
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
    if preset == "tiny":
        data["data"] = {"synthetic_drives": 4, "max_sequence_length": 4, "frames_per_sequence": 2, "novel_views": 1}
        data["training"].update(
            batch_size=2, steps=2, log_every=1, checkpoint_every=1000, sample_every=1000,
            perceptual_fallback=TINY_PERCEPTUAL,
        )  # fmt: skip
    for key, value in overrides.items():
        current = data.get(key)
        data[key] = {**current, **value} if isinstance(value, dict) and isinstance(current, dict) else value
    return data


def preset_experiment(
    registry: Registry,
    preset: Literal["tiny", "paper"] = "tiny",
    out_dir: str | Path | None = None,
    **overrides: Any,
) -> ExperimentConfig:
    """The validated experiment of ``preset`` (see :func:`preset_experiment_data`)."""
    data = preset_experiment_data(registry, preset, out_dir, **overrides)
    return ExperimentConfig.model_validate(data, context={"registry": registry})
