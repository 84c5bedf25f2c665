"""Dataset folders of fitted frames: the layout ``invertavatar preprocess`` writes, and the official one.

Both readers give the same thing: ``len(dataset)`` frames, ``dataset[i]`` an
:class:`~invertavatar_core.inversion.observation.Observation` of batch 1, ``dataset.sequences()`` the frame
indices of each video (in time order) and ``dataset.sequence(name)`` all of a video's frames as
one Observation. :func:`open_dataset` picks the reader from what the folder holds.

The ``fit`` layout (``docs/dataset-layout.md``)::

    .invertavatar                     marker: a folder invertavatar wrote (kind "fit")
    dataset.json                      format, version, resolutions, model config, sequences, and
                                      per sequence the key of the input file and settings it was
                                      fitted from (``inputs``; see :func:`input_key`)
    cameras.json                      {"labels": [["<seq>/<frame>.png", [25 floats]], ...]}
    images/<seq>/<frame>.png          aligned square RGB crop
    frames/<seq>/<frame>.safetensors  expression_uv (3, Hu, Hu), unwrap_grid (Ht, Ht, 2),
                                      visibility (1, Ht, Ht), identity, expression, eyes,
                                      optional landmarks (478, 2) in crop pixels,
                                      landmark_map (3, h, h), the landmark-contour image,
                                      optional head_mask (1, R, R) (synthetic heads)
    unwraps/<seq>/<frame>.jpg         preview: the photo in UV space (v up), white where unseen
    overlays/<seq>/<frame>.jpg        preview: the fitted mesh over the crop

The official InvertAvatar layout (docs/dataset-layout.md): ``images512x512/<video>/<frame>.png``,
``images512x512/dataset_realcam.json``, ``orthRender256x256_face_eye/<video>/<frame>.npy``
(float16 H x W x 4: u, v, face mask, coverage), ``uvRender256x256/<video>/<frame>.npy``
(float16 256 x 256 x 3: x, y, visibility) and ``coeffs/<video>/<frame>.npy`` (610 FaceVerse v3.1
coefficients, split by the faceverse package's ``COEFFICIENT_LAYOUT``).
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from invertavatar_core.errors import UserError
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.io.atomic import atomic_write, atomic_write_text, check_output_dir, read_marker, write_marker
from invertavatar_core.io.json_files import read_json
from invertavatar_core.io.media import read_image, save_image

__all__ = [
    "DatasetFormatError",
    "FIT_FORMAT",
    "FIT_KIND",
    "FitDataset",
    "FitDatasetWriter",
    "FittedFrame",
    "InvertAvatarDataset",
    "MorphableModelMismatchError",
    "check_morphable_model",
    "input_key",
    "open_dataset",
]

FIT_FORMAT = "invertavatar-fit"
"""``dataset.json["format"]`` of the fit layout."""

FIT_VERSION = 1
"""``dataset.json["version"]`` this reader understands."""

FIT_KIND = "fit"
"""The kind in a fit folder's marker file (:data:`invertavatar_core.io.atomic.MARKER_FILE`)."""


def input_key(files: Sequence[str | Path], settings: Mapping[str, Any]) -> str:
    """SHA-256 of the files' bytes and of ``settings`` (as sorted JSON): equal keys, same inputs and settings.

    What a fitted sequence was made from: work is reused only when this key is unchanged, never
    because a file name matches.
    """
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0file\0")
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


_MAPS = ("expression_uv", "unwrap_grid", "visibility")
_COEFFICIENTS = ("identity", "expression", "eyes")


class DatasetFormatError(UserError, ValueError):
    """A dataset folder or one of its files is not what its layout promises."""


class MorphableModelMismatchError(UserError, ValueError):
    """Coefficients fitted with one morphable model offered to another (an ICT fit driving a procedural avatar)."""


def _model_name(model: Mapping[str, Any] | str | None) -> str | None:
    if model is None or isinstance(model, str):
        return model
    name = model.get("name")
    return None if name is None else str(name)


