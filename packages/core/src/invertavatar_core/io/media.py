"""Reading and writing images and videos at the file boundary (uint8 on disk, [-1, 1] in memory).

Every reader names the file and what was wrong with it; every writer is atomic. ffmpeg runs with
``-hide_banner -loglevel error`` and an error quotes only the line that says what went wrong.

Readers return pictures upright as they are meant to be seen: a photo's EXIF ``Orientation`` tag
is applied, and a video's rotation (its display matrix or ``rotate`` tag, which phones write
instead of turning the pixels) is applied by ffmpeg while decoding. Videos are decoded one frame
at a time (:func:`iter_video_frames`), so memory does not grow with their length.
"""

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from invertavatar_core.errors import UserError
from invertavatar_core.io.atomic import atomic_write

__all__ = [
    "ImageReadError",
    "VideoInfo",
    "VideoWriteError",
    "from_uint8",
    "iter_video_frames",
    "make_grid",
    "probe_video",
    "read_image",
    "read_image_uint8",
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
    # Contiguous: PIL and ffmpeg take it without another copy.
    return ((image + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def read_image_uint8(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, upright (its EXIF ``Orientation`` applied).

    Raises:
        ImageReadError: missing or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as handle:
            handle.load()
            # Cameras and phones store the sensor's pixels and say in EXIF how to turn them.
            upright = ImageOps.exif_transpose(handle)
            return np.asarray(upright.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None


def read_image(path: str | Path, resolution: int | None = None) -> Tensor:
    """Read an RGB image as ``(3, H, W)`` float in [-1, 1], upright (its EXIF ``Orientation`` applied).

    Args:
        path: image file (PNG, JPEG, ...).
        resolution: if given, the image must be square of this size (no silent resizing).

    Raises:
        ImageReadError: missing or corrupt file, or wrong resolution.
    """
    path = Path(path)
    array = read_image_uint8(path)
    if resolution is not None and array.shape[:2] != (resolution, resolution):
        raise ImageReadError(
            f"{path}: expected a {resolution}x{resolution} image, got {array.shape[1]}x{array.shape[0]} "
            f"(crop it with `invertavatar preprocess`)"
        )
    return from_uint8(array)


def save_image(image: Tensor, path: str | Path, *, compress_level: int | None = None) -> Path:
    """Write ``(3, H, W)`` in [-1, 1] as an image file (format from the suffix), atomically.

    ``compress_level``: PNG's zlib level, 0-9 (PIL's default 6 when None); lossless at every
    level, 1 writes a 512 x 512 frame about 4x faster for files about 15 % larger. JPEGs are
    written at quality 90.
    """
    path = Path(path)
    array = to_uint8(image)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    options = {}
    if fmt == "PNG" and compress_level is not None:
        options["compress_level"] = compress_level
    elif fmt == "JPEG":
        options["quality"] = 90
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=fmt, **options))


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


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns: ``frames``, ``fps``, the upright ``width`` x ``height``, ``rotation``.

    ``rotation`` is the degrees (counter-clockwise) the file asks a player to turn its pixels by;
    the readers here apply it, so ``width`` and ``height`` are those of the frames they return.
    """

    frames: int
    fps: float | None
    width: int
    height: int
    rotation: int


def _header(path: Path) -> str:
    """The description ffmpeg prints of the file's streams (stderr of a run with no output)."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    return subprocess.run(command, capture_output=True, text=True, errors="replace").stderr


def _rotation(header: str) -> int:
    """The first video stream's rotation in degrees (0, 90, 180, 270), from its display matrix or tag."""
    stream = re.search(r"Stream #\S+.*?Video:.*?(?=\n\s*Stream #|\Z)", header, flags=re.DOTALL)
    text = stream.group(0) if stream else header
    found = re.search(r"rotation of (-?[\d.]+) degrees", text) or re.search(r"^\s*rotate\s*:\s*(-?[\d.]+)", text, re.M)
    return 0 if found is None else round(float(found.group(1))) % 360


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


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate, upright size and rotation of a video, without decoding it.

    Raises:
        ImageReadError: missing file, not a video, or no video stream (the message quotes ffmpeg).
    """
    path = Path(path)
    frames = video_frame_count(path)  # also says why an unreadable file is unreadable
    header = _header(path)
    size = re.search(r"Stream #.*Video:.*?(\d{2,5})x(\d{2,5})", header)
    if size is None:
        raise ImageReadError(f"{path}: not a readable video (no video stream)")
    width, height = int(size.group(1)), int(size.group(2))
    rotation = _rotation(header)
    if rotation in (90, 270):
        width, height = height, width
    fps = re.search(r"Stream #.*Video:.*?([\d.]+) fps", header)
    return VideoInfo(frames, None if fps is None else float(fps.group(1)), width, height, rotation)


def _read_ppm_header(stream) -> tuple[int, int] | None:
    """``(width, height)`` of the next binary PPM image in ``stream`` (three header lines), None at its end."""
    magic = stream.readline()
    if not magic:
        return None
    size, maxval = stream.readline().split(), stream.readline().strip()
    if magic.strip() != b"P6" or len(size) != 2 or maxval != b"255":
        raise ValueError(f"unexpected frame header {magic + b' '.join(size)!r}")
    return int(size[0]), int(size[1])


def iter_video_frames(path: str | Path, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Decode a video one frame at a time: ``(index, (H, W, 3) uint8 RGB)``, upright, in file order.

    Args:
        path: video file.
        indices: the frames wanted (any order; yielded in file order); None: every frame.
            Decoding stops after the last wanted frame.

    Raises:
        ImageReadError: unreadable file, no video stream, or a wanted frame past the end.
    """
    import imageio_ffmpeg

    path = Path(path)
    _check_video(path)
    wanted = None if indices is None else set(indices)
    if wanted is not None and not wanted:
        return
    last = None if wanted is None else max(wanted)
    # Each frame as a PPM image: its own header carries its size, so what ffmpeg outputs after
    # applying the rotation (autorotate is on by default) needs no guessing from the file's header.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), *_FFMPEG_QUIET, "-nostdin", "-i", str(path), "-map", "0:v:0"]
    command += ["-f", "image2pipe", "-vcodec", "ppm", "-pix_fmt", "rgb24", "-"]
    seen = found = 0
    failed = False
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            while last is None or seen <= last:
                size = _read_ppm_header(process.stdout)
                raw = b"" if size is None else process.stdout.read(size[0] * size[1] * 3)
                if size is None or len(raw) < size[0] * size[1] * 3:
                    failed = process.wait() != 0  # the end of the file, or ffmpeg gave up
                    break
                if wanted is None or seen in wanted:
                    found += 1
                    yield seen, np.frombuffer(raw, dtype=np.uint8).reshape(size[1], size[0], 3)
                seen += 1
        finally:
            process.kill()
            process.wait()
            process.stdout.close()
        if seen == 0 or failed:
            errors.seek(0)
            why = _ffmpeg_error(errors.read().decode("utf-8", "replace"))
            if seen == 0:
                raise ImageReadError(f"{path}: not a readable video ({why})")
            raise ImageReadError(f"{path}: decoding stopped after frame {seen - 1} ({why})")
    if wanted is not None and found != len(wanted):
        missing = sorted(i for i in wanted if i >= seen)
        raise ImageReadError(f"{path}: has {seen} frames; frames {missing[:5]} do not exist")


def read_video_frames(path: str | Path, indices: Sequence[int] | None = None) -> list[Tensor]:
    """Frames of a video as ``(3, H, W)`` floats in [-1, 1], upright; all of them, or those at ``indices``.

    Holds every frame in memory: for long videos stream them with :func:`iter_video_frames`.
    """
    frames = {i: from_uint8(array) for i, array in iter_video_frames(path, indices)}
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
