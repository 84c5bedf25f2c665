"""The live loop: capture -> track -> fit -> smooth -> render, frame by frame, with its timing and jitter.

:class:`LiveSession` drives an avatar from a :class:`~invertavatar_core.animation.capture.FrameSource`
through a :class:`FaceTracker` (the faceverse package's
:class:`~invertavatar_faceverse.live_tracking.LiveFaceTracker`: MediaPipe in tracking mode and a
few Gauss-Newton steps per frame) and an
:class:`~invertavatar_core.animation.driving.AvatarAnimator`:

1. *capture*: the next frame (a paced file drops frames when the loop falls behind);
2. *track*: the frame's 478 landmarks;
3. *fit*: expression, eyes and head pose from the landmarks, warm-started from the previous frame
   (the first face is fitted in full: the driver's identity, counted as start-up, not per frame);
   then the one-euro filter (:mod:`~invertavatar_core.animation.one_euro`) on pose and expression;
4. *render*: the expression UV render on the avatar's identity and the avatar's image at its
   native resolution;
5. *output*: whatever the consumer of :meth:`LiveSession.frames` does (write, show).

Same identity uses the tracked camera as it is; cross identity (``"auto"`` decides after the first
face, :func:`~invertavatar_core.animation.driving.choose_mode`) moves the avatar's source camera
as the driver's head moves from its first tracked pose
(:func:`~invertavatar_core.animation.driving.relative_cameras`).

:class:`LiveReport` holds the frame rates (overall and per phase) and the jitter figure: the mean
frame-to-frame change of the pose (rotation in degrees, translation) and of the expression
weights, raw and smoothed, over all tracked frames and over the stillest second.
"""

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from invertavatar_core.animation.capture import FrameSource
from invertavatar_core.animation.driving import (
    AnimationMode,
    AvatarAnimator,
    avatar_source_camera,
    choose_mode,
    relative_cameras,
)
from invertavatar_core.animation.one_euro import OneEuroFilter
from invertavatar_core.tensor_types import Float, Tensor

__all__ = [
    "PHASES",
    "FaceTracker",
    "LiveFrame",
    "LiveReport",
    "LiveSession",
    "LiveSettings",
    "frame_to_frame_change",
    "stillest_window",
]

PHASES = ("capture", "track", "fit", "render", "output")
"""The per-frame phases the report times, in loop order."""


@runtime_checkable
class FaceTracker(Protocol):
    """What the live loop needs from a tracker (``invertavatar_faceverse.live_tracking.LiveFaceTracker``)."""

    identity: Tensor | None
    """``(1, S)`` the driver's identity, once the first face was fitted."""

    def detect(self, image: np.ndarray) -> Tensor | None:
        """``(478, 2)`` landmarks of an ``(H, W, 3)`` uint8 RGB frame, or None without a face."""
        ...

    def fit_landmarks(self, points: Tensor) -> Any:
        """A tracked frame with ``pose (1, 6)``, ``expression (1, E)``, ``eyes (1, n_eye) | None``."""
        ...

    def camera(self, pose: Tensor) -> Tensor:
        """EG3D labels ``(B, 25)`` of poses ``(B, 6)``."""
        ...

    def close(self) -> None:
        """Release the detector."""
        ...


