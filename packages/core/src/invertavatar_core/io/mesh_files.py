"""Triangle meshes with vertex colours as PLY, OBJ and GLB files (``invertavatar export``).

Each format is encoded to bytes by one function and written atomically by :func:`write_mesh`:

- PLY: binary little-endian; per vertex ``x y z`` (float32), ``nx ny nz`` when normals are given,
  ``red green blue`` (uint8); faces as ``list uchar int vertex_indices``;
- OBJ: text; colours in the widely read ``v x y z r g b`` extension (floats in [0, 1]), ``vn``
  and ``f a//a b//b c//c`` when normals are given, else ``f a b c`` (1-based);
- GLB: glTF 2.0 binary, one mesh of one indexed triangle primitive with ``POSITION``,
  ``NORMAL`` (when given) and ``COLOR_0`` (float RGB) and a matte material (glTF's default
  material is fully metallic, which renders vertex colours nearly black). The file is a
  12-byte header, a JSON chunk padded with spaces and a BIN chunk padded with zeros, every
  chunk and buffer view 4-byte aligned, as the specification requires.

Coordinates are written as given. Our canonical space (y up, the face towards +z, the subject's
left towards +x) is glTF's own convention, so a head stands upright facing the viewer.
"""

import io
import json
import struct
from pathlib import Path
from typing import Literal

import numpy as np

from invertavatar_core.io.atomic import atomic_write_bytes
from invertavatar_core.tensor_types import Float, Int, Tensor
from invertavatar_core.version import __version__

__all__ = ["MESH_FORMATS", "MeshFormat", "glb_bytes", "obj_bytes", "ply_bytes", "write_mesh"]

MeshFormat = Literal["ply", "obj", "glb"]
MESH_FORMATS: tuple[MeshFormat, ...] = ("ply", "obj", "glb")
"""The mesh file formats, also their file suffixes."""

_GLB_MAGIC = 0x46546C67  # "glTF"
_GLB_JSON = 0x4E4F534A  # "JSON"
_GLB_BIN = 0x004E4942  # "BIN\0"
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UNSIGNED_INT = 5126, 5125
_TRIANGLES = 4


def _arrays(vertices, faces, colors, normals):
    v = np.ascontiguousarray(_numpy(vertices), dtype=np.float32)
    f = np.ascontiguousarray(_numpy(faces), dtype=np.int64)
    c = np.clip(np.asarray(_numpy(colors), dtype=np.float32), 0.0, 1.0)
    n = None if normals is None else np.ascontiguousarray(_numpy(normals), dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or c.shape != v.shape:
        raise ValueError(
            f"mesh: expected vertices (N, 3), faces (F, 3), colours (N, 3); got {v.shape}, {f.shape}, {c.shape}"
        )
    if n is not None and n.shape != v.shape:
        raise ValueError(f"mesh: normals {n.shape} do not match vertices {v.shape}")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"mesh: face indices must lie in [0, {len(v)}), found [{f.min()}, {f.max()}]")
    return v, f, c, n


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)


def _bytes_rgb(colors: np.ndarray) -> np.ndarray:
    return np.round(colors * 255.0).astype(np.uint8)


def ply_bytes(
    vertices: Float[Tensor, "N 3"],
    faces: Int[Tensor, "F 3"],
    colors: Float[Tensor, "N 3"],
    normals: Float[Tensor, "N 3"] | None = None,
) -> bytes:
    """Binary little-endian PLY: float32 positions (and normals), uint8 RGB, ``list uchar int`` faces."""
    v, f, c, n = _arrays(vertices, faces, colors, normals)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")] if n is not None else []
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    records = np.empty(len(v), dtype=np.dtype(fields))
    records["x"], records["y"], records["z"] = v.T
    if n is not None:
        records["nx"], records["ny"], records["nz"] = n.T
    records["red"], records["green"], records["blue"] = _bytes_rgb(c).T
    face_records = np.empty(len(f), dtype=np.dtype([("count", "u1"), ("index", "<i4", (3,))]))
    face_records["count"] = 3
    face_records["index"] = f
    header = ["ply", "format binary_little_endian 1.0", f"comment written by invertavatar {__version__}"]
    header += [f"element vertex {len(v)}"]
    header += [f"property float {name}" for name, kind in fields if kind == "<f4"]
    header += [f"property uchar {name}" for name in ("red", "green", "blue")]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + records.tobytes() + face_records.tobytes()


