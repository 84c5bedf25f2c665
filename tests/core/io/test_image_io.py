"""Image and video files: exact round trips, clear errors, atomic writes."""

import pytest
import torch

from invertavatar_core.io.media import (
    ImageReadError,
    VideoWriteError,
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


def _assert_no_banner(message: str) -> None:
    assert "\n" not in message, message
    for noise in ("ffmpeg version", "configuration:", "built with", "Copyright", "FFMPEG"):
        assert noise not in message, message


def test_ffmpeg_errors_quote_one_relevant_line(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    for read in (video_frame_count, read_video_frames):
        with pytest.raises(ImageReadError) as info:
            read(tmp_path / "bad.mp4")
        message = str(info.value)
        _assert_no_banner(message)
        assert message.startswith(f"{tmp_path / 'bad.mp4'}: not a readable video (") and "moov atom" in message


def test_a_file_without_video_says_so(tmp_path):
    import subprocess

    import imageio_ffmpeg

    audio = tmp_path / "tone.m4a"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=0.2", str(audio)]
    subprocess.run(command, check=True)
    for read in (video_frame_count, read_video_frames):
        with pytest.raises(ImageReadError, match=r"tone.m4a: not a readable video \(no video stream\)$"):
            read(audio)


def test_a_failed_video_write_is_an_error_naming_the_file(tmp_path, capfd):
    frames = [torch.zeros(3, 8, 8)] * 2
    with pytest.raises(VideoWriteError) as info:  # no container for this suffix
        write_video(frames, tmp_path / "clip.nosuchformat")
    message = str(info.value)
    _assert_no_banner(message)
    assert message.startswith(f"{tmp_path / 'clip.nosuchformat'}: could not write the video (")
    assert "output format" in message and ".tmp-" not in message  # the user's name, not our temporary's
    assert list(tmp_path.iterdir()) == []  # neither an empty video nor a temporary is left
    assert "ffmpeg" not in capfd.readouterr().err  # nothing leaked to the terminal either
