"""The MediaPipe FaceMesh landmark format: 478 points, their named contours and fitting weights.

These are facts about the *format* a detector emits (which index is the nose tip, which run of
indices traces the upper lid), not geometry: every sequence below is ordered along its contour.
Sides are the subject's: the right eye appears on the image's left and sits at negative x in
model space (x towards the subject's left, y up, z out of the face).

Indices not named here (about 300 interior points of the cheeks, forehead and nose) have no
published meaning beyond their position on MediaPipe's canonical mesh; a model that cannot place
them marks them invalid (see :func:`named_landmarks`).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CONTOURS",
    "IBUG68_TO_MEDIAPIPE",
    "JAW_LINE",
    "NUM_LANDMARKS",
    "RegionWeights",
    "landmark_region_weights",
    "named_landmarks",
]

NUM_LANDMARKS = 478
"""468 mesh points plus 10 iris points (``refine_landmarks=True``)."""

CONTOURS: dict[str, tuple[int, ...]] = {
    # From the forehead top towards the subject's left, round the chin and back.
    "face_oval": (
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ),
    # Lips, each from the subject's right corner to the left corner.
    "lips_upper_outer": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lips_lower_outer": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "lips_upper_inner": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lips_lower_inner": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    # Eyes and brows, each from the outer (temple) end to the inner (nose) end.
    "right_eye_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "right_eye_lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "left_eye_upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
    "left_eye_lower": (263, 249, 390, 373, 374, 380, 381, 382, 362),
    "right_brow_upper": (70, 63, 105, 66, 107),
    "right_brow_lower": (46, 53, 52, 65, 55),
    "left_brow_upper": (300, 293, 334, 296, 336),
    "left_brow_lower": (276, 283, 282, 295, 285),
    # Irises: centre, then the ring starting at +x and turning towards +y.
    "right_iris": (468, 469, 470, 471, 472),
    "left_iris": (473, 474, 475, 476, 477),
    # Midline from the hairline to the chin (the lips' midpoints are in the lip contours).
    "midline_forehead": (10, 151, 9, 8, 168),
    "nose_ridge": (168, 6, 197, 195, 5, 4, 1, 19, 94, 2),
    "midline_upper_lip": (2, 164, 0, 11, 12, 13),
    "midline_chin": (14, 15, 16, 17, 18, 200, 199, 175, 152),
    # Nose wings from the tip region over the ala down to the nostril base; then the base.
    "right_ala": (4, 45, 220, 115, 48, 64, 98),
    "left_ala": (4, 275, 440, 344, 278, 294, 327),
    "nostril_base": (98, 97, 2, 326, 327),
}
"""Named landmark runs of the MediaPipe FaceMesh format, each ordered along its contour."""

IBUG68_TO_MEDIAPIPE: dict[int, int] = {
    8: 152,  # chin
    17: 70,
    21: 107,
    22: 336,
    26: 300,  # brow ends
    27: 168,
    30: 1,
    33: 2,  # nasion, nose tip, subnasale
    31: 98,
    35: 327,  # nostril wings
    36: 33,
    39: 133,
    42: 362,
    45: 263,  # eye corners
    48: 61,
    51: 0,
    54: 291,
    57: 17,  # outer lip
    60: 78,
    62: 13,
    64: 308,
    66: 14,  # inner lip
}
"""Points that mean the same thing in the 68-point iBUG layout and in MediaPipe's (anchors)."""


def named_landmarks() -> Tensor:
    """``(478,)`` bool: True for indices that belong to a named contour of :data:`CONTOURS`."""
    named = torch.zeros(NUM_LANDMARKS, dtype=torch.bool)
    for run in CONTOURS.values():
        named[list(run)] = True
    return named


JAW_LINE: tuple[int, ...] = (*CONTOURS["face_oval"][12:25], 18, 200, 199, 175)
"""The face contour from below one jaw angle round the chin to the other, and the chin's midline."""


@dataclass(frozen=True)
class RegionWeights:
    """Per-region landmark weights of the fitting loss (the released tracker's, docs/design/preprocessing.md)."""

    lips: float = 5.0  # released tracker
    eyes: float = 50.0  # released tracker
    brows: float = 5.0  # released tracker
    irises: float = 5.0  # released tracker
    jaw: float = 3.0
    """Ours (the tracker counts the jaw line as "other", 1): it is what tells a dropped jaw from
    parted lips, and at 1 its points are outweighed by the lips'. With 3 (and the procedural
    model's prior against lip-only parting) ``jaw_open`` is open in 85 % of the frames of a
    talking-head clip instead of 35 %; 5 gains nothing more and costs pose accuracy."""
    other: float = 1.0  # released tracker


def landmark_region_weights(weights: RegionWeights = RegionWeights()) -> Tensor:
    """``(478,)`` float weight per landmark: lips, eye contours, brows, irises, jaw line, everything else."""
    out = torch.full((NUM_LANDMARKS,), weights.other)
    out[list(JAW_LINE)] = weights.jaw
    groups = {
        "lips": ("lips_upper_outer", "lips_lower_outer", "lips_upper_inner", "lips_lower_inner"),
        "brows": ("right_brow_upper", "right_brow_lower", "left_brow_upper", "left_brow_lower"),
        "eyes": ("right_eye_upper", "right_eye_lower", "left_eye_upper", "left_eye_lower"),
        "irises": ("right_iris", "left_iris"),
    }
    for region, names in groups.items():  # eyes after lips/brows: a shared index takes the eye weight
        for name in names:
            out[list(CONTOURS[name])] = getattr(weights, region)
    return out
