"""Per-frame expression curves as JSON and CSV, under ARKit's blendshape names where the model has them.

ARKit's face tracking reports 52 blendshape coefficients in [0, 1] keyed by fixed identifiers
(:data:`ARKIT_BLENDSHAPES`, its ``ARFaceAnchor.BlendShapeLocation`` raw values such as
``eyeBlink_L``, ``jawOpen``); rigs for game engines and VTubing apps are built against them. A
morphable model is *ARKit-named* when every expression name is such an identifier, or one with
a ``_L``/``_R`` suffix splitting a symmetric ARKit shape into halves. ICT Face Model Light is:
it keeps ARKit's 52 names but splits ``browInnerUp`` and ``cheekPuff`` (53 shapes, no
``tongueOut``). Conversion (:func:`to_arkit`): split halves are averaged (both halves at ``w``
make the whole shape at ``w``), weights are clipped to ARKit's [0, 1], and ARKit shapes the
model lacks are written as 0 and listed under ``not_modelled``. Sides are the subject's own, as
in ARKit (``_L`` is the subject's left).

Files (:func:`curves_json`, :func:`curves_csv`): one row per frame, ``frame`` (the frame
number of the video), ``time`` (seconds, ``frame / fps``), then one column per blendshape. The
JSON also records the model, the source and, for ARKit names, each identifier's Swift spelling
(``eyeBlink_L`` -> ``eyeBlinkLeft``), which some tools use instead.
"""

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from invertavatar_core.tensor_types import Float, Tensor
from invertavatar_core.version import __version__

__all__ = [
    "ARKIT_BLENDSHAPES",
    "ExpressionCurves",
    "NotArkitNamedError",
    "arkit_swift_name",
    "curves_csv",
    "curves_json",
    "non_arkit_names",
    "to_arkit",
]

ARKIT_BLENDSHAPES: tuple[str, ...] = (
    # Left eye, right eye
    *(f"eye{s}_L" for s in ("Blink", "LookDown", "LookIn", "LookOut", "LookUp", "Squint", "Wide")),
    *(f"eye{s}_R" for s in ("Blink", "LookDown", "LookIn", "LookOut", "LookUp", "Squint", "Wide")),
    # Mouth and jaw
    "jawForward",
    "jawLeft",
    "jawRight",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmile_L",
    "mouthSmile_R",
    "mouthFrown_L",
    "mouthFrown_R",
    "mouthDimple_L",
    "mouthDimple_R",
    "mouthStretch_L",
    "mouthStretch_R",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPress_L",
    "mouthPress_R",
    "mouthLowerDown_L",
    "mouthLowerDown_R",
    "mouthUpperUp_L",
    "mouthUpperUp_R",
    # Eyebrows, cheeks, nose, tongue
    "browDown_L",
    "browDown_R",
    "browInnerUp",
    "browOuterUp_L",
    "browOuterUp_R",
    "cheekPuff",
    "cheekSquint_L",
    "cheekSquint_R",
    "noseSneer_L",
    "noseSneer_R",
    "tongueOut",
)
"""ARKit's 52 blendshape identifiers (``ARFaceAnchor.BlendShapeLocation`` raw values), in Apple's grouping."""

_ARKIT = frozenset(ARKIT_BLENDSHAPES)
_SIDES = ("_L", "_R")


class NotArkitNamedError(ValueError):
    """A model's expression names are not ARKit blendshape identifiers."""


def arkit_swift_name(name: str) -> str:
    """ARKit's Swift spelling of an identifier: ``eyeBlink_L`` -> ``eyeBlinkLeft``, ``jawOpen`` unchanged."""
    if name.endswith("_L"):
        return name[:-2] + "Left"
    if name.endswith("_R"):
        return name[:-2] + "Right"
    return name


def _arkit_target(name: str) -> str | None:
    """The ARKit identifier ``name`` feeds: itself, the whole of a split half, or None."""
    if name in _ARKIT:
        return name
    if name[-2:] in _SIDES and name[:-2] in _ARKIT:
        return name[:-2]
    return None


