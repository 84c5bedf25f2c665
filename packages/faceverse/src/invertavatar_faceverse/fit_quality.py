"""Is a fitted frame believable? Per-frame quality flags, and the jitter figure of a fitted sequence.

A landmark fit can converge to the wrong answer with a small reprojection error: a profile fitted
at 55 degrees instead of 85 matches the landmarks to 2-3 % of the face size, because the
landmarks it gets wrong are the ones a detector only guesses. The checks below look for such
frames instead of trusting the error alone. Each flag has a code (machine-readable, for
per-frame reports) and a reason (one sentence for people). The first three mark the fit of the
frame as unreliable (:attr:`FrameQuality.ok` is False); the last two are notes (the model ran out
of range there; the frame is kept):

- ``yaw_mismatch``: the fitted yaw differs by more than ``max_yaw_gap`` degrees from the yaw the
  landmarks imply on their own (:func:`invertavatar_faceverse.landmark_pose.landmark_yaw`: a
  closed-form fit of the rigid landmarks of the side turned towards the camera);
- ``high_error``: the mean reprojection error exceeds ``max_error`` of the face size (well
  below the limit at which the fit is called diverged);
- ``few_landmarks``: fewer than ``min_landmarks`` of the model's valid landmarks were seen and used;
- ``expression_at_bound``: an expression weight sits at the top of its documented range, where
  the model ran out of room to follow the landmarks;
- ``identity_at_bound``: an identity coefficient beyond ``max_identity`` standard deviations,
  a face the model's statistics call implausible.

:func:`frame_jitter` measures the frame-to-frame change of expression weights and head pose; on
a still stretch of video that is noise, and ``invertavatar`` commands print it.
"""

import math
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict

from invertavatar_core.geometry.cameras import split_camera
from invertavatar_core.tensor_types import Float, Tensor

__all__ = [
    "FAILURE_FLAGS",
    "QUALITY_FLAGS",
    "FrameQuality",
    "Jitter",
    "QualityConfig",
    "assess_frames",
    "frame_jitter",
]

QUALITY_FLAGS = ("yaw_mismatch", "high_error", "few_landmarks", "expression_at_bound", "identity_at_bound")
"""Every flag code a :class:`FrameQuality` may carry."""
FAILURE_FLAGS = ("yaw_mismatch", "high_error", "few_landmarks")
"""The flags that mark a frame's fit as unreliable (the others are notes)."""


class QualityConfig(BaseModel):
    """Thresholds of the per-frame quality check (ours; the released tracker has none)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_yaw_gap: float = 20.0
    """Degrees between the fitted yaw and the landmark-implied yaw above which a frame is flagged.
    The landmark estimate is within about 8 degrees of the truth on synthetic heads at any yaw."""
    max_error: float = 0.05
    """Mean reprojection error (fraction of the face size) above which a frame is flagged; good fits
    of real photos reach 1-2.5 %."""
    bound_tolerance: float = 1e-3
    """An expression weight within this of its upper bound counts as at the bound."""
    max_identity: float = 3.5
    """Identity coefficients (in standard deviations) beyond this are flagged."""
    min_landmarks: float = 0.3
    """Fraction of the model's valid landmarks that must carry weight in the fit."""


@dataclass(frozen=True)
class FrameQuality:
    """Quality of one fitted frame: ``flags`` (codes from :data:`QUALITY_FLAGS`) and one ``reasons`` line each."""

    flags: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """False when a flag of :data:`FAILURE_FLAGS` marks the fit as unreliable (notes alone leave it True)."""
        return not any(flag in FAILURE_FLAGS for flag in self.flags)

    def as_dict(self) -> dict:
        """``{"ok": bool, "flags": [...], "reasons": [...]}`` for a JSON report."""
        return {"ok": self.ok, "flags": list(self.flags), "reasons": list(self.reasons)}


