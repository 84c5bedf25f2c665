"""The EG3D in-the-wild crop recipe: weak-perspective fit of five points, box from its scale and translation."""

import numpy as np
import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.io.media import save_image
from invertavatar_faceverse.face_crop import eg3d_crop_box, five_points, read_reference_landmarks

REFERENCE = torch.tensor(
    [[-0.31, 0.29, 0.1], [0.31, 0.29, 0.1], [0.0, 0.0, 0.42], [-0.25, -0.36, 0.12], [0.25, -0.36, 0.12]],
    dtype=torch.float64,
)
"""Five made-up 3D points (eyes, nose, mouth corners), units arbitrary."""


def _landmarks(points: torch.Tensor) -> torch.Tensor:
    """478 landmarks whose five points are ``points (5, 2)`` (eye corners both at the eye centre)."""
    landmarks = torch.zeros(478, 2, dtype=torch.float64)
    for indices, point in zip(([33, 133], [263, 362], [1], [61], [291]), points, strict=True):
        landmarks[indices] = point
    return landmarks


def test_eg3d_box_comes_from_the_fitted_scale_and_translation():
    scale, tx, ty, height = 180.0, 260.0, 300.0, 600
    x = scale * REFERENCE[:, 0] + tx
    y_up = scale * REFERENCE[:, 1] + ty
    landmarks = _landmarks(torch.stack([x, (height - 1) - y_up], 1))
    torch.testing.assert_close(five_points(landmarks)[:, 0], x)
    box = eg3d_crop_box(landmarks, REFERENCE, height)
    side = 700 * scale / 300
    assert box.side == pytest.approx(side)
    assert box.x0 + side / 2 == pytest.approx(tx) and box.y0 + side / 2 == pytest.approx((height - 1) - ty)


def test_reference_landmarks_from_68_points_or_named_when_missing(tmp_path):
    points = np.random.default_rng(0).normal(size=(68, 3))
    np.save(tmp_path / "lm68.npy", points)
    five = read_reference_landmarks(tmp_path / "lm68.npy")
    np.testing.assert_allclose(five[0].numpy(), points[[36, 39]].mean(0))
    np.testing.assert_allclose(five[2].numpy(), points[30])
    np.testing.assert_allclose(five[4].numpy(), points[54])
    with pytest.raises(FileNotFoundError, match="similarity_Lm3D_all.mat"):
        read_reference_landmarks(tmp_path / "similarity_Lm3D_all.mat")
    np.save(tmp_path / "bad.npy", points[:7])
    with pytest.raises(ValueError, match=r"bad\.npy: 3D landmarks are \(7, 3\)"):
        read_reference_landmarks(tmp_path / "bad.npy")


def test_preprocess_names_missing_release_files_before_any_work(tmp_path, capsys):
    pytest.importorskip("mediapipe")
    image = tmp_path / "face.png"
    save_image(torch.zeros(3, 32, 32), image)
    out = tmp_path / "out"
    assert main(["preprocess", str(image), "--out", str(out), "--crop", "eg3d"]) == 2
    assert "--crop eg3d needs --crop-reference" in capsys.readouterr().err
    assert main(["preprocess", str(image), "--out", str(out), "--uv-mask", str(tmp_path / "mask.png")]) == 2
    assert "dense_uv_expanded_mask_onlyFace.png" in capsys.readouterr().err
    assert not out.exists()
