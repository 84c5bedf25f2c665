"""``invertavatar live``: drive an avatar from a webcam, a stream or a video file, frame by frame.

    invertavatar live --avatar AVATAR [--source 0|VIDEO|URL] [--out out.mp4] [--window]

Per frame: MediaPipe landmarks (tracking mode) -> a few Gauss-Newton steps of the avatar's
morphable model, warm-started from the previous frame with the driver's identity fixed after the
first face -> one-euro smoothing of pose and expression -> the avatar rendered at its native
resolution (invertavatar_core.animation.live). A file plays at its frame rate (frames are dropped
when the loop falls behind) unless ``--as-fast-as-possible``. At the end the frame rates (end to
end and per phase: capture, track, fit, render, output) and the jitter figure (mean
frame-to-frame change of pose and expression, raw and smoothed) are printed, and with
``--report FILE`` written as JSON. Ctrl-C (or q / Esc in the window) stops and keeps the video.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from invertavatar_core.cli import cli_registry, count_noun
from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument
from invertavatar_core.errors import UserError

__all__ = ["register"]

_WINDOW = "invertavatar live (q or Esc to stop)"
_WINDOW_SIZE = 512
"""The window shows the avatar scaled up to at least this height."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``live`` command."""
    parser = subparsers.add_parser(
        "live",
        help="drive an avatar live from a webcam, a stream or a video file",
        description="Track a face frame by frame (MediaPipe landmarks, a fast warm-started fit, one-euro "
        "smoothing) and render the avatar with its expression and head motion; show it in a window and/or write "
        "a video. Prints the frames per second (end to end and per phase) and the jitter of pose and expression, "
        "raw and smoothed.",
        epilog="examples:\n"
        "  invertavatar live --avatar avatar/ --window\n"
        "  invertavatar live --avatar avatar/ --source talking.mp4 --side-by-side --out live.mp4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--avatar", required=True, help="avatar folder (from 'invertavatar reconstruct')")
    parser.add_argument("--source", default="0", help="camera index (default 0), video file or stream URL")
    parser.add_argument("--out", help="write the video here (.mp4)")
    parser.add_argument("--window", action="store_true", help="show the avatar in a window")
    parser.add_argument("--side-by-side", action="store_true", help="the driving frame beside the avatar")
    parser.add_argument(
        "--mode",
        choices=("auto", "same", "cross"),
        default="auto",
        help="same: tracked head pose as it is; cross: head motion relative to the first tracked frame on the "
        "avatar's source pose; auto (default): decided by comparing identities on the first face",
    )
    parser.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="read every frame of a file as fast as it can be processed (default: play at the file's frame rate, "
        "dropping frames when behind)",
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="render in a second thread while the next frame is tracked (default: on with 2 or more CPU cores)",
    )
    parser.add_argument(
        "--startup-steps",
        type=int,
        default=300,
        help="optimisation steps of the first face's full fit, which fixes the driver's identity (default 300)",
    )
    parser.add_argument("--no-smoothing", action="store_true", help="render the raw per-frame fits")
    parser.add_argument("--min-cutoff", type=float, help="one-euro cutoff (Hz) of a still pose (default 1.0)")
    parser.add_argument("--beta", type=float, help="one-euro cutoff rise with pose speed (default 2.0)")
    parser.add_argument("--report", metavar="FILE", help="write the frame rates and jitter figures as JSON")
    parser.add_argument("--checkpoint", help="model checkpoint holding the prior (default: the avatar's)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from invertavatar_core.animation.live import LiveSettings

    pipeline = args.pipeline
    if pipeline is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        pipeline = usable >= 2
    chosen = {"mode": args.mode, "smoothing": not args.no_smoothing, "pipeline": pipeline}
    if args.min_cutoff is not None:
        chosen["pose_min_cutoff"] = args.min_cutoff
    if args.beta is not None:
        chosen["pose_beta"] = args.beta
    try:
        return LiveSettings(**chosen)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"pose_min_cutoff": "--min-cutoff", "pose_beta": "--beta"}.get(str(error["loc"][0]), "")
        raise UserError(f"{option}: {error['msg']}") from None


def _tracker(model, startup_steps: int):
    try:
        from invertavatar_faceverse.live_tracking import LiveFaceTracker, LiveTrackerConfig
    except ImportError:
        raise UserError(
            'live tracking needs the faceverse package with MediaPipe: pip install "invertavatar-faceverse[mediapipe]"'
        ) from None
    try:
        import mediapipe  # noqa: F401 - only whether it is there
    except ImportError:
        raise UserError('live tracking needs MediaPipe: pip install "invertavatar-faceverse[mediapipe]"') from None
    return LiveFaceTracker(model, LiveTrackerConfig(identity_steps=startup_steps))


