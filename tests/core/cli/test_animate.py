"""``invertavatar animate`` and ``invertavatar live`` end to end on the tiny preset (random weights)."""

import dataclasses
import importlib.util
import json
import sys

import pytest
import torch
from camera_turns import azimuth, yaw_turn

from invertavatar_core.cli import main
from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_core.io.media import read_video_frames, video_frame_count, write_video

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def _write_fit(root, frames, *, model=None, cameras=None, identity=None):
    writer = FitDatasetWriter(
        root, model or {"name": "procedural"}, frames.image.shape[-1], frames.unwrap_grid.shape[1]
    )
    for t in range(len(frames)):
        writer.add(
            "clip",
            f"{t:05d}",
            FittedFrame(
                image=frames.image[t],
                camera=frames.camera[t] if cameras is None else cameras[t],
                expression_uv=frames.expression_uv[t],
                unwrap_grid=frames.unwrap_grid[t],
                visibility=frames.visibility[t],
                identity=frames.identity[t] if identity is None else identity[0],
                expression=frames.expression[t],
            ),
        )
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, full_registry, tiny_base, tiny_models, tiny_frames):
    """A saved tiny model, an avatar made from it (source camera: yaw -0.2) and a same-person fit folder."""
    root = tmp_path_factory.mktemp("animate")
    tiny_models.save(root / "model")
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    avatar = inverter.invert(tiny_frames[:2])
    extra = {"checkpoint": str((root / "model").resolve()), "morphable_model": {"name": "procedural"}}
    dataclasses.replace(avatar, extra=extra, source_camera=look_at_camera(-0.2, 0.05)).save(root / "avatar")
    _write_fit(root / "same", tiny_frames)
    return root


def _animate(workspace, out, *extra):
    argv = ["animate", "--avatar", str(workspace / "avatar"), "--out", str(out), "--device", "cpu", "--no-progress"]
    return main([*argv, *extra])


def test_same_identity_reproduces_render_of_the_driving_frames(workspace, tmp_path, capsys):
    assert _animate(workspace, tmp_path / "animated.mp4", "--driving", str(workspace / "same")) == 0
    assert "mode: same identity (identity distance 0.00" in capsys.readouterr().out
    render = ["render", "--avatar", str(workspace / "avatar"), "--drive", str(workspace / "same")]
    assert main([*render, "--out", str(tmp_path / "rendered.mp4"), "--device", "cpu", "--no-progress"]) == 0
    animated, rendered = read_video_frames(tmp_path / "animated.mp4"), read_video_frames(tmp_path / "rendered.mp4")
    assert len(animated) == len(rendered) == 4
    for a, b in zip(animated, rendered, strict=True):
        assert torch.equal(a, b)


def test_auto_mode_calls_the_avatars_own_source_video_same_identity(workspace, tiny_frames, tmp_path):
    from invertavatar_core.cli.animate import _own_sources
    from invertavatar_core.inversion.avatar import Avatar

    avatar = Avatar.load(workspace / "avatar")
    video = write_video(list(tiny_frames.image), tmp_path / "source.mp4", fps=5.0)
    assert not _own_sources(avatar, workspace / "same", video)
    avatar = dataclasses.replace(avatar, extra={**avatar.extra, "sources": [str(video)]})
    assert _own_sources(avatar, tmp_path / "elsewhere", video)
    avatar = dataclasses.replace(avatar, extra={**avatar.extra, "fit": str(workspace / "same")})
    assert _own_sources(avatar, workspace / "same", workspace / "same")


def test_cross_identity_transfers_relative_yaw_onto_the_source_pose(workspace, tiny_frames, tmp_path, monkeypatch,
                                                                    capsys):  # fmt: skip
    from invertavatar_core.animation import driving

    turns = [0.0, 0.3, 0.1, 0.3]
    cameras = torch.cat([yaw_turn(look_at_camera(0.15, 0.0), a) for a in turns])
    stranger = torch.randn(1, tiny_frames.identity.shape[1], generator=torch.Generator().manual_seed(4)) * 2
    fit = _write_fit(tmp_path / "stranger", tiny_frames, cameras=cameras, identity=stranger)
    seen = []
    render = driving.AvatarAnimator.render

    def spy(self, expression_uv, camera):
        seen.append((expression_uv.clone(), camera.clone()))
        return render(self, expression_uv, camera)

    monkeypatch.setattr(driving.AvatarAnimator, "render", spy)
    assert _animate(workspace, tmp_path / "cross.mp4", "--driving", str(fit)) == 0
    out = capsys.readouterr().out
    assert "mode: cross identity (identity distance" in out and "taken as another person" in out
    passed = torch.cat([camera for _, camera in seen])
    source = look_at_camera(-0.2, 0.05)
    torch.testing.assert_close(passed[0:1], source, atol=1e-5, rtol=0)
    torch.testing.assert_close(azimuth(passed) - azimuth(source), torch.tensor(turns), atol=1e-5, rtol=0)
    # The source identity is kept: the expression renders are those of the same-person fit, whose
    # expressions these are; only the cameras differ.
    cross_uv = [uv for uv, _ in seen]
    seen.clear()
    assert _animate(workspace, tmp_path / "same.mp4", "--driving", str(workspace / "same"), "--mode", "same") == 0
    for a, (b, _) in zip(cross_uv, seen, strict=True):
        assert torch.equal(a, b)
    # Forced same identity uses the stranger's cameras as they are.
    seen.clear()
    assert _animate(workspace, tmp_path / "forced.mp4", "--driving", str(fit), "--mode", "same") == 0
    torch.testing.assert_close(torch.cat([c for _, c in seen]), cameras, atol=1e-6, rtol=0)


