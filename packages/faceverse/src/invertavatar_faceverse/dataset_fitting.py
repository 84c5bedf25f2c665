"""Photos or videos -> a fitted dataset, streamed: what ``invertavatar preprocess`` (and ``reconstruct``) run.

An input is a video, a photo, or a folder of photos of one person; each becomes one sequence
named after it, written in the layout of ``docs/dataset-layout.md``. Per sequence:

1. **pass 1** decodes the used frames (every ``every``-th, at most ``max_frames``) one at a time
   and keeps only the landmarks of one face
   (:class:`~invertavatar_faceverse.face_finder.FaceFinder`: the largest, or ``face_index``,
   then followed from frame to frame in a video); frames without it are skipped and reported;
2. a video's crop boxes are smoothed over time, by the frames' real numbers, so that ``--every``
   and skipped frames do not stretch the smoothing;
3. the morphable model is fitted to the landmarks, mapped into each frame's crop
   (:mod:`invertavatar_faceverse.fitting`; a folder's photos share one identity); a frame whose
   landmark error exceeds the fit's limit, or whose fit the quality check calls unreliable
   (:mod:`invertavatar_faceverse.fit_quality`), is skipped and reported;
4. **pass 2** decodes the frames again, crops them and writes the crops, EG3D cameras,
   expression UV renders, UV unwraps, coefficients and overlays: small batches rendered in two
   threads, the files written in time order by a third.

Memory holds a few batches of frames, never the video. Both passes are kept in the dataset folder
(:mod:`invertavatar_faceverse.preprocess_state`) under content keys of the input files and the
settings (:func:`invertavatar_core.data.datasets.input_key`), and frames already written are
kept, so an interrupted run resumes where it stopped and nothing stale is reused. A per-frame
``report.csv`` and per-sequence ``report.json`` (:mod:`invertavatar_faceverse.fit_report`) say
what was written and what was skipped, and why.
"""

import contextlib
import hashlib
import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from invertavatar_core.errors import UserError
from invertavatar_core.plugin.registry import Registry

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "PreprocessSummary", "fit_dataset"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
"""Inputs with these suffixes are read as videos."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Files with these suffixes in an input folder are its photos (other files there are ignored)."""
BOX_SIGMA = 3.0  # released: docs/design/preprocessing.md (crop)
"""Temporal smoothing of a video's crop boxes, in frames of the video."""
RENDER_BATCH = 4
"""Frames rendered together in pass 2 (bounds memory; amortises the rasteriser's per-call cost)."""
RENDER_THREADS = 2
"""Batches rendered at once in pass 2 (each in its own thread, one torch thread each)."""
POSED_DOWNSCALE = 2
"""The posed mesh (the unwrap's occlusion test, the overlay's shading) is rasterised at the crop size
divided by this. Half of 512 changes the visibility of 0.03 % of the visible texels on the
talking-head clip and halves the costliest rasterisation of pass 2 (benchmarks/preprocess.py)."""
FOLLOW_PATIENCE = 25
"""Used frames without the followed face after which a video's face is chosen again by size."""
TRACK_SAVE_EVERY = 250
"""Pass 1 saves its track this often (frames), so an interruption loses at most this much detection."""
INDEX_EVERY = 25
"""Pass 2 rewrites the dataset index this often (frames), and at the end of every sequence."""
TEMPORAL_TERMS = (
    "rotation_smoothness",
    "translation_smoothness",
    "pose_acceleration",
    "expression_smoothness",
    "eye_smoothness",
)
"""The fit's terms that tie consecutive frames together (set to 0 for the jitter baseline)."""
JITTER_STILL_FRAMES = 25
"""The jitter is also given over the stillest stretch of this many used frames (1 s at 25 fps)."""


