"""PLY, OBJ and GLB writers: each file parsed back here by an independent reader (counts, values, layout)."""

import json
import struct

import numpy as np
import pytest
import torch

from invertavatar_core.io.mesh_files import glb_bytes, obj_bytes, ply_bytes, write_mesh


@pytest.fixture
def mesh():
    """A tetrahedron with distinct colours (one of them out of range: written clipped)."""
    vertices = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) - 0.25
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.25, 1.5]])
    normals = torch.nn.functional.normalize(vertices, dim=-1)
    return vertices, faces, colors, normals


def _read_ply(data: bytes):
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    n_vertices = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
    n_faces = int(next(line.split()[2] for line in header if line.startswith("element face")))
    props = [line.split()[1:] for line in header if line.startswith("property") and "list" not in line]
    fields = [(name, "<f4" if kind == "float" else "u1") for kind, name in props]
    vertex_dtype = np.dtype(fields)
    vertices = np.frombuffer(data, vertex_dtype, count=n_vertices, offset=end)
    face_dtype = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    faces = np.frombuffer(data, face_dtype, count=n_faces, offset=end + vertex_dtype.itemsize * n_vertices)
    assert end + vertex_dtype.itemsize * n_vertices + face_dtype.itemsize * n_faces == len(data)
    return vertices, faces


def test_ply_round_trip(mesh):
    vertices, faces, colors, normals = mesh
    records, face_records = _read_ply(ply_bytes(vertices, faces, colors, normals))
    assert len(records) == 4 and len(face_records) == 4
    np.testing.assert_array_equal(np.stack([records[k] for k in "xyz"], 1), vertices.numpy())
    np.testing.assert_allclose(np.stack([records[k] for k in ("nx", "ny", "nz")], 1), normals.numpy())
    rgb = np.stack([records[k] for k in ("red", "green", "blue")], 1)
    np.testing.assert_array_equal(rgb, [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 64, 255]])
    assert (face_records["n"] == 3).all()
    np.testing.assert_array_equal(face_records["i"], faces.numpy())
    # Without normals the vertex record is position + colour only.
    records, _ = _read_ply(ply_bytes(vertices, faces, colors))
    assert records.dtype.names == ("x", "y", "z", "red", "green", "blue")


def test_obj_round_trip(mesh):
    vertices, faces, colors, normals = mesh
    lines = obj_bytes(vertices, faces, colors, normals).decode("ascii").splitlines()
    v = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
    vn = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("vn ")])
    f = [line.split()[1:] for line in lines if line.startswith("f ")]
    assert v.shape == (4, 6) and vn.shape == (4, 3) and len(f) == 4
    np.testing.assert_allclose(v[:, :3], vertices.numpy(), atol=1e-6)
    np.testing.assert_allclose(v[:, 3:], colors.clamp(0, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(vn, normals.numpy(), atol=1e-5)
    corners = np.array([[int(c.split("//")[0]) for c in face] for face in f])
    assert all(c.split("//")[0] == c.split("//")[1] for face in f for c in face)
    np.testing.assert_array_equal(corners - 1, faces.numpy())  # 1-based
    plain = obj_bytes(vertices, faces, colors).decode("ascii")
    assert "vn " not in plain and "\nf 1 3 2\n" in plain


def _read_glb(data: bytes):
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length].decode("utf-8"))
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    binary = data[28 + json_length : 28 + json_length + bin_length]
    assert 28 + json_length + bin_length == len(data)
    return document, binary


def _accessor(document, binary, index):
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(binary)
    dtype = {5126: "<f4", 5125: "<u4"}[accessor["componentType"]]
    width = {"VEC3": 3, "SCALAR": 1}[accessor["type"]]
    values = np.frombuffer(binary, dtype, count=accessor["count"] * width, offset=view["byteOffset"])
    assert values.nbytes == view["byteLength"]
    return values.reshape(accessor["count"], width), view


def test_glb_round_trip(mesh):
    vertices, faces, colors, normals = mesh
    document, binary = _read_glb(glb_bytes(vertices, faces, colors, normals))
    assert document["asset"]["version"] == "2.0"
    assert document["buffers"] == [{"byteLength": len(binary)}]
    primitive = document["meshes"][0]["primitives"][0]
    assert primitive["mode"] == 4 and set(primitive["attributes"]) == {"POSITION", "NORMAL", "COLOR_0"}
    assert document["scenes"][document["scene"]]["nodes"] == [0] and document["nodes"][0]["mesh"] == 0
    material = document["materials"][primitive["material"]]["pbrMetallicRoughness"]
    assert material["metallicFactor"] == 0  # matte: glTF's default material is fully metallic
    position, view = _accessor(document, binary, primitive["attributes"]["POSITION"])
    assert view["target"] == 34962
    np.testing.assert_array_equal(position, vertices.numpy())
    accessor = document["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_array_equal(accessor["min"], vertices.min(0).values.numpy())
    np.testing.assert_array_equal(accessor["max"], vertices.max(0).values.numpy())
    color, _ = _accessor(document, binary, primitive["attributes"]["COLOR_0"])
    np.testing.assert_allclose(color, colors.clamp(0, 1).numpy())
    normal, _ = _accessor(document, binary, primitive["attributes"]["NORMAL"])
    np.testing.assert_allclose(normal, normals.numpy())
    indices, view = _accessor(document, binary, primitive["indices"])
    assert view["target"] == 34963
    np.testing.assert_array_equal(indices.reshape(-1, 3), faces.numpy())


def test_glb_pads_the_json_chunk_with_spaces_to_four_bytes():
    vertices = torch.rand(5, 3)
    residues = set()
    for count in range(1, 6):  # the JSON's length changes with the counts in it
        data = glb_bytes(vertices, torch.tensor([[0, 1, 2]] * count), torch.rand(5, 3))
        document, _ = _read_glb(data)  # asserts both chunk lengths are multiples of 4
        (json_length,) = struct.unpack_from("<I", data, 12)
        text = data[20 : 20 + json_length]
        residues.add(len(text.rstrip(b" ")) % 4)
        assert json.loads(text) == document
        assert len(document["bufferViews"]) == 3  # no normals given: POSITION, COLOR_0, indices
    assert len(residues) > 1  # padding was needed in some of them


def test_write_mesh_picks_the_format_from_the_suffix_and_refuses_unknown_ones(mesh, tmp_path):
    vertices, faces, colors, normals = mesh
    for suffix, reader in (("ply", ply_bytes), ("obj", obj_bytes), ("glb", glb_bytes)):
        path = write_mesh(tmp_path / f"m.{suffix}", vertices, faces, colors, normals)
        assert path.read_bytes() == reader(vertices, faces, colors, normals)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.glb", "m.obj", "m.ply"]  # no temporaries left
    with pytest.raises(ValueError, match="unknown mesh format 'stl'"):
        write_mesh(tmp_path / "m.stl", vertices, faces, colors)


def test_bad_faces_are_refused(mesh):
    vertices, faces, colors, _ = mesh
    with pytest.raises(ValueError, match=r"face indices must lie in \[0, 4\)"):
        ply_bytes(vertices, faces + 1, colors)
