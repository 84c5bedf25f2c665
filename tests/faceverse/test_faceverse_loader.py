"""FaceVerse v3.1 loader on a small file written in the official format (converted once); 610-d coefficients."""

import numpy as np
import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.plugin.protocols import MorphableModel
from invertavatar_faceverse.faceverse import (
    COEFFICIENT_LAYOUT,
    FaceVerseModel,
    FaceVerseModelConfig,
    convert_faceverse_file,
    load_faceverse_dict,
    pack_coefficients,
    unpack_coefficients,
)
from invertavatar_faceverse.procedural import ProceduralHeadModel, ProceduralHeadModelConfig

TINY = {"rows": 32, "columns": 24, "mouth_rows": 1, "eye_rings": 4, "eye_segments": 8}
FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def source():
    """A small mesh with eyeballs, and the dict FaceVerse would store for it (raw conventions)."""
    head = ProceduralHeadModel(ProceduralHeadModelConfig(**TINY))
    rng = np.random.default_rng(0)
    n = head.n_vertices
    loaded_mean = head.mean.double().numpy() * 0.05
    id_loaded = rng.normal(0, 0.01, size=(150, n, 3))
    ex_loaded = rng.normal(0, 0.01, size=(171, n, 3))
    # Invert the load-time conventions: y, z flipped, scale 0.1, mean y += 1 (docs/design/preprocessing.md).
    raw_mean = ((loaded_mean - np.array([0.0, 1.0, 0.0])) * FLIP / 0.1).reshape(-1)
    eyes = head.eyeball_vertices.numpy()
    model = {
        "meanshape": raw_mean.astype(np.float32),
        "idBase": (id_loaded * FLIP / 0.1).reshape(150, -1).T.astype(np.float32),
        "exBase": (ex_loaded * FLIP / 0.1).reshape(171, -1).T.astype(np.float32),
        "tri": head.faces.numpy().astype(np.int32),
        "uv_per_ver": head.uvs.numpy(),
        "mediapipe_keypoints": head.landmark_indices.numpy(),
        "ver_inds": np.array([eyes[0].min(), eyes[1].min(), eyes[1].max() + 1]),
        "face_mask": head.face_mask.numpy(),
        "meantex": np.zeros(3 * n, dtype=np.float32),
        "point_buf": [[0, 1], [2], [3, 4, 5]],  # ragged Python lists, as in the real file
    }
    return head, model, loaded_mean, id_loaded, ex_loaded


@pytest.fixture(scope="module")
def npy_path(source, tmp_path_factory):
    """The official format: a pickled dict in a .npy."""
    path = tmp_path_factory.mktemp("fv") / "faceverse_v3_1.npy"
    np.save(path, source[1], allow_pickle=True)
    return path


@pytest.fixture(scope="module")
def npz_path(npy_path, tmp_path_factory):
    """What the loader reads: the .npy converted once (restricted unpickler) to a pickle-free .npz."""
    return convert_faceverse_file(npy_path, tmp_path_factory.mktemp("fv-npz") / "faceverse_v3_1.npz")


def _numeric(model: dict) -> dict:
    return {k: v for k, v in model.items() if k != "point_buf"}


def test_loader_applies_faceverse_conventions(source, npz_path):
    head, _, loaded_mean, id_loaded, ex_loaded = source
    model = FaceVerseModel(FaceVerseModelConfig(path=npz_path))
    assert isinstance(model, MorphableModel)
    assert (model.n_vertices, model.n_identity, model.n_expression, model.n_eye) == (head.n_vertices, 150, 171, 4)
    zero_id, zero_ex = torch.zeros(1, 150), torch.zeros(1, 171)
    torch.testing.assert_close(
        model.vertices(zero_id, zero_ex)[0].double(), torch.from_numpy(loaded_mean), atol=1e-5, rtol=0
    )
    coeff_id, coeff_ex = torch.randn(1, 150), torch.rand(1, 171)
    expected = (
        loaded_mean
        + np.einsum("k,knc->nc", coeff_id[0].double().numpy(), id_loaded)
        + np.einsum("k,knc->nc", coeff_ex[0].double().numpy(), ex_loaded)
    )
    torch.testing.assert_close(
        model.vertices(coeff_id, coeff_ex)[0].double(), torch.from_numpy(expected), atol=1e-4, rtol=0
    )
    assert torch.equal(model.landmark_indices, head.landmark_indices) and model.landmark_valid.all()
    # to_canonical = N @ fv2fl_30 (docs/design/preprocessing.md): scale 2.5 * 0.0867, y and z flipped back.
    m = model.to_canonical
    torch.testing.assert_close(torch.diagonal(m[:3, :3]), torch.tensor([0.21675, -0.21675, -0.21675]))