def non_arkit_names(names: Sequence[str]) -> list[str]:
    """The expression names that are neither ARKit identifiers nor split halves of one (empty: ARKit-named)."""
    return [name for name in names if _arkit_target(name) is None]


@dataclass(frozen=True)
class ExpressionCurves:
    """Expression weights over time: ``values (T, K)`` for ``names`` (K) at ``frames`` (T numbers) and ``times`` (s).

    ``model`` names the morphable model; ``naming`` is ``"arkit"`` or ``"model"`` (the model's own
    names); ``not_modelled``: ARKit shapes the model lacks (written as 0); ``clipped``: how many
    values were clipped into [0, 1]; ``source``: free-form JSON about where the frames came from.
    """

    names: tuple[str, ...]
    values: Float[Tensor, "T K"]
    frames: tuple[int, ...]
    times: tuple[float, ...]
    model: str
    naming: str = "model"
    not_modelled: tuple[str, ...] = ()
    clipped: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, k = self.values.shape
        if k != len(self.names) or t != len(self.frames) or t != len(self.times):
            raise ValueError(
                f"ExpressionCurves: values {tuple(self.values.shape)} for {len(self.names)} names, "
                f"{len(self.frames)} frames and {len(self.times)} times"
            )


def to_arkit(curves: ExpressionCurves) -> ExpressionCurves:
    """The same curves under :data:`ARKIT_BLENDSHAPES` (see the module doc); raises :class:`NotArkitNamedError`."""
    bad = non_arkit_names(curves.names)
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise NotArkitNamedError(
            f"the expressions of morphable model {curves.model!r} are not ARKit-named ({len(bad)} of "
            f"{len(curves.names)} are not ARKit blendshapes: {shown})"
        )
    values = curves.values.float()
    sums = torch.zeros(len(values), len(ARKIT_BLENDSHAPES))
    counts = torch.zeros(len(ARKIT_BLENDSHAPES))
    column = {name: k for k, name in enumerate(ARKIT_BLENDSHAPES)}
    for k, name in enumerate(curves.names):
        target = column[_arkit_target(name)]
        sums[:, target] += values[:, k]
        counts[target] += 1
    averaged = sums / counts.clamp_min(1)
    clipped = int(((averaged < 0) | (averaged > 1)).sum())
    missing = tuple(name for name, count in zip(ARKIT_BLENDSHAPES, counts.tolist(), strict=True) if count == 0)
    return ExpressionCurves(
        names=ARKIT_BLENDSHAPES,
        values=averaged.clamp(0, 1),
        frames=curves.frames,
        times=curves.times,
        model=curves.model,
        naming="arkit",
        not_modelled=missing,
        clipped=clipped,
        source=dict(curves.source),
    )


def curves_json(curves: ExpressionCurves) -> str:
    """The curves as JSON text: metadata, ``names``, one ``{"frame", "time", "weights": {name: value}}`` per frame."""
    rows = [
        {"frame": frame, "time": round(time, 6), "weights": dict(zip(curves.names, map(_round, row), strict=True))}
        for frame, time, row in zip(curves.frames, curves.times, curves.values.tolist(), strict=True)
    ]
    data: dict[str, Any] = {
        "format": "invertavatar.expression_curves",
        "version": 1,
        "invertavatar_version": __version__,
        "naming": curves.naming,
        "model": curves.model,
        "source": curves.source,
        "names": list(curves.names),
    }
    if curves.naming == "arkit":
        data["swift_names"] = {name: arkit_swift_name(name) for name in curves.names}
        data["not_modelled"] = list(curves.not_modelled)
        data["clipped_values"] = curves.clipped
    data["frames"] = rows
    return json.dumps(data, indent=1) + "\n"


def curves_csv(curves: ExpressionCurves) -> str:
    """The curves as CSV text: header ``frame,time,<name>...``, one row per frame."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["frame", "time", *curves.names])
    for frame, time, row in zip(curves.frames, curves.times, curves.values.tolist(), strict=True):
        writer.writerow([frame, f"{time:.6f}", *(f"{_round(v):.6g}" for v in row)])
    return out.getvalue()


def _round(value: float) -> float:
    return round(float(value), 6)