def check_morphable_model(
    found: Mapping[str, Any] | str | None,
    expected: Mapping[str, Any] | str,
    *,
    found_from: str,
    expected_from: str,
    identity_size: int | None = None,
    expected_identity_size: int | None = None,
) -> None:
    """Refuse coefficients of one morphable model where another's are needed, naming both.

    ``found`` and ``expected`` are morphable-model configs (as ``dataset.json`` records them under
    ``model``) or bare registry names; ``found_from`` / ``expected_from`` say where each comes from
    (e.g. ``"driving fit drive/"``, ``"the avatar's model runs/s3"``). A ``found`` of None (a
    dataset that records no model) passes. With both identity sizes given, a different number of
    identity coefficients (e.g. ICT with another ``identity_modes``) is refused too.

    Raises:
        MorphableModelMismatchError: the models differ.
    """
    have, want = _model_name(found), _model_name(expected)
    if have is not None and want is not None and have != want:
        raise MorphableModelMismatchError(
            f"{found_from} was fitted with morphable model {have!r} but {expected_from} uses {want!r}; "
            f"their coefficients do not mean the same thing: fit it again with --model {want}"
        )
    if identity_size is not None and expected_identity_size is not None and identity_size != expected_identity_size:
        raise MorphableModelMismatchError(
            f"{found_from} has {identity_size} identity coefficients but {expected_from} (model {want!r}) has "
            f"{expected_identity_size}; they were fitted with differently configured models"
        )


def _labels(path: Path) -> dict[str, Tensor]:
    """EG3D-style ``{"labels": [[relpath, 25 floats], ...]}`` -> relpath -> ``(25,)``."""
    data = read_json(path, DatasetFormatError)
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise DatasetFormatError(f"{path}: expected {{'labels': [[relpath, [25 floats]], ...]}}")
    out = {}
    for entry in data["labels"]:
        if not (isinstance(entry, list) and len(entry) == 2 and len(entry[1]) == 25):
            raise DatasetFormatError(f"{path}: label entry {str(entry)[:80]} is not [relpath, [25 floats]]")
        out[str(entry[0])] = torch.tensor(entry[1], dtype=torch.float32)
    return out


def _resize(image: Tensor, resolution: int | None) -> Tensor:
    if resolution is None or image.shape[-1] == resolution and image.shape[-2] == resolution:
        return image
    return F.interpolate(
        image[None], size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
    )[0]


class _FrameFolder:
    """Shared reader machinery: an ordered frame list grouped by sequence."""

    root: Path
    _frames: list[tuple[str, str]]
    has_landmark_maps: bool = False
    """Whether every frame has a landmark-contour image (:meth:`FitDataset.landmark_map`)."""

    def __len__(self) -> int:
        return len(self._frames)

    def sequences(self) -> dict[str, list[int]]:
        """Sequence name -> dataset indices of its frames, in time order."""
        out: dict[str, list[int]] = {}
        for index, (sequence, _) in enumerate(self._frames):
            out.setdefault(sequence, []).append(index)
        return out

    def frame_name(self, index: int) -> tuple[str, str]:
        """``(sequence, frame)`` of dataset index ``index``."""
        return self._frames[index]

    def sequence(self, name: str) -> Observation:
        """All frames of sequence ``name`` as one Observation (batch = frames)."""
        indices = self.sequences().get(name)
        if not indices:
            raise KeyError(f"{self.root}: no sequence {name!r}; sequences are {sorted(self.sequences())[:10]}")
        return Observation.cat([self[i] for i in indices])

    def __getitem__(self, index: int) -> Observation:
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.root}: frame {index} out of range ({len(self)} frames)")
        return index % len(self)


