"""Square face crops from MediaPipe landmarks (axis-aligned, no rotation); two recipes.

- ``ffhq`` (:func:`crop_box`, the default): centred a tenth of the way from the eyes' midpoint
  towards the mouth, side ``max(4 x eye distance, 3.6 x eye-to-mouth distance)``, the framing of
  FFHQ's alignment without its rotation.
- ``eg3d`` (:func:`eg3d_crop_box`): EG3D's "in the wild" recipe, which the released model's data
  went through (docs/release-preprocessing.md): a weak-perspective fit of five image points to five
  standard 3D landmarks gives a scale ``s`` and a translation ``t``; the box is centred on ``t``
  with side ``700 s / 300`` (the recipe rescales the image by 300 / s and keeps the central 700 px).
  The standard 3D landmarks are a file the user supplies (:func:`read_reference_landmarks`).

The head's roll stays in the image with both, where the fitted camera absorbs it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from invertavatar_faceverse.mediapipe_landmarks import CONTOURS

__all__ = [
    "CropBox",
    "by_size",
    "crop_box",
    "crop_frame",
    "crop_image",
    "eg3d_crop_box",
    "five_points",
    "nearest_face",
    "read_reference_landmarks",
    "smooth_boxes",
]

EG3D_RESCALE = 300.0
"""The in-the-wild recipe rescales the image so that the fitted scale becomes this many pixels."""
EG3D_KEEP = 700.0
"""... then keeps this central square (of its 1024 crop) before resizing to 512."""
IBUG68_FIVE = ((36, 39), (42, 45), (30,), (48,), (54,))
"""The five points in the 68-point iBUG layout: subject's right / left eye centres (mean of the
corners), nose tip, right / left mouth corners (the order of :func:`five_points`)."""


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


def by_size(faces: Sequence[Tensor]) -> list[Tensor]:
    """Faces' ``(L, 2)`` landmarks ordered largest first (by the area of their bounding box).

    Index 0 is the face ``preprocess`` takes by default; ``--face-index K`` takes ``by_size(faces)[K]``.
    """

    def area(points: Tensor) -> float:
        extent = points.amax(0) - points.amin(0)
        return float(extent[0] * extent[1])

    return sorted(faces, key=area, reverse=True)


def nearest_face(faces: Sequence[Tensor], centre: tuple[float, float]) -> Tensor:
    """The face ``(L, 2)`` whose crop box is centred nearest ``centre`` (x, y) pixels.

    On a crop made around one face, that face is at the centre even when part of a bigger face
    next to it made it into the crop.
    """

    def distance(points: Tensor) -> float:
        box = crop_box(points)
        return (box.x0 + box.side / 2 - centre[0]) ** 2 + (box.y0 + box.side / 2 - centre[1]) ** 2

    return min(faces, key=distance)


def five_points(landmarks: Tensor) -> Tensor:
    """``(478, 2)`` MediaPipe landmarks -> ``(5, 2)``: right / left eye centres, nose tip, right / left mouth."""
    right = landmarks[[33, 133]].mean(0)  # the eye corners, as in the iBUG definition of the eye centre
    left = landmarks[[263, 362]].mean(0)
    return torch.stack([right, left, landmarks[1], landmarks[61], landmarks[291]])


def read_reference_landmarks(path: str | Path) -> Tensor:
    """The five standard 3D landmarks ``(5, 3)`` of the EG3D crop, from the user's file.

    Accepts Deep3DFaceRecon's ``similarity_Lm3D_all.mat`` (field ``lm``, 68 iBUG points; its
    BFM folder) or an ``.npy`` of 68 iBUG or 5 points (float, no pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: 3D reference landmarks not found; the eg3d crop needs Deep3DFaceRecon's "
            "similarity_Lm3D_all.mat (BFM folder; not shipped with invertavatar) or a (68|5, 3) .npy"
        )
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        content = loadmat(str(path))
        if "lm" not in content:
            raise KeyError(f"{path}: no field 'lm' (expected the 68 x 3 standard landmarks)")
        points = np.asarray(content["lm"], dtype=np.float64)
    else:
        points = np.load(path, allow_pickle=False).astype(np.float64)
    if points.shape == (68, 3):
        points = np.stack([points[list(i)].mean(0) for i in IBUG68_FIVE])
    if points.shape != (5, 3):
        raise ValueError(f"{path}: 3D landmarks are {points.shape}, expected (68, 3) iBUG or (5, 3) points")
    return torch.from_numpy(points)


