"""The commands end to end on the tiny preset: train -> reconstruct (multi-frame, per-frame progress) -> render."""

import json

import torch
import yaml

from invertavatar_core.cli import main
from invertavatar_core.config.presets import preset_experiment_data
from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.io.media import video_frame_count


def _write_fit_folder(root, frames) -> list:
    writer = FitDatasetWriter(root, {"name": "procedural"}, frames.image.shape[-1], frames.unwrap_grid.shape[1])
    for t in range(len(frames)):
        writer.add(
            "clip",
            f"{t:05d}",
            FittedFrame(
                image=frames.image[t],
                camera=frames.camera[t],
                expression_uv=frames.expression_uv[t],
                unwrap_grid=frames.unwrap_grid[t],
                visibility=frames.visibility[t],
                identity=frames.identity[t],
                expression=frames.expression[t],
            ),
        )
    return sorted((root / "images" / "clip").glob("*.png"))


def test_train_reconstruct_render(full_registry, tiny_frames, tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    data = preset_experiment_data(full_registry, "tiny", tmp_path / "run", aggregator=None)
    config.write_text(yaml.safe_dump(data))
    assert main(["train", "oneshot", "--config", str(config), "--set", "training.steps=1", "--no-progress"]) == 0
    assert "model checkpoint" in capsys.readouterr().out

    sources = _write_fit_folder(tmp_path / "fit", tiny_frames)
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                str(tmp_path / "run"),
                "--source",
                *map(str, sources[:3]),
                "--fit",
                str(tmp_path / "fit"),
                "--out",
                str(tmp_path / "avatar"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "frame 3/3" in captured.err and "avatar from 3 frame(s)" in captured.out
    avatar = Avatar.load(tmp_path / "avatar")
    assert avatar.frame_count == 3 and avatar.extra["checkpoint"] == str((tmp_path / "run").resolve())
    # The command's avatar is the library's avatar of the same (stored, float16-rounded) frames.
    from invertavatar_core.data.datasets import FitDataset
    from invertavatar_core.inversion.observation import Observation

    models = InversionModels.load(tmp_path / "run", full_registry)
    inverter = full_registry.create(
        "inverter", models.experiment.inverter, registry=full_registry, experiment=models.experiment, models=models
    )
    stored = FitDataset(tmp_path / "fit")
    expected = inverter.invert(Observation.cat([stored[i] for i in range(3)]))
    for key, value in expected.features.tensors().items():
        torch.testing.assert_close(avatar.features.tensors()[key], value, rtol=1e-4, atol=1e-5)

    assert (
        main(
            [
                "render",
                "--avatar",
                str(tmp_path / "avatar"),
                "--orbit",
                "--frames",
                "4",
                "--out",
                str(tmp_path / "orbit.mp4"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert video_frame_count(tmp_path / "orbit.mp4") == 4
    assert (
        main(
            [
                "render",
                "--avatar",
                str(tmp_path / "avatar"),
                "--drive",
                str(tmp_path / "fit"),
                "--out",
                str(tmp_path / "driven.mp4"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert video_frame_count(tmp_path / "driven.mp4") == len(tiny_frames)
    capsys.readouterr()

    # A driving fit of another morphable model is refused by name, before anything is rendered.
    other = tmp_path / "ict-fit"
    writer = FitDatasetWriter(other, {"name": "ict"}, tiny_frames.image.shape[-1], tiny_frames.unwrap_grid.shape[1])
    writer.add(
        "clip",
        "00000",
        FittedFrame(
            image=tiny_frames.image[0],
            camera=tiny_frames.camera[0],
            expression_uv=tiny_frames.expression_uv[0],
            unwrap_grid=tiny_frames.unwrap_grid[0],
            visibility=tiny_frames.visibility[0],
            identity=torch.zeros(100),
            expression=torch.rand(53),
        ),
    )
    mismatch = ["render", "--avatar", str(tmp_path / "avatar"), "--drive", str(other)]
    assert main([*mismatch, "--out", str(tmp_path / "bad.mp4"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'ict'" in err and "'procedural'" in err and "Traceback" not in err
    assert not (tmp_path / "bad.mp4").exists()


def test_reconstruct_reports_bad_input_clearly(full_registry, tmp_path, capsys):
    assert (
        main(
            [
                "reconstruct",
                "--checkpoint",
                str(tmp_path / "nothing"),
                "--source",
                "a.png",
                "--fit",
                str(tmp_path),
                "--out",
                str(tmp_path / "avatar"),
            ]
        )
        == 2
    )
    assert f"--checkpoint {tmp_path / 'nothing'}: folder not found" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "avatar.json").write_text(json.dumps({"format": "invertavatar.avatar", "version": 1}))
    assert main(["render", "--avatar", str(tmp_path / "a"), "--orbit", "--out", str(tmp_path / "o.mp4")]) == 2
    assert "avatar" in capsys.readouterr().err