class FitDataset(_FrameFolder):
    """The folder ``invertavatar preprocess`` / ``invertavatar synth-heads`` write (see the module docs)."""

    def __init__(self, root: str | Path, image_resolution: int | None = None) -> None:
        self.root = Path(root)
        self.image_resolution = image_resolution
        meta = read_json(self.root / "dataset.json", DatasetFormatError)
        if not isinstance(meta, dict) or meta.get("format") != FIT_FORMAT:
            raise DatasetFormatError(f"{self.root / 'dataset.json'}: 'format' must be {FIT_FORMAT!r}")
        if meta.get("version") != FIT_VERSION:
            raise DatasetFormatError(f"{self.root / 'dataset.json'}: unsupported version {meta.get('version')!r}")
        self.meta: dict[str, Any] = meta
        """The parsed ``dataset.json``."""
        sequences = meta.get("sequences")
        if not isinstance(sequences, dict):
            raise DatasetFormatError(f"{self.root / 'dataset.json'}: 'sequences' must map names to frame lists")
        self._frames = [(str(s), str(f)) for s, frames in sequences.items() for f in frames]
        self._cameras = _labels(self.root / "cameras.json")

    def __getitem__(self, index: int) -> Observation:
        """Frame ``index`` as an Observation of batch 1."""
        sequence, frame = self._frames[self._check_index(index)]
        key = f"{sequence}/{frame}.png"
        if key not in self._cameras:
            raise DatasetFormatError(f"{self.root / 'cameras.json'}: no label for {key}")
        image = _resize(read_image(self.root / "images" / sequence / f"{frame}.png"), self.image_resolution)
        tensors_path = self.root / "frames" / sequence / f"{frame}.safetensors"
        if not tensors_path.is_file():
            raise DatasetFormatError(f"{tensors_path}: file not found")
        tensors = load_file(tensors_path)
        missing = [k for k in _MAPS if k not in tensors]
        if missing:
            raise DatasetFormatError(f"{tensors_path}: missing tensor(s) {missing}")
        coefficients = {k: tensors[k].float()[None] if k in tensors else None for k in _COEFFICIENTS}
        mask = tensors.get("head_mask")
        if mask is not None:
            mask = _resize(mask.float(), self.image_resolution)[None]
        return Observation(
            image=image[None],
            camera=self._cameras[key][None],
            expression_uv=tensors["expression_uv"].float()[None],
            unwrap_grid=tensors["unwrap_grid"].float()[None],
            visibility=tensors["visibility"].float()[None],
            **coefficients,
            head_mask=mask,
        )

    def landmarks(self, index: int) -> Tensor | None:
        """``(478, 2)`` detected landmarks of frame ``index`` in crop pixels, if stored."""
        sequence, frame = self._frames[self._check_index(index)]
        tensors = load_file(self.root / "frames" / sequence / f"{frame}.safetensors")
        return tensors.get("landmarks")

    @property
    def has_landmark_maps(self) -> bool:
        """Whether every frame stores a landmark-contour image (``dataset.json`` ``landmark_maps``)."""
        return bool(self.meta.get("landmark_maps")) and len(self) > 0

    def landmark_map(self, index: int) -> Tensor:
        """``(1, 3, h, h)`` landmark-contour image of frame ``index`` in [-1, 1]."""
        sequence, frame = self._frames[self._check_index(index)]
        path = self.root / "frames" / sequence / f"{frame}.safetensors"
        tensors = load_file(path)
        if "landmark_map" not in tensors:
            raise DatasetFormatError(f"{path}: missing tensor 'landmark_map' (re-run fit to write landmark maps)")
        return tensors["landmark_map"].float()[None]


@dataclass(frozen=True)
class FittedFrame:
    """One frame to write: everything without a batch dimension.

    ``image (3, R, R)`` in [-1, 1]; ``camera (25,)``; ``expression_uv (3, Hu, Hu)``;
    ``unwrap_grid (Ht, Ht, 2)``; ``visibility (1, Ht, Ht)``; coefficients flat; optional
    ``landmarks (478, 2)`` in crop pixels, ``landmark_map (3, h, h)`` the landmark-contour image in
    [-1, 1] (the deformation-aware discriminator's input), ``unwrap_rgb (3, Ht, Ht)``, ``overlay (3, R, R)``
    and ``head_mask (1, R, R)`` in [0, 1].
    """

    image: Tensor
    camera: Tensor
    expression_uv: Tensor
    unwrap_grid: Tensor
    visibility: Tensor
    identity: Tensor
    expression: Tensor
    eyes: Tensor | None = None
    landmarks: Tensor | None = None
    landmark_map: Tensor | None = None
    unwrap_rgb: Tensor | None = None
    overlay: Tensor | None = None
    head_mask: Tensor | None = None


