"""Dataset readers: the layout ``invertavatar preprocess`` writes, and the official InvertAvatar layout."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from invertavatar_core.data.datasets import (
    DatasetFormatError,
    FitDataset,
    FitDatasetWriter,
    FittedFrame,
    InvertAvatarDataset,
    open_dataset,
)
from invertavatar_core.io.media import save_image


def _frame(seed: int, r: int = 32, hu: int = 16) -> FittedFrame:
    g = torch.Generator().manual_seed(seed)
    return FittedFrame(
        image=torch.rand(3, r, r, generator=g) * 2 - 1,
        camera=torch.randn(25, generator=g),
        expression_uv=torch.rand(3, hu, hu, generator=g) * 2 - 1,
        unwrap_grid=torch.rand(hu, hu, 2, generator=g) * 2 - 1,
        visibility=(torch.rand(1, hu, hu, generator=g) > 0.5).float(),
        identity=torch.randn(7, generator=g),
        expression=torch.rand(5, generator=g),
        eyes=torch.randn(4, generator=g),
        landmarks=torch.rand(478, 2, generator=g) * r,
        unwrap_rgb=torch.rand(3, hu, hu, generator=g) * 2 - 1,
        overlay=torch.rand(3, r, r, generator=g) * 2 - 1,
    )


def test_fit_layout_round_trip_and_resume(tmp_path):
    model = {"name": "procedural", "rows": 56}
    writer = FitDatasetWriter(tmp_path, model, image_resolution=32, uv_resolution=16)
    frames = {("clip", "00000"): 0, ("clip", "00003"): 1, ("photo", "00000"): 2}
    for (sequence, frame), seed in frames.items():
        writer.add(sequence, frame, _frame(seed))
    for sub in ("images", "frames", "unwraps", "overlays"):
        assert (tmp_path / sub / "clip").is_dir()
    labels = json.loads((tmp_path / "cameras.json").read_text())["labels"]
    assert [entry[0] for entry in labels] == ["clip/00000.png", "clip/00003.png", "photo/00000.png"]

    dataset = open_dataset(tmp_path)
    assert isinstance(dataset, FitDataset) and len(dataset) == 3
    assert dataset.sequences() == {"clip": [0, 1], "photo": [2]}
    obs = dataset[1]
    want = _frame(1)
    assert obs.image.shape == (1, 3, 32, 32) and obs.expression_uv.shape == (1, 3, 16, 16)
    assert obs.unwrap_grid.shape == (1, 16, 16, 2) and obs.visibility.shape == (1, 1, 16, 16)
    torch.testing.assert_close(obs.camera[0], want.camera)
    torch.testing.assert_close(obs.image[0], want.image, atol=1 / 127.5, rtol=0)  # uint8 on disk
    torch.testing.assert_close(obs.expression_uv[0], want.expression_uv, atol=1e-3, rtol=0)  # float16 on disk
    torch.testing.assert_close(obs.unwrap_grid[0], want.unwrap_grid, atol=1e-3, rtol=0)
    torch.testing.assert_close(obs.expression[0], want.expression)
    torch.testing.assert_close(dataset.landmarks(1), want.landmarks)
    clip = dataset.sequence("clip")
    assert len(clip) == 2 and clip.identity.shape == (2, 7)
    assert open_dataset(tmp_path, image_resolution=16)[0].image.shape == (1, 3, 16, 16)

    again = FitDatasetWriter(tmp_path, model, image_resolution=32, uv_resolution=16)
    assert again.has("clip", "00003") and not again.has("clip", "00006")
    again.add("clip", "00006", _frame(3))
    assert FitDataset(tmp_path).sequences()["clip"] == [0, 1, 2]
    with pytest.raises(DatasetFormatError, match="already holds frames fitted with model"):
        FitDatasetWriter(tmp_path, {"name": "ict"}, image_resolution=32, uv_resolution=16)


def test_unwrap_preview_is_upright(tmp_path):
    """UV-space rows follow +v and model UVs have v up: the preview shows the last rows (top of the face) first."""
    unwrap = torch.full((3, 16, 16), -1.0)
    unwrap[0, -4:] = 1.0  # red on the last UV rows: the largest v, the top of the face
    frame = dataclasses.replace(_frame(0), unwrap_rgb=unwrap)
    FitDatasetWriter(tmp_path, {"name": "procedural"}, image_resolution=32, uv_resolution=16).add("s", "00000", frame)
    preview = np.asarray(Image.open(tmp_path / "unwraps" / "s" / "00000.jpg")).astype(int)
    assert (preview[:3, :, 0] > 200).all() and (preview[5:, :, 0] < 60).all()  # JPEG blurs the edge a little


def test_fit_layout_errors_name_the_file(tmp_path):
    writer = FitDatasetWriter(tmp_path, {"name": "procedural"}, 32, 16)
    writer.add("s", "00000", _frame(0))
    (tmp_path / "frames" / "s" / "00000.safetensors").unlink()
    with pytest.raises(DatasetFormatError, match="00000.safetensors"):
        FitDataset(tmp_path)[0]
    with pytest.raises(DatasetFormatError, match="not a dataset folder"):
        open_dataset(tmp_path / "images")
    with pytest.raises(ValueError, match="plain file names"):
        writer.add("a/b", "00000", _frame(0))


def _official_folder(tmp_path, coefficients: int = 610) -> list:
    """Three frames in the official layout, each ``coeffs`` vector ``arange(coefficients)``; returns the labels."""
    rng = np.random.default_rng(0)
    labels = []
    for video, frames in (("Hillary", ["00000000", "00000030"]), ("Obama", ["00000000"])):
        for frame in frames:
            save_image(torch.rand(3, 32, 32) * 2 - 1, tmp_path / "images512x512" / video / f"{frame}.png")
            labels.append([f"{video}/{frame}.png", rng.normal(size=25).tolist()])
            ortho = rng.uniform(-1, 1, size=(16, 16, 4)).astype(np.float16)
            ortho[..., 2] = rng.uniform(0, 1, size=(16, 16))
            (tmp_path / "orthRender256x256_face_eye" / video).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "orthRender256x256_face_eye" / video / f"{frame}.npy", ortho)
            unwrap = rng.uniform(-1, 1, size=(16, 16, 3)).astype(np.float16)
            (tmp_path / "uvRender256x256" / video).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "uvRender256x256" / video / f"{frame}.npy", unwrap)
            (tmp_path / "coeffs" / video).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "coeffs" / video / f"{frame}.npy", np.arange(coefficients, dtype=np.float32))
    (tmp_path / "images512x512" / "dataset_realcam.json").write_text(json.dumps({"labels": labels}))
    return labels


def test_official_layout(tmp_path):
    labels = _official_folder(tmp_path)
    dataset = open_dataset(tmp_path)
    assert isinstance(dataset, InvertAvatarDataset) and len(dataset) == 3
    assert dataset.sequences() == {"Hillary": [0, 1], "Obama": [2]}
    obs = dataset[1]
    ortho = np.load(tmp_path / "orthRender256x256_face_eye" / "Hillary" / "00000030.npy").astype(np.float32)
    torch.testing.assert_close(obs.expression_uv[0, :2], torch.from_numpy(ortho[..., :2]).permute(2, 0, 1))
    torch.testing.assert_close(obs.expression_uv[0, 2], torch.from_numpy((ortho[..., 2] > 0.5).astype(np.float32)))
    unwrap = np.load(tmp_path / "uvRender256x256" / "Hillary" / "00000030.npy").astype(np.float32)
    torch.testing.assert_close(obs.unwrap_grid[0], torch.from_numpy(unwrap[..., :2]))
    torch.testing.assert_close(obs.visibility[0, 0], torch.from_numpy(unwrap[..., 2]))
    torch.testing.assert_close(obs.camera[0], torch.tensor(labels[1][1], dtype=torch.float32))
    assert obs.identity.shape == (1, 150) and obs.expression.shape == (1, 171)
    assert float(obs.expression[0, 0]) == 150.0 and obs.eyes[0].tolist() == [605.0, 606.0, 607.0, 608.0]
    assert len(dataset.sequence("Hillary")) == 2


def test_official_layout_splits_coefficients_by_the_given_layout(tmp_path):
    _official_folder(tmp_path, coefficients=6)
    layout = (("expression", 3), ("identity", 2), ("eyes", 1))
    obs = InvertAvatarDataset(tmp_path, coefficient_layout=layout)[0]
    assert obs.expression.tolist() == [[0.0, 1.0, 2.0]]
    assert obs.identity.tolist() == [[3.0, 4.0]] and obs.eyes.tolist() == [[5.0]]
    with pytest.raises(DatasetFormatError, match=r"00000000\.npy: expected 610 FaceVerse coefficients, got 6"):
        InvertAvatarDataset(tmp_path)[0]


def test_landmark_maps_round_trip_and_the_index_says_whether_every_frame_has_one(tmp_path):
    from dataclasses import replace

    maps = [
        torch.where(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)) > 0.8, 1.0, -1.0) for i in (0, 1)
    ]
    writer = FitDatasetWriter(tmp_path / "all", {"name": "x"}, image_resolution=32, uv_resolution=16)
    writer.add("s", "00000", replace(_frame(0), landmark_map=maps[0]))
    writer.add("s", "00001", replace(_frame(1), landmark_map=maps[1]))
    dataset = FitDataset(tmp_path / "all")
    assert dataset.has_landmark_maps
    torch.testing.assert_close(dataset.landmark_map(1), maps[1][None], rtol=0, atol=0)
    FitDatasetWriter(tmp_path / "all", {"name": "x"}, 32, 16).add("t", "00000", _frame(2))  # resumed, no map
    assert not FitDataset(tmp_path / "all").has_landmark_maps
    writer = FitDatasetWriter(tmp_path / "none", {"name": "x"}, image_resolution=32, uv_resolution=16)
    writer.add("s", "00000", _frame(0))
    writer.add("s", "00001", replace(_frame(1), landmark_map=maps[1]))
    dataset = FitDataset(tmp_path / "none")
    assert not dataset.has_landmark_maps
    with pytest.raises(DatasetFormatError, match=r"00000\.safetensors: missing tensor 'landmark_map'"):
        dataset.landmark_map(0)


def test_coefficients_of_another_morphable_model_are_refused_by_name():
    from invertavatar_core.data.datasets import MorphableModelMismatchError, check_morphable_model

    check_morphable_model(
        {"name": "ict", "path": "a.npz"}, {"name": "ict", "path": "b.npz"}, found_from="x", expected_from="y"
    )
    check_morphable_model(None, "procedural", found_from="an old dataset", expected_from="y")  # records no model
    with pytest.raises(
        MorphableModelMismatchError, match=r"drive/ was fitted with morphable model 'ict' but .*'procedural'"
    ):
        check_morphable_model({"name": "ict"}, "procedural", found_from="drive/", expected_from="the avatar's model")
    with pytest.raises(MorphableModelMismatchError, match="40 identity coefficients .* 100"):
        check_morphable_model(
            None,
            "ict",
            found_from="the avatar",
            expected_from="its checkpoint",
            identity_size=40,
            expected_identity_size=100,
        )
