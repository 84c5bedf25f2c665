"""Square face crops from MediaPipe landmarks (axis-aligned, FFHQ-like framing, no rotation).

The box is centred a tenth of the way from the eyes' midpoint towards the mouth and its side is
``max(4 x eye distance, 3.6 x eye-to-mouth distance)``, the framing of FFHQ's alignment without
its rotation. The head's roll therefore stays in the image, where the fitted camera absorbs it.
(EG3D's "in the wild" recipe, with a 3D landmark fit before cropping, is not reproduced.)
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from invertavatar_faceverse.mediapipe_landmarks import CONTOURS

__all__ = ["CropBox", "crop_box", "crop_image", "smooth_boxes"]


@dataclass(frozen=True)
class CropBox:
    """A square box in image pixels: top-left corner ``(x0, y0)`` and ``side``."""

    x0: float
    y0: float
    side: float

    def to_crop(self, points: Tensor, resolution: int) -> Tensor:
        """Image pixels ``(..., 2)`` -> pixels of the ``resolution`` crop."""
        return (points - points.new_tensor([self.x0, self.y0])) * (resolution / self.side)

    def to_image(self, points: Tensor, resolution: int) -> Tensor:
        """Crop pixels ``(..., 2)`` -> pixels of the original image."""
        return points * (self.side / resolution) + points.new_tensor([self.x0, self.y0])


def crop_box(landmarks: Tensor) -> CropBox:
    """The box around a face from its ``(478, 2)`` landmarks."""
    right = landmarks[list(CONTOURS["right_eye_upper"] + CONTOURS["right_eye_lower"])].mean(0)
    left = landmarks[list(CONTOURS["left_eye_upper"] + CONTOURS["left_eye_lower"])].mean(0)
    mouth = landmarks[[61, 291]].mean(0)
    eyes = 0.5 * (right + left)
    eye_to_mouth = mouth - eyes
    side = max(4.0 * float((left - right).norm()), 3.6 * float(eye_to_mouth.norm()))
    centre = eyes + 0.1 * eye_to_mouth
    return CropBox(float(centre[0]) - side / 2, float(centre[1]) - side / 2, side)


def smooth_boxes(boxes: list[CropBox], sigma: float = 3.0) -> list[CropBox]:
    """Gaussian-smooth a video's boxes over time (sigma in frames; the authors' preprocessing uses 3.0)."""
    if len(boxes) < 2 or sigma <= 0:
        return boxes
    values = torch.tensor([[b.x0 + b.side / 2, b.y0 + b.side / 2, b.side] for b in boxes], dtype=torch.float64)
    t = torch.arange(len(boxes), dtype=torch.float64)
    w = torch.exp(-0.5 * ((t[:, None] - t[None]) / sigma) ** 2)
    smooth = (w @ values) / w.sum(1, keepdim=True)
    return [CropBox(float(cx - s / 2), float(cy - s / 2), float(s)) for cx, cy, s in smooth.tolist()]


def crop_image(image: Tensor, box: CropBox, resolution: int) -> Tensor:
    """``(3, H, W)`` image -> ``(3, R, R)`` crop of ``box`` (edges replicated outside the image)."""
    x0, y0 = round(box.x0), round(box.y0)
    side = max(1, round(box.side))
    h, w = image.shape[-2:]
    pad = (max(0, -x0), max(0, x0 + side - w), max(0, -y0), max(0, y0 + side - h))
    padded = F.pad(image[None], pad, mode="replicate") if any(pad) else image[None]
    top, left = y0 + pad[2], x0 + pad[0]
    region = padded[..., top : top + side, left : left + side]
    return F.interpolate(region, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)[0]
