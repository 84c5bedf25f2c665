"""The procedural head: closed mesh, UV layout, bases, blendshapes, eyes and landmark layout."""

import numpy as np
import pytest
import torch

from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.plugin.protocols import MorphableModel
from invertavatar_faceverse.landmark_correspondence import load_mediapipe_canonical, similarity_transform
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS
from invertavatar_faceverse.procedural import ProceduralHeadModel, ProceduralHeadModelConfig

TINY = {"rows": 56, "columns": 48, "mouth_rows": 2, "eye_rings": 6, "eye_segments": 12}


@pytest.fixture(scope="module")
def tiny() -> ProceduralHeadModel:
    return ProceduralHeadModel(ProceduralHeadModelConfig(**TINY))


@pytest.fixture(scope="module")
def head() -> ProceduralHeadModel:
    return ProceduralHeadModel()


def _expression(model, **weights) -> torch.Tensor:
    e = torch.zeros(1, model.n_expression)
    for name, value in weights.items():
        e[0, model.expression_names.index(name)] = value
    return e


def _pose(model, identity=None, eyes=None, **weights) -> torch.Tensor:
    identity = torch.zeros(1, model.n_identity) if identity is None else identity
    return model.vertices(identity, _expression(model, **weights), eyes)[0]


def test_protocol_and_sizes(tiny, head):
    assert isinstance(head, MorphableModel)
    assert 10_000 <= head.faces.shape[0] <= 30_000
    assert 2_000 <= tiny.faces.shape[0] <= 8_000
    for m in (tiny, head):
        assert m.uvs.shape == (m.n_vertices, 2) and m.face_mask.shape == (m.n_vertices,)
        assert m.landmark_indices.shape == (478,) and m.landmark_indices.dtype == torch.int64
        assert int(m.faces.max()) < m.n_vertices
    assert {"jaw_open", "smile_left", "smile_right", "blink_left", "blink_right", "brow_raise", "pucker"} <= set(
        head.expression_names
    )
    assert 20 <= head.n_identity <= 50 and head.n_eye == 4


def test_deterministic():
    a = ProceduralHeadModel(ProceduralHeadModelConfig(**TINY, canonical_scale=0.02))
    b = ProceduralHeadModel(ProceduralHeadModelConfig(**TINY, canonical_scale=0.02))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.faces, b.faces)
    assert torch.equal(a.identity_basis, b.identity_basis) and torch.equal(a.expression_basis, b.expression_basis)