class LiveSettings(BaseModel):
    """How the live loop drives the avatar."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: str = "auto"
    """``auto`` (decided on the first face), ``same`` (absolute pose) or ``cross`` (relative pose)."""
    smoothing: bool = True
    """One-euro filter on pose and expression (False: raw per-frame fits)."""
    pose_min_cutoff: float = Field(1.0, gt=0)
    """Cutoff (Hz) of a still head pose."""
    pose_beta: float = Field(2.0, ge=0)
    """Cutoff rise per unit of pose speed (rad/s, canonical units/s)."""
    expression_min_cutoff: float = Field(2.0, gt=0)
    """Cutoff (Hz) of still expression weights."""
    expression_beta: float = Field(4.0, ge=0)
    """Cutoff rise per unit of expression speed (weight/s)."""
    still_seconds: float = Field(1.0, gt=0)
    """Length of the stillest window the jitter figure is also given for."""
    pipeline: bool = False
    """Render in a worker thread while the next frame is captured, tracked and fitted (two cores)."""


@dataclass(frozen=True)
class LiveFrame:
    """One output frame.

    The ``avatar`` image ``(3, H, W)`` in [-1, 1], the driving ``image`` ``(H', W', 3)`` uint8
    RGB, its ``index`` in the source, and ``repeat``: how many frame slots it fills in a video at
    the source's rate (1 plus the frames dropped just before it).
    """

    avatar: Tensor
    image: np.ndarray
    index: int
    repeat: int = 1


def frame_to_frame_change(values: Float[Tensor, "T D"]) -> float:
    """Mean over consecutive frames of ``|x_t - x_(t-1)|`` (Euclidean over ``D``); 0 for fewer than 2 frames."""
    if len(values) < 2:
        return 0.0
    return float((values[1:] - values[:-1]).norm(dim=-1).mean())


def stillest_window(values: Float[Tensor, "T D"], length: int) -> slice:
    """The ``length`` consecutive frames over which ``values`` change least (all frames when fewer)."""
    if len(values) <= length or length < 2:
        return slice(0, len(values))
    steps = (values[1:] - values[:-1]).norm(dim=-1)
    window = steps.unfold(0, length - 1, 1).sum(-1)
    start = int(window.argmin())
    return slice(start, start + length)


@dataclass
class LiveReport:
    """Counts, timings (seconds per phase, summed) and the raw and smoothed signals of a live run."""

    frames: int = 0
    """Frames rendered (the first face's included)."""
    dropped: int = 0
    """Source frames skipped to keep up (paced files)."""
    no_face: int = 0
    """Frames in which no face was found (the last avatar image is held)."""
    startup_s: float = 0.0
    """The first face's full fit (the driver's identity) and first render."""
    wall_s: float = 0.0
    """Wall time of the per-frame loop after start-up (waiting for a paced source included)."""
    waited_s: float = 0.0
    """Time spent waiting for a paced source's next frame."""
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    """Wall seconds per phase, summed over the timed frames."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of this process per phase (every thread: MediaPipe's too) when one thread runs
    every phase; pipelined, only the render's (its thread's CPU time). On a machine shared with
    other work this is what the phase takes alone, where the wall time also counts waiting for a core."""
    cpu_s: float = 0.0
    """CPU seconds of this process over the timed loop (all threads)."""
    stalled_s: float = 0.0
    """Pipelined: time the loop waited for a render to finish."""
    pipelined: bool = False
    timed: int = 0
    """Frames the phase times are summed over (after start-up)."""
    mode: str = ""
    why: str = ""
    notes: list[str] = field(default_factory=list)
    """Things the user should know (printed by the command)."""
    source_fps: float = 0.0
    history_frames: int = 9000
    """Frames of signal kept for the stillest-window figure (memory stays bounded on a long run;
    the all-frames figures are running sums)."""
    history: deque = field(default_factory=deque)
    """The latest ``history_frames`` ``(raw pose, smoothed pose, raw expression, smoothed expression)``."""
    _sums: dict[str, list[float]] = field(default_factory=dict)
    _steps: int = 0

    def record(self, raw_pose: Tensor, smooth_pose: Tensor, raw_expression: Tensor, smooth_expression: Tensor) -> None:
        """Add one tracked frame's signals (each ``(1, D)``): running jitter sums and the bounded history."""
        row = tuple(
            t.detach().reshape(-1).float().cpu() for t in (raw_pose, smooth_pose, raw_expression, smooth_expression)
        )
        if self.history:
            for name, (now, before) in self._signals(row, self.history[-1]).items():
                sums = self._sums.setdefault(name, [0.0, 0.0])
                sums[0] += float((now[0] - before[0]).norm())
                sums[1] += float((now[1] - before[1]).norm())
            self._steps += 1
        self.history.append(row)
        while len(self.history) > self.history_frames:
            self.history.popleft()

    @staticmethod
    def _signals(row: tuple, before: tuple) -> dict[str, tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]]:
        """``{signal: ((raw, smoothed) now, (raw, smoothed) before)}`` in the report's units."""
        degrees = 180.0 / math.pi
        out = {}
        for name, pick in (
            ("rotation_deg", lambda r: (r[0][:3] * degrees, r[1][:3] * degrees)),
            ("translation", lambda r: (r[0][3:6], r[1][3:6])),
            ("expression", lambda r: (r[2], r[3])),
        ):
            out[name] = (pick(row), pick(before))
        return out

    @property
    def fps(self) -> float:
        """Frames per second of the loop after start-up, end to end (what a viewer sees)."""
        return self.timed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def busy_fps(self) -> float:
        """Frames per second the loop could sustain: frames over the loop's time less waiting for a paced source."""
        busy = self.wall_s - self.waited_s
        return self.timed / busy if busy > 0 else 0.0

    @property
    def cpu_fps(self) -> float:
        """Frames per CPU second of this process after start-up: the rate on one otherwise idle core."""
        return self.timed / self.cpu_s if self.cpu_s > 0 else 0.0

    def phase_ms(self, cpu: bool = False) -> dict[str, float | None]:
        """Mean milliseconds per frame of each phase (wall time, or CPU time with ``cpu``: None where not separable)."""
        source = self.cpu_seconds if cpu else self.seconds
        return {k: 1000.0 * source[k] / self.timed if self.timed and k in source else None for k in PHASES}

    def jitter(self, still_frames: int) -> dict[str, dict[str, float]]:
        """``{signal: {raw, smoothed, raw_still, smoothed_still}}``: mean frame-to-frame change.

        Signals: ``rotation_deg`` (axis-angle change in degrees), ``translation`` (canonical units,
        the head is about 0.5 wide), ``expression`` (weights). ``*_still`` are over the
        ``still_frames`` frames where the smoothed pose moves least.
        """
        if self._steps < 1:
            return {}
        rows = list(self.history)
        smooth_pose = torch.stack([r[1] for r in rows])
        still = stillest_window(smooth_pose, still_frames)
        window = rows[still]
        out = {}
        for name, (raw, smooth) in self._sums.items():
            change = {"raw": 0.0, "smoothed": 0.0}
            for now, before in zip(window[1:], window[:-1], strict=False):
                (raw_now, smooth_now), (raw_before, smooth_before) = self._signals(now, before)[name]
                change["raw"] += float((raw_now - raw_before).norm())
                change["smoothed"] += float((smooth_now - smooth_before).norm())
            steps = max(len(window) - 1, 1)
            out[name] = {
                "raw": raw / self._steps,
                "smoothed": smooth / self._steps,
                "raw_still": change["raw"] / steps,
                "smoothed_still": change["smoothed"] / steps,
            }
        return out

    def phase_rows(self) -> list[dict[str, Any]]:
        """The frame-rate table: per phase and end to end, wall and CPU milliseconds per frame and FPS.

        ``fps`` divides by wall time (on a shared machine it also counts waiting for a core),
        ``cpu_fps`` by this process's CPU time (the rate with the cores to itself; MediaPipe's
        threads included).
        """

        def row(name: str, wall: float | None, cpu: float | None) -> dict[str, Any]:
            return {
                "phase": name,
                "wall_ms": None if wall is None else round(wall, 2),
                "cpu_ms": None if cpu is None else round(cpu, 2),
                "fps": round(1000.0 / wall, 1) if wall else None,
                "cpu_fps": round(1000.0 / cpu, 1) if cpu else None,
            }

        wall, cpu = self.phase_ms(), self.phase_ms(cpu=True)
        rows = [row(name, wall[name], cpu[name]) for name in PHASES]
        per_frame = (lambda seconds: 1000.0 * seconds / self.timed) if self.timed else (lambda seconds: None)
        rows.append(row("end to end", per_frame(self.wall_s), per_frame(self.cpu_s)))
        return rows

    def jitter_rows(self, still_frames: int) -> list[dict[str, Any]]:
        """The jitter table: per signal, the mean frame-to-frame change raw and smoothed (all, stillest window)."""
        return [
            {"signal": name, **{k: round(v, 5) for k, v in values.items()}}
            for name, values in self.jitter(still_frames).items()
        ]

    def summary(self, still_frames: int) -> dict[str, Any]:
        """Every figure as JSON-ready data."""
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "no_face": self.no_face,
            "mode": self.mode,
            "mode_reason": self.why,
            "source_fps": self.source_fps,
            "startup_s": round(self.startup_s, 3),
            "fps": round(self.fps, 2),
            "busy_fps": round(self.busy_fps, 2),
            "cpu_fps": round(self.cpu_fps, 2),
            "pipelined": self.pipelined,
            "stalled_s": round(self.stalled_s, 3),
            "phase_ms": {k: None if v is None else round(v, 2) for k, v in self.phase_ms().items()},
            "phase_cpu_ms": {k: None if v is None else round(v, 2) for k, v in self.phase_ms(cpu=True).items()},
            "jitter": {k: {n: round(v, 5) for n, v in d.items()} for k, d in self.jitter(still_frames).items()},
        }


