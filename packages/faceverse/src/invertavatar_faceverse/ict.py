"""ICT Face Model Light (ICT-FaceKit, MIT): 100 identity modes, 53 ARKit blendshapes, UVs.

The user points ``path`` at either

- ICT-FaceKit's ``FaceXModel/`` folder (``generic_neutral_mesh.obj``, ``identity000.obj`` ...,
  one OBJ per expression named as in ``vertex_indices.json``), what the ICT-FaceKit repository
  ships; or
- a folder holding the converted npz (``ict_face_model_light.npz``, or its only ``.npz``) and,
  beside it, ``vertex_indices.json``: the repackaged layout the shared asset uses; or
- the compact ``.npz`` that ``invertavatar convert ict FOLDER OUT.npz`` writes (keys:
  ``neutral_vertices``, ``uv``, ``triangles``, ``triangle_uvs``, ``triangle_material``,
  ``material_names``, ``identity_deltas``, ``identity_names``, ``expression_deltas``,
  ``expression_names``; plus ``landmarks_ibug68`` from ``vertex_indices.json``). An npz without
  ``landmarks_ibug68`` takes them from a ``vertex_indices.json`` beside it.

Nothing of ICT is shipped with this package. Model space is ICT's: centimetres, x towards the
subject's left, y up, z out of the face. The eyes turn through the ``eyeLook*`` blendshapes, so
``n_eye`` is 0.

Per-vertex UVs (ICT's are per corner, UDIM tiles): the face tile ``u in [0, 1]`` is squeezed to
``v in [0.08, 1]``; a vertex on a UV seam keeps its face-tile coordinate. The eyeballs' own
texture squares become four small islands in the strip below (``v < 0.075``). Every other
vertex (back of the head, mouth socket, teeth, ...) takes the UV of the nearest face vertex, so
triangles that straddle the face border collapse onto it instead of crossing the face island;
their ``face_mask`` is 0, so only all-face triangles carry texture.

Face mask: ICT's "narrow face area" (vertices 0-6705) plus the eyeballs (21451-24590).
Transparent shells (lacrimal fluid, eye blend, eye occlusion) and the eyelashes are left out of
``faces`` because a rasteriser would draw them opaque over the eyes.

Landmarks: set ``mediapipe_canonical`` to MediaPipe's canonical face OBJ and all 478 are found
at load by aligning it to the neutral mesh, anchored on ICT's 68 iBUG landmarks (about 0.2 s, so
nothing is cached). Without it only the anchored points are valid (``landmark_valid``).
"""

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from invertavatar_core.io.json_files import read_json
from invertavatar_core.plugin.kinds import MorphableModelConfig
from invertavatar_faceverse.landmark_correspondence import correspondence_from_canonical, nearest_allowed
from invertavatar_faceverse.linear_model import LinearFaceModel
from invertavatar_faceverse.mediapipe_landmarks import IBUG68_TO_MEDIAPIPE, NUM_LANDMARKS
from invertavatar_faceverse.model_files import ModelFileError, resolve_model_path
from invertavatar_faceverse.wavefront_obj import read_obj, read_obj_vertices

__all__ = ["IctFaceModel", "IctFaceModelConfig", "convert_ict_folder", "load_ict_arrays"]

NPZ_KEYS = (
    "neutral_vertices",
    "uv",
    "triangles",
    "triangle_uvs",
    "triangle_material",
    "material_names",
    "identity_deltas",
    "identity_names",
    "expression_deltas",
    "expression_names",
)
"""Keys every ICT npz must have (the ``landmarks_ibug68`` key is optional)."""

_NARROW_FACE = (0, 6706)  # ICT README: "narrow face area" = vertices 0-6705
_EYEBALLS = {"M_ScleraRight": 0, "M_IrisRight": 1, "M_ScleraLeft": 2, "M_IrisLeft": 3}
_HIDDEN = ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion", "M_EyeLashes")