PNG_COMPRESS_LEVEL = 1
"""zlib level of the crops a :class:`FitDatasetWriter` writes: lossless, and about 4x faster than
PIL's default 6 for files about 15 % larger (benchmarks/preprocess.py)."""

PREVIEW_FORMAT = "jpg"
"""File format of the previews (unwraps, overlays): nothing reads them back, and JPEG writes a
512 x 512 preview in about 2 ms where a PNG takes 25 ms or more."""


class FitDatasetWriter:
    """Writes the fit layout frame by frame; every file atomically, the index after each frame (or batch).

    Re-opening an existing folder keeps its frames (``has(sequence, frame)`` lets a command skip
    work it already did), so an interrupted ``preprocess`` resumes. ``add(..., flush=False)``
    leaves the index to the next :meth:`flush`: an interruption then loses at most the frames
    written since, which are written again.
    """

    def __init__(
        self,
        root: str | Path,
        model: Mapping[str, Any],
        image_resolution: int,
        uv_resolution: int,
        uv_layout: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Open ``root`` for writing (claimed with the fit marker; earlier frames there are kept).

        ``uv_layout``: how the UV maps were made when not from the model's own UVs (recorded, must match);
        ``extra``: more JSON entries for ``dataset.json`` (e.g. ``synthetic``: how synth-heads made it).
        """
        self._meta: dict[str, Any] = {
            "format": FIT_FORMAT,
            "version": FIT_VERSION,
            "image_resolution": image_resolution,
            "uv_resolution": uv_resolution,
            "model": dict(model),
            "sequences": {},
            "inputs": {},
        }
        if uv_layout is not None:
            self._meta["uv_layout"] = dict(uv_layout)
        reserved = sorted(set(extra or {}) & set(self._meta))
        if reserved:
            raise ValueError(f"FitDatasetWriter: extra entries {reserved} would overwrite dataset.json's own fields")
        self._meta.update(extra or {})
        # Refuses a folder holding files we did not write (nothing in it is touched).
        self.root = check_output_dir(root, FIT_KIND, reuse=True, signature=("dataset.json",), what="dataset folder")
        if read_marker(self.root) is None:
            write_marker(self.root, FIT_KIND)
        self._labels: dict[str, list[float]] = {}
        if (self.root / "dataset.json").is_file():
            old = FitDataset(self.root)
            if old.meta.get("model") != self._meta["model"]:
                raise DatasetFormatError(
                    f"{self.root}: already holds frames fitted with model {old.meta.get('model')}; use another --out"
                )
            if old.meta.get("uv_layout") != self._meta.get("uv_layout"):
                raise DatasetFormatError(
                    f"{self.root}: already holds UV maps of layout {old.meta.get('uv_layout')}, "
                    f"not {self._meta.get('uv_layout')}; use another --out"
                )
            self._meta["sequences"] = {k: list(v) for k, v in old.meta["sequences"].items()}
            self._meta["inputs"] = {k: str(v) for k, v in (old.meta.get("inputs") or {}).items()}
            self._meta["landmark_maps"] = bool(old.meta.get("landmark_maps"))
            self._labels = {k: v.tolist() for k, v in old._cameras.items()}

    def has(self, sequence: str, frame: str) -> bool:
        """Whether frame ``frame`` of ``sequence`` is already written."""
        return frame in self._meta["sequences"].get(sequence, [])

    def input_key(self, sequence: str) -> str | None:
        """The :func:`input_key` ``sequence`` was written from, if recorded."""
        return self._meta["inputs"].get(sequence)

    def begin_sequence(self, sequence: str, key: str | None = None) -> None:
        """Start (re)writing ``sequence``: its earlier frames leave the index; ``key`` records what it is made from."""
        self._meta["sequences"][sequence] = []
        self._labels = {k: v for k, v in self._labels.items() if not k.startswith(f"{sequence}/")}
        if key is None:
            self._meta["inputs"].pop(sequence, None)
        else:
            self._meta["inputs"][sequence] = key
        self._flush()

    def add(self, sequence: str, frame: str, data: FittedFrame, *, flush: bool = True) -> None:
        """Write one frame's files and update the index (on disk now, or at the next :meth:`flush`)."""
        for name in (sequence, frame):
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"sequence and frame names must be plain file names, got {name!r}")
        level = PNG_COMPRESS_LEVEL
        save_image(data.image, self.root / "images" / sequence / f"{frame}.png", compress_level=level)
        tensors = {
            "expression_uv": data.expression_uv.detach().to(torch.float16).contiguous().cpu(),
            "unwrap_grid": data.unwrap_grid.detach().to(torch.float16).contiguous().cpu(),
            "visibility": data.visibility.detach().to(torch.float16).contiguous().cpu(),
            "identity": data.identity.detach().float().reshape(-1).contiguous().cpu(),
            "expression": data.expression.detach().float().reshape(-1).contiguous().cpu(),
        }
        if data.eyes is not None:
            tensors["eyes"] = data.eyes.detach().float().reshape(-1).contiguous().cpu()
        if data.landmarks is not None:
            tensors["landmarks"] = data.landmarks.detach().float().contiguous().cpu()
        if data.landmark_map is not None:
            tensors["landmark_map"] = data.landmark_map.detach().to(torch.float16).contiguous().cpu()
        # The index says whether *every* frame carries a landmark-contour image, so readers need not open them all.
        first = not any(self._meta["sequences"].values())
        has_map = data.landmark_map is not None
        self._meta["landmark_maps"] = has_map if first else bool(self._meta.get("landmark_maps")) and has_map
        if data.head_mask is not None:
            tensors["head_mask"] = data.head_mask.detach().to(torch.float16).contiguous().cpu()
        path = self.root / "frames" / sequence / f"{frame}.safetensors"
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
        if data.unwrap_rgb is not None:
            # UV-space rows follow +v and model UVs have v up (uv_maps module doc): flipped, the
            # preview shows the face upright, as a texture file would.
            save_image(data.unwrap_rgb.flip(-2), self.root / "unwraps" / sequence / f"{frame}.{PREVIEW_FORMAT}")
        if data.overlay is not None:
            save_image(data.overlay, self.root / "overlays" / sequence / f"{frame}.{PREVIEW_FORMAT}")
        frames = self._meta["sequences"].setdefault(sequence, [])
        if frame not in frames:
            frames.append(frame)
        self._labels[f"{sequence}/{frame}.png"] = [float(x) for x in data.camera.detach().reshape(-1).tolist()]
        if flush:
            self._flush()

    def flush(self) -> None:
        """Write the index (``dataset.json``, ``cameras.json``) of every frame added so far."""
        self._flush()

    def sort_sequence(self, sequence: str) -> None:
        """Put ``sequence``'s frames in the index in the order of their names (frame numbers), and flush."""
        frames = self._meta["sequences"].get(sequence, [])
        frames.sort(key=lambda name: (len(name), name))  # zero-padded numbers, wider ones after
        self._flush()

    def _flush(self) -> None:
        labels = [[key, value] for key, value in self._labels.items()]
        atomic_write_text(self.root / "cameras.json", json.dumps({"labels": labels}) + "\n")
        atomic_write_text(self.root / "dataset.json", json.dumps(self._meta, indent=2) + "\n")