def _clock() -> tuple[float, float]:
    """``(wall, process CPU)`` seconds now."""
    return time.perf_counter(), time.process_time()


@dataclass
class _InFlight:
    """A frame between its fit and its output: the capture, the main thread's clock marks, the render."""

    captured: Any
    marks: tuple[tuple[float, float], ...]
    future: Any = None
    result: tuple[Tensor, float, float] | None = None
    uv_wall: float = 0.0
    uv_cpu: float = 0.0


class LiveSession:
    """Drive ``animator``'s avatar from ``source`` through ``tracker``; iterate :meth:`frames`.

    Args:
        source: where frames come from (paced or not).
        tracker: landmarks and per-frame fit (built with the avatar's morphable model).
        animator: renders the avatar (needs the morphable model and its identity).
        settings: mode and smoothing.
    """

    def __init__(
        self, source: FrameSource, tracker: FaceTracker, animator: AvatarAnimator, settings: LiveSettings | None = None
    ) -> None:
        if not animator.can_transfer:
            raise ValueError("live driving needs the avatar's identity and the experiment's morphable model")
        self.source = source
        self.tracker = tracker
        self.animator = animator
        self.settings = settings or LiveSettings()
        s = self.settings
        self._pose_filter = OneEuroFilter(s.pose_min_cutoff, s.pose_beta)
        self._expression_filter = OneEuroFilter(s.expression_min_cutoff, s.expression_beta)
        self.report = LiveReport(source_fps=source.fps, pipelined=self.settings.pipeline)
        self.mode: AnimationMode | None = None
        self._reference: Tensor | None = None

    def _decide(self) -> None:
        """Same or cross identity, once the driver's identity is known."""
        self.mode, self.report.why = choose_mode(
            self.settings.mode, self.animator.avatar.identity, self.tracker.identity
        )
        self.report.mode = self.mode
        self._source_camera, note = avatar_source_camera(self.animator.avatar)
        if self.mode == "cross" and note:
            self.report.notes.append(note)

    def _drive(self, tracked: Any, at: float) -> tuple[Tensor, Tensor, Tensor | None]:
        """Smoothed camera ``(1, 25)``, expression ``(1, E)`` and eyes of a tracked frame; records the signals."""
        e = tracked.expression.shape[-1]
        coefficients = tracked.expression if tracked.eyes is None else torch.cat([tracked.expression, tracked.eyes], 1)
        if self.settings.smoothing:
            pose = self._pose_filter(tracked.pose, at)
            coefficients_s = self._expression_filter(coefficients, at)
        else:
            pose, coefficients_s = tracked.pose, coefficients
        report = self.report
        report.record(tracked.pose, pose, tracked.expression, coefficients_s[:, :e])
        camera = self.tracker.camera(pose)
        if self._reference is None:
            self._reference = camera
        if self.mode == "cross":
            camera = relative_cameras(camera, self._reference, self._source_camera)
        eyes = None if tracked.eyes is None else coefficients_s[:, e:]
        return camera, coefficients_s[:, :e], eyes

    def _expression_uv(self, expression: Tensor, eyes: Tensor | None) -> tuple[Tensor, float, float]:
        """The expression UV render on the avatar's identity, with its wall and thread CPU seconds."""
        wall, cpu = time.perf_counter(), time.thread_time()
        uv = self.animator.expression_uv(expression, eyes)
        return uv, time.perf_counter() - wall, time.thread_time() - cpu

    def _render(self, camera: Tensor, expression_uv: Tensor) -> tuple[Tensor, float, float]:
        """The avatar image ``(3, H, W)``, with the wall and thread CPU seconds it took (run in either thread)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        image = self.animator.render(expression_uv, camera)[0]
        return image, time.perf_counter() - wall, time.thread_time() - cpu

    def frames(self) -> Iterator[LiveFrame]:
        """Rendered frames until the source ends; the report fills as they go.

        With ``settings.pipeline`` the prior's render of frame ``t`` runs in a worker thread while
        this thread captures, tracks, fits and UV-renders frame ``t + 1`` (two cores busy; frames
        come out one frame later, in order).
        """
        executor = None
        if self.settings.pipeline:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="invertavatar-render")
        self._last: Tensor | None = None
        self._loop_start: float | None = None
        self._waited_before = 0.0
        self._cpu_start = 0.0
        in_flight: _InFlight | None = None
        frames = iter(self.source)
        try:
            while True:
                t0 = _clock()
                captured = next(frames, None)
                if captured is None:
                    break
                t1 = _clock()
                points = self.tracker.detect(captured.image)
                t2 = _clock()
                tracked = None
                if points is None:
                    self.report.no_face += 1
                else:
                    started = self.tracker.identity is not None
                    tracked = self.tracker.fit_landmarks(points)
                    if not started:
                        self._decide()
                        # The first face's full fit is start-up: a paced file resumes from here, not behind.
                        self.source.sync()
                if tracked is None and self._last is None and in_flight is None:
                    continue  # nothing to show before the first face
                job = None if tracked is None else self._drive(tracked, captured.time)
                t3 = _clock()
                item = _InFlight(captured, (t0, t1, t2, t3))
                if job is not None:
                    # The expression UV render here, the prior's render after it or in the worker: pipelined,
                    # this thread's share (capture, track, fit, UV) and the worker's balance better.
                    camera, expression, eyes = job
                    uv, item.uv_wall, item.uv_cpu = self._expression_uv(expression, eyes)
                    job = (camera, uv)
                if executor is None:
                    item.result = None if job is None else self._render(*job)
                    yield from self._emit(item)
                else:
                    item.future = None if job is None else executor.submit(self._render, *job)
                    if in_flight is not None:
                        yield from self._emit(in_flight)
                    in_flight = item
            if in_flight is not None:
                yield from self._emit(in_flight)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            self.tracker.close()

    def _emit(self, item: "_InFlight") -> Iterator[LiveFrame]:
        """Wait for ``item``'s render, yield its frame and account for its time."""
        report = self.report
        t_wait = _clock()
        if item.future is not None:
            item.result = item.future.result()
        t4 = _clock()
        if item.result is not None:
            self._last = item.result[0]
        report.frames += 1
        report.dropped += item.captured.dropped
        yield LiveFrame(self._last, item.captured.image, item.captured.index, 1 + item.captured.dropped)
        t5 = _clock()
        if self._loop_start is None:
            # Start-up: the full fit of the first face and the first render; the paced clock restarts.
            report.startup_s = t5[0] - item.marks[0][0]
            self.source.sync()
            self._loop_start, self._cpu_start = time.perf_counter(), time.process_time()
            self._waited_before = self.source.waited
            return
        waited = self.source.waited - self._waited_before
        self._waited_before = self.source.waited
        report.waited_s += waited
        t0, t1, t2, t3 = item.marks
        render_wall, render_cpu = (item.result[1], item.result[2]) if item.result is not None else (0.0, 0.0)
        render_wall, render_cpu = render_wall + item.uv_wall, render_cpu + item.uv_cpu
        pipelined = self.settings.pipeline
        walls = (t1[0] - t0[0] - waited, t2[0] - t1[0], t3[0] - t2[0], render_wall, t5[0] - t4[0])
        for name, seconds in zip(PHASES, walls, strict=True):
            report.seconds[name] += seconds
        if pipelined:
            # Phases overlap; the render's two parts (the UV render here, the prior's in the worker)
            # are each timed on their own thread.
            report.cpu_seconds["render"] = report.cpu_seconds.get("render", 0.0) + render_cpu
            report.stalled_s += t4[0] - t_wait[0]
        else:
            marks = (t0, t1, t2, t3, t4, t5)
            for k, name in enumerate(PHASES):
                report.cpu_seconds[name] = report.cpu_seconds.get(name, 0.0) + marks[k + 1][1] - marks[k][1]
        report.timed += 1
        report.wall_s = time.perf_counter() - self._loop_start
        report.cpu_s = time.process_time() - self._cpu_start
