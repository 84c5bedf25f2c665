"""``invertavatar synth-heads`` and ``invertavatar preprocess`` write readable datasets; registrations."""

import importlib.util

import pytest
import torch

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.cli import main
from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.io.media import read_image, save_image
from invertavatar_faceverse.face_crop import CropBox, by_size, crop_box, crop_image, nearest_face, smooth_boxes

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def test_registered_components():
    registry = build_registry(get_plugin_manager(autoload=True))
    assert {"procedural", "ict", "faceverse"} <= set(registry.names("morphable_model"))
    assert ("mediapipe" in registry.names("landmark_detector")) == HAS_MEDIAPIPE


def test_synth_heads_writes_the_fit_layout(tmp_path):
    out = tmp_path / "heads"
    argv = ["synth-heads", "--out", str(out), "--identities", "2", "--frames-per-identity", "2"]
    assert main([*argv, "--resolution", "64", "--uv-resolution", "32", "--tiny", "--seed", "3"]) == 0
    dataset = FitDataset(out)
    # Sequence names follow the identity seeds: --seed 3 starts at id0003 (the same head in any folder).
    assert len(dataset) == 4 and list(dataset.sequences()) == ["id0003", "id0004"]
    frames = dataset.sequence("id0003")
    assert frames.image.shape == (2, 3, 64, 64) and frames.expression_uv.shape == (2, 3, 32, 32)
    # The head is in the picture (not background colour everywhere) and its face is seen.
    assert frames.image.std() > 0.1 and frames.visibility.mean() > 0.05
    assert frames.expression_uv[:, 2].mean() > 0.1  # face mask channel of the UV render
    assert torch.equal(frames.identity[0], frames.identity[1])
    assert not torch.equal(dataset.sequence("id0004").identity[0], frames.identity[0])
    # Landmarks stored with each frame are the model's, projected into the image.
    landmarks = dataset.landmarks(0)
    assert landmarks.shape == (478, 2) and 0 < float(landmarks.min()) and float(landmarks.max()) < 64


def test_face_crop_box_and_transforms():
    image = torch.linspace(-1, 1, 3 * 80 * 100).view(3, 80, 100)
    landmarks = torch.rand(478, 2) * 20 + torch.tensor([40.0, 30.0])
    box = crop_box(landmarks)
    assert box.side > 10
    crop = crop_image(image, box, 32)
    assert crop.shape == (3, 32, 32)
    points = torch.tensor([[box.x0, box.y0], [box.x0 + box.side, box.y0 + box.side]])
    torch.testing.assert_close(box.to_crop(points, 32), torch.tensor([[0.0, 0.0], [32.0, 32.0]]))
    torch.testing.assert_close(box.to_image(box.to_crop(landmarks, 32), 32), landmarks)
    smooth = smooth_boxes([CropBox(0.0, 0.0, 10.0), CropBox(10.0, 0.0, 10.0), CropBox(0.0, 0.0, 10.0)], sigma=1.0)
    assert 0 < smooth[1].x0 < 10 and smooth[0].x0 > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed")