class _Stop:
    """Ctrl-C ends the loop after the current frame (so the video is finished and written)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.requested = True


def _compose(frame, side_by_side: bool):
    """The output frame ``(3, H, W')`` in [-1, 1]: the avatar, with the driving frame before it when asked."""
    import torch

    from invertavatar_core.io.media import from_uint8

    avatar = frame.avatar.detach().float().cpu()
    if not side_by_side:
        return avatar
    import cv2

    size = avatar.shape[-1]
    h, w = frame.image.shape[:2]
    width = max(2, round(w * size / h / 2) * 2)  # even, for H.264
    driving = from_uint8(cv2.resize(frame.image, (width, size), interpolation=cv2.INTER_AREA))
    return torch.cat([driving, avatar], dim=-1)


def _show(image) -> bool:
    """Show one ``(3, H, W)`` frame; False when the user asked to stop (q, Esc or the window closed)."""
    import cv2

    from invertavatar_core.io.media import to_uint8

    array = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR)
    scale = max(1, _WINDOW_SIZE // array.shape[0])
    if scale > 1:
        array = cv2.resize(array, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imshow(_WINDOW, array)
    key = cv2.waitKey(1) & 0xFF
    return key not in (ord("q"), 27)


def run(args: argparse.Namespace) -> int:
    """Track, animate and render until the source ends or the user stops; print the figures."""
    from tqdm import tqdm

    from invertavatar_core.animation.capture import FrameSource
    from invertavatar_core.animation.driving import AvatarAnimator, check_driving_model
    from invertavatar_core.animation.live import LiveSession
    from invertavatar_core.cli.render import avatar_checkpoint, driving_components
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.inversion.avatar import Avatar
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.io.atomic import atomic_write_text, check_output_file
    from invertavatar_core.io.media import VideoWriteError, write_video

    if not args.out and not args.window:
        raise UserError("nothing to show: pass --out FILE (a video) and/or --window")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.startup_steps < 1:
        raise UserError(f"--startup-steps must be at least 1, got {args.startup_steps}")
    if (
        args.window
        and sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        raise UserError("--window: no display here (DISPLAY is not set); write a video with --out instead")
    for option, path in (("--out", args.out), ("--report", args.report)):
        if path:
            check_output_file(path, what=option)  # before anything is loaded
    settings = _settings(args)
    device = resolve_device(args.device)
    # The source first: a camera that is not there is one line before any model loads.
    source = FrameSource(args.source, realtime=not args.as_fast_as_possible, max_frames=args.max_frames)
    avatar = Avatar.load(args.avatar, device)
    models = InversionModels.load(avatar_checkpoint(args, avatar), cli_registry(), device=device).eval()
    if avatar.identity is None:
        raise UserError(f"{args.avatar}: the avatar records no identity coefficients, which live driving needs")
    model, rasterizer = driving_components(models)
    avatar_model = models.experiment.morphable_model.model_dump(mode="json")
    check_driving_model(avatar_model, None, model, avatar.identity, avatar=args.avatar, driving=str(args.source))
    animator = AvatarAnimator(avatar, models.prior, model, rasterizer)
    tracker = _tracker(model, args.startup_steps)
    session = LiveSession(source, tracker, animator, settings)
    stop = _Stop()
    total = args.max_frames
    if not source.is_live and source.total_frames:
        total = min(total or source.total_frames, source.total_frames)

    def frames():
        told = False
        for frame in tqdm(session.frames(), total=total, desc="live", unit="frame", disable=args.no_progress):
            if not told and session.report.mode:
                tqdm.write(f"mode: {session.report.mode} identity ({session.report.why})")
                told = True
            image = _compose(frame, args.side_by_side)
            if args.window and not _show(image):
                break
            for _ in range(frame.repeat):
                yield image
            if stop.requested:
                break

    previous = signal.signal(signal.SIGINT, stop)
    try:
        if args.out:
            try:
                write_video(frames(), args.out, fps=source.fps)
            except VideoWriteError:
                if session.report.frames == 0:
                    raise UserError(f"--source {args.source}: no face found in any frame") from None
                raise
        else:
            for _ in frames():
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
        source.close()
        if args.window:
            with contextlib.suppress(Exception):
                import cv2

                cv2.destroyAllWindows()
    report = session.report
    if report.frames == 0:
        raise UserError(f"--source {args.source}: no face found in any frame")
    still = max(2, round(settings.still_seconds * source.fps))
    for note in report.notes:
        print(f"note: {note}")
    print(
        f"{count_noun(report.frames, 'frame')} ({report.dropped} dropped to keep up, {report.no_face} without a face); "
        f"start-up (first face, full fit) {report.startup_s:.2f} s; source {source.fps:g} FPS"
    )
    print(format_table(report.phase_rows()))
    if report.jitter_rows(still):
        print(f"jitter: mean frame-to-frame change (still: the stillest {still} frames)")
        print(format_table(report.jitter_rows(still)))
    if args.report:
        atomic_write_text(args.report, json.dumps(report.summary(still), indent=2) + "\n")
    if args.out:
        print(f"wrote {args.out}")
    if args.report:
        print(f"wrote {Path(args.report)}")
    return 0