class IctFaceModelConfig(MorphableModelConfig):
    """Where ICT Face Model Light lies and how it is placed in canonical space."""

    name: Literal["ict"] = "ict"
    path: Path | None = None
    """ICT-FaceKit's ``FaceXModel`` folder or the converted ``.npz``; ``None`` looks for
    ``ict_face_model_light.npz`` in ``INVERTAVATAR_WEIGHTS_DIR``."""
    mediapipe_canonical: Path | None = None
    """MediaPipe's ``face_model_with_iris.obj``: places all 478 landmarks (see the module docs)."""
    identity_modes: int = Field(100, ge=1, le=100)
    """Identity modes kept (the first ones; ICT orders them by variance)."""
    canonical_scale: float = 0.0215
    """Centimetres -> EG3D canonical units (the same as the procedural head)."""


def _check_keys(arrays, path: Path) -> None:
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path}: not an ICT Face Model npz, missing key(s) {missing}; write one with `invertavatar convert ict`"
        )


def load_ict_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The ICT model as plain arrays (npz keys), from the FaceXModel folder or an npz."""
    path = Path(path)
    if path.is_dir():
        packed = _packed_npz(path)
        if packed is None:
            return _read_folder(path)
        path = packed
    if not path.is_file():
        raise ModelFileError(f"{path}: ICT Face Model not found (expected the FaceXModel folder or a .npz)")
    with np.load(path, allow_pickle=False) as data:
        _check_keys(data, path)
        arrays = {k: data[k] for k in data.files}
    if "landmarks_ibug68" not in arrays:
        config = path.parent / "vertex_indices.json"
        if config.is_file():
            arrays["landmarks_ibug68"] = np.asarray(read_json(config)["idx_to_landmark_verts"], dtype=np.int64)
    return arrays




def _packed_npz(folder: Path) -> Path | None:
    """The converted npz a folder holds instead of the identity OBJs (None: read the OBJs)."""
    if (folder / "identity000.obj").is_file():
        return None
    named = folder / "ict_face_model_light.npz"
    if named.is_file():
        return named
    found = sorted(folder.glob("*.npz"))
    return found[0] if len(found) == 1 else None


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    neutral_path = folder / "generic_neutral_mesh.obj"
    config_path = folder / "vertex_indices.json"
    for needed in (neutral_path, config_path):
        if not needed.is_file():
            raise ModelFileError(f"{folder}: not an ICT-FaceKit FaceXModel folder, {needed.name} is missing")
    mesh = read_obj(neutral_path)
    config = read_json(config_path)
    if "expressions" not in config:
        raise ValueError(f"{config_path}: missing the 'expressions' list")
    identity_files = []
    while (folder / f"identity{len(identity_files):03d}.obj").is_file():
        identity_files.append(folder / f"identity{len(identity_files):03d}.obj")
    if not identity_files:
        raise ModelFileError(
            f"{folder}: no identity000.obj found; expected ICT-FaceKit's FaceXModel folder (identity and "
            "expression OBJs) or a folder holding one converted .npz (ict_face_model_light.npz)"
        )
    expression_files = [folder / f"{name}.obj" for name in config["expressions"]]
    missing = [p.name for p in expression_files if not p.is_file()]
    if missing:
        raise ModelFileError(f"{folder}: expression OBJs listed in vertex_indices.json are missing: {missing[:5]}")

    def deltas(files: list[Path], what: str) -> np.ndarray:
        out = np.empty((len(files), *mesh.vertices.shape), dtype=np.float32)
        for k, file in enumerate(tqdm(files, desc=f"reading ICT {what}", unit="obj")):
            points = read_obj_vertices(file)
            if points.shape != mesh.vertices.shape:
                raise ValueError(f"{file}: {len(points)} vertices, the neutral mesh has {len(mesh.vertices)}")
            out[k] = points - mesh.vertices
        return out

    return {
        "neutral_vertices": mesh.vertices.astype(np.float32),
        "uv": mesh.uvs.astype(np.float32),
        "triangles": mesh.triangles.astype(np.int32),
        "triangle_uvs": mesh.triangle_uvs.astype(np.int32),
        "triangle_material": mesh.triangle_material.astype(np.int16),
        "material_names": np.asarray(mesh.materials),
        "identity_deltas": deltas(identity_files, "identities"),
        "identity_names": np.asarray([p.stem for p in identity_files]),
        "expression_deltas": deltas(expression_files, "expressions"),
        "expression_names": np.asarray(config["expressions"]),
        "landmarks_ibug68": np.asarray(config.get("idx_to_landmark_verts", []), dtype=np.int64),
    }


def convert_ict_folder(folder: str | Path, out: str | Path) -> Path:
    """Read a FaceXModel folder once and write the compact npz (atomically)."""
    from invertavatar_core.io.atomic import atomic_write

    arrays = _read_folder(Path(folder))
    return atomic_write(Path(out), lambda tmp: np.savez_compressed(tmp, **arrays))


def _per_vertex_uv(arrays: dict[str, np.ndarray], face_vertices: np.ndarray) -> np.ndarray:
    """One UV per vertex in [0, 1] (see the module docs for the layout)."""
    verts = arrays["neutral_vertices"]
    n = len(verts)
    uv = arrays["uv"].astype(np.float64)
    tris, tri_uvs = arrays["triangles"].reshape(-1), arrays["triangle_uvs"].reshape(-1)
    mats = np.repeat(arrays["triangle_material"].astype(np.int64), 3)
    names = [str(m) for m in arrays["material_names"]]
    out = np.full((n, 2), np.nan)
    corner_uv = uv[tri_uvs]
    # Face tile first, so that a seam vertex keeps its face coordinate.
    face_tile = (corner_uv[:, 0] >= 0.0) & (corner_uv[:, 0] <= 1.0) & (mats == names.index("M_Face"))
    sel = face_tile & np.isin(tris, face_vertices)
    out[tris[sel]] = np.stack([corner_uv[sel, 0], 0.08 + 0.92 * corner_uv[sel, 1]], -1)
    for material, slot in _EYEBALLS.items():
        if material not in names:
            continue
        sel = mats == names.index(material)
        lo = np.array([0.16 + 0.18 * slot, 0.005])
        out[tris[sel]] = lo + 0.07 * np.clip(corner_uv[sel], 0.0, 1.0)
    # Everything else: the UV of the nearest vertex that has one.
    known = ~np.isnan(out[:, 0])
    if not known.all():
        src = np.nonzero(known)[0]
        face_src = src[np.isin(src, face_vertices)]
        todo = np.nonzero(~known)[0]
        allowed = np.zeros(n, dtype=bool)
        allowed[face_src] = True
        out[todo] = out[nearest_allowed(verts[todo].astype(np.float64), verts.astype(np.float64), allowed)]
    return np.clip(out, 0.0, 1.0)


class IctFaceModel(LinearFaceModel):
    """ICT Face Model Light as a :class:`~invertavatar_core.plugin.protocols.MorphableModel`.

    ``identity: (B, S)`` ~ N(0, 1) (modes are scaled by their standard deviation);
    ``expression: (B, 53)`` ARKit blendshape weights in [0, 1]; no separate eye coefficients.
    Triangles leave out the transparent shells and eyelashes; the UV face island is ``v >= 0.08``;
    ``to_canonical`` maps centimetres; ``landmark_valid`` is all True with ``mediapipe_canonical``,
    else only the iBUG anchors.
    """

    n_eye = 0
    model_name = "ict"
    expression_max = 1.0

    def __init__(self, config: IctFaceModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or IctFaceModelConfig()
        path = resolve_model_path(self.config.path, "ict_face_model_light.npz", "ict", "path")
        arrays = load_ict_arrays(path)
        verts = arrays["neutral_vertices"].astype(np.float64)
        n = len(verts)
        names = [str(m) for m in arrays["material_names"]]
        tri_mat = arrays["triangle_material"].astype(np.int64)
        hidden = [names.index(m) for m in _HIDDEN if m in names]
        faces = arrays["triangles"].astype(np.int64)[~np.isin(tri_mat, hidden)]
        eyeball = np.zeros(n, dtype=bool)
        for material in _EYEBALLS:
            if material in names:
                eyeball[arrays["triangles"][tri_mat == names.index(material)].reshape(-1)] = True
        face_vertices = np.arange(*_NARROW_FACE)
        full_face = np.unique(arrays["triangles"][tri_mat == names.index("M_Face")].reshape(-1))
        mask = np.zeros(n)
        mask[face_vertices] = 1.0
        mask[eyeball] = 1.0

        s = self.config.canonical_scale
        narrow = verts[face_vertices]
        head = verts[:11248]  # face, head and neck (ICT README vertex ranges)
        to_canonical = np.diag([s, s, s, 1.0])
        # Centre the face region on the tri-plane face window and the head's depth on 0.
        to_canonical[1, 3] = -0.02734375 - s * 0.5 * (narrow[:, 1].min() + narrow[:, 1].max())
        to_canonical[2, 3] = -s * 0.5 * (head[:, 2].min() + head[:, 2].max())

        k = self.config.identity_modes
        f32 = torch.float32
        self._set_bases(
            torch.as_tensor(verts),
            torch.as_tensor(arrays["identity_deltas"][:k]),
            torch.as_tensor(arrays["expression_deltas"]),
        )
        self.register_buffer("_faces", torch.as_tensor(faces), persistent=False)
        self.register_buffer("_uvs", torch.as_tensor(_per_vertex_uv(arrays, full_face), dtype=f32), persistent=False)
        self.register_buffer("_face_mask", torch.as_tensor(mask, dtype=f32), persistent=False)
        self.register_buffer("_to_canonical", torch.as_tensor(to_canonical, dtype=f32), persistent=False)
        self.expression_names: tuple[str, ...] = tuple(str(x) for x in arrays["expression_names"])
        self.identity_names: tuple[str, ...] = tuple(str(x) for x in arrays["identity_names"][:k])
        landmarks, valid = self._find_landmarks(arrays, verts, mask > 0.5, eyeball, path)
        self.register_buffer("_landmarks", torch.as_tensor(landmarks), persistent=False)
        self.register_buffer("_landmark_valid", torch.as_tensor(valid), persistent=False)

    def _find_landmarks(self, arrays, verts, face, eyeball, path) -> tuple[np.ndarray, np.ndarray]:
        ibug = arrays.get("landmarks_ibug68")
        if ibug is None or len(ibug) != 68:
            raise ValueError(
                f"{path}: the 68 iBUG landmark vertices are missing (npz key 'landmarks_ibug68' or "
                f"'idx_to_landmark_verts' of a vertex_indices.json beside it)"
            )
        anchors = {mp: int(ibug[i]) for i, mp in IBUG68_TO_MEDIAPIPE.items()}
        skin = face & ~eyeball
        if self.config.mediapipe_canonical is not None:
            found = correspondence_from_canonical(
                self.config.mediapipe_canonical, verts, anchors, skin, iris_candidates=eyeball & (verts[:, 2] > 0)
            )
            return found, np.ones(NUM_LANDMARKS, dtype=bool)
        out = np.full(NUM_LANDMARKS, -1, dtype=np.int64)
        out[list(anchors)] = list(anchors.values())
        valid = out >= 0
        # Unplaced indices get distinct face vertices so every index exists; they are invalid.
        pool = np.setdiff1d(np.nonzero(skin)[0], out[valid])
        out[~valid] = pool[np.linspace(0, len(pool) - 1, int((~valid).sum())).round().astype(np.int64)]
        return out, valid