def test_side_by_side_doubles_the_width(workspace, tmp_path):
    out = tmp_path / "both.mp4"
    assert _animate(workspace, out, "--driving", str(workspace / "same"), "--side-by-side", "--frames", "2") == 0
    frames = read_video_frames(out)
    assert len(frames) == 2 and frames[0].shape == (3, 64, 128)


def test_a_driving_fit_of_another_model_is_refused_naming_both(workspace, tiny_frames, tmp_path, capsys, monkeypatch):
    from invertavatar_core.animation import driving

    fit = _write_fit(tmp_path / "ict", tiny_frames, model={"name": "ict", "path": "FaceXModel"})
    monkeypatch.setattr(driving.AvatarAnimator, "render", lambda *a: pytest.fail("rendered before the check"))
    assert _animate(workspace, tmp_path / "x.mp4", "--driving", str(fit)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fitted with morphable model 'ict'" in err and "uses 'procedural'" in err
    assert not (tmp_path / "x.mp4").exists()
    render = ["render", "--avatar", str(workspace / "avatar"), "--drive", str(fit), "--out", str(tmp_path / "y.mp4")]
    assert main(render) == 2
    assert "morphable model 'ict'" in capsys.readouterr().err and not (tmp_path / "y.mp4").exists()


def test_bad_animate_input_is_one_line_before_any_work(workspace, tmp_path, capsys):
    assert _animate(workspace, tmp_path / "x.mp4", "--driving", str(tmp_path / "absent")) == 2
    assert "--driving" in capsys.readouterr().err
    assert _animate(workspace, tmp_path / "x.mp4", "--driving", str(workspace / "same"), "--sequence", "nope") == 2
    assert "--sequence nope: not in" in capsys.readouterr().err
    assert _animate(workspace, tmp_path, "--driving", str(workspace / "same")) == 2  # --out is a folder
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="live tracking needs the mediapipe extra")
def test_live_on_a_generated_clip_writes_every_frame_and_reports_fps(workspace, full_registry, tmp_path, capsys):
    from invertavatar_faceverse.synthetic_heads import SyntheticHeadsConfig, synthesize_heads

    heads = tmp_path / "heads"
    config = SyntheticHeadsConfig(
        identities=1, frames_per_identity=5, resolution=128, uv_resolution=16, texture_resolution=64, seed=3,
        yaw_range=0.3,  # small steps between frames, as in a real clip: the tracker keeps the face
    )  # fmt: skip
    model = full_registry.create("morphable_model", {"name": "procedural", "rows": 56, "columns": 48})
    synthesize_heads(heads, config, model, full_registry.create("rasterizer", "torch"), progress=False)
    images = [p for p in sorted((heads / "images").rglob("*.png"))]
    from invertavatar_core.io.media import read_image

    clip = write_video([read_image(p) for p in images], tmp_path / "clip.mp4", fps=10.0)
    out, report = tmp_path / "live.mp4", tmp_path / "live.json"
    argv = ["live", "--avatar", str(workspace / "avatar"), "--source", str(clip), "--as-fast-as-possible"]
    argv += ["--out", str(out), "--report", str(report), "--side-by-side", "--startup-steps", "60"]
    argv += ["--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "end to end" in printed and "CPU_FPS" in printed and "rotation_deg" in printed
    summary = json.loads(report.read_text())
    assert summary["frames"] == 5 and summary["no_face"] == 0 and summary["fps"] > 0
    assert set(summary["phase_ms"]) == {"capture", "track", "fit", "render", "output"}
    assert video_frame_count(out) == 5
    assert read_video_frames(out, [0])[0].shape == (3, 64, 128)


def test_live_needs_somewhere_to_show_and_a_source(workspace, tmp_path, capsys, monkeypatch):
    live = ["live", "--avatar", str(workspace / "avatar")]
    assert main([*live, "--source", "x.mp4"]) == 2
    assert "nothing to show" in capsys.readouterr().err
    if sys.platform.startswith("linux"):
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        assert main([*live, "--window"]) == 2
        assert "--window: no display here" in capsys.readouterr().err
    if importlib.util.find_spec("cv2") is not None:
        assert main([*live, "--source", str(tmp_path / "absent.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
        assert "absent.mp4: file not found" in capsys.readouterr().err
