"""User-supplied pretrained weight files: existence checks with the config field named, and safe reading.

Pretrained networks behind metrics and losses (LPIPS, Inception, ArcFace) are never downloaded;
their paths come from configs. A file is read as safetensors, or as a plain ``.pth`` state dict
through ``torch.load(weights_only=True)`` (nothing is unpickled), and wrapper prefixes that
training code adds (``module.``) are stripped.
"""

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from invertavatar_core.io.checkpoints import CheckpointError

__all__ = ["missing_weights_reason", "read_state_dict", "strip_prefix"]


def missing_weights_reason(path: Path | None, field: str, what: str) -> str:
    """Why a weight file cannot be used (``""`` when it exists).

    Args:
        path: the configured path, or ``None`` when the field was not set.
        field: the config field, e.g. ``"lpips.backbone_weights"``.
        what: what the file is, e.g. ``"torchvision AlexNet weights (alexnet-owt-7be5be79.pth)"``.
    """
    if path is None:
        return f"{field} is not set: supply {what} (nothing is downloaded)"
    if not Path(path).is_file():
        return f"{field}: file not found: {path} (expected {what})"
    return ""


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Remove ``prefix`` from every key that has it (others are kept, so a strict load names them)."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


def read_state_dict(path: str | Path, what: str) -> dict[str, Tensor]:
    """A flat ``name -> tensor`` mapping from a ``.safetensors`` or ``.pth`` file on the CPU.

    Args:
        path: the file.
        what: what it should hold, for error messages.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable, or not a mapping of tensors (``{"state_dict": ...}`` is unwrapped).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({what}): {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report the file whatever went wrong
        raise CheckpointError(
            f"{path}: could not read {what} with torch.load(weights_only=True): {exc}. "
            "Expected a plain state dict (.pth) or a .safetensors file."
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: expected a state dict (tensor names -> tensors) of {what}, found {type(obj).__name__}"
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = strip_prefix(state, "module.")
    return state
