"""Finding a face in a frame of any size: a full-frame pass for where faces are, a crop pass for landmarks.

MediaPipe FaceMesh alone looks for faces with its short-range detector on the whole image scaled
to 128 pixels, so a face under about a tenth of a 1080p frame's width is not found. Here:

1. **Full-frame pass**: MediaPipe's full-range face detector (the BlazeFace model for faces up to
   about 5 m away, bundled with the ``mediapipe`` wheel) on the frame scaled down so that its
   longer side is at most ``detect_size`` pixels gives a box around every face, down to about 5 %
   of the frame's width and anywhere in it. Where it finds none (a close-up filling the frame is
   the short-range model's case), FaceMesh runs on the same downscaled frame, and where that
   finds none either, the detector runs again on the frame shrunk inside a black border (a face
   larger than the frame).
2. **Crop pass**: FaceMesh on a square crop of the *full-resolution* frame around one face,
   :data:`REFINE_MARGIN` times the size of its output crop box (loose enough for a profile, where
   the eyes' distance, and so the box, shrinks), gives the 478 landmarks, mapped back to frame pixels.

Faces are ranked largest first (by the area of the detector's box, or of the landmarks' box in
the fallback); ``face_index`` picks one. In a video the chosen face is followed: each frame first
tries the crop pass around the previous frame's face, and only when that fails runs the
full-frame pass and takes the face nearest the previous one.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from invertavatar_faceverse.face_crop import CropBox, by_size, crop_box, nearest_face

__all__ = ["REFINE_MARGIN", "FaceFinder", "FoundFace"]

REFINE_MARGIN = 1.4
"""Side of the crop-pass square over the side of the face's output crop box (a profile needs more than 1.25)."""
DETECTION_TO_CROP = 1.5
"""Output crop box side over the side of the full-range detector's box (measured on frontal faces: 1.47)."""
FOLLOW_DISTANCE = 0.5
"""In a video, a face found anew counts as the followed one when its centre is within this
fraction of the previous face's box side from the previous centre."""


@dataclass(frozen=True)
class FoundFace:
    """What :meth:`FaceFinder.find` found in one frame.

    ``landmarks (478, 2)`` in frame pixels, or None with ``reason`` (``"no face"``,
    ``"fewer faces than --face-index"`` or ``"followed face lost"``); ``faces`` is the number of
    faces the full-frame pass saw (0 when the frame was not searched because the followed face was
    found directly).
    """

    landmarks: Tensor | None
    faces: int
    reason: str | None = None


def _scaled(box: CropBox, factor: float) -> CropBox:
    """The square with the same centre as ``box`` and ``factor`` times its side."""
    side = box.side * factor
    cx, cy = box.x0 + box.side / 2, box.y0 + box.side / 2
    return CropBox(cx - side / 2, cy - side / 2, side)


def _centre_distance(a: CropBox, b: CropBox) -> float:
    return math.hypot(a.x0 + a.side / 2 - b.x0 - b.side / 2, a.y0 + a.side / 2 - b.y0 - b.side / 2)


