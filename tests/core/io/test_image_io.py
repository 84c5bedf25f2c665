"""Image and video files: exact round trips, clear errors, atomic writes."""

import numpy as np
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


def _pattern(height: int, width: int) -> np.ndarray:
    """An asymmetric uint8 picture: four coloured blocks, so any turn or flip of it is told apart."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = (250, 20, 20)
    image[: height // 2, width // 2 :] = (20, 250, 20)
    image[height // 2 :, : width // 2] = (20, 20, 250)
    image[height // 2 :, width // 2 :] = (240, 240, 30)
    image[: height // 4, : width // 8] = 255  # a white mark in the top-left corner
    return image


@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, 1), (8, -1)])
def test_exif_rotated_photo_reads_upright(tmp_path, orientation, turns):
    from PIL import Image

    from invertavatar_core.io.media import read_image_uint8

    upright = _pattern(48, 64)
    # What a camera stores: the sensor's pixels, turned against the way the picture is meant to be seen.
    stored = np.ascontiguousarray(np.rot90(upright, turns))
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    path = tmp_path / f"photo{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    read = read_image_uint8(path)
    assert read.shape == upright.shape
    assert np.abs(read.astype(int) - upright).mean() < 6  # JPEG noise only
    image = read_image(path)
    assert image.shape == (3, 48, 64) and float(image[0, 2, 2]) > 0.9  # the white mark is top-left


def test_rotation_flagged_video_decodes_upright(tmp_path):
    import subprocess

    import imageio_ffmpeg

    from invertavatar_core.io.media import from_uint8, iter_video_frames, probe_video

    upright = _pattern(64, 48)  # a portrait-shaped picture, as a phone held upright films
    stored = np.ascontiguousarray(np.rot90(upright, -1))  # the sensor's landscape pixels
    plain = write_video([from_uint8(stored)] * 3, tmp_path / "stored.mp4", fps=5.0)
    flagged = tmp_path / "phone.mp4"
    # The display matrix asks players to turn the stored pixels 90 degrees counter-clockwise.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(plain)]
    subprocess.run([*command, "-c", "copy", str(flagged)], check=True)
    info = probe_video(flagged)
    assert (info.width, info.height, info.rotation, info.frames) == (48, 64, 90, 3)
    frames = [frame for _, frame in iter_video_frames(flagged)]
    assert len(frames) == 3 and frames[0].shape == (64, 48, 3)
    assert np.abs(frames[0].astype(int) - upright).mean() < 8  # H.264 noise only
    assert np.abs(frames[0].astype(int) - np.rot90(upright, 2)).mean() > 50
    assert read_video_frames(flagged, [1])[0].shape == (3, 64, 48)


def test_decoding_a_long_clip_holds_one_frame_at_a_time(tmp_path):
    import subprocess
    import tracemalloc

    import imageio_ffmpeg

    from invertavatar_core.io.media import iter_video_frames

    clip = tmp_path / "long.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=100", "-t", "10", "-pix_fmt", "yuv420p"]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *source, str(clip)], check=True)
    frame_bytes = 64 * 64 * 3
    tracemalloc.start()
    try:
        count, checksum = 0, 0
        for index, frame in iter_video_frames(clip):
            assert index == count and frame.shape == (64, 64, 3)
            checksum += int(frame[0, 0, 0])
            count += 1
            if count == 100:
                early_peak = tracemalloc.get_traced_memory()[1]
        late_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 1000 and checksum > 0
    # Holding the clip would take 1000 frames (12 MB); the decoder loop holds a few at any time,
    # and its peak does not grow between frame 100 and frame 1000.
    assert late_peak < 20 * frame_bytes
    assert late_peak - early_peak < 2 * frame_bytes


def test_a_corrupt_image_and_a_clip_cut_short_are_named(tmp_path):
    from invertavatar_core.io.media import iter_video_frames, read_image_uint8

    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ImageReadError, match="notes.txt: not a readable image"):
        read_image_uint8(tmp_path / "notes.txt")
    frames = [torch.full((3, 32, 32), v) for v in (-0.5, 0.0, 0.5)]
    path = write_video(frames, tmp_path / "clip.mp4", fps=5.0)
    with pytest.raises(ImageReadError, match=r"clip.mp4: has 3 frames; frames \[5\] do not exist"):
        list(iter_video_frames(path, [0, 5]))
