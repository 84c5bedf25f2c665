"""The three encoder training stages (supplement 6.2) by name: ``STAGES[name](experiment, registry, runtime)``."""

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["STAGES", "TrainingStage"]


@dataclass(frozen=True)
class TrainingStage:
    """One stage: its help line and the function that runs it (imported on the first call, not before)."""

    help: str
    module: str
    function: str

    def __call__(self, experiment: Any, registry: Any, runtime: Any, **kwargs: Any) -> dict[str, float]:
        """Run the stage; returns its last training scalars."""
        run = getattr(importlib.import_module(self.module), self.function)
        return run(experiment, registry, runtime, **kwargs)


STAGES: dict[str, TrainingStage] = {
    "latent": TrainingStage("stage 1: E_latent (Eq. 2)", f"{__name__}.latent", "train_latent"),
    "oneshot": TrainingStage("stage 2: one-shot E_tex + E_tri (Eq. 3)", f"{__name__}.oneshot", "train_oneshot"),
    "incremental": TrainingStage(
        "stage 3: recurrent decoders (Eq. 1, 3)", f"{__name__}.incremental", "train_incremental"
    ),
}
"""Stage name -> the stage, in training order."""