class FaceFinder:
    """Full-frame pass plus crop pass over ``(H, W, 3)`` uint8 RGB frames (see the module docs).

    Args:
        landmarks: a landmark detector with ``detect_all(image) -> [(478, 2)]`` largest first
            (the registry's ``mediapipe`` detector).
        detect_size: longer side, in pixels, the full-frame pass scales a larger frame down to.
        refine_size: side of the crop-pass image.
        min_confidence: the full-range detector's score threshold.
    """

    def __init__(self, landmarks, *, detect_size: int = 960, refine_size: int = 512, min_confidence: float = 0.5):
        from mediapipe.python.solutions import face_detection

        from invertavatar_faceverse.mediapipe_detector import _quiet_native_stderr

        self.landmarks = landmarks
        self.detect_size = detect_size
        self.refine_size = refine_size
        self._quiet = _quiet_native_stderr
        with self._quiet():
            # model_selection=1: the full-range model (faces up to about 5 m from the camera).
            self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
            # One run waits for the graph's worker threads, so that what they log is held back too.
            self._detector.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def close(self) -> None:
        """Release MediaPipe's graph (the landmark detector is the caller's)."""
        self._detector.close()

    def _downscaled(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = frame.shape[:2]
        factor = math.ceil(max(h, w) / self.detect_size)
        if factor <= 1:
            return frame, 1.0
        # An integer box filter: the detector needs no finer resampling, and it is several times faster.
        small = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).reduce(factor))
        return small, small.shape[1] / w

    def _detect(self, image: np.ndarray) -> list[tuple[float, CropBox]]:
        """The full-range detector on ``image``: (area, output-crop-sized square) per face, in its pixels."""
        h, w = image.shape[:2]
        with self._quiet():
            result = self._detector.process(np.ascontiguousarray(image))
        found = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            side = DETECTION_TO_CROP * max(box.width * w, box.height * h)
            cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
            found.append((box.width * w * box.height * h, CropBox(cx - side / 2, cy - side / 2, side)))
        return found

    def boxes(self, frame: np.ndarray) -> list[CropBox]:
        """Full-frame pass: crop-pass squares around every face in ``frame`` (frame pixels), largest first."""
        small, scale = self._downscaled(frame)
        found = self._detect(small)
        if not found:  # a close-up: the short-range model inside FaceMesh
            found = [(0.0, crop_box(points)) for points in by_size(self.landmarks.detect_all(small))]
        if not found:
            # A face larger than the frame (a selfie cut at the chin) is found once the frame is
            # shrunk inside a black border twice its size.
            h, w = small.shape[:2]
            border = np.zeros((2 * h, 2 * w, 3), dtype=np.uint8)
            border[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = small
            found = [(area, CropBox(box.x0 - w // 2, box.y0 - h // 2, box.side)) for area, box in self._detect(border)]
        found.sort(key=lambda item: item[0], reverse=True)  # stable: the fallback's order is kept
        return [_scaled(CropBox(box.x0 / scale, box.y0 / scale, box.side / scale), REFINE_MARGIN) for _, box in found]

    def refine(self, frame: np.ndarray, box: CropBox) -> Tensor | None:
        """Crop pass: landmarks ``(478, 2)`` in frame pixels of the face centred in ``box``, or None."""
        x0, y0 = round(box.x0), round(box.y0)
        side = max(1, round(box.side))
        h, w = frame.shape[:2]
        # Only the square is copied; where it leaves the frame it stays black, which the detector ignores.
        square = np.zeros((side, side, 3), dtype=np.uint8)
        top, left, bottom, right = max(0, y0), max(0, x0), min(h, y0 + side), min(w, x0 + side)
        if bottom <= top or right <= left:
            return None
        square[top - y0 : bottom - y0, left - x0 : right - x0] = frame[top:bottom, left:right]
        crop = np.asarray(Image.fromarray(square).resize((self.refine_size, self.refine_size), Image.BILINEAR))
        faces = self.landmarks.detect_all(crop)
        if not faces:
            return None
        centre = (self.refine_size / 2, self.refine_size / 2)
        points = nearest_face(faces, centre)
        return points * (side / self.refine_size) + torch.tensor([x0, y0], dtype=points.dtype)

    def find(self, frame: np.ndarray, face_index: int = 0, follow: Tensor | None = None) -> FoundFace:
        """The face to use in ``frame``: the ``face_index``-th largest, or the one following ``follow``.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            face_index: rank by size (0: the largest) when nothing is followed yet.
            follow: landmarks ``(478, 2)`` of the face chosen in the previous frame (videos).
        """
        if follow is not None:
            previous = crop_box(follow)
            points = self.refine(frame, _scaled(previous, REFINE_MARGIN))
            if points is not None and _centre_distance(crop_box(points), previous) < FOLLOW_DISTANCE * previous.side:
                return FoundFace(points, 0)
        candidates = self.boxes(frame)
        if not candidates:
            return FoundFace(None, 0, "no face")
        if follow is not None:
            target = _scaled(crop_box(follow), REFINE_MARGIN)
            near = [b for b in candidates if _centre_distance(b, target) < FOLLOW_DISTANCE * target.side]
            for box in sorted(near, key=lambda b: _centre_distance(b, target)):
                points = self.refine(frame, box)
                if points is not None:
                    return FoundFace(points, len(candidates))
            return FoundFace(None, len(candidates), "followed face lost")
        confirmed = 0
        for box in candidates:
            points = self.refine(frame, box)
            if points is None:
                continue  # a detection FaceMesh does not confirm is not a face
            if confirmed == face_index:
                return FoundFace(points, len(candidates))
            confirmed += 1
        if confirmed == 0:
            return FoundFace(None, len(candidates), "no face")
        return FoundFace(None, confirmed, "fewer faces than --face-index")
