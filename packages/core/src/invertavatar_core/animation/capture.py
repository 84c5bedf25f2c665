"""Frames from a camera, a network stream or a video file, for live driving.

:class:`FrameSource` reads through OpenCV (``cv2``, installed with the faceverse package's
``mediapipe`` extra), which also turns videos that carry a rotation flag upright. A camera or a
stream delivers frames in real time by itself. A file is *paced*: frame ``k`` is due ``k / fps``
seconds after the clock started, a frame that comes early waits for its time, and when the
consumer falls behind, the frames whose time has passed are skipped (decoded, not converted) so
that what is shown keeps up with the clip; ``realtime=False`` reads every frame as fast as it is
asked for. :meth:`FrameSource.sync` restarts the clock (after a slow first frame, say), so a
start-up cost is not paid for with dropped frames.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invertavatar_core.errors import UserError

__all__ = ["CapturedFrame", "FrameSource", "open_capture", "video_frame_rate"]


@dataclass(frozen=True)
class CapturedFrame:
    """One frame read from a source.

    ``index`` in the source, ``time`` in seconds on the source's clock, ``image`` ``(H, W, 3)``
    uint8 RGB, and ``dropped``, the frames skipped just before it to keep up.
    """

    index: int
    time: float
    image: np.ndarray
    dropped: int = 0


def open_capture(source: str | int):
    """An opened ``cv2.VideoCapture`` of a camera index, a URL or a video file; a one-line error otherwise."""
    try:
        import cv2
    except ImportError:
        raise UserError(
            'live capture needs OpenCV: pip install "invertavatar-faceverse[mediapipe]" (it installs opencv)'
        ) from None
    if isinstance(source, str) and "://" not in source and not Path(source).is_file():
        raise UserError(f"--source {source}: file not found (give a video file, a camera index such as 0, or a URL)")
    # OpenCV logs every backend it tried to stderr; the one-line error below says what matters.
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # 0: silent
    try:
        capture = cv2.VideoCapture(source)
    finally:
        cv2.setLogLevel(level)
    if not capture.isOpened():
        kind = "camera" if isinstance(source, int) else "stream or video"
        raise UserError(f"--source {source}: could not open the {kind} (is it connected and readable?)")
    return capture


def video_frame_rate(path: str | Path, default: float = 25.0) -> float:
    """Frames per second a video file declares (``default`` when it declares none or OpenCV is missing)."""
    try:
        import cv2
    except ImportError:
        return default
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return fps if 1.0 <= fps <= 240.0 else default


class FrameSource:
    """Iterate :class:`CapturedFrame` s of ``source``: a camera index (``0``), a URL or a video file.

    Args:
        source: ``"0"``/``0`` (camera index), ``"rtsp://..."``/``"http://..."`` (stream) or a file path.
        realtime: pace a file at its frame rate, skipping frames when behind (cameras and streams
            are real time by themselves); False reads every frame of a file as fast as asked.
        max_frames: stop after this many frames were yielded (None: until the source ends).
    """

    def __init__(self, source: str | int, *, realtime: bool = True, max_frames: int | None = None) -> None:
        import cv2

        if isinstance(source, str) and source.isdigit():
            source = int(source)
        self.source = source
        self.is_live = isinstance(source, int) or "://" in str(source)
        self._capture = open_capture(source)
        self._cv2 = cv2
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        """Frames per second of the source (30 when it does not say)."""
        count = 0 if self.is_live else int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total_frames: int | None = count if count > 0 else None
        """Frames in a file as its header says (None for cameras and streams)."""
        self.realtime = realtime and not self.is_live
        self.max_frames = max_frames
        self.dropped = 0
        """Frames skipped so far to keep up."""
        self.waited = 0.0
        """Seconds spent waiting for frames that came early."""
        self._start: float | None = None
        self._offset = 0  # the frame that was due when the clock (re)started

    def sync(self) -> None:
        """Restart the clock: the next frame is due now."""
        self._start = None

    def _read(self) -> np.ndarray | None:
        ok, bgr = self._capture.read()
        if not ok:
            return None
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[CapturedFrame]:
        index, yielded, began = -1, 0, time.perf_counter()
        while self.max_frames is None or yielded < self.max_frames:
            dropped = 0
            if self.realtime:
                now = time.perf_counter()
                if self._start is None:
                    self._start, self._offset = now, index + 1
                due = self._offset + int((now - self._start) * self.fps)
                while index + 1 < due:  # behind: skip frames whose time has passed
                    if not self._capture.grab():
                        return
                    index += 1
                    dropped += 1
                wait = self._start + (index + 1 - self._offset) / self.fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                    self.waited += wait
            image = self._read()
            if image is None:
                return
            index += 1
            self.dropped += dropped
            yielded += 1
            clock = index / self.fps if not self.is_live else time.perf_counter() - began
            yield CapturedFrame(index, clock, image, dropped)

    def close(self) -> None:
        """Release the camera or file."""
        self._capture.release()
