"""What ``invertavatar preprocess`` says about each frame: status, fit error, head angles, jitter.

``report.csv`` in the dataset folder has one row per used frame of every sequence (written or
skipped, and why); ``report.json`` one summary per sequence (counts, skipped frames by reason,
landmark error, jitter). Both are rewritten, atomically, each time a sequence finishes, keeping
the other sequences' rows.

Jitter is the frame-to-frame change of the fitted head pose and expression weights
(:func:`invertavatar_faceverse.fit_quality.frame_jitter`) over the longest run of consecutive
used frames (skipped frames break a run), over the whole run and over its stillest stretch, where
any change is noise.
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

__all__ = ["REPORT_CSV", "REPORT_JSON", "FrameRow", "head_angles", "sequence_jitter", "write_report"]

REPORT_CSV = "report.csv"
"""Per-frame report file in the dataset folder."""
REPORT_JSON = "report.json"
"""Per-sequence summaries in the dataset folder."""


@dataclass
class FrameRow:
    """One used frame of a sequence in ``report.csv`` (empty fields: not measured for this frame).

    ``status`` is ``written`` or ``skipped`` (with ``reason``); ``error_px`` / ``error_rel`` the mean
    landmark reprojection error in crop pixels / as a fraction of the face size; ``yaw``, ``pitch``,
    ``roll`` the fitted camera's angles in degrees (see :func:`head_angles`), ``landmark_yaw`` the
    yaw the landmarks imply on their own; ``flags`` the fit's quality flags, ``;``-separated.
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
    landmark_yaw: float | str = ""
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


def sequence_jitter(
    expression: Float[Tensor, "T E"],
    camera: Float[Tensor, "T 25"],
    frames: Sequence[int],
    step: int,
    still: int,
) -> dict[str, Any] | None:
    """Jitter of a fitted video over its longest run of consecutive used frames; None without two.

    ``frames`` are the rows' frame numbers, consecutive when ``step`` apart (frames skipped before
    the fit break a run). Returns ``first``/``last`` (frame numbers of the run), ``all`` (over the
    run) and ``still`` (over its stillest ``still`` frames), each
    :meth:`~invertavatar_faceverse.fit_quality.Jitter.as_dict`.
    """
    from invertavatar_faceverse.fit_quality import frame_jitter

    numbers = list(frames)
    best, start = (0, 0), 0
    for k in range(1, len(numbers) + 1):
        if k == len(numbers) or numbers[k] - numbers[k - 1] != step:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = k
    lo, hi = best
    if hi - lo < 2:
        return None
    expression, camera = expression[lo:hi].detach().cpu(), camera[lo:hi].detach().cpu()
    return {
        "first": numbers[lo],
        "last": numbers[hi - 1],
        "all": frame_jitter(expression, camera).as_dict(),
        "still": frame_jitter(expression, camera, window=still).as_dict(),
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