def test_head_surface_is_closed_and_outward(tiny):
    rows, cols = tiny.grid_shape
    n_grid = rows * cols
    faces = tiny.faces.numpy()
    head_faces = faces[(faces < n_grid).all(1)]
    pos = tiny.mean.numpy().astype(np.float64)
    # Weld the seam column and the collapsed poles, then every edge must have exactly two triangles.
    _, weld = np.unique(np.round(pos[:n_grid], 6), axis=0, return_inverse=True)
    welded = weld.reshape(-1)[head_faces]
    edges = np.sort(np.concatenate([welded[:, [0, 1]], welded[:, [1, 2]], welded[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    tri = pos[head_faces]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert volume > 2000.0  # cm^3, positive: triangles wind outwards; a head is ~4000 cm^3


def test_uv_face_island_is_a_rectangle_without_overlap(tiny):
    rows, cols = tiny.grid_shape
    n_grid = rows * cols
    uv = tiny.uvs.numpy().astype(np.float64)
    faces = tiny.faces.numpy()
    mask = tiny.face_mask.numpy() > 0.5
    face_tris = faces[mask[faces].all(1) & (faces < n_grid).all(1)]
    inside = uv[face_tris].reshape(-1, 2)
    assert inside[:, 0].min() >= 0.03 - 1e-6 and inside[:, 0].max() <= 0.97 + 1e-6
    assert inside[:, 1].min() >= 0.05 - 1e-6 and inside[:, 1].max() <= 0.90 + 1e-6
    assert np.ptp(inside[:, 0]) > 0.8 and np.ptp(inside[:, 1]) > 0.7  # the face fills its rectangle
    # Every UV triangle has the same orientation, and sampled points are covered at most once.
    t = uv[faces]
    signed = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (
        t[:, 1, 1] - t[:, 0, 1]
    )
    big = np.abs(signed) > 1e-12
    assert (signed[big] > 0).all() or (signed[big] < 0).all()
    samples = np.random.default_rng(0).uniform(0, 1, size=(2000, 2))
    a, b, c = t[big, 0], t[big, 1], t[big, 2]

    def side(p, q, r):
        return (q[None, :, 0] - p[None, :, 0]) * (r[:, None, 1] - p[None, :, 1]) - (q[None, :, 1] - p[None, :, 1]) * (
            r[:, None, 0] - p[None, :, 0]
        )

    inside_count = ((side(a, b, samples) >= 0) & (side(b, c, samples) >= 0) & (side(c, a, samples) >= 0)) | (
        (side(a, b, samples) <= 0) & (side(b, c, samples) <= 0) & (side(c, a, samples) <= 0)
    )
    assert inside_count.sum(1).max() <= 1


def test_face_lands_in_the_face_window_facing_plus_z(head):
    mask = head.face_mask > 0.5
    homog = torch.cat([head.mean, torch.ones(head.n_vertices, 1)], 1)
    canonical = (homog @ head.to_canonical.T)[:, :3]
    face = canonical[mask]
    window = face_window(256)
    (x0, x1), (y0, y1) = window.x_range, window.y_range
    assert face[:, 0].min() >= x0 and face[:, 0].max() < x1
    assert face[:, 1].min() >= y0 and face[:, 1].max() < y1
    # It fills most of the window, and the face (nose tip) is the front of the head.
    assert (face[:, 1].max() - face[:, 1].min()) > 0.6 * (y1 - y0)
    nose = canonical[head.landmark_indices[1]]
    assert nose[2] > 0.15 and nose[2] > canonical[:, 2].quantile(0.99)
    assert canonical.abs().max() <= 0.5  # the whole head stays inside the tri-plane box


def test_identity_is_linear_and_eyeballs_move_rigidly(tiny):
    identity = torch.randn(1, tiny.n_identity)
    base = _pose(tiny)
    one = _pose(tiny, identity=identity) - base
    half = _pose(tiny, identity=0.5 * identity) - base
    torch.testing.assert_close(half, 0.5 * one, atol=1e-5, rtol=1e-4)
    assert one.abs().max() > 0.3  # the modes do something (cm)
    moved = _pose(tiny, identity=2 * identity)
    for k in range(2):
        idx = tiny.eyeball_vertices[k]
        dist_moved = (moved[idx, None] - moved[None, idx]).norm(dim=-1)
        dist_base = (base[idx, None] - base[None, idx]).norm(dim=-1)
        torch.testing.assert_close(dist_moved, dist_base, atol=1e-4, rtol=0)
    # Each mode is a distinct shape change.
    basis = tiny.identity_basis / tiny.identity_basis.norm(dim=1, keepdim=True)
    gram = basis @ basis.T - torch.eye(tiny.n_identity)
    assert gram.abs().max() < 0.99


def test_jaw_open_opens_the_mouth_into_a_cavity(head):
    lm = head.landmark_indices
    rest, open_ = _pose(head), _pose(head, jaw_open=1.0)
    gap_rest = (rest[lm[13]] - rest[lm[14]]).norm()
    gap_open = (open_[lm[13]] - open_[lm[14]]).norm()
    assert gap_rest < 0.1 and gap_open > 1.5  # cm between the inner lips
    assert open_[lm[152], 1] < rest[lm[152], 1] - 1.5  # the chin drops
    assert torch.allclose(open_[lm[168]], rest[lm[168]])  # the nasion does not move
    # The inside of the mouth: band rows between the lips, behind the lips and masked out.
    cols = head.grid_shape[1]
    mid_band = head.lip_band_rows[len(head.lip_band_rows) // 2]
    centre = mid_band * cols + cols // 2
    assert open_[centre, 2] < open_[lm[13], 2] - 1.0
    assert head.face_mask[centre] == 0 and head.face_mask[lm[13]] == 1


def test_blink_closes_one_eye_only(head):
    lm = head.landmark_indices
    rest, blink = _pose(head), _pose(head, blink_left=1.0)
    left_rest = (rest[lm[386]] - rest[lm[374]]).norm()
    left_closed = (blink[lm[386]] - blink[lm[374]]).norm()
    assert left_rest > 0.4 and left_closed < 0.05
    torch.testing.assert_close(blink[lm[159]], rest[lm[159]])  # right upper lid stays
    smile = _pose(head, smile_left=1.0, smile_right=1.0)
    assert smile[lm[61], 1] > rest[lm[61], 1] + 0.3 and smile[lm[291], 1] > rest[lm[291], 1] + 0.3


def test_eye_rotation_turns_the_iris_about_the_centre(head):
    lm = head.landmark_indices
    zero = _pose(head, eyes=torch.zeros(1, 4))
    torch.testing.assert_close(zero, _pose(head))
    right_look = _pose(head, eyes=torch.tensor([[0.0, 0.3, 0.0, 0.3]]))
    up = _pose(head, eyes=torch.tensor([[0.3, 0.0, 0.3, 0.0]]))
    for centre_index, k in ((468, 0), (473, 1)):
        assert right_look[lm[centre_index], 0] > zero[lm[centre_index], 0] + 0.3
        assert up[lm[centre_index], 1] > zero[lm[centre_index], 1] + 0.3
        centre = head.eye_centers[k]
        radius = (zero[lm[centre_index]] - centre).norm()
        assert torch.isclose((right_look[lm[centre_index]] - centre).norm(), radius, atol=1e-4)


def test_builtin_landmarks_follow_mediapipe_semantics(head, assets_dir):
    """Named landmarks, similarity-aligned to MediaPipe's canonical face, within 8% of face width."""
    canonical = load_mediapipe_canonical(assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj")
    ours = head.mean[head.landmark_indices].double().numpy()
    valid = head.landmark_valid.numpy()
    assert valid.sum() >= 170
    s, r, t = similarity_transform(canonical[valid], ours[valid])
    aligned = s * canonical @ r.T + t
    width = np.ptp(ours[valid][:, 0])
    error = np.linalg.norm(aligned - ours, axis=1)[valid] / width
    assert error.mean() < 0.08, error.mean()  # measured 0.051
    for name in ("right_eye_upper", "left_eye_lower", "nose_ridge", "right_iris"):
        assert (np.linalg.norm(aligned - ours, axis=1)[list(CONTOURS[name])] / width).mean() < 0.05


def test_canonical_obj_gives_all_478_landmarks(assets_dir):
    path = assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj"
    model = ProceduralHeadModel(ProceduralHeadModelConfig(mediapipe_canonical=path))
    builtin = ProceduralHeadModel()
    assert model.landmark_valid.all()
    named = builtin.landmark_valid
    assert torch.equal(model.landmark_indices[named], builtin.landmark_indices[named])  # anchors kept
    canonical = load_mediapipe_canonical(path)
    ours = model.mean[model.landmark_indices].double().numpy()
    s, r, t = similarity_transform(canonical, ours)
    aligned = s * canonical @ r.T + t
    width = np.ptp(ours[:, 0])
    planar = np.linalg.norm((aligned - ours)[:, :2], axis=1) / width
    assert planar.mean() < 0.04, planar.mean()  # measured 0.029


def test_missing_canonical_obj_names_the_file(tmp_path):
    missing = tmp_path / "face_model_with_iris.obj"
    with pytest.raises(FileNotFoundError, match="face_model_with_iris.obj"):
        ProceduralHeadModel(ProceduralHeadModelConfig(**TINY, mediapipe_canonical=missing))
