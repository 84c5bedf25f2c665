"""Component checkpoints: a directory with ``config.json`` and ``model.safetensors``.

Saving is atomic (the old directory survives a crash mid-save). Loading is strict: any missing,
unexpected or mis-shaped tensor is named in one error. Nothing here unpickles; upstream pickles
are converted once by scripts in the owning package.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from invertavatar_core.errors import UserError
from invertavatar_core.io.atomic import atomic_directory, atomic_write, recover_directory
from invertavatar_core.io.json_files import read_json
from invertavatar_core.plugin.kinds import ComponentConfig, kind_of
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.version import __version__

__all__ = [
    "COMPONENT_KIND",
    "CONFIG_FILE",
    "CheckpointError",
    "RUN_KIND",
    "WEIGHTS_FILE",
    "check_state_dict",
    "load_component",
    "load_module_weights",
    "load_tensors",
    "read_component_config",
    "save_component",
    "save_tensors",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COMPONENT_KIND = "component"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of a component directory."""
RUN_KIND = "run"
"""Marker kind of a training run folder, which is also a model checkpoint (docs/checkpoints.md)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that does not match what it is loaded into, or is unreadable."""


def _jsonable_context(context: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in context.items():
        try:
            json.dumps(value)
        except TypeError:
            continue  # rich objects (prior info, registry) are supplied again at load
        out[key] = value
    return out


def save_component(
    module: nn.Module,
    config: ComponentConfig,
    path: str | Path,
    *,
    context: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``module`` built from ``config`` as a component directory, atomically.

    An existing ``path`` is replaced only if it is a component directory we wrote (see
    :func:`invertavatar_core.io.atomic.atomic_directory`).

    Args:
        module: the built component.
        config: the config it was built from (written to ``config.json``).
        path: the directory to (re)write.
        context: build context (``channels=...``); JSON-able values are stored and reused at load.
    """
    metadata = {
        "format": "pt",
        "invertavatar.kind": kind_of(type(config)),
        "invertavatar.name": config.name,
        "invertavatar.version": __version__,
        "invertavatar.context": json.dumps(_jsonable_context(context or {})),
    }
    with atomic_directory(path, COMPONENT_KIND, signature=(CONFIG_FILE, WEIGHTS_FILE)) as tmp:
        (tmp / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
        save_model(module, str(tmp / WEIGHTS_FILE), metadata=metadata)
    return Path(path)


def read_component_config(path: str | Path, registry: Registry, kind: str | None = None) -> ComponentConfig:
    """Read and validate a component directory's ``config.json``."""
    path = recover_directory(path)
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{path}: not a component checkpoint (missing {CONFIG_FILE})")
    data = read_json(config_path, CheckpointError)
    header = _header_metadata(Path(path) / WEIGHTS_FILE)
    saved_kind = header.get("invertavatar.kind")
    if kind is not None and saved_kind is not None and saved_kind != kind:
        raise CheckpointError(f"{path}: holds a {saved_kind}, expected a {kind}")
    return registry.validate_config(kind or saved_kind, data)


def _header_metadata(weights: Path) -> dict[str, str]:
    if not weights.is_file():
        raise CheckpointError(f"{weights.parent}: missing {WEIGHTS_FILE}")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CheckpointError(f"{weights}: not a readable safetensors file: {exc}") from None


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected and mis-shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(found[k])}, model {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model:"]
        if missing:
            lines.append(f"  missing tensors ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected tensors ({len(unexpected)}): {', '.join(unexpected)}")
        if misshaped:
            lines.append(f"  mis-shaped tensors ({len(misshaped)}): {'; '.join(misshaped)}")
        raise CheckpointError("\n".join(lines))


def _shared_aliases(module: nn.Module) -> set[str]:
    """State-dict names that alias another tensor (tied weights); safetensors stores one."""
    seen: dict[tuple[int, int], str] = {}
    aliases = set()
    for name, tensor in module.state_dict(keep_vars=True).items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else None
        if key is not None and key in seen:
            aliases.add(name)
        elif key is not None:
            seen[key] = name
    return aliases


def load_module_weights(module: nn.Module, weights: str | Path) -> nn.Module:
    """Load a safetensors file into ``module`` strictly, with a precise mismatch message."""
    weights = Path(weights)
    _header_metadata(weights)
    with safe_open(str(weights), framework="pt") as handle:
        found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    aliases = _shared_aliases(module)
    expected = {k: v for k, v in module.state_dict().items() if k not in aliases or k in found}
    check_state_dict(expected, found, str(weights))
    tensors = load_file(str(weights), device="cpu")
    state = module.state_dict()
    for name in aliases - set(found):
        tensors[name] = state[name]
    module.load_state_dict(tensors, strict=True)
    return module


def load_component(
    # Positional-only, so an encoder's build context can itself carry ``registry=...``.
    path: str | Path,
    registry: Registry,
    kind: str | None = None,
    /,
    **context: Any,
) -> tuple[Any, ComponentConfig]:
    """Build a component from its directory and load its weights strictly.

    Returns:
        ``(component, config)``.
    """
    config = read_component_config(path, registry, kind)
    header = _header_metadata(Path(path) / WEIGHTS_FILE)
    saved_context = json.loads(header.get("invertavatar.context", "{}"))
    resolved_kind = kind or header["invertavatar.kind"]
    component = registry.create(resolved_kind, config, **{**saved_context, **context})
    load_module_weights(component, Path(path) / WEIGHTS_FILE)
    return component, config


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a flat tensor mapping to a safetensors file atomically (contiguous CPU copies)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=dict(metadata or {})))


def load_tensors(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``; errors name the file."""
    path = Path(path)
    metadata = _header_metadata(path)
    return load_file(str(path), device=str(device)), metadata
