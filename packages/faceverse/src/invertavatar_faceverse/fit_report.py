"""What ``invertavatar preprocess`` says about each frame: status, fit error, head angles, jitter.

``report.csv`` in the dataset folder has one row per used frame of every sequence (written or
skipped, and why); ``report.json`` one summary per sequence (counts, skipped frames by reason,
landmark error, jitter). Both are rewritten, atomically, each time a sequence finishes, keeping
the other sequences' rows.

Jitter is the mean change between consecutive used frames (only pairs the same ``--every`` step
apart, not across skipped frames): of the head pose, the angle in degrees between the two
cameras' rotations, and of the expression, the mean and the largest absolute change of a
blendshape weight (docs/dataset-layout.md).
"""

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invertavatar_core.geometry.cameras import split_camera
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.tensor_types import Float

__all__ = ["REPORT_CSV", "REPORT_JSON", "FrameRow", "head_angles", "jitter", "write_report"]

REPORT_CSV = "report.csv"
"""Per-frame report file in the dataset folder."""
REPORT_JSON = "report.json"
"""Per-sequence summaries in the dataset folder."""


@dataclass
class FrameRow:
    """One used frame of a sequence in ``report.csv`` (empty fields: not measured for this frame).

    ``status`` is ``written`` or ``skipped`` (with ``reason``); ``error_px`` / ``error_rel`` the mean
    landmark reprojection error in crop pixels / as a fraction of the face size; ``yaw``, ``pitch``,
    ``roll`` the fitted camera's angles in degrees (see :func:`head_angles`); ``flags`` the fit's
    quality flags, ``;``-separated.
    """

    sequence: str
    frame: str
    source: str
    status: str = "skipped"
    reason: str = ""
    faces: int | str = ""
    error_px: float | str = ""
    error_rel: float | str = ""
    yaw: float | str = ""
    pitch: float | str = ""
    roll: float | str = ""
    expression_max: float | str = ""
    flags: str = ""


def head_angles(camera: Float[Tensor, "T 25"]) -> Float[Tensor, "T 3"]:
    """Yaw, pitch, roll in degrees ``(T, 3)`` of EG3D cameras, measured from the frontal view.

    Yaw is positive when the camera sits towards +x (the subject's left, as
    :func:`~invertavatar_core.geometry.cameras.look_at_camera`'s yaw), pitch when it sits below the
    face looking up, roll when its x axis tilts towards +y.
    """
    cam2world, _ = split_camera(camera.detach().double().cpu())
    forward, right = cam2world[:, :3, 2], cam2world[:, :3, 0]
    yaw = torch.atan2(-forward[:, 0], -forward[:, 2])
    pitch = torch.asin(forward[:, 1].clamp(-1, 1))
    roll = torch.asin(right[:, 1].clamp(-1, 1))
    return torch.rad2deg(torch.stack([yaw, pitch, roll], -1)).float()


def jitter(
    camera: Float[Tensor, "T 25"], expression: Float[Tensor, "T E"], frames: Sequence[int], step: int
) -> dict[str, float] | None:
    """Frame-to-frame change over consecutive used frames (``frames`` numbers ``step`` apart); None without a pair.

    Returns ``pose_degrees`` (mean rotation angle between consecutive cameras),
    ``expression_mean`` (mean absolute change of a weight), ``expression_max`` (largest) and ``pairs``.
    """
    numbers = torch.as_tensor(list(frames))
    pairs = torch.nonzero(numbers[1:] - numbers[:-1] == step).flatten()
    if len(pairs) == 0:
        return None
    rotation = split_camera(camera.detach().double().cpu())[0][:, :3, :3]
    relative = rotation[pairs].transpose(1, 2) @ rotation[pairs + 1]
    cosine = ((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    change = (expression[pairs + 1] - expression[pairs]).detach().abs().cpu()
    return {
        "pose_degrees": float(torch.rad2deg(torch.arccos(cosine)).mean()),
        "expression_mean": float(change.mean()),
        "expression_max": float(change.max()),
        "pairs": len(pairs),
    }


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 5)
    return value


def write_report(root: str | Path, sequence: str, rows: Sequence[FrameRow], summary: Mapping[str, Any]) -> Path:
    """Replace ``sequence``'s rows in ``root/report.csv`` and its entry in ``root/report.json``; returns the csv."""
    root = Path(root)
    names = [f.name for f in fields(FrameRow)]
    kept: list[dict[str, str]] = []
    path = root / REPORT_CSV
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            kept = [row for row in csv.DictReader(handle) if row.get("sequence") != sequence]
    text = io.StringIO()
    out = csv.DictWriter(text, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    out.writeheader()
    out.writerows(kept)
    out.writerows({k: _number(v) for k, v in asdict(row).items()} for row in rows)
    atomic_write_text(path, text.getvalue())
    summaries: dict[str, Any] = {}
    if (root / REPORT_JSON).is_file():
        try:
            summaries = json.loads((root / REPORT_JSON).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summaries = {}
    summaries[sequence] = dict(summary)
    atomic_write_text(root / REPORT_JSON, json.dumps(summaries, indent=2) + "\n")
    return path