def obj_bytes(
    vertices: Float[Tensor, "N 3"],
    faces: Int[Tensor, "F 3"],
    colors: Float[Tensor, "N 3"],
    normals: Float[Tensor, "N 3"] | None = None,
) -> bytes:
    """Wavefront OBJ with ``v x y z r g b`` vertex colours (and ``vn`` normals), 1-based faces."""
    v, f, c, n = _arrays(vertices, faces, colors, normals)
    out = io.StringIO()
    out.write(f"# written by invertavatar {__version__}: {len(v)} vertices, {len(f)} faces, vertex colours\n")
    np.savetxt(out, np.concatenate([v, c], axis=1), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    if n is not None:
        np.savetxt(out, n, fmt="vn %.5f %.5f %.5f")
        np.savetxt(out, np.repeat(f + 1, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    else:
        np.savetxt(out, f + 1, fmt="f %d %d %d")
    return out.getvalue().encode("ascii")


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(
    vertices: Float[Tensor, "N 3"],
    faces: Int[Tensor, "F 3"],
    colors: Float[Tensor, "N 3"],
    normals: Float[Tensor, "N 3"] | None = None,
) -> bytes:
    """GLB (glTF 2.0 binary): a triangle mesh with ``POSITION``, ``NORMAL`` (if given), ``COLOR_0``, uint32 indices."""
    v, f, c, n = _arrays(vertices, faces, colors, normals)
    if len(v) and len(f) and f.max() >= 2**32 - 1:
        raise ValueError(f"glb: {len(v)} vertices exceed uint32 indices")
    blocks = [("POSITION", v), *([("NORMAL", n)] if n is not None else []), ("COLOR_0", c)]
    buffer_views, accessors, attributes, chunks = [], [], {}, []
    offset = 0
    for name, data in blocks:
        raw = data.astype("<f4").tobytes()
        buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": _ARRAY_BUFFER})
        accessor = {"bufferView": len(buffer_views) - 1, "componentType": _FLOAT, "count": len(data), "type": "VEC3"}
        if name == "POSITION":  # required for positions by the specification
            accessor["min"] = v.min(axis=0).tolist() if len(v) else [0.0] * 3
            accessor["max"] = v.max(axis=0).tolist() if len(v) else [0.0] * 3
        attributes[name] = len(accessors)
        accessors.append(accessor)
        chunks.append(raw)
        offset += len(raw)  # float32 VEC3 blocks keep 4-byte alignment
    indices = f.astype("<u4").tobytes()
    buffer_views.append(
        {"buffer": 0, "byteOffset": offset, "byteLength": len(indices), "target": _ELEMENT_ARRAY_BUFFER}
    )
    accessors.append(
        {"bufferView": len(buffer_views) - 1, "componentType": _UNSIGNED_INT, "count": f.size, "type": "SCALAR"}
    )
    chunks.append(indices)
    binary = _pad(b"".join(chunks), b"\0")
    document = {
        "asset": {"version": "2.0", "generator": f"invertavatar {__version__}"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "avatar"}],
        "meshes": [
            {
                "name": "avatar",
                "primitives": [
                    {"attributes": attributes, "indices": len(accessors) - 1, "material": 0, "mode": _TRIANGLES}
                ],
            }
        ],
        "materials": [
            {
                "name": "vertex_colour",
                "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0, "roughnessFactor": 1},
            }
        ],
        "accessors": accessors,
        "bufferViews": buffer_views,
        "buffers": [{"byteLength": len(binary)}],
    }
    text = _pad(json.dumps(document, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(text) + 8 + len(binary)
    return (
        struct.pack("<III", _GLB_MAGIC, 2, total)
        + struct.pack("<II", len(text), _GLB_JSON)
        + text
        + struct.pack("<II", len(binary), _GLB_BIN)
        + binary
    )


_ENCODERS = {"ply": ply_bytes, "obj": obj_bytes, "glb": glb_bytes}


def write_mesh(
    path: str | Path,
    vertices: Float[Tensor, "N 3"],
    faces: Int[Tensor, "F 3"],
    colors: Float[Tensor, "N 3"],
    normals: Float[Tensor, "N 3"] | None = None,
    *,
    format: MeshFormat | None = None,
) -> Path:
    """Write the mesh atomically as ``format`` (default: from the suffix of ``path``); returns ``path``."""
    path = Path(path)
    kind = format or path.suffix.lower().lstrip(".")
    if kind not in _ENCODERS:
        raise ValueError(f"{path}: unknown mesh format {kind!r}; expected one of {', '.join(MESH_FORMATS)}")
    return atomic_write_bytes(path, _ENCODERS[kind](vertices, faces, colors, normals))
