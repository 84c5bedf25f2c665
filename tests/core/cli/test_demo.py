"""``invertavatar demo``: every output written, figures consistent with the library, user files safe."""

import argparse
import json
import math

import pytest
import torch

from invertavatar_core import pretrained
from invertavatar_core.cli import demo, main
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.evaluation.metrics import head_psnr
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.io.atomic import MARKER_FILE
from invertavatar_core.io.media import video_frame_count

OPTIONS = ["--source-frames", "3", "--driving-frames", "2", "--orbit-frames", "3", "--no-progress", "--device", "cpu"]
ARGS = ["--random-weights", *OPTIONS]


def _head(out, name, resolution=64):
    """The demo's synthetic head as the demo loads it (the prior's size)."""
    return FitDataset(out / "heads", image_resolution=resolution).sequence(name)


def test_demo_writes_avatar_videos_and_figures(tmp_path, full_registry, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *ARGS]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "avatar from 3 frame(s)" in printed and "first frame" in printed

    summary = json.loads((out / "demo.json").read_text())
    assert summary["trained"] is False and summary["head"]["split"] == "heldout"
    rows = summary["per_source_frame"]
    assert [r["source_frames"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["head_psnr"]) and 0 <= r["l1"] <= 1 and r["add_frame_ms"] > 0 for r in rows)
    assert video_frame_count(out / "driven.mp4") == 2 and video_frame_count(out / "orbit.mp4") == 3
    for name in ("grid.png", "orbit.png", "head_psnr_vs_frames.png"):
        assert (out / name).stat().st_size > 1000
    # The grid: source / 1 frame / all frames / truth, one row per driving frame (both of them here).
    assert summary["grid"]["columns"] == ["source", "avatar, 1 frame", "avatar, 3 frames", "truth"]
    assert summary["grid"]["driving_frames"] == [1, 2]

    # The metrics table: copy-the-source beside the avatars from 1 and 3 frames, the same columns each.
    table = {row["method"]: row for row in summary["metrics"]}
    assert list(table) == ["copy the source", "avatar from 1 frame", "avatar from 3 frames"]
    assert all(set(row) == {"method", "head_psnr", "head_ms_ssim", "psnr", "l1"} for row in table.values())
    for key in ("head_psnr", "head_ms_ssim", "psnr", "l1"):
        assert table["avatar from 1 frame"][key] == rows[0][key] and table["avatar from 3 frames"][key] == rows[-1][key]
    # Copy-the-source is the first source frame scored over the driving frames' head masks.
    frames = _head(out, summary["head"]["sequence"])
    source, driving = frames.image[:1], frames[3:]
    expected = head_psnr(source.expand_as(driving.image), driving.image, driving.head_mask).mean()
    assert table["copy the source"]["head_psnr"] == pytest.approx(float(expected), abs=1e-3)
    assert "copy the source" in printed and "avatar from 3 frames" in printed

    # The last line names everything the demo wrote (not the folder's marker).
    written = {p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name != MARKER_FILE}
    assert {"heads/", "model/", "avatar/", "driven.mp4", "orbit.mp4", "grid.png", "orbit.png", "demo.json"} <= written
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"wrote {out}/: ") and set(last.split(": ", 1)[1].split(", ")) == written
    # The demo head is a held-out identity: its seed lies in the range no training set draws from.
    synthetic = json.loads((out / "heads" / "dataset.json").read_text())["synthetic"]
    low, high = synthetic["seed_ranges"]["heldout"]
    assert synthetic["split"] == "heldout" and all(low <= s < high for s in synthetic["identity_seeds"].values())
    assert synthetic["seed_ranges"]["train"][1] <= low  # and that range is disjoint from training's

    # The saved avatar is the streaming inversion of the first three synthetic frames (w+ from frame 0).
    _assert_avatar_inverts(out, out / "model", frames[:3], full_registry)

    # The avatar records its model, so the render command works on it as it stands.
    assert (
        main(["render", "--avatar", str(out / "avatar"), "--orbit", "--frames", "2", "--out", str(tmp_path / "o.mp4")])
        == 0
    )
    assert video_frame_count(tmp_path / "o.mp4") == 2
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote 2 frames -> {tmp_path / 'o.mp4'}"

    # A second run may rewrite its own folder; with another head it inverts that head only, although
    # heads/ now holds both.
    first = set(synthetic["identity_seeds"])
    assert main(["demo", "--out", str(out), "--seed", "1", *ARGS]) == 0
    seeds = json.loads((out / "heads" / "dataset.json").read_text())["synthetic"]["identity_seeds"]
    (second,) = set(seeds) - first
    assert len(seeds) == 2 and "held-out head 1" in Avatar.load(out / "avatar").extra["sources"]
    _assert_avatar_inverts(out, out / "model", _head(out, second)[:3], full_registry)


def _assert_avatar_inverts(out, checkpoint, frames, registry):
    """The demo's saved avatar equals the inversion of ``frames`` by the model in ``checkpoint``."""
    avatar = Avatar.load(out / "avatar")
    models = InversionModels.load(checkpoint, registry).eval()
    inverter = registry.create(
        "inverter", models.experiment.inverter, registry=registry, experiment=models.experiment, models=models
    )
    expected = inverter.invert(frames)
    assert avatar.frame_count == len(frames)
    for key, value in expected.features.tensors().items():
        torch.testing.assert_close(avatar.features.tensors()[key], value, rtol=1e-4, atol=1e-5)


def test_demo_uses_the_shipped_model_unless_given_random_weights(tmp_path, full_registry, monkeypatch, capsys):
    # A model in the package's slot (here a temporary one with seed-7 weights) is the default.
    monkeypatch.setattr(pretrained, "_ROOT", tmp_path / "pretrained")
    slot = tmp_path / "pretrained" / pretrained.DEFAULT_MODEL
    experiment = preset_experiment(full_registry, "tiny", slot, seed=7, name="shipped")
    InversionModels.build(experiment, full_registry).save(slot)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *OPTIONS]) == 0
    printed = capsys.readouterr().out
    assert f"built-in model {pretrained.DEFAULT_MODEL}" in printed and "RANDOM" not in printed
    summary = json.loads((out / "demo.json").read_text())
    assert summary["trained"] is True and summary["checkpoint"] == str(slot.resolve())
    assert not (out / "model").exists()  # the shipped model is used where it lies, not copied
    _assert_avatar_inverts(out, slot, _head(out, summary["head"]["sequence"])[:3], full_registry)
    assert Avatar.load(out / "avatar").extra["checkpoint"] == str(slot.resolve())

    # --random-weights ignores it: the tiny preset with fresh weights, saved into the output folder.
    args = argparse.Namespace(checkpoint=None, random_weights=True, seed=0)
    models, checkpoint, provenance, trained = demo._models(args, full_registry, tmp_path / "random", "cpu")
    assert not trained and "RANDOM" in provenance and checkpoint == tmp_path / "random" / "model"
    shipped = InversionModels.load(slot, full_registry)
    assert not torch.equal(next(models.prior.parameters()), next(shipped.prior.parameters()))


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(mine), *ARGS]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_demo_with_a_missing_checkpoint_names_it(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--checkpoint", str(tmp_path / "nope"), *OPTIONS]) == 2
    assert "nope" in capsys.readouterr().err


def test_demo_takes_a_checkpoint_or_random_weights_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path / "d"), "--checkpoint", str(tmp_path), *ARGS])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