def eg3d_crop_box(landmarks: Tensor, reference: Tensor, image_height: int) -> CropBox:
    """EG3D's in-the-wild box from ``(478, 2)`` image landmarks and the ``(5, 3)`` standard 3D landmarks."""
    points = five_points(landmarks).double()
    x = points[:, 0]
    y = (image_height - 1) - points[:, 1]  # the fit works with y up
    reference = reference.double()
    ones, zeros = torch.ones(5, 1, dtype=torch.float64), torch.zeros(5, 4, dtype=torch.float64)
    rows_x = torch.cat([reference, ones, zeros], 1)
    rows_y = torch.cat([zeros, reference, ones], 1)
    system = torch.cat([rows_x, rows_y])
    k = torch.linalg.lstsq(system, torch.cat([x, y])[:, None]).solution[:, 0]
    scale = 0.5 * float(k[0:3].norm() + k[4:7].norm())
    if not scale > 0:
        raise ValueError("eg3d crop: the five landmarks do not fit the 3D reference (zero scale)")
    side = EG3D_KEEP * scale / EG3D_RESCALE
    cx, cy = float(k[3]), (image_height - 1) - float(k[7])
    return CropBox(cx - side / 2, cy - side / 2, side)


def smooth_boxes(boxes: list[CropBox], sigma: float = 3.0, times: Sequence[int | float] | None = None) -> list[CropBox]:
    """Gaussian-smooth a video's boxes over time (sigma in frames; 3.0 as released, docs/design/preprocessing.md).

    ``times`` are the boxes' frame numbers in the video (default ``0, 1, 2, ...``): with every k-th
    frame used, or frames without a face left out, the weights follow the real time between the
    boxes, so the smoothing spans the same stretch of video whatever was left out.
    """
    if len(boxes) < 2 or sigma <= 0:
        return boxes
    values = torch.tensor([[b.x0 + b.side / 2, b.y0 + b.side / 2, b.side] for b in boxes], dtype=torch.float64)
    if times is None:
        t = torch.arange(len(boxes), dtype=torch.float64)
    else:
        t = torch.as_tensor(list(times), dtype=torch.float64)
        if t.shape != (len(boxes),):
            raise ValueError(f"smooth_boxes: {len(boxes)} boxes but {t.numel()} times")
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


def crop_frame(frame: np.ndarray, box: CropBox, resolution: int) -> Tensor:
    """``(H, W, 3)`` uint8 RGB frame -> ``(3, R, R)`` crop of ``box`` in [-1, 1]; what :func:`crop_image` gives.

    Only the box is converted to floats, so a crop of a 4K frame costs what the crop's size does.
    """
    x0, y0 = round(box.x0), round(box.y0)
    side = max(1, round(box.side))
    h, w = frame.shape[:2]
    top, left = min(max(0, y0), h - 1), min(max(0, x0), w - 1)
    bottom, right = max(min(h, y0 + side), top + 1), max(min(w, x0 + side), left + 1)
    region = frame[top:bottom, left:right]
    pad = ((top - y0, y0 + side - bottom), (left - x0, x0 + side - right), (0, 0))
    if any(p for pair in pad[:2] for p in pair):
        # Edges replicated, as crop_image does (a box reaching past the frame keeps the border colour).
        region = np.pad(region, tuple((max(0, a), max(0, b)) for a, b in pad), mode="edge")
        region = region[max(0, -pad[0][0]) : max(0, -pad[0][0]) + side, max(0, -pad[1][0]) : max(0, -pad[1][0]) + side]
    image = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return F.interpolate(image, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)[0]
