"""Configuration: the experiment config, its presets, runtime settings and parameter sweeps."""
