"""Files from someone else never run code: a checkpoint or avatar naming a pickled FaceVerse ``.npy``."""

import json

import numpy as np
import pytest

from invertavatar_core import ExperimentConfig
from invertavatar_core.cli import main

DEMO_ARGS = ["--source-frames", "1", "--driving-frames", "1", "--orbit-frames", "2", "--no-progress", "--device", "cpu"]


class _Canary:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code from the file ran."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def hostile(tmp_path, full_registry, tiny_base, tiny_models, tiny_frames):
    """An avatar folder carrying its own model checkpoint whose config names a booby-trapped ``.npy``."""
    canary = tmp_path / "canary"
    bundle = tmp_path / "bundle"
    evil = bundle / "faceverse_v3_1.npy"
    bundle.mkdir()
    np.save(evil, {"meanshape": np.zeros(3), "payload": _Canary(canary)}, allow_pickle=True)
    checkpoint = tiny_models.save(bundle / "model")
    data = json.loads((checkpoint / "config.json").read_text())
    data["morphable_model"] = {"name": "faceverse", "path": str(evil)}
    ExperimentConfig.model_validate(data, context={"registry": full_registry})  # a valid config
    (checkpoint / "config.json").write_text(json.dumps(data))
    inverter = full_registry.create(
        "inverter", tiny_base.inverter, registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    avatar = inverter.invert(tiny_frames[:1])
    avatar = type(avatar)(avatar.features, avatar.prior_config, avatar.identity, 1, avatar.inverter,
                          {"checkpoint": str(checkpoint)})  # fmt: skip
    avatar.save(bundle / "avatar")
    return {"canary": canary, "evil": evil, "checkpoint": checkpoint, "avatar": bundle / "avatar"}


def _one_line_naming(err: str, path) -> str:
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0], lines[0]
    return lines[0]


def test_the_crafted_file_is_live(hostile, tmp_path):
    # Control: an unrestricted load of the same file does run its payload, so the tests below can fail.
    control = tmp_path / "control.npy"
    control_canary = tmp_path / "control-canary"
    np.save(control, {"payload": _Canary(control_canary)}, allow_pickle=True)
    np.load(control, allow_pickle=True).item()["payload"].close()
    assert control_canary.exists()


def test_render_orbit_of_a_hostile_avatar_runs_nothing(hostile, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    assert main(["render", "--avatar", str(hostile["avatar"]), "--orbit", "--frames", "2", "--out", str(out),
                 "--device", "cpu"]) == 2  # fmt: skip
    line = _one_line_naming(capsys.readouterr().err, hostile["evil"])
    assert "convert faceverse" in line
    assert not hostile["canary"].exists() and not out.exists()


def test_demo_with_a_hostile_checkpoint_runs_nothing(hostile, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--checkpoint", str(hostile["checkpoint"]), *DEMO_ARGS]) == 2
    _one_line_naming(capsys.readouterr().err, hostile["evil"])
    assert not hostile["canary"].exists()


def test_the_converter_refuses_the_payload(hostile, tmp_path, capsys):
    out = tmp_path / "converted.npz"
    assert main(["convert", "faceverse", str(hostile["evil"]), str(out)]) == 2
    line = _one_line_naming(capsys.readouterr().err, hostile["evil"])
    assert "io.open" in line  # the refused global is named
    assert not hostile["canary"].exists() and not out.exists()