def test_fit_command_on_a_portrait(assets_dir, tmp_path):
    photo = assets_dir / "media" / "trump_official_portrait.png"
    canonical = assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj"
    if not photo.is_file():
        pytest.skip(f"portrait missing: {photo}")
    out = tmp_path / "fit"
    argv = [
        "preprocess",
        str(photo),
        "--out",
        str(out),
        "--model",
        "procedural",
        "--mediapipe-canonical",
        str(canonical),
    ]
    assert main([*argv, "--resolution", "256", "--uv-resolution", "64"]) == 0
    dataset = FitDataset(out)
    assert len(dataset) == 1 and dataset.meta["model"]["name"] == "procedural"
    obs = dataset[0]
    assert obs.image.shape == (1, 3, 256, 256) and obs.camera.shape == (1, 25)
    assert obs.expression_uv.shape == (1, 3, 64, 64) and obs.visibility.mean() > 0.1
    overlay = read_image(out / "overlays" / photo.stem / "00000.jpg")
    assert (overlay - obs.image[0]).abs().mean() > 0.01  # the mesh was drawn over the crop
    # A second run finds the sequence done and leaves it alone.
    assert main([*argv, "--resolution", "256", "--uv-resolution", "64"]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed")
def test_fit_command_on_a_video(assets_dir, tmp_path):
    video = assets_dir / "media" / "talking_head_512.mp4"
    if not video.is_file():
        pytest.skip(f"clip missing: {video}")
    out = tmp_path / "fit"
    argv = ["preprocess", str(video), "--out", str(out), "--every", "50", "--max-frames", "3", "--steps", "60"]
    argv.append("--keep-flagged")  # a short fit: whatever its quality check says, all three frames are written
    assert main([*argv, "--resolution", "128", "--uv-resolution", "32"]) == 0
    dataset = FitDataset(out)
    assert dataset.sequences() == {"talking_head_512": [0, 1, 2]}
    frames = dataset.sequence("talking_head_512")
    assert [name for _, name in map(dataset.frame_name, range(3))] == ["00000", "00050", "00100"]
    assert torch.equal(frames.identity[0], frames.identity[2])  # one identity per video
    assert not torch.equal(frames.camera[0], frames.camera[2])


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed")
def test_fit_command_reports_missing_faces(tmp_path, capsys):
    blank = save_image(torch.zeros(3, 96, 96), tmp_path / "blank.png")
    assert main(["preprocess", str(blank), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and "blank.png" in err
    assert main(["preprocess", str(tmp_path / "absent.jpg"), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="fit needs the mediapipe extra")
def test_fit_refuses_an_unusable_device_in_one_line_before_any_work(tmp_path, capsys):
    blank = save_image(torch.zeros(3, 96, 96), tmp_path / "blank.png")
    out = tmp_path / "out"
    assert main(["preprocess", str(blank), "--out", str(out), "--device", "cuda:7", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("invertavatar preprocess: error: --device cuda:7"), err
    assert not (out / "dataset.json").exists()


def _fake_face(centre: tuple[float, float], size: float) -> torch.Tensor:
    """478 landmarks spread over a ``size`` square around ``centre`` (an eye-mouth layout is not needed)."""
    return torch.rand(478, 2) * size + torch.tensor(centre) - size / 2


def test_faces_are_ordered_largest_first_and_the_centred_one_is_found_on_a_crop():
    small, large, middle = _fake_face((20.0, 20.0), 10.0), _fake_face((80.0, 40.0), 40.0), _fake_face((50, 50), 20.0)
    ordered = by_size([small, large, middle])
    assert [f is g for f, g in zip(ordered, [large, middle, small], strict=True)] == [True] * 3
    assert by_size([]) == []
    box = crop_box(middle)
    centre = (box.x0 + box.side / 2, box.y0 + box.side / 2)
    assert nearest_face([large, middle, small], centre) is middle


def _two_faces(assets_dir, detector):
    """Two people's face crops, 160 and 100 pixels, side by side: face 0 (largest) left, face 1 right."""
    from invertavatar_core.io.media import to_uint8

    tiles = []
    for name, side in (("obama_official_portrait.jpg", 160), ("biden_official_portrait.jpg", 100)):
        photo = assets_dir / "media" / name
        if not photo.is_file():
            pytest.skip(f"portrait missing: {photo}")
        image = read_image(photo)
        tiles.append(crop_image(image, crop_box(detector.detect(to_uint8(image))), side))
    canvas = torch.full((3, 160, 276), -1.0)
    canvas[:, :, :160] = tiles[0]
    canvas[:, 30:130, 176:] = tiles[1]
    return canvas


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed")
def test_two_faces_largest_by_default_and_face_index_chooses(assets_dir, tmp_path, capsys):
    from invertavatar_core.io.media import to_uint8
    from invertavatar_faceverse.mediapipe_detector import MediaPipeLandmarkDetector

    detector = MediaPipeLandmarkDetector()
    canvas = _two_faces(assets_dir, detector)
    faces = detector.detect_all(to_uint8(canvas))
    assert len(faces) == 2
    assert float(faces[0][:, 0].mean()) < 160 < float(faces[1][:, 0].mean())  # the big one (left) first
    assert torch.equal(detector.detect(to_uint8(canvas)), faces[0])
    detector.close()

    path = save_image(canvas, tmp_path / "two.png")
    out = tmp_path / "fit"
    argv = ["preprocess", str(path), "--out", str(out), "--resolution", "64", "--uv-resolution", "16", "--steps", "5"]
    assert main([*argv, "--face-index", "2"]) == 2  # before any fitting
    assert "--face-index 2, but frame 00000 has 2 face(s) (0 is the largest)" in capsys.readouterr().err
    assert main([*argv, "--face-index", "1"]) == 0
    assert "two: 2 faces in two.png; taking number 1 by size (0 is the largest)" in capsys.readouterr().out
    fitted = FitDataset(out)[0].image[0]
    expected = {k: crop_image(canvas, crop_box(face), 64) for k, face in enumerate(faces)}
    assert (fitted - expected[1]).abs().mean() < 0.1 < (fitted - expected[0]).abs().mean()
