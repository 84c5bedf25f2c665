"""Which landmarks of the fitted head the camera sees: weights that drop self-occluded ones.

A detector reports all 478 points however far the head is turned; those it cannot see are
guesses (MediaPipe puts the far cheek, eye and brow along the visible silhouette). Fitting them
at full weight holds profiles at about 55 degrees of yaw. The fit therefore weights each landmark
by what the current estimate of the head says about it:

- *facing*: the cosine between the landmark's surface normal (on the model's neutral face) and
  the direction to the camera, ramped from ``facing[0]`` (weight 0) to ``facing[1]`` (weight 1),
  which drops the far face contour and cheek;
- *behind the profile*: a landmark of one half of the face that projects beyond the midline
  profile (forehead, nose, lips, chin) onto the other half is hidden by it, as the far eye is
  by the nose.
"""

import torch
from torch import Tensor

from invertavatar_core.geometry.cameras import split_camera
from invertavatar_core.geometry.normals import vertex_normals
from invertavatar_core.tensor_types import Float
from invertavatar_faceverse.landmark_pose import MIDLINE_PROFILE, landmark_sides

__all__ = ["LandmarkVisibility"]


def _smoothstep(lo: float, hi: float, x: Tensor) -> Tensor:
    t = ((x - lo) / max(hi - lo, 1e-9)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class LandmarkVisibility:
    """Self-occlusion weights of a model's 478 landmarks for given cameras (see the module docs)."""

    def __init__(self, model, identity: Float[Tensor, "1 S"] | None = None) -> None:
        """Precompute the landmark normals of ``model`` (of ``identity``, else the mean face) and their sides."""
        from invertavatar_faceverse.fitting import model_landmarks

        dev = model.to_canonical.device
        ident = torch.zeros(1, model.n_identity, device=dev) if identity is None else identity[:1].to(dev)
        expr = torch.zeros(1, model.n_expression, device=dev)
        with torch.no_grad():
            verts = model.vertices(ident, expr, None)
            normals = vertex_normals(verts, model.faces)[0].index_select(0, model.landmark_indices.to(dev))
            # Outward whatever the winding: the nose tip faces the front (+z in every model here).
            if float(normals[1, 2]) < 0:
                normals = -normals
            m = model.to_canonical.to(normals)
            self.normals = torch.nn.functional.normalize(normals @ m[:3, :3].T, dim=-1)  # (478, 3) canonical
            self.points = model_landmarks(model, ident, expr, None)[0]
        _, self.side = landmark_sides(model)
        valid = model.landmark_valid.to(dev)
        profile = torch.tensor(MIDLINE_PROFILE, device=dev)
        self.profile = profile[valid[profile]]

    def __call__(
        self,
        points: Float[Tensor, "T L 3"],
        projected: Float[Tensor, "T L 2"],
        camera: Float[Tensor, "T 25"],
        face_size: Float[Tensor, " T"],
        facing: tuple[float, float] = (-0.05, 0.2),
        margin: float = 0.01,
    ) -> Float[Tensor, "T L"]:
        """``(T, 478)`` weights in [0, 1] of landmarks at canonical ``points`` projected to ``projected``.

        Args:
            points: the fitted landmarks in canonical space.
            projected: the same in pixels.
            camera: EG3D labels of the frames.
            face_size: the face's size in pixels, for ``margin``.
            facing: cosine to the camera of zero weight and of full weight.
            margin: how far (as a fraction of ``face_size``) a landmark may stray beyond the
                midline profile before it counts as hidden (half weight at the line).
        """
        normals = self.normals.to(points)
        cam2world, _ = split_camera(camera)
        centre = cam2world[:, None, :3, 3]
        towards = torch.nn.functional.normalize(centre - points, dim=-1)
        weight = _smoothstep(facing[0], facing[1], (normals[None] * towards).sum(-1))
        # The image direction the subject's left (+x) goes to; its sign says which half lies where.
        right = cam2world[:, :3, 0]  # the camera's x axis in world coordinates
        direction = torch.where(right[:, 0] >= 0, 1.0, -1.0).to(points)  # (T,)
        profile = projected[:, self.profile.to(points.device)]  # (T, P, 2)
        order = profile[..., 1].argsort(dim=1)
        pv = profile[..., 1].gather(1, order)
        pu = profile[..., 0].gather(1, order)
        v = projected[..., 1]
        k = torch.searchsorted(pv.contiguous(), v.contiguous()).clamp(1, pv.shape[1] - 1)
        v0, v1 = pv.gather(1, k - 1), pv.gather(1, k)
        u0, u1 = pu.gather(1, k - 1), pu.gather(1, k)
        t = ((v - v0) / (v1 - v0).clamp_min(1e-6)).clamp(0.0, 1.0)
        u_line = u0 + t * (u1 - u0)
        within = (v >= pv[:, :1]) & (v <= pv[:, -1:])  # rows the profile covers
        side = self.side.to(points.device).to(points.dtype)
        own = (projected[..., 0] - u_line) * side[None] * direction[:, None]  # > 0: on its own half
        m = (margin * face_size[:, None]).clamp_min(1e-6)
        t = ((own + m) / (2 * m)).clamp(0.0, 1.0)
        kept = torch.where(within & (side[None] != 0), t * t * (3.0 - 2.0 * t), torch.ones_like(t))
        return weight * kept
