"""ICT Face Model Light on the shared asset (skipped without it); folder reading and conversion."""

import json
import shutil

import numpy as np
import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.plugin.protocols import MorphableModel
from invertavatar_faceverse.ict import NPZ_KEYS, IctFaceModel, IctFaceModelConfig, load_ict_arrays
from invertavatar_faceverse.landmark_correspondence import load_mediapipe_canonical, similarity_transform
from invertavatar_faceverse.model_files import ModelFileError


@pytest.fixture(scope="module")
def ict_dir(assets_dir):
    folder = assets_dir / "ict-face-model-light"
    if not (folder / "ict_face_model_light.npz").is_file():
        pytest.skip(f"ICT Face Model Light not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def ict(ict_dir, assets_dir):
    canonical = assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj"
    return IctFaceModel(IctFaceModelConfig(path=ict_dir / "ict_face_model_light.npz", mediapipe_canonical=canonical))


def test_shapes_and_linear_deltas(ict, ict_dir):
    assert isinstance(ict, MorphableModel)
    assert ict.n_vertices == 26719 and ict.n_expression == 53 and ict.n_identity == 100 and ict.n_eye == 0
    assert ict.expression_names[26] == "jawOpen"
    assert ict.uvs.shape == (26719, 2) and 0 <= float(ict.uvs.min()) and float(ict.uvs.max()) <= 1
    with np.load(ict_dir / "ict_face_model_light.npz") as data:
        neutral = torch.from_numpy(data["neutral_vertices"])
        id3, ex26 = torch.from_numpy(data["identity_deltas"][3]), torch.from_numpy(data["expression_deltas"][26])
    identity, expression = torch.zeros(2, 100), torch.zeros(2, 53)
    identity[0, 3], expression[0, 26] = 0.7, 0.4
    identity[1, 3], expression[1, 26] = 1.4, 0.8  # twice the weights: twice the offset
    verts = ict.vertices(identity, expression)
    assert verts.shape == (2, 26719, 3)
    torch.testing.assert_close(verts[0], neutral + 0.7 * id3 + 0.4 * ex26, atol=1e-4, rtol=0)
    torch.testing.assert_close(verts[1] - neutral, 2 * (verts[0] - neutral), atol=1e-4, rtol=0)
    # The subset path agrees with the full evaluation.
    idx = ict.landmark_indices
    torch.testing.assert_close(ict.vertices_at(idx, identity, expression), verts[:, idx])


def test_face_mask_and_canonical_placement(ict):
    mask = ict.face_mask > 0.5
    assert mask[:6706].all() and mask[21451:24591].all() and not mask[9409:11248].any()
    m = ict.to_canonical
    canonical = ict.mean @ m[:3, :3].T + m[:3, 3]
    face = canonical[mask]
    (x0, x1), (y0, y1) = face_window(256).x_range, face_window(256).y_range
    assert face[:, 0].min() >= x0 and face[:, 0].max() < x1 and face[:, 1].min() >= y0 and face[:, 1].max() < y1
    assert canonical[:11248].abs().max() <= 0.5


def test_landmarks_from_the_canonical_mesh(ict, assets_dir):
    canonical = load_mediapipe_canonical(assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj")
    ours = ict.mean[ict.landmark_indices].double().numpy()
    s, r, t = similarity_transform(canonical, ours)
    aligned = s * canonical @ r.T + t
    width = np.ptp(ours[:, 0])
    planar = np.linalg.norm((aligned - ours)[:, :2], axis=1) / width
    assert planar.mean() < 0.04, planar.mean()
    assert ict.landmark_valid.all()
    eyeballs = set(range(21451, 24591))
    assert all(int(i) in eyeballs for i in ict.landmark_indices[468:478])


def test_without_canonical_mesh_only_anchors_are_valid(ict_dir):
    model = IctFaceModel(IctFaceModelConfig(path=ict_dir / "ict_face_model_light.npz", identity_modes=10))
    assert model.n_identity == 10
    assert 15 <= int(model.landmark_valid.sum()) < 478
    assert model.landmark_indices.unique().numel() == 478


def test_missing_path_names_the_file(tmp_path):
    with pytest.raises(ModelFileError, match="missing.npz"):
        IctFaceModel(IctFaceModelConfig(path=tmp_path / "missing.npz"))


def test_the_shared_assets_folder_layout_loads(ict_dir, tmp_path):
    """``--model ict:FOLDER`` with a folder that holds the converted npz (and vertex_indices.json) beside it."""
    model = IctFaceModel(IctFaceModelConfig(path=ict_dir, identity_modes=4))
    assert model.n_identity == 4 and model.n_expression == 53 and model.expression_names[26] == "jawOpen"
    # Any one npz in a folder of our own, the iBUG anchors from the vertex_indices.json beside it.
    folder = tmp_path / "ict"
    folder.mkdir()
    np.savez(folder / "my_ict.npz", **{key: np.zeros(2) for key in NPZ_KEYS})
    (folder / "vertex_indices.json").write_text(json.dumps({"idx_to_landmark_verts": list(range(68))}))
    arrays = load_ict_arrays(folder)
    assert set(NPZ_KEYS) <= set(arrays) and list(arrays["landmarks_ibug68"]) == list(range(68))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="generic_neutral_mesh.obj is missing"):
        load_ict_arrays(empty)
    (empty / "generic_neutral_mesh.obj").write_text("v 0 0 0\n")
    (empty / "vertex_indices.json").write_text(json.dumps({"expressions": []}))
    with pytest.raises(ModelFileError, match="no identity000.obj found.*converted .npz"):
        load_ict_arrays(empty)


@pytest.mark.slow
def test_folder_reading_and_convert_command(ict_dir, tmp_path):
    """A FaceXModel folder (neutral OBJ, identity and expression OBJs) converts to the same npz."""
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    shutil.copy(ict_dir / "generic_neutral_mesh.obj", folder / "generic_neutral_mesh.obj")
    config = json.loads((ict_dir / "vertex_indices.json").read_text())
    config["expressions"] = ["jawOpen", "eyeBlink_L"]
    (folder / "vertex_indices.json").write_text(json.dumps(config))
    with np.load(ict_dir / "ict_face_model_light.npz") as data:
        neutral = data["neutral_vertices"].astype(np.float64)
        names = list(data["expression_names"])
        deltas = {
            "identity000": data["identity_deltas"][0],
            "identity001": data["identity_deltas"][1],
            "jawOpen": data["expression_deltas"][names.index("jawOpen")],
            "eyeBlink_L": data["expression_deltas"][names.index("eyeBlink_L")],
        }
    for name, delta in deltas.items():
        points = neutral + delta
        (folder / f"{name}.obj").write_text("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in points))
    out = tmp_path / "ict.npz"
    assert main(["convert", "ict", str(folder), str(out)]) == 0
    arrays = load_ict_arrays(out)
    assert arrays["identity_deltas"].shape == (2, 26719, 3) and list(arrays["expression_names"]) == [
        "jawOpen",
        "eyeBlink_L",
    ]
    np.testing.assert_allclose(arrays["expression_deltas"][0], deltas["jawOpen"], atol=2e-5)
    assert len(arrays["landmarks_ibug68"]) == 68
    from_folder = IctFaceModel(IctFaceModelConfig(path=folder))
    from_npz = IctFaceModel(IctFaceModelConfig(path=out))
    torch.testing.assert_close(from_folder.expression_basis, from_npz.expression_basis)
    assert from_npz.n_identity == 2 and from_npz.expression_names == ("jawOpen", "eyeBlink_L")
