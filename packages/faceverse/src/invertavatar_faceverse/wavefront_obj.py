"""Reading Wavefront OBJ meshes (positions, texture coordinates, polygons) into numpy arrays."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ObjMesh", "read_obj", "read_obj_vertices"]


@dataclass(frozen=True)
class ObjMesh:
    """One OBJ file.

    - ``vertices``: ``(N, 3)`` float64 positions;
    - ``uvs``: ``(T, 2)`` float64 texture coordinates (may be empty);
    - ``triangles`` / ``triangle_uvs``: ``(F, 3)`` int64, 0-based, polygons fan-triangulated;
      ``triangle_uvs`` is -1 where a corner has no texture coordinate;
    - ``triangle_material``: ``(F,)`` int64 index into ``materials`` (``usemtl`` names; -1 = none).
    """

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    triangle_uvs: np.ndarray
    triangle_material: np.ndarray
    materials: tuple[str, ...]


def read_obj(path: str | Path) -> ObjMesh:
    """Parse ``path``; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OBJ file not found")
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
    tri_uvs: list[tuple[int, int, int]] = []
    tri_mat: list[int] = []
    materials: list[str] = []
    current = -1
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if parts[0] == "v":
                    vertices.append([float(p) for p in parts[1:4]])
                elif parts[0] == "vt":
                    uvs.append([float(p) for p in parts[1:3]])
                elif parts[0] == "f":
                    corners = [p.split("/") for p in parts[1:]]
                    vi = [_index(c[0], len(vertices)) for c in corners]
                    ti = [_index(c[1], len(uvs)) if len(c) > 1 and c[1] else -1 for c in corners]
                    for k in range(1, len(vi) - 1):
                        tris.append((vi[0], vi[k], vi[k + 1]))
                        tri_uvs.append((ti[0], ti[k], ti[k + 1]))
                        tri_mat.append(current)
                elif parts[0] == "usemtl":
                    name = parts[1] if len(parts) > 1 else ""
                    if name not in materials:
                        materials.append(name)
                    current = materials.index(name)
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{number}: malformed {parts[0]!r} line ({exc})") from None
    if not vertices:
        raise ValueError(f"{path}: no vertices ('v' lines) found")
    mesh = ObjMesh(
        vertices=np.asarray(vertices, dtype=np.float64).reshape(-1, 3),
        uvs=np.asarray(uvs, dtype=np.float64).reshape(-1, 2),
        triangles=np.asarray(tris, dtype=np.int64).reshape(-1, 3),
        triangle_uvs=np.asarray(tri_uvs, dtype=np.int64).reshape(-1, 3),
        triangle_material=np.asarray(tri_mat, dtype=np.int64),
        materials=tuple(materials),
    )
    if mesh.triangles.size and (mesh.triangles.max() >= len(mesh.vertices) or mesh.triangles.min() < 0):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    return mesh


def _index(token: str, count: int) -> int:
    """OBJ indices are 1-based; negative ones count back from the last element read."""
    value = int(token)
    return value - 1 if value > 0 else count + value


def read_obj_vertices(path: str | Path) -> np.ndarray:
    """Only the ``(N, 3)`` positions of an OBJ (fast path for many files of one topology)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OBJ file not found")
    rows: list[list[str]] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("v "):
                parts = line.split()
                if len(parts) < 4:
                    raise ValueError(f"{path}:{number}: malformed 'v' line")
                rows.append(parts[1:4])
    if not rows:
        raise ValueError(f"{path}: no vertices ('v' lines) found")
    try:
        return np.asarray(rows, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: malformed 'v' line ({exc})") from None
