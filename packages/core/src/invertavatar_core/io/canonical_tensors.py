"""An avatar's canonical tensors for other tools: ``canonical.safetensors`` plus ``canonical.json`` saying what each is.

The tensors are the avatar's cache (:class:`~invertavatar_core.plugin.protocols.CanonicalFeatures`,
what ``avatar.safetensors`` holds) under the same names; the JSON gives each one's shape, dtype
and meaning, and the conventions needed to use them without this toolkit (tri-plane layout,
box, UV orientation). Written by ``invertavatar export``.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from invertavatar_core.io.atomic import atomic_write, atomic_write_text
from invertavatar_core.plugin.protocols import PriorFeatureInfo
from invertavatar_core.version import __version__

__all__ = ["CANONICAL_FORMAT", "canonical_description", "write_canonical_tensors"]

CANONICAL_FORMAT = "invertavatar.canonical"
"""The ``format`` field of ``canonical.json``."""

_CONVENTIONS = {
    "space": "EG3D canonical space: y up, the face towards +z, the subject's left towards +x",
    "triplane": "static.triplane (B, 3 * C, R, R) is 3 planes of C channels each, stacked on the channel axis: "
    "plane 0 spans (x, y), plane 1 (x, z), plane 2 (z, x) (grid column, grid row), each covering "
    "[-box/2, box/2]^2; a point's feature is the mean of the three bilinear samples (align_corners=False)",
    "uv": "texture.* are in UV space with rows along +v (upside down compared with an OBJ texture image)",
    "images": "colours decoded from these features are RGB; the prior's images are in [-1, 1]",
}


def _meaning(name: str, info: PriorFeatureInfo | None) -> str:
    if name == "ws":
        return "w+ latent (B, num_ws, w_dim): drives the face generator at animation time and the super-resolution"
    if name == "meta.identity":
        return "identity coefficients of the morphable model (B, S) the avatar was inverted from"
    if name == "static.triplane":
        return "static tri-plane F_tri (B, 3 * C, R, R): the canonical, expression-free 3D features"
    if name.startswith("static.face_"):
        level = name.removeprefix("static.face_")
        return f"plane-0 face-window crop of the static generator at level {level}, blended by the face generator"
    if name.startswith("static."):
        return "static generator features at level " + name.removeprefix("static.")
    if name.startswith("texture."):
        level = name.removeprefix("texture.")
        known = {lvl.name for lvl in info.texture_levels} if info is not None else set()
        kind = "skip (RGB-branch) image" if level.startswith("rgb") else "block features"
        suffix = "" if not known or level in known else " (not read by this prior)"
        return f"neural texture F_tex, {kind} at level {level}, in UV space{suffix}"
    return "avatar tensor"


def canonical_description(
    tensors: Mapping[str, Tensor],
    prior_config: Mapping[str, Any],
    *,
    info: PriorFeatureInfo | None = None,
    box_size: float | None = None,
) -> dict:
    """The ``canonical.json`` content for an avatar's ``tensors`` (``avatar.safetensors`` names).

    ``info`` and ``box_size`` of its prior add the tri-plane sizes and box.
    """
    data: dict[str, Any] = {
        "format": CANONICAL_FORMAT,
        "version": 1,
        "invertavatar_version": __version__,
        "prior": dict(prior_config),
        "tensors": {
            name: {
                "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "meaning": _meaning(name, info),
            }
            for name, t in tensors.items()
        },
        "conventions": dict(_CONVENTIONS),
    }
    if info is not None:
        data["triplane"] = {"planes": 3, "channels": info.triplane_channels, "resolution": info.triplane_resolution}
    if box_size is not None:
        data.setdefault("triplane", {})["box_size"] = box_size
    return data


def write_canonical_tensors(
    tensors: Mapping[str, Tensor],
    folder: str | Path,
    prior_config: Mapping[str, Any],
    *,
    info: PriorFeatureInfo | None = None,
    box_size: float | None = None,
) -> tuple[Path, Path]:
    """Write ``folder/canonical.safetensors`` and ``folder/canonical.json`` (each atomically); returns both paths."""
    from safetensors.torch import save_file

    folder = Path(folder)
    stored = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    weights = atomic_write(
        folder / "canonical.safetensors",
        lambda tmp: save_file(stored, str(tmp), metadata={"format": "pt", "invertavatar.format": CANONICAL_FORMAT}),
    )
    description = canonical_description(stored, prior_config, info=info, box_size=box_size)
    meta = atomic_write_text(folder / "canonical.json", json.dumps(description, indent=2, default=str) + "\n")
    return weights, meta
