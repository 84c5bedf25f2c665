"""The tiny experiment the pipeline and training tests share (real tiny prior, encoders, procedural head)."""

from pathlib import Path

from invertavatar_core.config import ExperimentConfig

SMALL_MS_SSIM = {"name": "ms_ssim", "scale_weights": [0.5, 0.5], "window_size": 5}
"""MS-SSIM that fits tiny 64 px renders (the default five scales need 176 px)."""


def tiny_experiment_data(registry, out_dir: Path | None = None, **overrides) -> dict:
    """A complete experiment mapping at tiny size (registered tiny configs of every component)."""
    tiny = lambda kind, name: registry.tiny_config(kind, name).model_dump(mode="json")  # noqa: E731
    data = {
        "name": "tiny",
        "seed": 0,
        "prior": tiny("prior", "next3d"),
        "morphable_model": tiny("morphable_model", "procedural"),
        "rasterizer": tiny("rasterizer", "torch"),
        "encoders": {
            "latent": tiny("encoder", "e4e"),
            "texture": tiny("encoder", "texture_unet"),
            "static": tiny("encoder", "triplane_sft_unet"),
        },
        "aggregator": tiny("aggregator", "conv_gru"),
        "data": {"synthetic_drives": 4, "max_sequence_length": 4, "frames_per_sequence": 2, "novel_views": 1},
        "training": {
            "out_dir": str(out_dir or "runs/tiny"),
            "batch_size": 2,
            "steps": 2,
            "log_every": 1,
            "checkpoint_every": 1000,
            "sample_every": 1000,
            "perceptual_fallback": SMALL_MS_SSIM,
        },
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def tiny_experiment(registry, out_dir: Path | None = None, **overrides) -> ExperimentConfig:
    """The validated tiny experiment."""
    return ExperimentConfig.model_validate(
        tiny_experiment_data(registry, out_dir, **overrides), context={"registry": registry}
    )
