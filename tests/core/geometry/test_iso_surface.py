"""Marching cubes on analytic fields: where the vertices lie, closedness, orientation, components, errors."""

import math
import sys

import pytest
import torch

from invertavatar_core.errors import UserError
from invertavatar_core.geometry.iso_surface import grid_points, keep_largest_component, marching_cubes
from invertavatar_core.geometry.normals import face_normals

pytest.importorskip("skimage")


def _sphere(n: int, radius: float, centre=(0.0, 0.0, 0.0), box: float = 1.0):
    """Signed distance inside a sphere (positive inside) on the ``n^3`` grid over the box."""
    points = grid_points(n, box)
    return (radius - (points - torch.tensor(centre)).norm(dim=-1)).reshape(n, n, n)


def _directed_edges(faces):
    return torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def test_grid_points_span_the_box_in_c_order():
    points = grid_points(5, 2.0)
    assert points.shape == (125, 3)
    torch.testing.assert_close(points[0], torch.tensor([-1.0, -1.0, -1.0]))
    torch.testing.assert_close(points[-1], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(points[1], torch.tensor([-1.0, -1.0, -0.5]))  # z fastest
    torch.testing.assert_close(grid_points(5, 2.0, start=7, stop=9), points[7:9])


@pytest.mark.parametrize("n", [24, 41])
def test_sphere_vertices_lie_on_the_sphere_and_the_mesh_is_closed_and_outward(n):
    radius, box = 0.3, 1.0
    surface = marching_cubes(_sphere(n, radius), 0.0, box)
    voxel = box / (n - 1)
    distance = surface.vertices.norm(dim=-1)
    assert len(surface.vertices) > 100
    assert (distance - radius).abs().max() < voxel
    # Closed and consistently wound: every directed edge once, its reverse once.
    edges = _directed_edges(surface.faces)
    assert len(torch.unique(edges, dim=0)) == len(edges)
    _, counts = torch.unique(edges.sort(dim=1).values, dim=0, return_counts=True)
    assert (counts == 2).all()
    # Outward: every face normal points away from the centre; the enclosed volume is the sphere's.
    v, f = surface.vertices, surface.faces
    normals = face_normals(v[None], f)[0]
    assert ((normals * v[f].mean(dim=1)).sum(dim=-1) > 0).all()
    volume = float((v[f[:, 0]] * torch.linalg.cross(v[f[:, 1]], v[f[:, 2]], dim=-1)).sum() / 6)
    assert volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.05)
    assert ((surface.normals * v / distance[:, None]).sum(dim=-1) > 0.95).all()
    assert surface.faces.dtype == torch.int64 and surface.vertices.dtype == torch.float32


def test_field_cut_by_the_box_is_closed_inside_it():
    # A sphere larger than the box: the border nodes are outside, so the surface closes on the box.
    surface = marching_cubes(_sphere(20, 0.8), 0.0, 1.0)
    edges = _directed_edges(surface.faces)
    _, counts = torch.unique(edges.sort(dim=1).values, dim=0, return_counts=True)
    assert (counts == 2).all()
    assert surface.vertices.abs().max() <= 0.5


def test_largest_component_drops_the_small_piece():
    n = 40
    field = torch.maximum(_sphere(n, 0.25), _sphere(n, 0.08, centre=(0.35, 0.35, 0.35)))
    both = marching_cubes(field, 0.0, 1.0)
    kept = keep_largest_component(both)
    assert len(both.vertices) > len(kept.vertices) > 0
    assert kept.vertices.norm(dim=-1).max() < 0.25 + 1 / (n - 1)  # only the big sphere's vertices
    assert int(kept.faces.max()) == len(kept.vertices) - 1  # renumbered, every vertex used
    assert len(torch.unique(kept.faces)) == len(kept.vertices)
    alone = marching_cubes(_sphere(n, 0.25), 0.0, 1.0)
    assert len(kept.faces) == len(alone.faces)


def test_no_crossing_names_the_field_range():
    field = _sphere(12, 0.3)
    high = float(field[1:-1, 1:-1, 1:-1].max())
    with pytest.raises(
        UserError, match=rf"no surface: .*spans \[-?[0-9.]+, {high:.4g}\], never above the threshold 0\.4"
    ):
        marching_cubes(field, 0.4, 1.0)


def test_missing_scikit_image_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(UserError, match=r'pip install "invertavatar-core\[export\]"'):
        marching_cubes(_sphere(12, 0.3), 0.0, 1.0)


def test_components_of_many_pieces_are_found_whatever_the_numbering():
    # 5 balls along x, vertex numbers shuffled: the kept piece is the biggest ball, wherever it lies.
    n = 48
    points = grid_points(n, 1.0)
    radii = (0.06, 0.08, 0.05, 0.09, 0.07)
    field = torch.stack(
        [r - (points - torch.tensor([x, 0.0, 0.0])).norm(dim=-1) for r, x in zip(radii, (-0.4, -0.2, 0.0, 0.2, 0.4))]
    ).amax(dim=0)
    surface = marching_cubes(field.reshape(n, n, n), 0.0, 1.0)
    order = torch.randperm(len(surface.vertices))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    shuffled = type(surface)(surface.vertices[order], inverse[surface.faces], surface.normals[order])
    kept = keep_largest_component(shuffled)
    centre = kept.vertices.mean(dim=0)
    torch.testing.assert_close(centre, torch.tensor([0.2, 0.0, 0.0]), atol=1e-3, rtol=0)
    assert (kept.vertices - centre).norm(dim=-1).max() < 0.09 + 1 / (n - 1)
