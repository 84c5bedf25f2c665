"""MediaPipe FaceMesh as a landmark detector: 478 points (irises refined), still images.

``detect`` returns the largest face in the image; ``detect_all`` every face (up to
``max_faces``), largest first, so a caller can say which one it took and let the user choose.

Needs the ``mediapipe`` extra (``pip install "invertavatar-faceverse[mediapipe]"``; 0.10.21 is
the last wheel that bundles its face models). Points are returned in continuous pixel
coordinates: x = 0 at the left edge of the image, a pixel's centre at ``j + 0.5``.
"""

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from invertavatar_core.plugin.kinds import LandmarkDetectorConfig
from invertavatar_faceverse.face_crop import by_size
from invertavatar_faceverse.mediapipe_landmarks import NUM_LANDMARKS

__all__ = ["MediaPipeLandmarkDetector", "MediaPipeLandmarkDetectorConfig"]


class MediaPipeLandmarkDetectorConfig(LandmarkDetectorConfig):
    """Settings of MediaPipe FaceMesh (static-image mode, refined landmarks, as the released tracker runs it)."""

    name: Literal["mediapipe"] = "mediapipe"
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    """Face detector threshold; below it the image counts as having no face."""
    max_faces: int = Field(4, ge=1)
    """At most this many faces are found per image (the largest is used unless told otherwise)."""


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hold back what MediaPipe's C++ side (TFLite, absl) writes to the process's stderr.

    Building the graph and running it print INFO/WARNING lines ("Created TensorFlow Lite XNNPACK
    delegate", "Feedback manager requires ...") straight to file descriptor 2, between our own
    output and progress bars. They are kept in a temporary file and shown only if the call fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class MediaPipeLandmarkDetector:
    """``detect(image (H, W, 3) uint8 RGB) -> (478, 2)`` pixel (x, y), or None without a face."""

    num_landmarks = NUM_LANDMARKS

    def __init__(self, config: MediaPipeLandmarkDetectorConfig | None = None) -> None:
        self.config = config or MediaPipeLandmarkDetectorConfig()
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:
            raise ImportError(
                "landmark detector 'mediapipe' needs the mediapipe package: "
                'pip install "invertavatar-faceverse[mediapipe]"'
            ) from exc
        with _quiet_native_stderr():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=self.config.max_faces,
                refine_landmarks=True,
                min_detection_confidence=self.config.min_detection_confidence,
            )
            # MediaPipe starts its graph in worker threads that log as they go: one image run
            # here waits for them, so that what they print is held back too.
            self._mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))

    def detect(self, image) -> Tensor | None:
        """Landmarks of the largest face, ``(478, 2)`` float32 pixels, or None."""
        faces = self.detect_all(image)
        return faces[0] if faces else None

    def detect_all(self, image) -> list[Tensor]:
        """Landmarks ``(478, 2)`` float32 pixels of every face found, largest first (empty: no face)."""
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"mediapipe detector: expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}"
            )
        with _quiet_native_stderr():
            result = self._mesh.process(np.ascontiguousarray(array))
        h, w = array.shape[:2]
        faces = []
        for face in result.multi_face_landmarks or []:
            xy = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32)
            if len(xy) != NUM_LANDMARKS:
                raise RuntimeError(
                    f"mediapipe returned {len(xy)} landmarks, expected {NUM_LANDMARKS} (refine_landmarks)"
                )
            faces.append(torch.from_numpy(xy))
        return by_size(faces)

    def close(self) -> None:
        """Release MediaPipe's graph."""
        self._mesh.close()
