"""``invertavatar preprocess``: faces found at any size, skipped frames reported, resumable, clear errors.

Faces are real portraits from the shared assets pasted into generated frames; the landmark fit
is shortened (these tests are about what is found, written, skipped and kept, not fit quality).
"""

import csv
import importlib.util
import json

import numpy as np
import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.io.media import read_image, save_image, to_uint8, write_video
from invertavatar_faceverse.face_crop import CropBox, crop_box, crop_image, smooth_boxes

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed")
SMALL = ["--resolution", "64", "--uv-resolution", "16", "--no-progress"]


@pytest.fixture(scope="module")
def detector():
    if not HAS_MEDIAPIPE:
        pytest.skip("mediapipe (the [mediapipe] extra) is not installed")
    from invertavatar_faceverse.mediapipe_detector import MediaPipeLandmarkDetector

    found = MediaPipeLandmarkDetector()
    yield found
    found.close()


@pytest.fixture(scope="module")
def portraits(assets_dir, detector):
    """Two people's photos ``(3, H, W)`` and their landmarks, from the shared assets."""
    out = {}
    for name in ("obama", "biden"):
        photo = assets_dir / "media" / f"{name}_official_portrait.jpg"
        if not photo.is_file():
            pytest.skip(f"portrait missing: {photo}")
        image = read_image(photo)
        out[name] = (image, detector.detect(to_uint8(image)))
    return out


def _face(portraits, name: str, side: int, zoom: float = 1.0) -> torch.Tensor:
    """The person's face crop, ``side`` pixels, the face ``zoom`` times its usual framing."""
    image, landmarks = portraits[name]
    box = crop_box(landmarks)
    inner = box.side / zoom
    centre = (box.x0 + box.side / 2, box.y0 + box.side / 2)
    return crop_image(image, CropBox(centre[0] - inner / 2, centre[1] - inner / 2, inner), side)


# A short fit is not a good one: its quality check would flag it. These tests are about finding,
# writing and resuming; the quality check has its own tests (and the skipping of flagged frames below).
LENIENT = {"max_yaw_gap": 180.0, "max_error": 1.0, "bound_tolerance": -1.0, "max_identity": 1e9, "min_landmarks": 0.0}


@pytest.fixture
def fit_calls(monkeypatch):
    """Count landmark fits (frames and options of each), and make each a short one."""
    from invertavatar_faceverse import fitting
    from invertavatar_faceverse.fit_quality import QualityConfig

    real = fitting.fit_video
    calls = []

    def short_fit(model, landmarks, image_size, config=None, **kwargs):
        calls.append((len(landmarks), kwargs))
        config = (config or fitting.FittingConfig()).model_copy(
            update={"steps": 20, "identity_steps": 40, "quality": QualityConfig(**LENIENT)}
        )
        return real(model, landmarks, image_size, config, **kwargs)

    monkeypatch.setattr(fitting, "fit_video", short_fit)
    return calls


