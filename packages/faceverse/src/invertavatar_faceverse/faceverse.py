"""FaceVerse v3.1 (the model InvertAvatar fits): the user's model dict, its conventions, its 610-d code.

The official ``faceverse_v3_1.npy`` is a NumPy-pickled dict (non-commercial licence; the user
downloads it). A pickle can run code, and a model path can come from someone else's checkpoint
or avatar folder, so the loader reads only pickle-free ``.npz`` files: run
``invertavatar convert faceverse IN.npy OUT.npz`` once, which reads the pickle through
:mod:`invertavatar_core.io.restricted_unpickle` (NumPy arrays only) and writes the ``.npz`` (a
``.npz`` next to a configured ``.npy`` with the same stem is used). See docs/security.md.

Keys read (docs/design/preprocessing.md): ``meanshape`` (N*3), ``idBase`` (3N x 150), ``exBase`` (3N x 171),
``tri`` (F x 3), ``mediapipe_keypoints`` (478), ``ver_inds`` (eyeball ranges: [0]:[1] the first
eyeball, [1]:[2] the second), ``uv_per_ver`` (N x 2; else ``uv`` + ``tri_uv`` per corner), and
``face_mask`` (N; else the ``face_mask_path`` file, e.g. InvertAvatar's ``v31_face_mask_new.npy``).

Conventions applied at load (the released loader's): y and z negated and everything scaled by 0.1, the
mean shifted by y += 1. Model space is then FaceVerse's fitting space (y down, z away from the
viewer). Eyes: ``eyes = (pitch, yaw)`` of the first then the second eyeball, each turned about
its own centre pushed 0.005 along z. ``to_canonical`` is ``N @ F`` (docs/design/preprocessing.md) with
``F = fv2fl_30`` (give the user's file as ``canonical_matrix_path``; the default is the
rounded similarity of docs/design/prior.md: scale 0.0867, rotation diag(1, -1, -1), translation
(-0.0006, -0.018, -0.059)) and ``N = 2.5 I`` shifted by ``2.5 * (0, 0.005, 0)``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from invertavatar_core.plugin.kinds import MorphableModelConfig
from invertavatar_faceverse.linear_model import LinearFaceModel
from invertavatar_faceverse.mediapipe_landmarks import NUM_LANDMARKS
from invertavatar_faceverse.model_files import resolve_model_path

__all__ = [
    "COEFFICIENT_LAYOUT",
    "FaceVerseCoefficients",
    "FaceVerseModel",
    "FaceVerseModelConfig",
    "convert_faceverse_file",
    "load_faceverse_dict",
    "pack_coefficients",
    "unpack_coefficients",
]

REQUIRED_KEYS = ("meanshape", "idBase", "exBase", "tri", "mediapipe_keypoints", "ver_inds")
"""Keys the loader needs in every FaceVerse dict."""

COEFFICIENT_LAYOUT: tuple[tuple[str, int], ...] = (
    ("identity", 150),
    ("expression", 171),
    ("texture", 251),
    ("rotation", 3),  # Euler angles x, y, z
    ("gamma", 27),  # 9 SH bands x RGB
    ("translation", 3),
    ("eyes", 4),
    ("scale", 1),
)
"""The 610-d FaceVerse v3.1 coefficient vector, in order (docs/design/preprocessing.md)."""


@dataclass(frozen=True)
class FaceVerseCoefficients:
    """One 610-d vector split into its parts, each ``(B, k)``."""

    identity: Tensor
    expression: Tensor
    texture: Tensor
    rotation: Tensor
    gamma: Tensor
    translation: Tensor
    eyes: Tensor
    scale: Tensor


def unpack_coefficients(coefficients: Tensor) -> FaceVerseCoefficients:
    """``(B, 610)`` -> the named parts."""
    total = sum(k for _, k in COEFFICIENT_LAYOUT)
    if coefficients.shape[-1] != total:
        raise ValueError(f"FaceVerse coefficients: expected (B, {total}), got {tuple(coefficients.shape)}")
    parts = torch.split(coefficients, [k for _, k in COEFFICIENT_LAYOUT], dim=-1)
    return FaceVerseCoefficients(**{name: part for (name, _), part in zip(COEFFICIENT_LAYOUT, parts, strict=True)})


def pack_coefficients(parts: FaceVerseCoefficients) -> Tensor:
    """The named parts -> ``(B, 610)``; sizes are checked."""
    values = []
    for name, k in COEFFICIENT_LAYOUT:
        value = getattr(parts, name)
        if value.shape[-1] != k:
            raise ValueError(f"FaceVerse coefficients: {name} must have {k} values, got {value.shape[-1]}")
        values.append(value)
    return torch.cat(values, dim=-1)


def load_faceverse_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The FaceVerse model dict from a pickle-free ``.npz`` (nothing is unpickled).

    A ``.npy`` path is read as its converted ``.npz`` beside it (same stem); a ``.npy`` without
    one is refused with the command that converts it.
    """
    path = Path(path)
    if path.suffix == ".npy" and path.with_suffix(".npz").is_file():
        path = path.with_suffix(".npz")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FaceVerse model file not found")
    if path.suffix == ".npy":
        raise ValueError(
            f"{path}: FaceVerse .npy files are pickles and are not loaded (they can run code); "
            f"convert it once: invertavatar convert faceverse {path} {path.with_suffix('.npz')}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            model = {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:  # an object array inside, or not an npz at all
        raise ValueError(f"{path}: not a pickle-free FaceVerse .npz ({exc})") from None
    _check_keys(model, path)
    return model


def _check_keys(model: dict, path: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in model]
    if missing:
        raise KeyError(f"{path}: FaceVerse model is missing key(s) {missing} (expected {list(REQUIRED_KEYS)})")


def convert_faceverse_file(source: str | Path, out: str | Path) -> Path:
    """Read the user's pickled FaceVerse ``.npy`` (restricted unpickler); write its numeric arrays as ``.npz``."""
    from invertavatar_core.io.atomic import atomic_write
    from invertavatar_core.io.restricted_unpickle import read_npy_restricted

    source = Path(source)
    if source.suffix != ".npy":
        raise ValueError(f"{source}: expected the FaceVerse .npy dict")
    if not source.is_file():
        raise FileNotFoundError(f"{source}: FaceVerse model file not found")
    model = read_npy_restricted(source)
    if not isinstance(model, dict):
        raise ValueError(f"{source}: expected a pickled dict (FaceVerse .npy), found {type(model).__name__}")
    _check_keys(model, source)
    arrays = {}
    for key, value in model.items():
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nested lists
            continue
        if array.dtype == object:
            continue  # nested Python objects have no pickle-free form; the loader does not need them
        arrays[key] = array
    return atomic_write(Path(out), lambda tmp: np.savez_compressed(tmp, **arrays))


def _read_plain_npy(path: Path, field: str) -> np.ndarray:
    """A numeric ``.npy`` named by a config field; a pickled one is refused (never unpickled)."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"faceverse: {field} {path}: not a plain numeric .npy ({exc})") from None


class FaceVerseModelConfig(MorphableModelConfig):
    """Where the FaceVerse v3.1 dict lies, and its load-time conventions."""

    name: Literal["faceverse"] = "faceverse"
    path: Path | None = None
    """``faceverse_v3_1.npz`` (from ``invertavatar convert faceverse``; a ``.npy`` is read as the ``.npz`` beside
    it); ``None`` looks for ``faceverse_v3_1.npz`` in ``INVERTAVATAR_WEIGHTS_DIR``."""
    face_mask_path: Path | None = None
    """Per-vertex face mask ``.npy`` (float, N values) when the dict has no ``face_mask``."""
    canonical_matrix_path: Path | None = None
    """``fv2fl_30.npy`` (4x4 float64, FaceVerse -> EG3D); ``None`` uses the rounded default."""
    load_scale: float = 0.1  # released loader (v3.1; v3_6_s uses 0.01)
    """Scale applied to mean and bases at load."""
    mean_y_shift: float = 1.0  # released loader (v3.1; v3_6_s uses 0)
    """Added to the mean's y after the flips."""
    eye_center_push: float = 0.005  # released loader
    """Eyeball rotation centres are pushed this far along z."""
    n_identity: int = 150
    """Identity coefficients used (the first ones)."""
    n_expression: int = 171
    """Expression coefficients used (171 for ``exBase`` of v3.1)."""


def _default_fv2fl() -> np.ndarray:
    """The rounded FaceVerse -> EG3D similarity (no tilt; docs/design/prior.md, face module)."""
    f = np.diag([0.0867, -0.0867, -0.0867, 1.0])
    f[:3, 3] = (-0.0006, -0.018, -0.059)
    return f


def _normalise_matrix() -> np.ndarray:
    n = np.diag([2.5, 2.5, 2.5, 1.0])  # orthographic scale 5 over 2 (docs/design/preprocessing.md, cameras)
    n[1, 3] = 2.5 * 0.005
    return n


class FaceVerseModel(LinearFaceModel):
    """FaceVerse v3.1 as a :class:`~invertavatar_core.plugin.protocols.MorphableModel` (geometry only).

    Triangles are the file's ``tri``, landmarks its ``mediapipe_keypoints`` (all valid), the face
    mask the official one (eyeballs included); ``to_canonical`` = ``N @ fv2fl_30`` (docs/design/preprocessing.md).
    """

    n_eye = 4
    model_name = "faceverse"

    def __init__(self, config: FaceVerseModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or FaceVerseModelConfig()
        path = resolve_model_path(self.config.path, "faceverse_v3_1.npz", "faceverse", "path")
        model = load_faceverse_dict(path)
        flip = np.array([1.0, -1.0, -1.0])
        s = self.config.load_scale

        def points(key: str, width: int | None) -> np.ndarray:
            value = np.asarray(model[key], dtype=np.float64)
            if width is None:
                return value.reshape(-1, 3) * flip * s
            if value.ndim != 2 or value.shape[1] < width:
                raise ValueError(f"{path}: key {key!r} must be (3N, >={width}), got {value.shape}")
            return value[:, :width].T.reshape(width, -1, 3) * flip * s

        mean = points("meanshape", None)
        mean[:, 1] += self.config.mean_y_shift
        n = len(mean)
        id_base = points("idBase", self.config.n_identity)
        ex_base = points("exBase", self.config.n_expression)
        if id_base.shape[1] != n or ex_base.shape[1] != n:
            raise ValueError(f"{path}: idBase/exBase rows do not match meanshape ({n} vertices)")
        faces = np.asarray(model["tri"], dtype=np.int64).reshape(-1, 3)
        if faces.min() < 0 or faces.max() >= n:
            raise ValueError(f"{path}: key 'tri' refers to vertices outside [0, {n})")
        keypoints = np.asarray(model["mediapipe_keypoints"], dtype=np.int64).reshape(-1)
        if keypoints.shape != (NUM_LANDMARKS,):
            raise ValueError(
                f"{path}: key 'mediapipe_keypoints' must hold {NUM_LANDMARKS} indices, got {keypoints.shape}"
            )
        ver_inds = np.asarray(model["ver_inds"], dtype=np.int64).reshape(-1)
        if len(ver_inds) < 3:
            raise ValueError(f"{path}: key 'ver_inds' must give at least 3 boundaries (two eyeballs)")
        uv = self._read_uvs(model, n, path)
        mask = self._read_face_mask(model, n, path)
        eyeballs = [np.arange(ver_inds[0], ver_inds[1]), np.arange(ver_inds[1], ver_inds[2])]
        centers = np.stack([mean[e].mean(0) + np.array([0.0, 0.0, self.config.eye_center_push]) for e in eyeballs])
        fv2fl = (
            _read_plain_npy(self.config.canonical_matrix_path, "canonical_matrix_path").astype(np.float64)
            if self.config.canonical_matrix_path is not None
            else _default_fv2fl()
        )
        if fv2fl.shape != (4, 4):
            raise ValueError(f"{self.config.canonical_matrix_path}: expected a 4x4 matrix, got {fv2fl.shape}")

        f32 = torch.float32
        self._set_bases(
            torch.as_tensor(mean),
            torch.as_tensor(id_base),
            torch.as_tensor(ex_base),
            eyeballs=tuple(torch.as_tensor(e) for e in eyeballs),
            eye_centers=torch.as_tensor(centers),
        )
        self.register_buffer("_faces", torch.as_tensor(faces), persistent=False)
        self.register_buffer("_uvs", torch.as_tensor(uv, dtype=f32), persistent=False)
        self.register_buffer("_face_mask", torch.as_tensor(mask, dtype=f32), persistent=False)
        self.register_buffer("_landmarks", torch.as_tensor(keypoints), persistent=False)
        self.register_buffer("_to_canonical", torch.as_tensor(_normalise_matrix() @ fv2fl, dtype=f32), persistent=False)
        self.expression_names: tuple[str, ...] = tuple(f"exp{k:03d}" for k in range(self.n_expression))

    def _read_uvs(self, model: dict, n: int, path: Path) -> np.ndarray:
        if "uv_per_ver" in model:
            uv = np.asarray(model["uv_per_ver"], dtype=np.float64).reshape(-1, 2)
        elif "uv" in model and "tri_uv" in model:
            corner = np.asarray(model["uv"], dtype=np.float64).reshape(-1, 2)
            tri_uv = np.asarray(model["tri_uv"], dtype=np.int64).reshape(-1, 3)
            tri = np.asarray(model["tri"], dtype=np.int64).reshape(-1, 3)
            uv = np.zeros((n, 2))
            uv[tri.reshape(-1)] = corner[tri_uv.reshape(-1)]  # a seam vertex keeps its last corner's UV
        else:
            raise KeyError(f"{path}: FaceVerse model has neither 'uv_per_ver' nor 'uv' + 'tri_uv'")
        if uv.shape != (n, 2):
            raise ValueError(f"{path}: UVs must be ({n}, 2), got {uv.shape}")
        return np.clip(uv, 0.0, 1.0)

    def _read_face_mask(self, model: dict, n: int, path: Path) -> np.ndarray:
        if "face_mask" in model:
            mask, source = np.asarray(model["face_mask"], dtype=np.float64).reshape(-1), f"{path}: key 'face_mask'"
        elif self.config.face_mask_path is not None:
            mask_path = Path(self.config.face_mask_path)
            if not mask_path.is_file():
                raise FileNotFoundError(f"faceverse: face_mask_path {mask_path} does not exist")
            mask, source = _read_plain_npy(mask_path, "face_mask_path").astype(np.float64).reshape(-1), str(mask_path)
        else:
            raise KeyError(
                f"{path}: FaceVerse model has no 'face_mask' key; set face_mask_path (e.g. v31_face_mask_new.npy)"
            )
        if mask.shape != (n,):
            raise ValueError(f"{source}: expected {n} per-vertex values, got {mask.shape}")
        return (mask > 0.5).astype(np.float64)

    @property
    def landmark_valid(self) -> Tensor:
        """``(478,)`` all True: FaceVerse ships its MediaPipe correspondence."""
        return torch.ones(NUM_LANDMARKS, dtype=torch.bool, device=self._landmarks.device)

    def eye_rotation(self, angles: Tensor) -> Tensor:
        """``(B, 2)`` (pitch about x, yaw about y) -> ``R_y @ R_x`` in FaceVerse's y-down space."""
        pitch, yaw = angles[:, 0], angles[:, 1]
        cp, sp, cy, sy = torch.cos(pitch), torch.sin(pitch), torch.cos(yaw), torch.sin(yaw)
        one, zero = torch.ones_like(cp), torch.zeros_like(cp)
        rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
        ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
        return ry @ rx
