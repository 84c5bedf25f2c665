"""The live loop with a scripted tracker: frames out, faces lost and held, pipelined = sequential, the
report's tables and jitter; a paced file source drops the frames whose time has passed."""

import dataclasses
import types

import numpy as np
import pytest
import torch

from invertavatar_core.animation.driving import AvatarAnimator
from invertavatar_core.animation.live import (
    PHASES,
    LiveReport,
    LiveSession,
    LiveSettings,
    frame_to_frame_change,
    stillest_window,
)
from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_core.io.media import write_video

pytest.importorskip("cv2", reason="live capture reads through OpenCV (the faceverse [mediapipe] extra)")

from invertavatar_core.animation import capture  # noqa: E402 - needs cv2
from invertavatar_core.animation.capture import FrameSource  # noqa: E402


@dataclasses.dataclass
class Tracked:
    pose: torch.Tensor
    expression: torch.Tensor
    eyes: torch.Tensor | None = None


class ScriptedTracker:
    """A tracker whose frame ``k`` has yaw ``0.02 k`` and jaw weight ``k / 10``; no face in ``missing`` frames."""

    def __init__(self, identity: torch.Tensor, n_expression: int, missing: set[int]) -> None:
        self.driver = identity
        self.identity = None
        self.n_expression = n_expression
        self.missing = missing
        self.closed = False

    def detect(self, image: np.ndarray):
        k = round(float(image[:, :, 0].mean()) / 20)  # the frame number, painted into the clip
        return None if k in self.missing else torch.full((478, 2), float(k))

    def fit_landmarks(self, points: torch.Tensor) -> Tracked:
        k = float(points[0, 0])
        self.identity = self.driver
        pose = torch.tensor([[0.02 * k, 0.0, 0.0, 0.0, 0.0, 2.7]])
        expression = torch.zeros(1, self.n_expression)
        expression[0, 0] = k / 10
        return Tracked(pose, expression)

    def camera(self, pose: torch.Tensor) -> torch.Tensor:
        return look_at_camera(pose[:, 0], pose[:, 1])

    def close(self) -> None:
        self.closed = True


def _clip(path, frames: int, size: int = 32):
    """A clip whose frame ``k`` is flat grey ``20 k`` (what the scripted tracker reads back)."""
    images = [torch.full((3, size, size), 20 * k / 127.5 - 1.0) for k in range(frames)]
    return write_video(images, path, fps=25.0)


@pytest.fixture(scope="module")
def animator(full_registry, tiny_base, tiny_models, tiny_frames):
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    avatar = dataclasses.replace(inverter.invert(tiny_frames[:1]), source_camera=look_at_camera(-0.2, 0.0))
    model = full_registry.create("morphable_model", tiny_base.morphable_model)
    rasterizer = full_registry.create("rasterizer", tiny_base.rasterizer)
    return AvatarAnimator(avatar, tiny_models.prior, model, rasterizer)


def _session(animator, clip, pipeline: bool, missing=frozenset({0, 4}), identity=None):
    n_expression = animator.model.n_expression
    tracker = ScriptedTracker(animator.avatar.identity if identity is None else identity, n_expression, set(missing))
    source = FrameSource(str(clip), realtime=False)
    return LiveSession(source, tracker, animator, LiveSettings(pipeline=pipeline)), tracker