@dataclass(frozen=True)
class _Source:
    """One sequence to make: a video, one photo, or a folder of photos (one person)."""

    name: str
    path: Path
    kind: str  # "video", "image" or "folder"
    files: tuple[Path, ...]
    frames: tuple[int, ...]  # used frame numbers of a video; positions in ``files`` otherwise
    rotation: int = 0  # a video's rotation flag, degrees
    turned: tuple[str, ...] = ()  # photos whose EXIF orientation turns them

    def frame_name(self, number: int) -> str:
        return f"{number:05d}"

    def describe(self, number: int) -> str:
        return f"frame {number}" if self.kind == "video" else self.files[number].name

    def read(self, numbers: Sequence[int]) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(number, (H, W, 3) uint8)`` of ``numbers`` in order; None for an unreadable photo of a folder."""
        from invertavatar_core.io.media import ImageReadError, iter_video_frames, read_image_uint8

        if self.kind == "video":
            yield from iter_video_frames(self.path, numbers)
            return
        for number in numbers:
            try:
                yield number, read_image_uint8(self.files[number])
            except ImageReadError:
                if self.kind == "image":
                    raise
                yield number, None


def _probe_image(path: Path) -> bool:
    """Refuse a file that is not an image, naming it, before any work; True when EXIF says to turn it.

    Reads the header only.
    """
    from PIL import Image, UnidentifiedImageError

    from invertavatar_core.io.media import ImageReadError

    try:
        with Image.open(path) as handle:
            return handle.getexif().get(0x0112, 1) not in (0, 1)  # EXIF Orientation; 1 is upright
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None


def _sources(inputs: Sequence[Path], every: int, max_frames: int | None) -> list[_Source]:
    """Every input as a :class:`_Source`, each checked (exists, readable, has frames) before any work."""
    from invertavatar_core.io.media import probe_video

    sources = []
    for path in inputs:
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise UserError(f"{path}: no photos in the folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            turned = tuple(file.name for file in files if _probe_image(file))
            sources.append(_Source(path.name, path, "folder", tuple(files), tuple(range(len(files))), turned=turned))
        elif not path.is_file():
            raise UserError(f"input not found: {path}")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            info = probe_video(path)
            used = tuple(range(0, info.frames, every))[:max_frames]
            if not used:
                raise UserError(f"{path}: the video has no frames")
            sources.append(_Source(path.stem, path, "video", (path,), used, info.rotation))
        else:
            turned = (path.name,) if _probe_image(path) else ()
            sources.append(_Source(path.stem, path, "image", (path,), (0,), turned=turned))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError("inputs must have distinct names (each becomes a sequence named after its file or folder)")
    return sources


def _model_config(spec: str, canonical: Path | None, registry: Registry) -> dict:
    name, _, path = spec.partition(":")
    config = {"name": name}
    fields = registry.config_cls("morphable_model", name).model_fields
    if path:
        if "path" not in fields:
            raise ValueError(f"--model {spec}: model {name!r} takes no data path")
        config["path"] = path
    if canonical is not None:
        if "mediapipe_canonical" not in fields:
            raise ValueError(f"--mediapipe-canonical: model {name!r} has its own landmark correspondence")
        config["mediapipe_canonical"] = str(canonical)
    return registry.validate_config("morphable_model", config).model_dump(mode="json")


def _derived_key(files_key: str, settings: dict) -> str:
    """Content key of the input files' key and ``settings`` (sorted JSON)."""
    text = json.dumps({"files": files_key, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PreprocessSummary:
    """What :func:`fit_dataset` did: the folder, per-sequence summaries, per-phase seconds.

    ``timings`` (seconds): ``decode`` (waiting for frames, both passes), ``detect``, ``fit``,
    ``crop``, ``render`` (UV renders, unwraps, overlays; summed over the render threads), ``write``
    (files, in the writer thread; render and write overlap) and ``total`` (wall clock);
    ``<phase>_cpu`` the CPU time of the threads that ran it (not of helper processes and
    threads: ffmpeg, MediaPipe's own).
    """

    out: Path
    sequences: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    failed: list[str] = field(default_factory=list)

    def __fspath__(self) -> str:
        return str(self.out)


_TIMINGS_LOCK = threading.Lock()
"""Pass 2 adds to the timings from three threads."""


class _Timed:
    """Adds the wall time spent inside ``with`` to ``timings[name]``, the thread's CPU time to ``name + "_cpu"``."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start, self.cpu = time.perf_counter(), time.thread_time()

    def __exit__(self, *exc) -> None:
        wall, cpu = time.perf_counter() - self.start, time.thread_time() - self.cpu
        with _TIMINGS_LOCK:
            self.timings[self.name] += wall
            self.timings[self.name + "_cpu"] += cpu


def _timed_iter(iterator: Iterator, timings: dict[str, float], name: str) -> Iterator:
    """``iterator``, adding the time spent waiting for each item to ``timings[name]``."""
    while True:
        with _Timed(timings, name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _frame_list(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def fit_dataset(
    inputs: Sequence[str | Path],
    out: str | Path,
    registry: Registry,
    *,
    model: str = "procedural",
    mediapipe_canonical: str | Path | None = None,
    resolution: int = 512,
    uv_resolution: int = 256,
    crop: str = "ffhq",
    crop_reference: str | Path | None = None,
    uv_layout: str = "model",
    uv_mask: str | Path | None = None,
    every: int = 1,
    max_frames: int | None = None,
    steps: int | None = None,
    face_index: int | None = None,
    keep_flagged: bool = False,
    jitter_baseline: bool = False,
    device: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> PreprocessSummary:
    """Preprocess every input (videos, photos, folders of photos) into the fitted dataset ``out``.

    Args:
        inputs: video files, image files and/or folders of photos of one person each; each
            becomes a sequence named after its file stem (or folder name).
        out: dataset folder (created; sequences already in it are resumed or skipped when their
            input and the settings hash the same; any folder but an earlier preprocess's is refused
            before any work).
        registry: builds the morphable model, the rasteriser and the MediaPipe landmark detector.
        model: morphable model ``NAME[:PATH]`` (e.g. ``ict:FaceXModel/`` or ``faceverse:faceverse_v3_1.npz``).
        mediapipe_canonical: MediaPipe's ``face_model_with_iris.obj`` (all 478 landmark correspondences).
        resolution: crop size.
        uv_resolution: expression UV render / unwrap size.
        crop: crop recipe, ``"ffhq"`` (ours, from the landmarks) or ``"eg3d"`` (EG3D's in-the-wild
            recipe the released model's data used; needs ``crop_reference``; docs/release-preprocessing.md).
        crop_reference: the eg3d crop's standard 3D landmarks (Deep3DFaceRecon's
            ``similarity_Lm3D_all.mat`` or a ``(68|5, 3)`` ``.npy``).
        uv_layout: ``"model"`` (the model's own UVs) or ``"release"`` (the released model's FaceVerse
            face-island enlargement, docs/release-preprocessing.md).
        uv_mask: UV-space mask image multiplied into the unwrap visibility (the release's
            ``dense_uv_expanded_mask_onlyFace.png``).
        every: use every k-th video frame.
        max_frames: at most this many frames per video.
        steps: optimisation steps per batch of video frames (default 200); photos and a video's identity
            frames get 2.5 times as many (default 500); see
            :meth:`~invertavatar_faceverse.fitting.FittingConfig.with_steps`.
        face_index: with several faces in a frame, take the K-th largest (None or 0: the largest).
        keep_flagged: write frames the fit's quality check flags (they are skipped by default).
        jitter_baseline: fit each video a second time without temporal terms and report its jitter
            too (what the temporal smoothing removes; doubles the fitting time).
        device: torch device (default: ``INVERTAVATAR_DEVICE``, else CUDA when available, else the CPU).
        progress: show progress bars.
        say: where progress lines and the summary go.

    Returns:
        A :class:`PreprocessSummary` (path-like: the dataset folder).

    Raises:
        UserError: a missing, unreadable or unsupported input, an output folder that is not an earlier
            preprocess's, bad settings (all before any work); after the other inputs are done, any
            input with no usable frame (no face in any frame, or every fit failed).
    """
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.data.datasets import FIT_KIND, FitDatasetWriter, input_key
    from invertavatar_core.geometry.uv_maps import RELEASE_FACE_ISLAND, read_uv_mask, uv_fragments
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_faceverse.face_crop import read_reference_landmarks
    from invertavatar_faceverse.fitting import FittingConfig

    started = time.perf_counter()
    inputs = [Path(p) for p in inputs]
    canonical = None if mediapipe_canonical is None else Path(mediapipe_canonical)
    if steps is not None and steps < 1:
        raise UserError(f"--steps: expected 1 or more, got {steps}")
    if face_index is not None and face_index < 0:
        raise UserError(f"--face-index: expected 0 (the largest face) or more, got {face_index}")
    if every < 1:
        raise UserError(f"--every: expected 1 or more, got {every}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames: expected 1 or more, got {max_frames}")
    if crop not in ("ffhq", "eg3d"):
        raise UserError(f"--crop: expected 'ffhq' or 'eg3d', got {crop!r}")
    if uv_layout not in ("model", "release"):
        raise UserError(f"--uv-layout: expected 'model' or 'release', got {uv_layout!r}")
    if crop == "eg3d" and crop_reference is None:
        raise UserError("--crop eg3d needs --crop-reference (similarity_Lm3D_all.mat or a (68|5, 3) .npy)")
    sources = _sources(inputs, every, max_frames)
    check_output_dir(out, FIT_KIND, reuse=True, signature=("dataset.json",))
    if "mediapipe" not in registry.names("landmark_detector"):
        raise UserError(
            '`preprocess` needs the MediaPipe landmark detector: pip install "invertavatar-faceverse[mediapipe]"'
        )
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        uv_visible = None if uv_mask is None else read_uv_mask(uv_mask, uv_resolution).to(torch_device)
        reference = None if crop != "eg3d" else read_reference_landmarks(crop_reference)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UserError(exc.args[0] if exc.args else str(exc)) from None
    face_island = RELEASE_FACE_ISLAND if uv_layout == "release" else None
    # Recorded in dataset.json: UV maps of another layout must not be mixed into the same folder.
    layout = None
    if face_island is not None or uv_visible is not None:
        layout = {"face_island": uv_layout, "mask": None if uv_mask is None else str(uv_mask)}
    model_config = _model_config(model, canonical, registry)
    face_model = registry.create("morphable_model", model_config).to(torch_device)
    rasterizer = registry.create("rasterizer", "torch")
    detector = registry.create("landmark_detector", "mediapipe")
    fitting = FittingConfig() if steps is None else FittingConfig().with_steps(steps)
    valid = getattr(face_model, "landmark_valid", None)
    if valid is not None and not bool(valid.all()):
        say(
            f"note: model {model_config['name']!r} places {int(valid.sum())} of the 478 landmarks; "
            "pass --mediapipe-canonical face_model_with_iris.obj to use all of them"
        )
    writer = FitDatasetWriter(out, model_config, resolution, uv_resolution, layout)
    from invertavatar_faceverse.face_finder import FaceFinder

    finder = FaceFinder(detector)
    summary = PreprocessSummary(Path(out))
    track_settings = {"version": 2, "every": every, "max_frames": max_frames, "face_index": face_index or 0}
    fit_settings = {
        **track_settings,
        "model": model_config,
        "fitting": fitting.model_dump(mode="json"),
        "resolution": resolution,
        "crop": crop,
        "crop_reference": None if crop_reference is None else str(crop_reference),
        "jitter_baseline": jitter_baseline,
    }
    settings = {
        **fit_settings,
        "uv_resolution": uv_resolution,
        "uv_layout": uv_layout,
        "uv_mask": None if uv_mask is None else str(uv_mask),
        "keep_flagged": keep_flagged,
    }
    context = _Context(
        writer=writer,
        finder=finder,
        face_model=face_model,
        rasterizer=rasterizer,
        fitting=fitting,
        device=torch_device,
        resolution=resolution,
        uv_resolution=uv_resolution,
        reference=reference,
        face_island=face_island,
        uv_visible=uv_visible,
        uv_layout=uv_fragments(face_model, rasterizer, uv_resolution, face_island=face_island),
        face_index=face_index or 0,
        every=every,
        keep_flagged=keep_flagged,
        jitter_baseline=jitter_baseline,
        progress=progress,
        say=say,
        timings=summary.timings,
    )
    try:
        for source in sources:
            files_key = input_key(source.files, {})
            keys = {
                "track": _derived_key(files_key, track_settings),
                "fit": _derived_key(files_key, fit_settings),
                "dataset": _derived_key(files_key, settings),
            }
            try:
                summary.sequences[source.name] = _preprocess(source, keys, context)
            except _SequenceFailed as exc:
                summary.failed.append(str(exc))
                if source is not sources[-1]:
                    say(f"{exc}; going on with the other inputs")
    finally:
        finder.close()
        if hasattr(detector, "close"):
            detector.close()
    summary.timings["total"] = time.perf_counter() - started
    made = sum(sequence.get("frames_made", 0) for sequence in summary.sequences.values())
    seconds = summary.timings["total"]
    speed = f", {made / seconds:.1f} frames/s end to end" if made and seconds > 0 else ""
    fit = summary.timings["fit"]
    say(f"wrote {out}: {_plural(made, 'frame')} made in {seconds:.1f} s{speed} (landmark fit {fit:.1f} s)")
    if summary.failed:
        raise UserError("; ".join(summary.failed))
    return summary


class _SequenceFailed(Exception):
    """An input that gave no usable frame (the message names it); the other inputs go on."""


@dataclass
class _Context:
    """Everything :func:`_preprocess` needs besides the source (built once by :func:`fit_dataset`)."""

    writer: object
    finder: object
    face_model: object
    rasterizer: object
    fitting: object
    device: object
    resolution: int
    uv_resolution: int
    reference: object
    face_island: object
    uv_visible: object
    uv_layout: object
    """The model's UV layout rasterised once (:func:`~invertavatar_core.geometry.uv_maps.uv_fragments`)."""
    face_index: int
    every: int
    keep_flagged: bool
    jitter_baseline: bool
    progress: bool
    say: Callable[[str], None]
    timings: dict[str, float]


@contextlib.contextmanager
def _saved_on_interruption(track, path: Path, key: str) -> Iterator[None]:
    """Save the track so far when pass 1 stops early (Ctrl-C, an error), so that a rerun resumes from it."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more
            track.save(path, key)
        raise


def _track(source: _Source, key: str, ctx: _Context):
    """Pass 1: the chosen face's landmarks in every used frame, resumed from and saved to ``tracks/``."""
    from tqdm.auto import tqdm

    from invertavatar_faceverse.preprocess_state import FaceTrack, track_path

    path = track_path(ctx.writer.root, source.name)
    track = FaceTrack.load(path, key) or FaceTrack()
    if track.complete:
        return track
    done = set(track.frames)
    todo = [n for n in source.frames if n not in done]
    follow = None
    if source.kind == "video" and track.found():
        follow = track.landmarks[track.found()[-1]]
    told = any(f > 1 for f in track.faces)
    misses = 0
    bar = tqdm(
        total=len(source.frames),
        initial=len(done),
        desc=f"{source.name}: finding the face",
        unit="frame",
        disable=not ctx.progress,
    )
    with bar, _saved_on_interruption(track, path, key):
        for number, frame in _timed_iter(source.read(todo), ctx.timings, "decode"):
            if frame is None:
                track.add(number, None, 0, "unreadable image")
            else:
                with _Timed(ctx.timings, "detect"):
                    found = ctx.finder.find(frame, ctx.face_index, follow)
                track.add(number, found.landmarks, found.faces, found.reason or "")
                if found.landmarks is not None and source.kind == "video":
                    follow, misses = found.landmarks, 0
                elif follow is not None:
                    misses += 1
                    if misses == FOLLOW_PATIENCE:  # gone for good: choose again, by size
                        follow = None
                        ctx.say(
                            f"{source.name}: the face followed was not seen for {misses} frames; "
                            f"choosing again from {source.describe(number)} on"
                        )
                if found.faces > 1 and not told and found.landmarks is not None:
                    which = (
                        "the largest" if ctx.face_index == 0 else f"number {ctx.face_index} by size (0 is the largest)"
                    )
                    then = ", followed through the video" if source.kind == "video" else ""
                    ctx.say(
                        f"{source.name}: {found.faces} faces in {source.describe(number)}; taking {which}{then}; "
                        "--face-index K picks another"
                    )
                    told = True
            if len(track.frames) % TRACK_SAVE_EVERY == 0:
                track.save(path, key)
            bar.update()
    track.complete = True
    track.save(path, key)
    return track


def _no_frame_error(source: _Source, track, ctx: _Context) -> str:
    """Why a sequence gave no frame with a face, in one line naming the input."""
    from invertavatar_faceverse.preprocess_state import TRACK_REASONS

    reasons = [TRACK_REASONS[code] for code in track.reasons]
    if source.kind == "image" and reasons[0] == "fewer faces than --face-index":
        return (
            f"{source.path}: --face-index {ctx.face_index}, but frame 00000 has {track.faces[0]} face(s) "
            "(0 is the largest)"
        )
    if all(r == "unreadable image" for r in reasons):
        return f"{source.path}: no readable photo"
    where = "" if source.kind == "image" else f" in any of its {len(reasons)} used frames"
    hint = "" if source.kind == "image" else "; faces under about 5 % of the frame width are not found"
    return f"{source.path}: no face found{where}{hint}"


def _boxes(source: _Source, track, positions: list[int], ctx: _Context):
    """Crop boxes of the frames at ``positions`` of the track: a video's smoothed over its frame numbers."""
    from invertavatar_faceverse.face_crop import crop_box, eg3d_crop_box, smooth_boxes

    landmarks = [track.landmarks[k] for k in positions]
    if ctx.reference is None:
        boxes = [crop_box(points) for points in landmarks]
    else:
        # The eg3d box does not depend on the image height it flips y by (it cancels in the fit).
        boxes = [eg3d_crop_box(points, ctx.reference, 0) for points in landmarks]
    if source.kind == "video":
        boxes = smooth_boxes(boxes, BOX_SIGMA, times=[track.frames[k] for k in positions])
    return boxes


def _fit(source: _Source, key: str, track, ctx: _Context):
    """Fit the frames with a face (cached in ``tracks/<seq>.fit.safetensors``).

    Returns ``(result, numbers, boxes, crop_landmarks, outside, extra)``: ``outside`` are the
    numbers of frames left out because the face leaves its (smoothed) crop; ``extra`` what the
    cache holds besides the fit (with ``jitter_baseline``, the fit without temporal terms).
    """
    import torch

    from invertavatar_faceverse import fitting as fitting_module
    from invertavatar_faceverse.face_crop import CropBox
    from invertavatar_faceverse.preprocess_state import load_fit, save_fit, track_path

    path = track_path(ctx.writer.root, source.name, fit=True)
    cached = load_fit(path, key, fitting_module.FitResult)
    if cached is not None:
        result, extra = cached
        numbers = extra["frames"].tolist()
        boxes = [CropBox(*row) for row in extra["boxes"].tolist()]
        return result, numbers, boxes, extra["crop_landmarks"], extra["outside"].tolist(), extra
    positions = track.found()
    boxes = _boxes(source, track, positions, ctx)
    crop_points = torch.stack(
        [box.to_crop(track.landmarks[k], ctx.resolution) for k, box in zip(positions, boxes, strict=True)]
    )
    # A face moving faster than the smoothed box may leave it: such frames cannot be fitted.
    size = ctx.resolution
    inside = ((crop_points >= 0) & (crop_points <= size)).all(-1).float().mean(1)
    keep = inside >= 1 - ctx.fitting.max_outside
    outside = [track.frames[k] for k, ok in zip(positions, keep.tolist(), strict=True) if not ok]
    positions = [k for k, ok in zip(positions, keep.tolist(), strict=True) if ok]
    boxes = [b for b, ok in zip(boxes, keep.tolist(), strict=True) if ok]
    crop_points = crop_points[keep]
    numbers = [track.frames[k] for k in positions]
    if not numbers:
        return None, [], [], crop_points, outside, {}
    # The limit on the error is applied frame by frame below (a bad frame is skipped, not the video).
    config = ctx.fitting.model_copy(update={"max_error": math.inf})
    frames = _plural(len(numbers), "frame")
    ctx.say(f"{source.name}: fitting {frames}" + (" with one identity" if source.kind == "folder" else ""))
    points = crop_points.to(ctx.device)
    extra = {
        "frames": torch.tensor(numbers, dtype=torch.int64),
        "boxes": torch.tensor([[b.x0, b.y0, b.side] for b in boxes], dtype=torch.float64),
        "crop_landmarks": crop_points.float(),
        "outside": torch.tensor(outside, dtype=torch.int64),
    }
    with _Timed(ctx.timings, "fit"):
        try:
            if source.kind == "folder":  # photos of one person: one identity, no temporal terms
                result = fitting_module.fit_images(ctx.face_model, points, ctx.resolution, config)
            else:
                step = {"frame_step": ctx.every}  # the temporal terms are per frame of the video
                result = fitting_module.fit_video(ctx.face_model, points, ctx.resolution, config, **step)
                if ctx.jitter_baseline and len(numbers) > 1:
                    # The same fit with every temporal term off: the jitter the smoothing removes.
                    off = {name: 0.0 for name in TEMPORAL_TERMS if name in type(config).model_fields}
                    ctx.say(f"{source.name}: fitting again without temporal terms, for the jitter baseline")
                    baseline = fitting_module.fit_video(
                        ctx.face_model, points, ctx.resolution, config.model_copy(update=off), **step
                    )
                    extra["baseline.expression"] = baseline.expression
                    extra["baseline.camera"] = baseline.camera
        except (fitting_module.LandmarkInputError, fitting_module.FitDivergedError) as exc:
            raise _SequenceFailed(f"{source.path}: {exc}") from None
    save_fit(path, key, result, extra)
    return result, numbers, boxes, crop_points, outside, extra


def _quality(result, count: int) -> list[tuple[tuple[str, ...], tuple[str, ...], bool]]:
    """Per-frame ``(flag codes, reasons, ok)`` of a fit's quality check (``FitResult.quality``).

    ``ok`` is False when a flag marks the fit as unreliable; notes (a weight at its bound) leave it True.
    """
    quality = getattr(result, "quality", None) or ()
    if len(quality) != count:
        return [((), (), True)] * count
    return [(tuple(q.flags), tuple(q.reasons), bool(q.ok)) for q in quality]


def _render(ctx: _Context, result, rows: list[int], crops, landmarks):
    """Pass 2's renders of fitted rows ``rows`` (crops ``(B, 3, R, R)``, landmarks ``(B, 478, 2)``): FittedFrames."""
    import torch

    from invertavatar_core.data.datasets import FittedFrame
    from invertavatar_core.geometry.uv_maps import (
        canonical_vertices,
        posed_fragments,
        render_expression_uv,
        unwrap_image,
        uv_unwrap_grid,
    )
    from invertavatar_faceverse.landmark_maps import LANDMARK_MAP_RESOLUTION, landmark_contour_map
    from invertavatar_faceverse.mesh_render import flat_shaded

    index = torch.tensor(rows, device=result.expression.device)
    ident, expr = result.identity[index], result.expression[index]
    eyes = None if result.eyes is None else result.eyes[index]
    camera = result.camera[index]
    images = crops.to(ctx.device)
    model = ctx.face_model
    with torch.no_grad():
        uv = render_expression_uv(
            model, ctx.rasterizer, ident, expr, eyes, resolution=ctx.uv_resolution, face_island=ctx.face_island
        )
        # One posed rasterisation serves the unwrap's occlusion test and the overlay.
        verts = canonical_vertices(model, ident, expr, eyes)
        posed_resolution = max(1, ctx.resolution // POSED_DOWNSCALE)
        posed = posed_fragments(ctx.rasterizer, verts, model.faces, camera, posed_resolution)
        grid, vis = uv_unwrap_grid(
            model,
            ctx.rasterizer,
            ident,
            expr,
            eyes,
            camera,
            uv_resolution=ctx.uv_resolution,
            image_resolution=posed_resolution,
            face_island=ctx.face_island,
            image_fragments=posed,
            layout_fragments=ctx.uv_layout,
        )
        if ctx.uv_visible is not None:
            vis = vis * ctx.uv_visible
        unwrap = unwrap_image(images, grid, vis)
        shaded, mask = flat_shaded(verts, model.faces, camera, posed)
        if posed_resolution != ctx.resolution:
            size = (ctx.resolution, ctx.resolution)
            shaded = torch.nn.functional.interpolate(shaded, size=size, mode="bilinear", align_corners=False)
            mask = torch.nn.functional.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        overlay = images * (1 - 0.6 * mask) + shaded * 0.6 * mask
    return [
        FittedFrame(
            image=images[i],
            camera=camera[i],
            expression_uv=uv[i],
            unwrap_grid=grid[i],
            visibility=vis[i],
            identity=ident[i],
            expression=expr[i],
            eyes=None if eyes is None else eyes[i],
            landmarks=points,
            landmark_map=landmark_contour_map(points, ctx.resolution, LANDMARK_MAP_RESOLUTION),
            unwrap_rgb=unwrap[i],
            overlay=overlay[i],
        )
        for i, points in enumerate(landmarks)
    ]


def _write(source: _Source, result, numbers, boxes, crop_landmarks, todo: list[int], ctx: _Context) -> None:
    """Pass 2: stream the frames ``todo``, crop, render in batches (two threads), write them in order (a third).

    Torch ops and PNG encoding release the GIL, so two render threads and the writer keep two cores
    busy. Batches are handed to the writer in time order, so the index always lists a prefix of
    the frames and an interruption resumes cleanly.
    """
    import torch
    from tqdm.auto import tqdm

    from invertavatar_faceverse.face_crop import crop_frame

    writer = ctx.writer
    row_of = {n: k for k, n in enumerate(numbers)}
    rendering: deque[tuple[list[int], Future]] = deque()
    writing: deque[Future] = deque()
    written = 0

    def render(rows: list[int], crops: list) -> list:
        with _Timed(ctx.timings, "render"):
            return _render(ctx, result, rows, torch.stack(crops), crop_landmarks[rows])

    stopped = threading.Event()  # after a failed write, the frames queued behind it are not written

    def write_one(name: str, frame) -> None:
        if stopped.is_set():
            return
        try:
            with _Timed(ctx.timings, "write"):
                writer.add(source.name, name, frame, flush=False)
        except BaseException:
            stopped.set()
            raise

    def flush() -> None:
        with _Timed(ctx.timings, "write"):
            writer.flush()

    def hand_over(block: bool) -> None:
        """Give rendered batches to the writer in order; wait while too much is in flight."""
        nonlocal written
        while rendering and (block or rendering[0][1].done() or len(rendering) > RENDER_THREADS):
            rows, future = rendering.popleft()
            for k, frame in zip(rows, future.result(), strict=True):
                writing.append(writer_pool.submit(write_one, source.frame_name(numbers[k]), frame))
                written += 1
                if written % INDEX_EVERY == 0:
                    writing.append(writer_pool.submit(flush))
                bar.update()
        while len(writing) > 2 * RENDER_BATCH or (block and writing):
            writing.popleft().result()

    bar = tqdm(total=len(todo), desc=f"{source.name}: writing", unit="frame", disable=not ctx.progress)
    render_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="preprocess-render")
    writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess-writer")
    try:
        with bar:
            rows: list[int] = []
            crops: list = []
            for number, frame in _timed_iter(source.read(todo), ctx.timings, "decode"):
                k = row_of[number]
                with _Timed(ctx.timings, "crop"):
                    crops.append(crop_frame(frame, boxes[k], ctx.resolution))
                rows.append(k)
                if len(rows) == RENDER_BATCH:
                    rendering.append((rows, render_pool.submit(render, rows, crops)))
                    rows, crops = [], []
                hand_over(block=False)
            if rows:
                rendering.append((rows, render_pool.submit(render, rows, crops)))
            hand_over(block=True)
            writing.append(writer_pool.submit(flush))
            hand_over(block=True)
    except BaseException:
        # Stopped early (Ctrl-C, an error): let the threads finish what they hold, then index
        # every frame whose files were all written, so that a rerun keeps them.
        stopped.set()
        for _, future in rendering:
            future.cancel()
        for future in writing:
            future.cancel()
        render_pool.shutdown(wait=True)
        writer_pool.shutdown(wait=True)
        with contextlib.suppress(Exception):  # the original error matters more
            writer.flush()
        raise
    render_pool.shutdown(wait=True)
    writer_pool.shutdown(wait=True)


def _preprocess(source: _Source, keys: dict[str, str], ctx: _Context) -> dict:
    """Make (or resume, or skip) one sequence; returns its summary (what ``report.json`` holds)."""
    import torch

    from invertavatar_faceverse.fit_report import FrameRow, head_angles, sequence_jitter, write_report
    from invertavatar_faceverse.preprocess_state import TRACK_REASONS

    writer = ctx.writer
    if writer.input_key(source.name) != keys["dataset"]:
        if writer.input_key(source.name) is not None:
            ctx.say(f"{source.name}: the input or the settings changed since it was preprocessed; making it again")
        writer.begin_sequence(source.name, keys["dataset"])
    if source.rotation:
        ctx.say(f"{source.name}: the video asks to be turned {source.rotation} degrees; frames are read upright")
    if source.turned:
        ctx.say(f"{source.name}: read upright, as their EXIF orientation asks: {_frame_list(source.turned)}")

    track = _track(source, keys["track"], ctx)
    if not track.found():
        raise _SequenceFailed(_no_frame_error(source, track, ctx))
    result, numbers, boxes, crop_landmarks, outside, extra = _fit(source, keys["fit"], track, ctx)

    # Per frame: written or skipped, and why.
    rows = {}
    for n, faces, code in zip(track.frames, track.faces, track.reasons, strict=True):
        # faces = 0 with a face taken: the followed face was found without searching the frame.
        shown = "" if faces == 0 and code == 0 else faces
        rows[n] = FrameRow(source.name, source.frame_name(n), source.describe(n), faces=shown)
        rows[n].reason = TRACK_REASONS[code]
    for n in outside:
        rows[n].reason = "face leaves the smoothed crop"
    usable: list[int] = []
    if result is not None:
        limit = ctx.fitting.max_error
        error_rel = result.relative_error.detach().cpu()
        angles = head_angles(result.camera)
        landmark_yaw = getattr(result, "landmark_yaw", None)
        quality = _quality(result, len(numbers))
        for k, n in enumerate(numbers):
            row = rows[n]
            row.error_px, row.error_rel = float(result.error[k]), float(error_rel[k])
            row.yaw, row.pitch, row.roll = (float(a) for a in angles[k])
            row.landmark_yaw = "" if landmark_yaw is None else float(landmark_yaw[k])
            row.expression_max = float(result.expression[k].max()) if result.expression.shape[1] else ""
            flags, reasons, ok = quality[k]
            row.flags = ";".join(flags)
            if not math.isfinite(float(error_rel[k])) or float(error_rel[k]) > limit:
                row.reason = (
                    f"fit failed (landmark error {float(error_rel[k]):.1%} of the face size, limit {limit:.0%})"
                )
            elif not ok and not ctx.keep_flagged:
                row.reason = f"flagged: {', '.join(flags)} ({'; '.join(reasons)})"
            else:
                usable.append(k)
    flagged_only = [k for k, n in enumerate(numbers) if rows[n].reason.startswith("flagged")]
    if not usable and flagged_only:
        # Never fail on flags alone: with nothing else to write (a single photo, say), the flagged
        # frames are written, and said to be.
        usable = flagged_only
        for k in usable:
            rows[numbers[k]].reason = ""
        ctx.say(
            f"{source.name}: the quality check flags every fitted frame ({_plural(len(usable), 'frame')}); "
            f"written anyway: check the overlays and {writer.root / 'report.csv'}"
        )
    if not usable:
        write_report(writer.root, source.name, [rows[n] for n in track.frames], _summary(source, rows, None))
        if result is None:
            raise _SequenceFailed(f"{source.path}: the face leaves the crop in every frame with a face")
        reasons = sorted({rows[numbers[k]].reason.split(" (")[0] for k in range(len(numbers))})
        raise _SequenceFailed(
            f"{source.path}: no frame passed the fit ({', '.join(reasons)}; see {writer.root / 'report.csv'})"
        )

    todo = [numbers[k] for k in usable if not writer.has(source.name, source.frame_name(numbers[k]))]
    if not todo:
        ctx.say(f"{source.name}: already preprocessed from the same input and settings; nothing to do")
    elif len(todo) < len(usable):
        ctx.say(f"{source.name}: {len(usable) - len(todo)} of {_plural(len(usable), 'frame')} already written; kept")
    if todo:
        _write(source, result, numbers, boxes, crop_landmarks, todo, ctx)
    writer.sort_sequence(source.name)
    for k in usable:
        rows[numbers[k]].status = "written"

    summary = _summary(source, rows, result.relative_error[torch.tensor(usable)].detach().cpu())
    summary["frames_made"] = len(todo)  # by this run; the other written frames were kept from an earlier one
    skipped = summary["skipped"]
    if source.kind == "video":
        still = max(2, round(JITTER_STILL_FRAMES / ctx.every))
        summary["jitter"] = sequence_jitter(result.expression, result.camera, numbers, ctx.every, still)
        if "baseline.expression" in extra:
            summary["jitter_without_temporal_terms"] = sequence_jitter(
                extra["baseline.expression"], extra["baseline.camera"], numbers, ctx.every, still
            )
    write_report(writer.root, source.name, [rows[n] for n in track.frames], summary)

    line = f"{source.name}: {len(usable)} of {_plural(len(rows), 'frame')} written"
    if skipped:
        line += "; skipped: " + "; ".join(
            f"{len(names)} {reason} ({_frame_list(names)})" for reason, names in skipped.items()
        )
    ctx.say(line)
    ctx.say(
        f"{source.name}: landmark error {summary['landmark_error']['mean']:.2%} of the face size "
        f"(max {summary['landmark_error']['max']:.2%})"
    )
    for name, label in (("jitter", "jitter"), ("jitter_without_temporal_terms", "jitter without temporal terms")):
        if summary.get(name):
            ctx.say(f"{source.name}: {label} {_jitter_line(summary[name], source)}")
    ctx.say(f"{source.name}: per-frame report in {writer.root / 'report.csv'}")
    return summary


def _summary(source: _Source, rows: dict, error) -> dict:
    """A sequence's entry in ``report.json``: counts, skipped frames by reason, landmark error of those written."""
    skipped: dict[str, list[str]] = defaultdict(list)
    for row in rows.values():
        if row.status != "written":
            skipped[row.reason.split(" (")[0]].append(row.frame)
    summary = {
        "input": str(source.path),
        "kind": source.kind,
        "frames_used": len(rows),
        "frames_written": sum(row.status == "written" for row in rows.values()),
        "skipped": dict(skipped),
    }
    if error is not None:
        summary["landmark_error"] = {"mean": float(error.mean()), "max": float(error.max())}
    return summary


def _jitter_line(figures: dict, source: _Source) -> str:
    """One line of a :func:`~invertavatar_faceverse.fit_report.sequence_jitter` result."""
    whole, still = figures["all"], figures["still"]
    return (
        f"(frames {source.frame_name(figures['first'])}-{source.frame_name(figures['last'])}, per frame): "
        f"head pose {whole['rotation_deg']:.2f} deg, expression weights {whole['expression']:.4f} mean "
        f"(max {whole['expression_max']:.3f}); stillest {still['frames']} frames: "
        f"{still['rotation_deg']:.2f} deg, {still['expression']:.4f}"
    )
