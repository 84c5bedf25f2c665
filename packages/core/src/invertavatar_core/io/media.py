"""Reading and writing images and videos at the file boundary (uint8 on disk, [-1, 1] in memory).

Every reader names the file and what was wrong with it; every writer is atomic. ffmpeg runs with
``-hide_banner -loglevel error`` and an error quotes only the line that says what went wrong.
"""

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from invertavatar_core.errors import UserError
from invertavatar_core.io.atomic import atomic_write

__all__ = [
    "ImageReadError",
    "VideoWriteError",
    "from_uint8",
    "make_grid",
    "read_image",
    "read_video_frames",
    "save_grid",
    "save_image",
    "to_uint8",
    "video_frame_count",
    "write_video",
]


class ImageReadError(UserError, ValueError):
    """An image or video that is missing, corrupt or not what was expected."""


class VideoWriteError(ValueError):
    """ffmpeg could not write a video (unknown container, odd size for H.264, disk full, ...)."""


_FFMPEG_QUIET = ("-hide_banner", "-loglevel", "error")
_LOG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*")


def _ffmpeg_error(stderr: str, path: Path | None = None, tmp: Path | None = None) -> str:
    """The first line of ffmpeg's stderr that says what went wrong, without banner or log prefixes."""
    for line in stderr.splitlines():
        line = _LOG_PREFIX.sub("", line.strip())
        if not line:
            continue
        if "matches no streams" in line:  # ``-map 0:v:0`` on a file without video
            return "no video stream"
        return line.replace(str(tmp), str(path)) if tmp is not None else line
    return "ffmpeg failed without a message"


def from_uint8(array: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float in [-1, 1]."""
    # A copy: arrays from PIL or imageio may be read-only, which torch warns about.
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_uint8(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [-1, 1] -> ``(H, W, 3)`` uint8 RGB (clamped)."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    image = image.detach().float().cpu().clamp(-1, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return ((image + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def read_image(path: str | Path, resolution: int | None = None) -> Tensor:
    """Read an RGB image as ``(3, H, W)`` float in [-1, 1].

    Args:
        path: image file (PNG, JPEG, ...).
        resolution: if given, the image must be square of this size (no silent resizing).

    Raises:
        ImageReadError: missing or corrupt file, or wrong resolution.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as handle:
            handle.load()
            array = np.asarray(handle.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    if resolution is not None and array.shape[:2] != (resolution, resolution):
        raise ImageReadError(
            f"{path}: expected a {resolution}x{resolution} image, got {array.shape[1]}x{array.shape[0]} "
            f"(crop it with `invertavatar fit`)"
        )
    return from_uint8(array)


def save_image(image: Tensor, path: str | Path) -> Path:
    """Write ``(3, H, W)`` in [-1, 1] as an image file (format from the suffix), atomically."""
    path = Path(path)
    array = to_uint8(image)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=fmt))


def make_grid(images: Tensor | Sequence[Tensor], nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile ``(N, 3, H, W)`` images into one ``(3, H', W')`` image, ``nrow`` per row."""
    if not isinstance(images, Tensor):
        images = torch.stack(list(images))
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = (n + cols - 1) // cols
    grid = torch.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i].detach().float().cpu()
    return grid


def save_grid(images: Tensor | Sequence[Tensor], path: str | Path, nrow: int = 8) -> Path:
    """Save images ``(N, 3, H, W)`` in [-1, 1] as one tiled PNG."""
    return save_image(make_grid(images, nrow=nrow), path)


def _check_video(path: Path) -> None:
    if not path.is_file():
        raise ImageReadError(f"{path}: video file not found")


def video_frame_count(path: str | Path) -> int:
    """Number of frames in a video file."""
    import imageio_ffmpeg

    path = Path(path)
    _check_video(path)
    # Stream copy of the first video stream; ``-progress`` reports the frame count on stdout.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), *_FFMPEG_QUIET, "-nostdin", "-nostats", "-i", str(path)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"]
    result = subprocess.run(command, capture_output=True, text=True)
    counts = re.findall(r"^frame=(\d+)$", result.stdout, flags=re.MULTILINE)
    if result.returncode != 0 or not counts:
        raise ImageReadError(f"{path}: not a readable video ({_ffmpeg_error(result.stderr)})")
    return int(counts[-1])


def read_video_frames(path: str | Path, indices: Sequence[int] | None = None) -> list[Tensor]:
    """Frames of a video as ``(3, H, W)`` floats in [-1, 1]; all of them, or those at ``indices``."""
    import imageio_ffmpeg

    path = Path(path)
    _check_video(path)
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    # ffmpeg prints the stream header on stderr; no output file makes it exit right after.
    header = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True).stderr
    size = re.search(r"Stream #.*Video:.*?(\d{2,5})x(\d{2,5})", header)
    if size is None:
        video_frame_count(path)  # says why at ``-loglevel error`` (the header also holds warnings)
        raise ImageReadError(f"{path}: not a readable video (no video stream)")
    width, height = int(size.group(1)), int(size.group(2))
    wanted = None if indices is None else set(indices)
    frames: dict[int, Tensor] = {}
    seen, frame_bytes = 0, width * height * 3
    # Our own ffmpeg pipe (imageio-ffmpeg's generator leaves its pipes open when a video ends).
    command = [exe, *_FFMPEG_QUIET, "-nostdin", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        while wanted is None or len(frames) < len(wanted):
            raw = process.stdout.read(frame_bytes)
            if len(raw) < frame_bytes:
                break
            if wanted is None or seen in wanted:
                frames[seen] = from_uint8(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            seen += 1
        process.kill()
    if wanted is not None and len(frames) != len(wanted):
        missing = sorted(wanted - set(frames))
        raise ImageReadError(f"{path}: has {seen} frames; frames {missing[:5]} do not exist")
    order = sorted(frames) if indices is None else list(indices)
    return [frames[i] for i in order]


# ``frames`` is a one-shot stream: typed Iterable[Any] so that a runtime checker does not peek at
# (and so consume) its first frame.
def write_video(frames: Iterable[Any], path: str | Path, fps: float = 25.0) -> Path:
    """Write ``(3, H, W)`` frames in [-1, 1] to an H.264 MP4, atomically.

    Raises:
        VideoWriteError: ffmpeg failed (the message quotes its error line, never its banner).
    """
    import imageio_ffmpeg

    path = Path(path)

    def write(tmp: Path) -> None:
        process = None
        # A file, not a pipe, for stderr: a pipe nobody reads while frames go in could fill and block ffmpeg.
        with tempfile.TemporaryFile() as errors:
            try:
                for frame in frames:
                    array = np.ascontiguousarray(to_uint8(frame))
                    if process is None:
                        height, width = array.shape[:2]
                        command = [imageio_ffmpeg.get_ffmpeg_exe(), *_FFMPEG_QUIET, "-y", "-f", "rawvideo"]
                        command += ["-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-", "-an"]
                        command += ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "25", str(tmp)]
                        process = subprocess.Popen(
                            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors
                        )
                    try:
                        process.stdin.write(array.tobytes())
                    except BrokenPipeError:  # ffmpeg quit; its error is read below
                        break
                if process is None:
                    raise VideoWriteError(f"{path}: no frames to write")
            except BaseException:
                if process is not None:
                    process.kill()
                    process.wait()
                raise
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            if process.wait() != 0:
                errors.seek(0)
                why = _ffmpeg_error(errors.read().decode("utf-8", "replace"), path, tmp)
                raise VideoWriteError(f"{path}: could not write the video ({why})")

    return atomic_write(path, write)
