"""Which mesh vertex stands for each MediaPipe landmark: align MediaPipe's canonical face to a mesh.

The user supplies MediaPipe's canonical face mesh (``face_model_with_iris.obj``, 478 vertices, or
``canonical_face_model.obj``, 468, from the MediaPipe repository, Apache-2.0); we never ship it.
A few points whose meaning both sides know (anchors) fix a similarity; the anchors' residuals
are spread smoothly over the canonical face (a Gaussian RBF warp), and every canonical point then
takes the nearest allowed vertex, weighing the frontal (x, y) position over depth because the
fit compares 2D projections.
"""

from pathlib import Path

import numpy as np

from invertavatar_faceverse.mediapipe_landmarks import CONTOURS, NUM_LANDMARKS
from invertavatar_faceverse.wavefront_obj import read_obj

__all__ = ["correspondence_from_canonical", "load_mediapipe_canonical", "nearest_allowed", "similarity_transform"]


def load_mediapipe_canonical(path: str | Path) -> np.ndarray:
    """``(478, 3)`` canonical landmark positions (cm, y up, z out of the face) from the OBJ.

    A 468-vertex file has no irises: their centres are put at the middle of each eye contour and
    the ring at a fifth of the eye's width around it.
    """
    path = Path(path)
    points = read_obj(path).vertices
    if len(points) == NUM_LANDMARKS:
        return points
    if len(points) != 468:
        raise ValueError(
            f"{path}: expected MediaPipe's canonical face mesh with 468 or 478 vertices, found {len(points)}"
        )
    irises = []
    for name in ("right", "left"):
        contour = points[list(CONTOURS[f"{name}_eye_upper"] + CONTOURS[f"{name}_eye_lower"])]
        center = contour.mean(0)
        radius = 0.2 * np.ptp(contour[:, 0])
        ring = [center + radius * np.array(d) for d in ((1, 0, 0), (0, 1, 0), (-1, 0, 0), (0, -1, 0))]
        irises += [center, *ring]
    return np.concatenate([points, np.asarray(irises)])


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``(s, R, t)`` with ``target ~ s * source @ R.T + t`` and det(R) = +1 (Umeyama)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ a / len(source))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ fix @ vt
    scale = float((sigma * np.diag(fix)).sum() / (a * a).sum(1).mean())
    return scale, rotation, mu_t - scale * mu_s @ rotation.T


def correspondence_from_canonical(
    canonical: str | Path | np.ndarray,
    vertices: np.ndarray,
    anchors: dict[int, int],
    candidates: np.ndarray,
    iris_vertices: dict[str, np.ndarray] | None = None,
    iris_candidates: np.ndarray | None = None,
    depth_weight: float = 0.3,
) -> np.ndarray:
    """``(478,)`` int64 vertex index per MediaPipe landmark.

    Args:
        canonical: path of MediaPipe's canonical OBJ, or its ``(478, 3)`` points.
        vertices: ``(N, 3)`` the neutral mesh (same handedness: x to the subject's left, y up).
        anchors: MediaPipe index -> vertex index for points known on both sides (at least 4).
        candidates: ``(N,)`` bool, vertices allowed for the face landmarks (the face skin).
        iris_vertices: ``{"right": (5,), "left": (5,)}`` exact iris vertices, if the mesh has them.
        iris_candidates: ``(N,)`` bool, eyeball vertices to search for the irises otherwise.
        depth_weight: weight of the depth axis in the nearest-vertex search.
    """
    points = load_mediapipe_canonical(canonical) if not isinstance(canonical, np.ndarray) else canonical
    if len(anchors) < 4:
        raise ValueError(f"need at least 4 anchor landmarks to align the canonical face, got {len(anchors)}")
    keys = np.fromiter(anchors.keys(), dtype=np.int64)
    targets = vertices[np.fromiter(anchors.values(), dtype=np.int64)]
    scale, rotation, shift = similarity_transform(points[keys], targets)
    aligned = scale * points @ rotation.T + shift
    # Spread the anchors' residuals smoothly (width: a fifth of the face's spread).
    sigma = 0.2 * np.sqrt(((targets - targets.mean(0)) ** 2).sum(1).mean())
    gram = np.exp(-((aligned[keys, None] - aligned[None, keys]) ** 2).sum(-1) / (2 * sigma**2))
    weights = np.linalg.solve(gram + 1e-3 * np.eye(len(keys)), targets - aligned[keys])
    reach = np.exp(-((aligned[:, None] - aligned[None, keys]) ** 2).sum(-1) / (2 * sigma**2))
    aligned = aligned + reach @ weights

    scale_axes = np.array([1.0, 1.0, depth_weight])
    out = nearest_allowed(aligned, vertices, candidates, scale_axes)
    iris = list(CONTOURS["right_iris"] + CONTOURS["left_iris"])
    if iris_vertices is not None:
        out[list(CONTOURS["right_iris"])] = iris_vertices["right"]
        out[list(CONTOURS["left_iris"])] = iris_vertices["left"]
    elif iris_candidates is not None:
        # Irises lie on the front of the eyeball: search with depth fully weighted.
        out[iris] = nearest_allowed(aligned[iris], vertices, iris_candidates, np.ones(3))
    out[keys] = np.fromiter(anchors.values(), dtype=np.int64)
    return out


def nearest_allowed(
    points: np.ndarray, vertices: np.ndarray, allowed: np.ndarray, axes: np.ndarray | None = None
) -> np.ndarray:
    """``(P,)`` index of the nearest allowed vertex to each point (axes scale the metric)."""
    import torch

    cand = np.nonzero(allowed)[0]
    if len(cand) == 0:
        raise ValueError("no candidate vertices to place landmarks on")
    axes = np.ones(3) if axes is None else axes
    p = torch.as_tensor(points * axes, dtype=torch.float64)
    v = torch.as_tensor(vertices[cand] * axes, dtype=torch.float64)
    best = torch.cat([torch.cdist(chunk, v).argmin(dim=1) for chunk in p.split(4096)])
    return cand[best.numpy()]
