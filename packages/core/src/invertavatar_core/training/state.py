"""Resumable training state in safetensors + JSON (no pickles): modules, optimisers, RNG, step.

A training run keeps ``<run>/checkpoints/state-<step>.safetensors`` and a ``latest`` pointer file,
both written atomically, so ``kill -9`` at any moment loses at most one checkpoint interval and
resuming continues bit-for-bit (RNG states included).
"""

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.io.checkpoints import CheckpointError, check_state_dict, load_tensors, save_tensors

__all__ = ["TrainingState", "latest_checkpoint", "load_training_state", "save_training_state"]

_LATEST = "latest"


def _flatten(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors of a nested structure into ``tensors``; return the JSON skeleton."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value
        return {"__tensor__": prefix}
    if isinstance(value, Mapping):
        return {"__map__": [[_key(k), _flatten(f"{prefix}.{k}", v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(f"{prefix}.{i}", v, tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    return value


def _key(key: Any) -> Any:
    return {"__int__": key} if isinstance(key, int) else key


def _unflatten(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__map__" in skeleton:
            return {
                (k["__int__"] if isinstance(k, dict) else k): _unflatten(v, tensors) for k, v in skeleton["__map__"]
            }
        if "__tuple__" in skeleton:
            return tuple(_unflatten(v, tensors) for v in skeleton["__tuple__"])
        if "__ndarray__" in skeleton:
            return np.asarray(skeleton["__ndarray__"], dtype=skeleton["dtype"])
    if isinstance(skeleton, list):
        return [_unflatten(v, tensors) for v in skeleton]
    return skeleton


class TrainingState:
    """What a trainer saves: named modules, named optimisers, the step and extra JSON data."""

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        extra_state: Mapping[str, Any] | None = None,
    ) -> None:
        self.modules = dict(modules)
        self.optimizers = dict(optimizers or {})
        self.extra_state = dict(extra_state or {})


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(run_dir: str | Path, step: int, state: TrainingState, *, keep: int = 2) -> Path:
    """Write ``state-<step>.safetensors`` atomically, point ``latest`` at it, prune old ones."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    tensors: dict[str, torch.Tensor] = {}
    for name, module in state.modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module.{name}.{key}"] = value
    skeleton = {
        "step": step,
        "optimizers": {n: _flatten(f"optim.{n}", o.state_dict(), tensors) for n, o in state.optimizers.items()},
        "rng": _flatten("rng", _rng_state(), tensors),
        "extra": _flatten("extra", state.extra_state, tensors),
    }
    # Distinct names only: shared storages are cloned so safetensors accepts them.
    tensors = {k: v.detach().clone() for k, v in tensors.items()}
    path = save_tensors(
        ckpt_dir / f"state-{step:08d}.safetensors", tensors, {"invertavatar.training": json.dumps(skeleton)}
    )
    atomic_write_text(ckpt_dir / _LATEST, path.name + "\n")
    for old in sorted(ckpt_dir.glob("state-*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete training checkpoint of a run, or None."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    pointer = ckpt_dir / _LATEST
    if pointer.is_file():
        candidate = ckpt_dir / pointer.read_text().strip()
        if candidate.is_file():
            return candidate
    found = sorted(ckpt_dir.glob("state-*.safetensors"))
    return found[-1] if found else None


def load_training_state(path: str | Path, state: TrainingState, *, restore_rng: bool = True) -> int:
    """Load a checkpoint into ``state`` (modules strictly); returns the saved step."""
    tensors, metadata = load_tensors(path)
    if "invertavatar.training" not in metadata:
        raise CheckpointError(f"{path}: not a training checkpoint (no invertavatar.training metadata)")
    skeleton = json.loads(metadata["invertavatar.training"])
    for name, module in state.modules.items():
        prefix = f"module.{name}."
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        check_state_dict(module.state_dict(), {k: tuple(v.shape) for k, v in own.items()}, f"{path} [{name}]")
        module.load_state_dict(own, strict=True)
    for name, optimizer in state.optimizers.items():
        if name not in skeleton["optimizers"]:
            raise CheckpointError(f"{path}: no state for optimizer {name!r}")
        optimizer.load_state_dict(_unflatten(skeleton["optimizers"][name], tensors))
    if restore_rng:
        _set_rng_state(_unflatten(skeleton["rng"], tensors))
    state.extra_state.update(_unflatten(skeleton["extra"], tensors))
    return int(skeleton["step"])