def assess_frames(
    *,
    fitted_yaw: Float[Tensor, " T"],
    landmark_yaw: Float[Tensor, " T"],
    relative_error: Float[Tensor, " T"],
    expression: Float[Tensor, "T E"],
    identity: Float[Tensor, "T S"],
    used: Float[Tensor, " T"],
    expression_max: float | None,
    expression_names: tuple[str, ...] | None = None,
    config: QualityConfig | None = None,
) -> tuple[FrameQuality, ...]:
    """One :class:`FrameQuality` per frame from the fitted and the landmark-implied quantities.

    Args:
        fitted_yaw: yaw of each fitted camera, degrees.
        landmark_yaw: yaw the landmarks imply on their own, degrees.
        relative_error: mean reprojection error as a fraction of the face size.
        expression: fitted expression weights.
        identity: fitted identity coefficients (one row per frame).
        used: fraction of the model's valid landmarks that carried weight.
        expression_max: the upper bound of the expression weights (None: unbounded).
        expression_names: names for the reasons (default ``exp<k>``).
        config: thresholds.
    """
    config = config or QualityConfig()
    out = []
    for t in range(len(fitted_yaw)):
        flags, reasons = [], []
        fy, ly = float(fitted_yaw[t]), float(landmark_yaw[t])
        if abs(fy - ly) > config.max_yaw_gap:
            flags.append("yaw_mismatch")
            reasons.append(
                f"fitted yaw {fy:.0f} deg but the landmarks imply {ly:.0f} deg (limit {config.max_yaw_gap:.0f})"
            )
        err = float(relative_error[t])
        if not math.isfinite(err) or err > config.max_error:
            flags.append("high_error")
            reasons.append(f"reprojection error {err:.1%} of the face size (limit {config.max_error:.0%})")
        share = float(used[t])
        if share < config.min_landmarks:
            flags.append("few_landmarks")
            reasons.append(f"only {share:.0%} of the landmarks were usable (limit {config.min_landmarks:.0%})")
        if expression_max is not None and expression.shape[1]:
            top = expression[t] >= expression_max - config.bound_tolerance
            if bool(top.any()):
                k = [int(i) for i in torch.nonzero(top).flatten()]
                names = [expression_names[i] if expression_names else f"exp{i}" for i in k]
                flags.append("expression_at_bound")
                reasons.append(f"expression weight(s) at the upper bound {expression_max:g}: {', '.join(names[:5])}")
        if identity.shape[1]:
            peak = float(identity[t].abs().max())
            if peak > config.max_identity:
                flags.append("identity_at_bound")
                reasons.append(
                    f"identity coefficient at {peak:.1f} standard deviations (limit {config.max_identity:g})"
                )
        out.append(FrameQuality(tuple(flags), tuple(reasons)))
    return tuple(out)


@dataclass(frozen=True)
class Jitter:
    """Frame-to-frame change of a fitted sequence (see :func:`frame_jitter`)."""

    expression: float
    """Mean |w_t - w_(t-1)| over consecutive frames and expression coefficients."""
    expression_max: float
    """Largest single |w_t - w_(t-1)|."""
    rotation: float
    """Mean angle between consecutive head rotations, degrees."""
    translation: float
    """Mean distance between consecutive camera positions, canonical units (about 0.0215 per cm)."""
    frames: int
    """Frames measured."""
    start: int = 0
    """First frame measured."""

    def __str__(self) -> str:
        return (
            f"jitter over {self.frames} frames: expression {self.expression:.4f} mean |dw| "
            f"(max {self.expression_max:.3f}), "
            f"rotation {self.rotation:.3f} deg, translation {self.translation:.5f} per frame"
        )

    def as_dict(self) -> dict:
        """The figures as a JSON-ready dict."""
        return {
            "expression": self.expression,
            "expression_max": self.expression_max,
            "rotation_deg": self.rotation,
            "translation": self.translation,
            "frames": self.frames,
            "start": self.start,
        }


def _rotation_steps(camera: Tensor) -> Tensor:
    """``(T - 1,)`` angles in degrees between consecutive camera rotations."""
    rot = split_camera(camera)[0][:, :3, :3]
    rel = rot[1:].transpose(1, 2) @ rot[:-1]
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def frame_jitter(expression: Float[Tensor, "T E"], camera: Float[Tensor, "T 25"], window: int | None = None) -> Jitter:
    """Frame-to-frame change of ``expression (T, E)`` weights and ``camera (T, 25)`` poses of consecutive frames.

    With ``window``, only the ``window`` consecutive frames whose head turns least are measured
    (the stillest stretch of a video, where any change is noise).
    """
    t = len(expression)
    if t < 2:
        return Jitter(0.0, 0.0, 0.0, 0.0, t)
    steps = _rotation_steps(camera.float())
    start = 0
    if window is not None and 2 <= window < t:
        sums = steps.cumsum(0)
        sums = torch.cat([sums.new_zeros(1), sums])
        totals = sums[window - 1 :] - sums[: len(sums) - window + 1]
        start = int(totals.argmin())
        t = window
    sl = slice(start, start + t)
    delta = expression[sl].float().diff(dim=0).abs()
    position = split_camera(camera[sl].float())[0][:, :3, 3]
    return Jitter(
        expression=float(delta.mean()) if delta.numel() else 0.0,
        expression_max=float(delta.max()) if delta.numel() else 0.0,
        rotation=float(steps[start : start + t - 1].mean()),
        translation=float(position.diff(dim=0).norm(dim=-1).mean()),
        frames=t,
        start=start,
    )
