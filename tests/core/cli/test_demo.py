"""``invertavatar demo``: every output written, figures consistent with the library, user files safe."""

import json
import math

import torch

from invertavatar_core.cli import main
from invertavatar_core.cli.reconstruct import fitted_frames
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.io.atomic import MARKER_FILE
from invertavatar_core.io.media import video_frame_count

ARGS = ["--source-frames", "3", "--driving-frames", "2", "--orbit-frames", "3", "--no-progress", "--device", "cpu"]


def test_demo_writes_avatar_videos_and_figures(tmp_path, full_registry, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *ARGS]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "avatar from 3 frame(s)" in printed

    summary = json.loads((out / "demo.json").read_text())
    rows = summary["per_source_frame"]
    assert [r["source_frames"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["psnr"]) and 0 <= r["l1"] <= 1 and r["add_frame_ms"] > 0 for r in rows)
    assert video_frame_count(out / "driven.mp4") == 2 and video_frame_count(out / "orbit.mp4") == 3
    for name in ("grid.png", "error_vs_frames.png"):
        assert (out / name).stat().st_size > 1000
    # The last line names everything the demo wrote (not the folder's marker).
    written = {p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name != MARKER_FILE}
    assert {"heads/", "model/", "avatar/", "driven.mp4", "orbit.mp4", "error_vs_frames.png", "demo.json"} <= written
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"wrote {out}/: ") and set(last.split(": ", 1)[1].split(", ")) == written
    # The demo head is a held-out identity: its seed lies in the range no training set draws from.
    synthetic = json.loads((out / "heads" / "dataset.json").read_text())["synthetic"]
    low, high = synthetic["seed_ranges"]["heldout"]
    assert synthetic["split"] == "heldout" and all(low <= s < high for s in synthetic["identity_seeds"].values())
    assert synthetic["seed_ranges"]["train"][1] <= low  # and that range is disjoint from training's

    # The saved avatar is the streaming inversion of the first three synthetic frames (w+ from frame 0).
    _assert_avatar_inverts(out, fitted_frames(out / "heads")[:3], full_registry)

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
    _assert_avatar_inverts(out, fitted_frames(out / "heads", sequences=[second])[:3], full_registry)


def _assert_avatar_inverts(out, frames, registry):
    """The demo's saved avatar equals the inversion of ``frames`` by the demo's saved models."""
    avatar = Avatar.load(out / "avatar")
    models = InversionModels.load(out / "model", registry).eval()
    inverter = registry.create(
        "inverter", models.experiment.inverter, registry=registry, experiment=models.experiment, models=models
    )
    expected = inverter.invert(frames)
    assert avatar.frame_count == len(frames)
    for key, value in expected.features.tensors().items():
        torch.testing.assert_close(avatar.features.tensors()[key], value, rtol=1e-4, atol=1e-5)


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(mine), *ARGS]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_demo_with_a_missing_checkpoint_names_it(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--checkpoint", str(tmp_path / "nope"), *ARGS]) == 2
    assert "nope" in capsys.readouterr().err
