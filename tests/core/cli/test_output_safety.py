"""Where output goes is checked before any work; nothing a user wrote is replaced; no temporaries are left."""

import os

import pytest
import yaml

from invertavatar_core.cli import main
from invertavatar_core.config.presets import preset_experiment_data
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.io.media import save_image
from invertavatar_core.plugin.registry import Registry


@pytest.fixture
def no_models(monkeypatch):
    """Every component (prior, encoders, morphable model, detector) is built through Registry.create."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the output path was checked")

    monkeypatch.setattr(Registry, "create", refuse)


@pytest.fixture
def workspace(tmp_path, full_registry, monkeypatch):
    """A working folder with a photo, an experiment config, a file and (as non-root) a read-only folder."""
    import torch

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    save_image(torch.zeros(3, 16, 16), work / "photo.png")
    config = work / "exp.yaml"
    config.write_text(yaml.safe_dump(preset_experiment_data(full_registry, "tiny", work / "run")))
    (work / "notes.txt").write_text("a user's file")
    return work


def _argv(command: str, out: str) -> list[str]:
    return {
        "demo": ["demo", "--out", out, "--no-progress", "--device", "cpu"],
        "reconstruct": ["reconstruct", "--checkpoint", "run", "--source", "photo.png", "--out", out, "--overwrite"],
        "render": ["render", "--avatar", "avatar", "--orbit", "--out", out],
        "export": ["export", "--avatar", "avatar", "--out", out],
        "preprocess": ["preprocess", "photo.png", "--out", out],
        "train": ["train", "oneshot", "--config", "exp.yaml", "--out", out, "--no-progress"],
        "evaluate": ["evaluate", "--config", "exp.yaml", "--out", out, "--no-progress"],
        "sweep": ["sweep", "--config", "exp.yaml", "--set", "seed=1,2", "--out", out],
        "synth-heads": ["synth-heads", "--out", out],
    }[command]


COMMANDS = ["demo", "reconstruct", "render", "export", "preprocess", "train", "evaluate", "sweep", "synth-heads"]
CASES = {
    "current-folder": (".", "current folder"),
    "parent-is-a-file": ("notes.txt/out", "notes.txt is a file, not a folder"),
    "file-where-a-folder-goes": ("notes.txt", "is a file; a folder goes there"),
    "read-only": ("locked/out", "permission denied"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_output_fails_before_any_model_is_built(command, case, workspace, no_models, capsys, monkeypatch):
    out, message = CASES[case]
    if command == "render":  # writes a video file: a folder is what is in the way there
        out, message = {
            "current-folder": (".", "is a folder; a file goes there"),
            "file-where-a-folder-goes": ("avatar-folder", "is a folder; a file goes there"),
        }.get(case, (out.replace("/out", "/o.mp4"), message))
        (workspace / "avatar-folder").mkdir()
    if case == "read-only":
        locked = workspace / "locked"
        locked.mkdir(mode=0o555)
        if os.geteuid() == 0:  # root may write anyway: give the answer a normal user would get
            from invertavatar_core.io import atomic

            real_access = os.access
            monkeypatch.setattr(atomic.os, "access", lambda p, m: str(p) != str(locked) and real_access(p, m))
    before = sorted(p.name for p in workspace.iterdir())
    assert main(_argv(command, out)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0] and out in lines[0], lines[0]
    assert (workspace / "notes.txt").read_text() == "a user's file"
    assert sorted(p.name for p in workspace.iterdir()) == before  # nothing written, no .tmp-* left
    assert not list(workspace.rglob("*.tmp-*"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_models):
    return tiny_models.save(tmp_path_factory.mktemp("ckpt") / "run")


def _fit_folder(root, tiny_frames, sequence):
    from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame

    sizes = tiny_frames.image.shape[-1], tiny_frames.unwrap_grid.shape[1]
    writer = FitDatasetWriter(root, {"name": "procedural"}, *sizes)
    for t in range(len(tiny_frames)):
        writer.add(sequence, f"{t:05d}", FittedFrame(
            image=tiny_frames.image[t], camera=tiny_frames.camera[t], expression_uv=tiny_frames.expression_uv[t],
            unwrap_grid=tiny_frames.unwrap_grid[t], visibility=tiny_frames.visibility[t],
            identity=tiny_frames.identity[t], expression=tiny_frames.expression[t]))  # fmt: skip
    return root


def test_reconstruct_keeps_a_users_folder_and_replaces_only_its_own(checkpoint, tiny_frames, tmp_path, capsys):
    fit = _fit_folder(tmp_path / "fit", tiny_frames, "clip")
    sources = [str(p) for p in sorted((fit / "images" / "clip").glob("*.png"))[:2]]
    argv = ["reconstruct", "--checkpoint", str(checkpoint), "--source", *sources, "--fit", str(fit), "--device", "cpu"]
    users = tmp_path / "photos"
    users.mkdir()
    (users / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    (users / "sub").mkdir()
    (users / "sub" / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):
        assert main([*argv, "--out", str(users), *extra]) == 2
        assert "did not write" in capsys.readouterr().err
        assert (users / "holiday.jpg").read_bytes() == b"\xff\xd8 my photo"
        assert (users / "sub" / "notes.txt").read_text() == "keep"
        assert sorted(p.name for p in users.iterdir()) == ["holiday.jpg", "sub"]

    out = tmp_path / "avatar"
    assert main([*argv, "--out", str(out)]) == 0
    first = Avatar.load(out)
    assert first.frame_count == 2
    assert main([*argv, "--out", str(out)]) == 2  # ours, but no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    one_source = [*argv[:5], *argv[-4:]]
    assert main([*one_source, "--out", str(out), "--overwrite"]) == 0
    assert Avatar.load(out).frame_count == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".bak-" in p.name]