def _report(out) -> list[dict]:
    with open(out / "report.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.assets
def test_a_small_off_centre_face_in_a_1080p_frame_is_found(portraits, detector):
    from invertavatar_faceverse.face_finder import FaceFinder

    finder = FaceFinder(detector)
    try:
        # The face's crop box is 200 px wide (the face itself about 135 px: 7 % of the width), near a corner.
        face = _face(portraits, "obama", 200)
        frame = torch.full((3, 1080, 1920), -0.2)
        frame[:, 60:260, 1660:1860] = face
        found = finder.find(np.ascontiguousarray(to_uint8(frame)))
        assert found.landmarks is not None and found.faces == 1
        image, landmarks = portraits["obama"]
        box = crop_box(landmarks)
        expected = box.to_crop(landmarks, 200) + torch.tensor([1660.0, 60.0])
        assert float((found.landmarks - expected).norm(dim=-1).mean()) < 3.0  # pixels of the 1080p frame
        # A blank frame has no face.
        assert finder.find(np.zeros((1080, 1920, 3), dtype=np.uint8)).reason == "no face"
    finally:
        finder.close()


@pytest.mark.assets
def test_two_faces_the_largest_is_taken_and_said(portraits, detector, fit_calls, tmp_path, capsys):
    canvas = torch.full((3, 200, 360), -1.0)
    canvas[:, 20:180, 10:170] = _face(portraits, "biden", 160)  # the larger face, on the left
    canvas[:, 50:150, 240:340] = _face(portraits, "obama", 100)
    photo = save_image(canvas, tmp_path / "two.png")
    out = tmp_path / "dataset"
    assert main(["preprocess", str(photo), "--out", str(out), *SMALL]) == 0
    said = capsys.readouterr().out
    assert "two: 2 faces in two.png; taking the largest; --face-index K picks another" in said
    written = FitDataset(out)[0].image[0]
    faces = detector.detect_all(to_uint8(canvas))
    expected = [crop_image(canvas, crop_box(face), 64) for face in faces]
    assert (written - expected[0]).abs().mean() < 0.1 < (written - expected[1]).abs().mean()
    assert _report(out)[0]["faces"] == "2"


def _clip(portraits, frames: list[torch.Tensor | None], path, side: int = 160):
    """A clip of the face drifting right 2 px a frame (None: a frame without a face)."""
    face = _face(portraits, "obama", side - 40)
    out = []
    for k, kind in enumerate(frames):
        frame = torch.full((3, side, side), -0.3)
        if kind is not None:
            frame[:, 20 : side - 20, 6 + 2 * k : side - 34 + 2 * k] = face
        out.append(frame)
    return write_video(out, path, fps=10.0)


@pytest.mark.assets
def test_a_clip_with_face_less_frames_skips_and_reports_them(portraits, fit_calls, tmp_path, capsys):
    frames: list = [1, 1, None, None, 1, 1, 1, 1]
    clip = _clip(portraits, frames, tmp_path / "talk.mp4")
    out = tmp_path / "dataset"
    assert main(["preprocess", str(clip), "--out", str(out), *SMALL]) == 0
    said = capsys.readouterr().out
    assert "talk: 6 of 8 frames written; skipped: 2 no face (00002, 00003)" in said
    assert "talk: jitter (frames 00004-00007, per frame): head pose" in said
    assert [n for _, n in map(FitDataset(out).frame_name, range(6))] == [
        "00000",
        "00001",
        "00004",
        "00005",
        "00006",
        "00007",
    ]
    rows = {row["frame"]: row for row in _report(out)}
    assert rows["00002"]["status"] == "skipped" and rows["00002"]["reason"] == "no face"
    assert rows["00004"]["status"] == "written" and 0 < float(rows["00004"]["error_rel"]) < 0.1
    summary = json.loads((out / "report.json").read_text())["talk"]
    assert summary["frames_written"] == 6 and summary["skipped"] == {"no face": ["00002", "00003"]}
    # Jitter over the longest run of neighbours: 00001 -> 00004 is not a step of the video.
    assert (summary["jitter"]["first"], summary["jitter"]["last"], summary["jitter"]["all"]["frames"]) == (4, 7, 4)

    # A clip without any face is an error naming it.
    empty = _clip(portraits, [None, None, None], tmp_path / "empty.mp4")
    assert main(["preprocess", str(empty), "--out", str(out), *SMALL]) == 2
    assert "empty.mp4: no face found in any of its 3 used frames" in capsys.readouterr().err


@pytest.mark.assets
def test_frames_the_fit_fails_or_flags_are_skipped_and_reported(portraits, fit_calls, tmp_path, monkeypatch, capsys):
    import dataclasses

    from invertavatar_faceverse import fitting
    from invertavatar_faceverse.fit_quality import FrameQuality

    short_fit = fitting.fit_video

    def judged(model, landmarks, image_size, config=None, **kwargs):
        # Frame 1: an error above the 10 % limit; frame 2: a quality flag.
        result = short_fit(model, landmarks, image_size, config, **kwargs)
        error = result.error.clone()
        error[1] = 0.5 * result.face_size[1]
        quality = list(result.quality)
        quality[2] = FrameQuality(("yaw_mismatch",), ("fitted yaw 10 deg but the landmarks imply 70 deg (limit 20)",))
        return dataclasses.replace(result, error=error, quality=tuple(quality))

    monkeypatch.setattr(fitting, "fit_video", judged)
    clip = _clip(portraits, [1] * 5, tmp_path / "talk.mp4")
    out = tmp_path / "dataset"
    assert main(["preprocess", str(clip), "--out", str(out), *SMALL]) == 0
    said = capsys.readouterr().out
    assert "talk: 3 of 5 frames written; skipped: 1 fit failed (00001); 1 flagged: yaw_mismatch (00002)" in said
    rows = {row["frame"]: row for row in _report(out)}
    assert rows["00001"]["reason"] == "fit failed (landmark error 50.0% of the face size, limit 10%)"
    assert rows["00002"]["flags"] == "yaw_mismatch" and "landmarks imply 70 deg" in rows["00002"]["reason"]
    assert [row["status"] for row in rows.values()] == ["written", "skipped", "skipped", "written", "written"]
    # --keep-flagged writes the flagged frame (the fit is reused: only what is written changes).
    assert main(["preprocess", str(clip), "--out", str(out), "--keep-flagged", *SMALL]) == 0
    assert len(FitDataset(out)) == 4 and len(fit_calls) == 1


@pytest.mark.assets
def test_an_interrupted_run_resumes_without_redoing_work(portraits, fit_calls, tmp_path, monkeypatch, capsys):
    from invertavatar_core.data.datasets import FitDatasetWriter
    from invertavatar_faceverse import dataset_fitting
    from invertavatar_faceverse.face_finder import FaceFinder

    clip = _clip(portraits, [1] * 10, tmp_path / "clip.mp4")
    out = tmp_path / "dataset"
    argv = ["preprocess", str(clip), "--out", str(out), *SMALL]
    monkeypatch.setattr(dataset_fitting, "TRACK_SAVE_EVERY", 100)  # only the interruption saves the track
    calls = {"find": 0, "add": 0}
    real_find, real_add = FaceFinder.find, FitDatasetWriter.add
    stop = {"find": None, "add": None}

    def find(self, *args, **kwargs):
        calls["find"] += 1
        if calls["find"] == stop["find"]:
            raise KeyboardInterrupt
        return real_find(self, *args, **kwargs)

    def add(self, *args, **kwargs):
        calls["add"] += 1
        if calls["add"] == stop["add"]:
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(FaceFinder, "find", find)
    monkeypatch.setattr(FitDatasetWriter, "add", add)

    stop["find"] = 5  # Ctrl-C while finding the face in the 5th frame
    assert main(argv) == 130
    assert calls == {"find": 5, "add": 0} and not fit_calls

    calls.update(find=0, add=0)
    stop.update(find=None, add=4)  # Ctrl-C while writing the 4th frame
    assert main(argv) == 130
    assert calls == {"find": 6, "add": 4} and len(fit_calls) == 1  # the 4 frames found before are kept
    assert len(FitDataset(out)) == 3  # the 3 frames fully written are indexed

    calls.update(find=0, add=0)
    stop["add"] = None
    assert main(argv) == 0
    assert calls == {"find": 0, "add": 7} and len(fit_calls) == 1  # nothing found or fitted again
    assert "3 of 10 frames already written; kept" in capsys.readouterr().out
    dataset = FitDataset(out)
    assert [dataset.frame_name(i)[1] for i in range(len(dataset))] == [f"{k:05d}" for k in range(10)]
    assert [row["status"] for row in _report(out)] == ["written"] * 10

    calls.update(find=0, add=0)  # a fourth run has nothing left to do
    assert main(argv) == 0 and calls == {"find": 0, "add": 0}
    assert "already preprocessed from the same input and settings" in capsys.readouterr().out


@pytest.mark.assets
def test_a_folder_is_one_person_and_exif_turned_photos_read_upright(portraits, fit_calls, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "anna"
    folder.mkdir()
    face = to_uint8(_face(portraits, "obama", 160, zoom=0.8))
    Image.fromarray(face).save(folder / "a.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show": the pixels are stored turned the other way
    Image.fromarray(np.ascontiguousarray(np.rot90(face, 1))).save(folder / "b.jpg", quality=95, exif=exif)
    (folder / "notes.txt").write_text("not a photo: ignored")
    out = tmp_path / "dataset"
    assert main(["preprocess", str(folder), "--out", str(out), *SMALL]) == 0
    assert "anna: read upright, as their EXIF orientation asks: b.jpg" in capsys.readouterr().out
    assert fit_calls == [(2, {"identity_frames": 2})]  # both photos in one fit, one identity
    frames = FitDataset(out).sequence("anna")
    assert len(frames.image) == 2 and torch.equal(frames.identity[0], frames.identity[1])
    assert (frames.image[0] - frames.image[1]).abs().mean() < 0.05  # the turned photo was read upright
    assert [row["source"] for row in _report(out)] == ["a.jpg", "b.jpg"]


@needs_mediapipe
def test_bad_inputs_are_named_in_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "dataset"
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty").mkdir()
    cases = {
        "bad.mp4": f"{tmp_path / 'bad.mp4'}: not a readable video (",
        "notes.txt": f"{tmp_path / 'notes.txt'}: not a readable image (",
        "empty": f"{tmp_path / 'empty'}: no photos in the folder",
        "absent.jpg": f"input not found: {tmp_path / 'absent.jpg'}",
    }
    for name, message in cases.items():
        assert main(["preprocess", str(tmp_path / name), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("invertavatar preprocess: error: "), err
        assert message in err[0]
    assert not out.exists()


def test_fit_still_works_and_says_it_is_deprecated(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "absent.jpg"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "invertavatar fit is deprecated; use 'invertavatar preprocess'"
    assert "input not found" in err[1]


def test_every_kth_frame_smooths_over_the_same_stretch_of_video():
    # A box moving along a parabola: smoothing shifts it by about sigma^2 (in frames of the video)
    # times its curvature. Taking every 5th frame must not change how much video that spans.
    def box(t: int) -> CropBox:
        return CropBox(t * t / 10, 0.0, 10.0)

    every = list(range(200))
    fifth = every[::5]
    full = smooth_boxes([box(t) for t in every], 3.0, times=every)
    sub = smooth_boxes([box(t) for t in fifth], 3.0, times=fifth)
    assert abs(full[100].x0 - box(100).x0 - 0.9) < 0.01  # sigma^2 / 10
    for k, t in enumerate(fifth[5:-5], start=5):
        assert abs(sub[k].x0 - full[t].x0) < 0.05
    # Smoothing by position in the list spans 5x more video: 25x the shift.
    by_position = smooth_boxes([box(t) for t in fifth], 3.0)
    assert by_position[20].x0 - box(100).x0 > 20


def test_head_angles_follow_the_look_at_convention():
    import math

    from invertavatar_core.geometry.cameras import look_at_camera
    from invertavatar_faceverse.fit_report import head_angles

    angles = head_angles(look_at_camera(torch.tensor([0.0, 0.3, -0.3, 0.0]), torch.tensor([0.0, 0.0, 0.0, 0.2])))
    assert float(angles[0].abs().max()) < 1e-3  # frontal
    # The camera aims at a pivot 0.2 in front of the sphere's centre, so its heading turns a little more.
    assert 17.0 < float(angles[1, 0]) < 19.5 and abs(float(angles[2, 0]) + float(angles[1, 0])) < 1e-3
    assert float(angles[3, 1]) > 5.0 and abs(float(angles[3, 0])) < 1e-3  # below the face, looking up
    assert float(angles[:, 2].abs().max()) < 1e-3  # look-at cameras do not roll
    assert math.isclose(float(angles[1, 1]), 0.0, abs_tol=1e-3)
