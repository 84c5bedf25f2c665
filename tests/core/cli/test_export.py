"""``invertavatar export``: meshes and tensors of a tiny avatar, ARKit curves of an ICT fit, refusals."""

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from invertavatar_core.cli import main
from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.geometry.avatar_mesh import sample_density
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.io.expression_curves import ARKIT_BLENDSHAPES

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_models, full_registry):
    """A model checkpoint, one avatar of a random z, and a density threshold its (untrained) field crosses."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = tiny_models.save(root / "run")
    prior = tiny_models.prior
    model = full_registry.create("morphable_model", tiny_models.experiment.morphable_model)
    with torch.no_grad():
        ws = prior.mapping(
            torch.randn(1, prior.info.z_dim, generator=torch.Generator().manual_seed(2)), torch.zeros(1, 25)
        )
        features = prior.canonical(ws)
        field = prior.animate(features, torch.zeros(1, 3, prior.info.uv_resolution, prior.info.uv_resolution))
    # Random weights give a nearly constant density: the test surface is its median level.
    threshold = float(sample_density(prior, field, 12).median())
    identity = torch.zeros(1, model.n_identity)
    Avatar(
        features,
        tiny_models.experiment.prior.model_dump(mode="json"),
        identity,
        1,
        "test",
        {"checkpoint": str(checkpoint)},
    ).save(root / "avatar")
    return {"root": root, "avatar": root / "avatar", "threshold": threshold, "box": prior.box_size, "model": model}


def _driving(root, model_config, expressions):
    """A fit folder of one sequence whose frames carry ``expressions (T, E)`` (other maps: small and random)."""
    writer = FitDatasetWriter(root, model_config, image_resolution=16, uv_resolution=8)
    g = torch.Generator().manual_seed(0)
    for t, expression in enumerate(expressions):
        writer.add(
            "clip",
            f"{2 * t:05d}",  # every other frame of the video
            FittedFrame(
                image=torch.rand(3, 16, 16, generator=g) * 2 - 1,
                camera=torch.randn(25, generator=g),
                expression_uv=torch.rand(3, 8, 8, generator=g) * 2 - 1,
                unwrap_grid=torch.rand(8, 8, 2, generator=g) * 2 - 1,
                visibility=torch.ones(1, 8, 8),
                identity=torch.zeros(4),
                expression=expression,
            ),
        )
    return root


def _ply_vertices(path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    count = int(header.split("element vertex ")[1].split()[0])
    assert "property float nx" in header and "property uchar red" in header
    dtype = np.dtype([("p", "<f4", (3,)), ("n", "<f4", (3,)), ("rgb", "u1", (3,))])
    return np.frombuffer(data, dtype, count=count, offset=end)


def test_export_folder_holds_meshes_tensors_and_a_summary(exported, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "export",
        "--avatar",
        str(exported["avatar"]),
        "--resolution",
        "20",
        "--threshold",
        str(exported["threshold"]),
    ]
    argv += ["--out", str(out), "--no-progress", "--device", "cpu"]
    assert main([*argv, "--format", "ply", "glb", "tensors"]) == 0
    assert "vertices" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {".invertavatar", "mesh.ply", "mesh.glb", "canonical.safetensors", "canonical.json", "export.json"}
    summary = json.loads((out / "export.json").read_text())
    vertices = _ply_vertices(out / "mesh.ply")
    assert len(vertices) == summary["mesh"]["vertices"] > 0
    assert np.abs(vertices["p"]).max() <= exported["box"] / 2  # inside the prior's box
    assert summary["mesh"]["expression"] == "neutral" and summary["mesh"]["resolution"] == 20
    np.testing.assert_allclose(np.linalg.norm(vertices["n"], axis=1), 1, atol=1e-4)
    # The tensors are the avatar's, and the JSON describes each of them.
    tensors = load_file(out / "canonical.safetensors")
    avatar = Avatar.load(exported["avatar"])
    for name, value in avatar.features.tensors().items():
        torch.testing.assert_close(tensors[name], value)
    description = json.loads((out / "canonical.json").read_text())
    assert set(description["tensors"]) == set(tensors)
    for name, entry in description["tensors"].items():
        assert entry["shape"] == list(tensors[name].shape) and entry["meaning"]
    assert description["triplane"]["box_size"] == exported["box"]
    # Our earlier export is replaced only when asked.
    assert main([*argv, "--format", "ply"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--format", "obj", "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} >= {"mesh.obj"} and not (out / "mesh.ply").exists()


def test_export_one_mesh_file_and_refusals(exported, tmp_path, capsys):
    head = tmp_path / "head.glb"
    argv = ["export", "--avatar", str(exported["avatar"]), "--resolution", "16"]
    argv += ["--threshold", str(exported["threshold"]), "--no-progress"]
    assert main([*argv, "--out", str(head)]) == 0
    assert head.read_bytes()[:4] == b"glTF" and sorted(p.name for p in tmp_path.iterdir()) == ["head.glb"]
    # A file that is there (a user's, as far as we know) is kept unless --overwrite.
    mine = tmp_path / "mine.ply"
    mine.write_text("a user's file")
    assert main([*argv, "--out", str(mine)]) == 2
    assert "file exists; pass --overwrite" in capsys.readouterr().err and mine.read_text() == "a user's file"
    user_folder = tmp_path / "folder"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(user_folder)]) == 2
    assert "did not write" in capsys.readouterr().err and [p.name for p in user_folder.iterdir()] == ["notes.txt"]
    for bad, message in (
        ([*argv, "--format", "ply", "--out", str(tmp_path / "x.obj")], "holds one mesh"),
        (["export", "--out", str(tmp_path / "y")], "nothing to export"),
        ([*argv, "--expression", "3", "--out", str(tmp_path / "z")], "give --driving"),
        ([*argv, "--threshold", "-1", "--out", str(tmp_path / "z")], "must be positive"),
    ):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    # An untrained field: the renderer draws nothing opaque, so there is no default level.
    assert main([*argv[:5], "--no-progress", "--out", str(tmp_path / "v.ply")]) == 2
    assert "no surface the renderer would draw" in capsys.readouterr().err
    # A threshold the field never exceeds: its range is named.
    assert main([*argv, "--threshold", "1000", "--out", str(tmp_path / "w.ply")]) == 2
    assert "never above the threshold 1000" in capsys.readouterr().err
    assert not (tmp_path / "w.ply").exists() and not list(tmp_path.glob(".*tmp-*"))


def test_mesh_of_a_driving_frame_and_the_models_own_curve_names(exported, tmp_path, capsys):
    model = exported["model"]
    expressions = torch.rand(3, model.n_expression, generator=torch.Generator().manual_seed(4))
    driving = _driving(tmp_path / "fit", {"name": "procedural"}, expressions)
    out = tmp_path / "out"
    argv = ["export", "--avatar", str(exported["avatar"]), "--driving", str(driving), "--expression", "1"]
    argv += ["--names", "model", "--resolution", "16", "--threshold", str(exported["threshold"]), "--fps", "10"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "export.json").read_text())
    assert summary["mesh"]["expression"] == "clip/00002"
    assert summary["curves"] == {
        "frames": 3,
        "names": "model",
        "model": "procedural",
        "sequence": "clip",
        "clipped_values": 0,
        "not_modelled": [],
    }
    rows = list(csv.reader((out / "expressions.csv").read_text().splitlines()))
    assert rows[0] == ["frame", "time", *model.expression_names]
    assert [row[:2] for row in rows[1:]] == [["0", "0.000000"], ["2", "0.200000"], ["4", "0.400000"]]
    np.testing.assert_allclose([[float(v) for v in row[2:]] for row in rows[1:]], expressions.numpy(), atol=1e-5)
    assert main([*argv[:5], "--expression", "7", "--format", "ply", "--out", str(tmp_path / "o")]) == 2
    assert "has 3 frames" in capsys.readouterr().err
    # The mesh alone does not need ARKit names.
    assert main([*argv[:5], "--format", "ply", "--resolution", "12", "--threshold", str(exported["threshold"]),
                 "--out", str(tmp_path / "p"), "--no-progress"]) == 0  # fmt: skip
    assert {p.name for p in (tmp_path / "p").iterdir()} == {
        ".invertavatar",
        "mesh.ply",
        "canonical.safetensors",
        "canonical.json",
        "export.json",
    }


def test_arkit_curves_are_refused_for_a_model_without_arkit_names(tmp_path, capsys):
    driving = _driving(tmp_path / "fit", {"name": "procedural"}, torch.rand(2, 25))
    assert main(["export", "--driving", str(driving), "--out", str(tmp_path / "curves")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "morphable model 'procedural' are not ARKit-named" in err and "--names model" in err
    assert not (tmp_path / "curves").exists()


@pytest.mark.assets
def test_arkit_curves_of_an_ict_fit(assets_dir, tmp_path, capsys):
    npz = assets_dir / "ict-face-model-light" / "ict_face_model_light.npz"
    if not npz.is_file():
        pytest.skip(f"ICT Face Model Light not found at {npz}")
    names = [str(n) for n in np.load(npz)["expression_names"]]
    expressions = torch.rand(4, len(names), generator=torch.Generator().manual_seed(5))
    expressions[2, names.index("jawOpen")] = 1.7  # fits can leave [0, 1]; ARKit cannot
    driving = _driving(tmp_path / "fit", {"name": "ict", "path": str(npz)}, expressions)
    out = tmp_path / "curves"
    assert main(["export", "--driving", str(driving), "--fps", "30", "--out", str(out)]) == 0
    assert "4 frames of 52 arkit curves, 1 values clipped" in capsys.readouterr().out
    rows = list(csv.reader((out / "expressions.csv").read_text().splitlines()))
    assert rows[0] == ["frame", "time", *ARKIT_BLENDSHAPES]
    assert len(rows) == 1 + 4
    assert [float(row[1]) for row in rows[1:]] == pytest.approx([0, 2 / 30, 4 / 30, 6 / 30], abs=1e-6)
    column = rows[0].index("jawOpen")
    expected = expressions[:, names.index("jawOpen")].clamp(0, 1)
    np.testing.assert_allclose([float(row[column]) for row in rows[1:]], expected.numpy(), atol=1e-5)
    halves = expressions[:, [names.index("cheekPuff_L"), names.index("cheekPuff_R")]].mean(dim=1)
    np.testing.assert_allclose([float(row[rows[0].index("cheekPuff")]) for row in rows[1:]], halves.numpy(), atol=1e-5)
    data = json.loads((out / "expressions.json").read_text())
    assert data["model"] == "ict" and data["not_modelled"] == ["tongueOut"] and len(data["frames"]) == 4
    assert data["frames"][2]["weights"]["jawOpen"] == 1.0
