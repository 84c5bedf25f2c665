"""Reading and writing images and videos at the file boundary (uint8 on disk, [-1, 1] in memory).

Every reader names the file and what was wrong with it; every writer is atomic.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from invertavatar_core.atomic import atomic_write

__all__ = [
    "ImageReadError",
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


class ImageReadError(ValueError):
    """An image or video that is missing, corrupt or not what was expected."""


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


def _video_reader(path: Path):
    import imageio.v2 as imageio

    if not path.is_file():
        raise ImageReadError(f"{path}: video file not found")
    try:
        return imageio.get_reader(str(path), format="FFMPEG")
    except Exception as exc:  # noqa: BLE001 - imageio raises several types for bad files
        raise ImageReadError(f"{path}: not a readable video ({exc})") from None


def video_frame_count(path: str | Path) -> int:
    """Number of frames in a video file."""
    reader = _video_reader(Path(path))
    try:
        return int(reader.count_frames())
    finally:
        reader.close()


def read_video_frames(path: str | Path, indices: Sequence[int] | None = None) -> list[Tensor]:
    """Frames of a video as ``(3, H, W)`` floats in [-1, 1]; all of them, or those at ``indices``."""
    path = Path(path)
    reader = _video_reader(path)
    wanted = None if indices is None else set(indices)
    frames: dict[int, Tensor] = {}
    seen = 0
    try:
        for index, frame in enumerate(reader):
            seen = index + 1
            if wanted is None or index in wanted:
                frames[index] = from_uint8(np.asarray(frame)[..., :3])
            if wanted is not None and len(frames) == len(wanted):
                break
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: video decoding failed after {len(frames)} frames ({exc})") from None
    finally:
        reader.close()
    if wanted is not None and len(frames) != len(wanted):
        missing = sorted(wanted - set(frames))
        raise ImageReadError(f"{path}: has {seen} frames; frames {missing[:5]} do not exist")
    order = sorted(frames) if indices is None else list(indices)
    return [frames[i] for i in order]


def write_video(frames: Iterable[Tensor], path: str | Path, fps: float = 25.0) -> Path:
    """Write ``(3, H, W)`` frames in [-1, 1] to an H.264 MP4, atomically."""
    import imageio.v2 as imageio

    path = Path(path)

    def write(tmp: Path) -> None:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1)
        try:
            for frame in frames:
                writer.append_data(to_uint8(frame))
        finally:
            writer.close()

    return atomic_write(path, write)