class InvertAvatarDataset(_FrameFolder):
    """The official preprocessed layout (read-only; docs/dataset-layout.md)."""

    def __init__(
        self,
        root: str | Path,
        image_resolution: int | None = None,
        coefficient_layout: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """Index the folder.

        Args:
            root: dataset folder.
            image_resolution: resize images to this square size on reading (``None``: as stored).
            coefficient_layout: the named parts of each ``coeffs/`` vector, in order; ``None`` = the
                faceverse package's FaceVerse v3.1 layout (what the official preprocessing fits), and
                no coefficients at all without that package.
        """
        self.root = Path(root)
        self.image_resolution = image_resolution
        self.coefficient_layout = coefficient_layout
        images = self.root / "images512x512"
        if not images.is_dir():
            raise DatasetFormatError(f"{self.root}: no images512x512/ folder (official InvertAvatar layout)")
        self._cameras = _labels(images / "dataset_realcam.json")
        self._frames = sorted(
            (p.parent.name, p.stem) for p in images.glob("*/*.png") if f"{p.parent.name}/{p.name}" in self._cameras
        )
        if not self._frames:
            raise DatasetFormatError(f"{images}: no <video>/<frame>.png with a label in dataset_realcam.json")

    def _coefficient_layout(self) -> Sequence[tuple[str, int]] | None:
        if self.coefficient_layout is None:
            try:  # the layout belongs to the model package, not to core
                from invertavatar_faceverse import COEFFICIENT_LAYOUT
            except ImportError:
                return None
            self.coefficient_layout = COEFFICIENT_LAYOUT
        return self.coefficient_layout

    def _npy(self, folder: str, sequence: str, frame: str) -> np.ndarray:
        path = self.root / folder / sequence / f"{frame}.npy"
        if not path.is_file():
            raise DatasetFormatError(f"{path}: file not found")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DatasetFormatError(f"{path}: not a plain .npy array ({exc})") from None

    def __getitem__(self, index: int) -> Observation:
        """Frame ``index`` as an Observation of batch 1 (coefficients from ``coeffs/`` if present)."""
        sequence, frame = self._frames[self._check_index(index)]
        image = _resize(read_image(self.root / "images512x512" / sequence / f"{frame}.png"), self.image_resolution)
        ortho = self._npy("orthRender256x256_face_eye", sequence, frame).astype(np.float32)
        if ortho.ndim != 3 or ortho.shape[2] < 3:
            raise DatasetFormatError(
                f"orthRender256x256_face_eye/{sequence}/{frame}.npy: expected H x W x 4, got {ortho.shape}"
            )
        uv = torch.from_numpy(ortho[..., :3].copy()).permute(2, 0, 1)
        uv[2] = (uv[2] > 0.5).float()  # the face mask is binarised at 0.5 (as the released loader)
        unwrap = self._npy("uvRender256x256", sequence, frame).astype(np.float32)
        if unwrap.ndim != 3 or unwrap.shape[2] != 3:
            raise DatasetFormatError(f"uvRender256x256/{sequence}/{frame}.npy: expected H x W x 3, got {unwrap.shape}")
        unwrap_t = torch.from_numpy(unwrap.copy())
        coefficients: dict[str, Tensor | None] = {k: None for k in _COEFFICIENTS}
        coeff_path = self.root / "coeffs" / sequence / f"{frame}.npy"
        layout = self._coefficient_layout()
        if coeff_path.is_file() and layout is not None:
            values = torch.from_numpy(self._npy("coeffs", sequence, frame).astype(np.float32).reshape(-1))
            sizes = [size for _, size in layout]
            if values.numel() != sum(sizes):
                raise DatasetFormatError(
                    f"{coeff_path}: expected {sum(sizes)} FaceVerse coefficients, got {values.numel()}"
                )
            parts = dict(zip((name for name, _ in layout), values[None].split(sizes, dim=1), strict=True))
            coefficients = {k: parts.get(k) for k in _COEFFICIENTS}
        return Observation(
            image=image[None],
            camera=self._cameras[f"{sequence}/{frame}.png"][None],
            expression_uv=uv[None],
            unwrap_grid=unwrap_t[None, ..., :2],
            visibility=unwrap_t[None, None, ..., 2],
            **coefficients,
        )


def open_dataset(root: str | Path, image_resolution: int | None = None) -> FitDataset | InvertAvatarDataset:
    """The reader for the folder at ``root``: the fit layout or the official one.

    Args:
        root: dataset folder.
        image_resolution: resize images to this square size on reading (``None``: as stored).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset folder not found")
    if (root / "dataset.json").is_file():
        return FitDataset(root, image_resolution=image_resolution)
    if (root / "images512x512").is_dir():
        return InvertAvatarDataset(root, image_resolution=image_resolution)
    raise DatasetFormatError(
        f"{root}: not a dataset folder; expected dataset.json (written by `invertavatar preprocess` or "
        f"`invertavatar synth-heads`) or the official images512x512/ layout"
    )