def test_eyes_turn_about_their_centres(npz_path):
    model = FaceVerseModel(FaceVerseModelConfig(path=npz_path))
    zero_id, zero_ex = torch.zeros(1, 150), torch.zeros(1, 171)
    rest = model.vertices(zero_id, zero_ex, torch.zeros(1, 4))[0]
    turned = model.vertices(zero_id, zero_ex, torch.tensor([[0.2, 0.3, 0.0, 0.0]]))[0]
    first = model.eye_label == 1
    second = model.eye_label == 2
    assert (turned[first] - rest[first]).norm(dim=-1).max() > 1e-3
    torch.testing.assert_close(turned[second], rest[second])
    torch.testing.assert_close(turned[~(first | second)], rest[~(first | second)])
    centre = model.eye_centers[0]
    torch.testing.assert_close(
        (turned[first] - centre).norm(dim=-1), (rest[first] - centre).norm(dim=-1), atol=1e-5, rtol=0
    )


def test_missing_key_is_named(source, tmp_path):
    model = _numeric(source[1])
    del model["exBase"]
    path = tmp_path / "broken.npz"
    np.savez(path, **model)
    with pytest.raises(KeyError, match="exBase"):
        load_faceverse_dict(path)
    del_ex = {k: v for k, v in source[1].items() if k != "exBase"}
    np.save(tmp_path / "broken.npy", del_ex, allow_pickle=True)
    with pytest.raises(KeyError, match="exBase"):
        convert_faceverse_file(tmp_path / "broken.npy", tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()
    with pytest.raises(FileNotFoundError, match="faceverse"):
        FaceVerseModel(FaceVerseModelConfig(path=tmp_path / "absent.npy"))


def test_convert_to_pickle_free_npz(source, npy_path, tmp_path, capsys):
    out = tmp_path / "faceverse_v3_1.npz"
    assert main(["convert", "faceverse", str(npy_path), str(out)]) == 0
    with np.load(out, allow_pickle=False) as data:  # readable without unpickling
        assert "point_buf" not in data.files and "meanshape" in data.files
        for key, value in _numeric(source[1]).items():
            np.testing.assert_array_equal(data[key], value)
    direct = tmp_path / "direct.npz"
    np.savez(direct, **_numeric(source[1]))
    a = FaceVerseModel(FaceVerseModelConfig(path=direct))
    b = FaceVerseModel(FaceVerseModelConfig(path=out))
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.identity_basis, b.identity_basis)


def test_pickled_npy_is_refused_with_the_convert_command(npy_path, tmp_path):
    # Only the pickle-free .npz is ever loaded; the .npy gets the command that converts it.
    with pytest.raises(ValueError, match="convert faceverse") as info:
        FaceVerseModel(FaceVerseModelConfig(path=npy_path))
    assert str(npy_path) in str(info.value) and "\n" not in str(info.value)
    # A converted .npz beside the .npy (same stem) is what a .npy path reads.
    beside = tmp_path / "faceverse_v3_1.npy"
    beside.write_bytes(npy_path.read_bytes())
    convert_faceverse_file(beside, beside.with_suffix(".npz"))
    assert FaceVerseModel(FaceVerseModelConfig(path=beside)).n_vertices > 0


def test_old_convert_spelling_is_a_hidden_deprecated_alias(npy_path, tmp_path, capsys):
    out = tmp_path / "old.npz"
    assert main(["convert-faceverse", str(npy_path), str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["invertavatar convert-faceverse is deprecated; use 'invertavatar convert faceverse'"]
    with np.load(out, allow_pickle=False) as data:
        assert "meanshape" in data.files
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert "convert-faceverse" not in listing and "convert-ict" not in listing
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("faceverse", "ict", "release-prior", "release-encoders"))


def test_coefficient_layout_round_trip():
    assert sum(k for _, k in COEFFICIENT_LAYOUT) == 610
    vector = torch.randn(3, 610)
    parts = unpack_coefficients(vector)
    assert parts.identity.shape == (3, 150) and parts.expression.shape == (3, 171) and parts.scale.shape == (3, 1)
    torch.testing.assert_close(parts.eyes, vector[:, 605:609])  # v3.1 layout: eyes at 605-608
    torch.testing.assert_close(parts.expression, vector[:, 150:321])
    torch.testing.assert_close(pack_coefficients(parts), vector)
    with pytest.raises(ValueError, match="610"):
        unpack_coefficients(torch.zeros(1, 609))
