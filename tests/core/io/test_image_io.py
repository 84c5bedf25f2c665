"""Image and video files: exact round trips, clear errors, atomic writes."""

import pytest
import torch

from invertavatar_core.io.media import (
    ImageReadError,
    make_grid,
    read_image,
    read_video_frames,
    save_image,
    video_frame_count,
    write_video,
)


def _quantised(shape) -> torch.Tensor:
    """Values exactly representable in uint8 after the [-1, 1] mapping."""
    return torch.randint(0, 256, shape).float() / 127.5 - 1


def test_png_round_trip_is_exact(tmp_path):
    image = _quantised((3, 12, 10))
    path = save_image(image, tmp_path / "a.png")
    torch.testing.assert_close(read_image(path), image, rtol=0, atol=1e-6)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not left with mkstemp's private mode


def test_bad_images_are_named(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: image file not found"):
        read_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="corrupt.jpg: not a readable image"):
        read_image(corrupt)
    save_image(torch.zeros(3, 8, 6), tmp_path / "small.png")
    with pytest.raises(ImageReadError, match=r"small.png: expected a 512x512 image, got 6x8"):
        read_image(tmp_path / "small.png", resolution=512)


def test_grid_layout():
    images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    grid = make_grid(images, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (3, 1 + 2 * 5, 1 + 2 * 5)
    assert grid[0, 1, 1] == -1 and grid[0, 1, 6] == 0 and grid[0, 6, 1] == 1 and grid[0, 6, 6] == 0.5


def test_video_round_trip_and_bad_indices(tmp_path):
    frames = [torch.full((3, 32, 32), v) for v in (-0.8, 0.0, 0.8)]
    path = write_video(frames, tmp_path / "clip.mp4", fps=5.0)
    assert video_frame_count(path) == 3
    back = read_video_frames(path, [2, 0])
    assert back[0].mean() == pytest.approx(0.8, abs=0.05) and back[1].mean() == pytest.approx(-0.8, abs=0.05)
    with pytest.raises(ImageReadError, match="has 3 frames; frames \\[7\\] do not exist"):
        read_video_frames(path, [0, 7])


def test_corrupt_video_is_named(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    with pytest.raises(ImageReadError, match="bad.mp4"):
        read_video_frames(tmp_path / "bad.mp4")
