"""Inversion: observed frames, the pipeline, the models, the avatar and the inverters."""