def test_live_renders_each_frame_holds_lost_faces_and_pipelining_changes_nothing(animator, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", 7)
    outputs = {}
    for pipeline in (False, True):
        session, tracker = _session(animator, clip, pipeline)
        frames = list(session.frames())
        outputs[pipeline] = frames
        report = session.report
        # Frame 0 has no face (nothing to show yet); frame 4 has none either (the last image is held).
        assert [f.index for f in frames] == [1, 2, 3, 4, 5, 6]
        assert report.frames == 6 and report.no_face == 2 and report.timed == 5 and tracker.closed
        assert frames[3].avatar is frames[2].avatar and frames[4].avatar is not frames[3].avatar
        assert report.mode == "same" and report.pipelined is pipeline
        assert all(f.repeat == 1 for f in frames) and report.dropped == 0
        assert set(report.seconds) == set(PHASES) and report.fps > 0 and report.cpu_fps > 0
        rows = report.phase_rows()
        assert [r["phase"] for r in rows] == [*PHASES, "end to end"]
        assert (rows[0]["cpu_ms"] is None) is pipeline  # per-phase CPU only when one thread does everything
        assert rows[3]["phase"] == "render" and rows[3]["cpu_ms"] > 0  # the render's own thread, pipelined too
    for a, b in zip(outputs[False], outputs[True], strict=True):
        assert torch.equal(a.avatar, b.avatar)


def test_live_cross_identity_moves_the_source_pose_and_reports_jitter(animator, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", 5)
    stranger = torch.randn(1, animator.avatar.identity.shape[1], generator=torch.Generator().manual_seed(2)) * 2
    session, _ = _session(animator, clip, False, missing=(), identity=stranger)
    assert len(list(session.frames())) == 5
    report = session.report
    assert report.mode == "cross" and "another person" in report.why
    jitter = report.jitter(still_frames=3)
    # The scripted yaw moves 0.02 rad per frame; smoothing lags behind it, so it moves less per frame.
    assert jitter["rotation_deg"]["raw"] == pytest.approx(0.02 * 180 / np.pi, rel=1e-4)
    assert 0 < jitter["rotation_deg"]["smoothed"] < jitter["rotation_deg"]["raw"]
    assert {r["signal"] for r in report.jitter_rows(3)} == {"rotation_deg", "translation", "expression"}
    summary = report.summary(3)
    assert summary["frames"] == 5 and summary["mode"] == "cross" and set(summary["phase_ms"]) == set(PHASES)


def test_a_paced_file_drops_the_frames_whose_time_has_passed(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "clip.mp4", 12)
    now = [100.0]
    fake = types.SimpleNamespace(perf_counter=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(capture, "time", fake)
    source = FrameSource(str(clip), realtime=True)
    assert source.fps == pytest.approx(25.0) and source.total_frames == 12
    seen = []
    for frame in source:
        seen.append((frame.index, frame.dropped, round(float(frame.image[:, :, 0].mean()) / 20)))
        now[0] += 3 / 25.0  # the consumer takes three frame periods per frame
    assert [s[0] for s in seen] == [0, 3, 6, 9]
    assert [s[1] for s in seen] == [0, 2, 2, 2] and source.dropped == 6
    assert [s[2] for s in seen] == [0, 3, 6, 9]  # the frame shown is the one due, not a stale one
    # A fast consumer waits for each frame's time instead (and nothing is dropped).
    source = FrameSource(str(clip), realtime=True, max_frames=4)
    assert [f.dropped for f in source] == [0, 0, 0, 0] and source.waited == pytest.approx(3 / 25.0)


def test_a_missing_source_is_one_line():
    from invertavatar_core.errors import UserError

    with pytest.raises(UserError, match="--source nowhere.mp4: file not found"):
        FrameSource("nowhere.mp4")


def test_jitter_helpers():
    values = torch.tensor([[0.0], [1.0], [1.1], [1.2], [5.0]])
    assert frame_to_frame_change(values) == pytest.approx((1 + 0.1 + 0.1 + 3.8) / 4)
    assert stillest_window(values, 3) == slice(1, 4)
    assert stillest_window(values, 10) == slice(0, 5)
    assert LiveReport().jitter(3) == {} and LiveReport().fps == 0.0


def test_the_report_keeps_bounded_history_but_averages_over_every_frame():
    report = LiveReport(history_frames=10)
    for t in range(100):
        moving = 0.01 * t if t < 50 else 0.5  # the head turns, then holds still
        pose = torch.tensor([[moving, 0.0, 0.0, 0.0, 0.0, 2.7]])
        report.record(pose, pose, torch.zeros(1, 3), torch.zeros(1, 3))
    assert len(report.history) == 10
    jitter = report.jitter(still_frames=5)["rotation_deg"]
    assert jitter["raw"] == pytest.approx(0.01 * 180 / np.pi * 50 / 99, rel=1e-4)  # over all 99 steps
    assert jitter["raw_still"] == 0.0 and jitter["smoothed"] == jitter["raw"]


def test_a_paced_source_restarts_its_clock_after_the_slow_first_face(animator, tmp_path, monkeypatch):
    clip = _clip(tmp_path / "clip.mp4", 8)
    now = [100.0]
    fake = types.SimpleNamespace(perf_counter=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(capture, "time", fake)
    for pipeline in (False, True):
        session, tracker = _session(animator, clip, pipeline, missing=())
        session.source = FrameSource(str(clip), realtime=True)
        fit = tracker.fit_landmarks

        def slow_first_fit(points, fit=fit, tracker=tracker):
            if tracker.identity is None:
                now[0] += 2.0  # the full fit of the first face: 50 frame periods
            return fit(points)

        tracker.fit_landmarks = slow_first_fit
        frames = list(session.frames())
        assert session.report.dropped == 0 and [f.index for f in frames] == list(range(8)), pipeline
