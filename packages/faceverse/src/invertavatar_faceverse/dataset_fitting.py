"""Photos or videos -> a fitted dataset: landmarks, crops, the morphable-model fit, UV renders and unwraps.

Per input (an image is a one-frame sequence; a video one sequence of its frames): detect
MediaPipe landmarks, cut square crops (:mod:`invertavatar_faceverse.face_crop`, boxes smoothed
over a video's frames), detect again on the crops, fit the morphable model
(:mod:`invertavatar_faceverse.fitting`), then write, per frame, the crop, its EG3D camera, the
expression UV render, the UV unwrap (grid, visibility, preview) and the coefficients, plus an
overlay of the fitted mesh, in the layout of ``docs/dataset-layout.md``. A sequence already in
the output folder is skipped only when the content key of its input file and of the settings (see
:func:`invertavatar_core.data.datasets.input_key`) is unchanged, so an interrupted run resumes and
a different photo under the same file name is fitted again. ``invertavatar fit`` and
``invertavatar reconstruct`` (sources without ``--fit``) both call :func:`fit_dataset`.
"""

from collections.abc import Sequence
from pathlib import Path

from invertavatar_core.errors import UserError
from invertavatar_core.plugin.registry import Registry

__all__ = ["VIDEO_SUFFIXES", "fit_dataset"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
"""Inputs with these suffixes are read as videos, everything else as one image."""


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


def _settings(model_config: dict, fitting, **chosen) -> dict:
    """Everything that changes a sequence's fitted frames, for its content key (the model as its resolved config)."""
    return {**chosen, "model": model_config, "fitting": fitting.model_dump(mode="json")}


def _frames(path: Path, every: int, max_frames: int | None):
    from invertavatar_core.io.media import read_image, read_video_frames, video_frame_count

    if path.suffix.lower() in VIDEO_SUFFIXES:
        count = video_frame_count(path)
        indices = list(range(0, count, max(1, every)))[:max_frames]
        return read_video_frames(path, indices), [f"{i:05d}" for i in indices]
    return [read_image(path)], ["00000"]


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
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Fit every input (image or video files) and write the fitted dataset to ``out``; returns ``out``.

    Args:
        inputs: image and/or video files; each becomes a sequence named after its file stem.
        out: dataset folder (created; a sequence already in it is skipped when its input file and the
            settings hash the same; any folder but an earlier fit's is refused before any work).
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
        face_index: with several faces in a frame, fit the K-th largest (None or 0: the largest).
        device: torch device (default: ``INVERTAVATAR_DEVICE``, else CUDA when available, else the CPU).
        progress: show progress bars.

    Raises:
        UserError: a missing input, an output folder that is not an earlier fit's, no face found (or
            fewer than ``face_index + 1``), a fit that cannot run or diverged.
    """
    import torch
    from tqdm.auto import tqdm

    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.data.datasets import FIT_KIND, FitDatasetWriter, FittedFrame, input_key
    from invertavatar_core.geometry.uv_maps import (
        RELEASE_FACE_ISLAND,
        canonical_vertices,
        read_uv_mask,
        render_expression_uv,
        unwrap_image,
        uv_unwrap_grid,
    )
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_core.io.media import to_uint8
    from invertavatar_faceverse.face_crop import (
        crop_box,
        crop_image,
        eg3d_crop_box,
        nearest_face,
        read_reference_landmarks,
        smooth_boxes,
    )
    from invertavatar_faceverse.fitting import FitDivergedError, FittingConfig, LandmarkInputError, fit_video
    from invertavatar_faceverse.landmark_maps import LANDMARK_MAP_RESOLUTION, landmark_contour_map
    from invertavatar_faceverse.mesh_render import render_mesh

    inputs = [Path(p) for p in inputs]
    canonical = None if mediapipe_canonical is None else Path(mediapipe_canonical)
    for path in inputs:
        if not path.is_file():
            raise UserError(f"input not found: {path}")
    if steps is not None and steps < 1:
        raise UserError(f"--steps: expected 1 or more, got {steps}")
    if face_index is not None and face_index < 0:
        raise UserError(f"--face-index: expected 0 (the largest face) or more, got {face_index}")
    if crop not in ("ffhq", "eg3d"):
        raise UserError(f"--crop: expected 'ffhq' or 'eg3d', got {crop!r}")
    if uv_layout not in ("model", "release"):
        raise UserError(f"--uv-layout: expected 'model' or 'release', got {uv_layout!r}")
    if crop == "eg3d" and crop_reference is None:
        raise UserError("--crop eg3d needs --crop-reference (similarity_Lm3D_all.mat or a (68|5, 3) .npy)")
    check_output_dir(out, FIT_KIND, reuse=True, signature=("dataset.json",))
    if "mediapipe" not in registry.names("landmark_detector"):
        raise UserError('`fit` needs the MediaPipe landmark detector: pip install "invertavatar-faceverse[mediapipe]"')
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
        print(
            f"note: model {model_config['name']!r} places {int(valid.sum())} of the 478 landmarks; "
            "pass --mediapipe-canonical face_model_with_iris.obj to use all of them"
        )
    writer = FitDatasetWriter(out, model_config, resolution, uv_resolution, layout)
    settings = _settings(
        model_config,
        fitting,
        resolution=resolution,
        uv_resolution=uv_resolution,
        crop=crop,
        crop_reference=None if crop_reference is None else str(crop_reference),
        uv_layout=uv_layout,
        uv_mask=None if uv_mask is None else str(uv_mask),
        every=every,
        max_frames=max_frames,
        steps=steps,
        face_index=face_index,
    )
    names = [p.stem for p in inputs]
    if len(set(names)) != len(names):
        raise UserError("inputs must have distinct file names (each becomes a sequence named after it)")

    for path in inputs:
        sequence = path.stem
        frames, frame_names = _frames(path, every, max_frames)
        key = input_key([path], settings)
        if frame_names and writer.input_key(sequence) == key and all(writer.has(sequence, f) for f in frame_names):
            print(f"{sequence}: already fitted from the same file and settings, skipped")
            continue
        if writer.input_key(sequence) is not None:
            print(f"{sequence}: the file or the settings changed since it was fitted; fitting it again")
        writer.begin_sequence(sequence, key)
        boxes, told = [], False
        for k, frame in enumerate(tqdm(frames, desc=f"{sequence}: landmarks", unit="frame", disable=not progress)):
            faces = detector.detect_all(to_uint8(frame))  # largest first
            if not faces:
                raise UserError(f"{path}: no face found in frame {frame_names[k]}")
            index = face_index or 0
            if index >= len(faces):
                raise UserError(
                    f"{path}: --face-index {index}, but frame {frame_names[k]} has {len(faces)} face(s) "
                    f"(0 is the largest)"
                )
            if len(faces) > 1 and not told:
                which = "the largest" if index == 0 else f"number {index} by size (0 is the largest)"
                print(
                    f"{sequence}: {len(faces)} faces in frame {frame_names[k]}; fitting {which}; "
                    "--face-index K picks another"
                )
                told = True
            face = faces[index]
            boxes.append(crop_box(face) if reference is None else eg3d_crop_box(face, reference, frame.shape[-2]))
        boxes = smooth_boxes(boxes) if len(boxes) > 1 else boxes
        crops, landmarks = [], []
        for k, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            crop = crop_image(frame, box, resolution)
            faces = detector.detect_all(to_uint8(crop))
            if not faces:
                raise UserError(f"{path}: no face found in the crop of frame {frame_names[k]}")
            crops.append(crop)
            # The chosen face is the one the crop is centred on (a neighbour may reach into it).
            landmarks.append(nearest_face(faces, (resolution / 2, resolution / 2)))
        points = torch.stack(landmarks).to(torch_device)
        try:
            result = fit_video(face_model, points, resolution, fitting, frame_step=max(1, every))
        except (LandmarkInputError, FitDivergedError) as exc:
            raise UserError(f"{path}: {exc}") from None
        images = torch.stack(crops).to(torch_device)
        for k in tqdm(range(len(frames)), desc=f"{sequence}: writing", unit="frame", disable=not progress):
            sl = slice(k, k + 1)
            ident, expr = result.identity[sl], result.expression[sl]
            eyes = None if result.eyes is None else result.eyes[sl]
            with torch.no_grad():
                uv = render_expression_uv(
                    face_model, rasterizer, ident, expr, eyes, resolution=uv_resolution, face_island=face_island
                )
                grid, vis = uv_unwrap_grid(
                    face_model,
                    rasterizer,
                    ident,
                    expr,
                    eyes,
                    result.camera[sl],
                    uv_resolution=uv_resolution,
                    image_resolution=resolution,
                    face_island=face_island,
                )
                if uv_visible is not None:
                    vis = vis * uv_visible
                unwrap = unwrap_image(images[sl], grid, vis)
                verts = canonical_vertices(face_model, ident, expr, eyes)
                shaded, mask = render_mesh(rasterizer, verts, face_model.faces, result.camera[sl], resolution)
                overlay = images[sl] * (1 - 0.6 * mask) + shaded * 0.6 * mask
            writer.add(
                sequence,
                frame_names[k],
                FittedFrame(
                    image=images[k],
                    camera=result.camera[k],
                    expression_uv=uv[0],
                    unwrap_grid=grid[0],
                    visibility=vis[0],
                    identity=ident[0],
                    expression=expr[0],
                    eyes=None if eyes is None else eyes[0],
                    landmarks=landmarks[k],
                    landmark_map=landmark_contour_map(landmarks[k], resolution, LANDMARK_MAP_RESOLUTION),
                    unwrap_rgb=unwrap[0],
                    overlay=overlay[0],
                ),
            )
        error = result.relative_error
        mean, worst = float(error.mean()), float(error.max())
        counted = f"{len(frames)} frame" + ("" if len(frames) == 1 else "s")
        print(f"{sequence}: {counted}, landmark error {mean:.2%} of the face size (max {worst:.2%})")
    print(f"wrote {out}")
    return Path(out)
