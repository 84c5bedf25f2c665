"""Landmark-contour images for the deformation-aware discriminator (docs/dataset-layout.md).

The discriminator that judges expressions is shown a 3-channel image of the face's landmark
contours beside the render: channel 0 the lips (outer and inner contours), channel 1 the eye
lids, channel 2 the iris centres as dots. Pixels on a contour are +1, the rest -1, at the neural
rendering resolution. ``fit`` and ``synth-heads`` draw it from the frame's MediaPipe landmarks.
"""

import torch
from torch import Tensor

from invertavatar_faceverse.mediapipe_landmarks import CONTOURS, NUM_LANDMARKS

__all__ = ["LANDMARK_MAP_CHANNELS", "LANDMARK_MAP_RESOLUTION", "landmark_contour_map"]

LANDMARK_MAP_RESOLUTION = 128
"""Side of the stored contour images: the paper's neural rendering resolution (128^2, Fig. 8)."""

LANDMARK_MAP_CHANNELS: tuple[tuple[str, ...], ...] = (
    ("lips_upper_outer", "lips_lower_outer", "lips_upper_inner", "lips_lower_inner"),
    ("right_eye_upper", "right_eye_lower", "left_eye_upper", "left_eye_lower"),
    ("right_iris", "left_iris"),
)
"""The named contours drawn into each channel (the irises as their centre point only)."""

_HALF_WIDTH = 0.75
"""Half the drawn line width, in output pixels."""


def _segments(points: Tensor, names: tuple[str, ...], dots: bool) -> Tensor:
    """``(S, 2, 2)`` segments (a dot is a zero-length segment) between finite landmarks."""
    segments = []
    for name in names:
        run = points[list(CONTOURS[name])]
        if dots:
            run = run[:1]
            segments.append(torch.stack([run, run], dim=1))
        else:
            segments.append(torch.stack([run[:-1], run[1:]], dim=1))
    both = torch.cat(segments)
    return both[torch.isfinite(both).flatten(1).all(1)]


def landmark_contour_map(landmarks: Tensor, image_size: int, resolution: int) -> Tensor:
    """``landmarks (478, 2)`` in pixels of an ``image_size`` crop -> contour image ``(3, r, r)`` in {-1, 1}."""
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be ({NUM_LANDMARKS}, 2) MediaPipe points, got {tuple(landmarks.shape)}")
    points = landmarks.detach().float().cpu() * (resolution / image_size)
    out = torch.full((len(LANDMARK_MAP_CHANNELS), resolution, resolution), -1.0)
    for k, names in enumerate(LANDMARK_MAP_CHANNELS):
        segments = _segments(points, names, dots=k == 2)
        if len(segments) == 0:
            continue
        # Only pixels within a line's half width of the segments' box can be on a contour.
        lo = (segments.flatten(0, 1).amin(0) - _HALF_WIDTH - 0.5).floor().clamp(0, resolution).long()
        hi = (segments.flatten(0, 1).amax(0) + _HALF_WIDTH + 0.5).ceil().clamp(0, resolution).long()
        (x0, y0), (x1, y1) = lo.tolist(), hi.tolist()
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = torch.meshgrid(
            torch.arange(y0, y1, dtype=torch.float32) + 0.5,  # pixel centres in the map's pixel units
            torch.arange(x0, x1, dtype=torch.float32) + 0.5,
            indexing="ij",
        )
        pixels = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2)
        a, b = segments[:, 0], segments[:, 1]
        direction = b - a
        length2 = direction.square().sum(-1).clamp_min(1e-12)
        t = (((pixels - a) * direction).sum(-1) / length2).clamp(0, 1)
        distance = (pixels - (a + t[..., None] * direction)).norm(dim=-1).min(dim=1).values
        out[k, y0:y1, x0:x1] = torch.where(distance <= _HALF_WIDTH, 1.0, -1.0).reshape(y1 - y0, x1 - x0)
    return out
