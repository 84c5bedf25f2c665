"""The mechanism every model here shares: mean + linear identity and expression bases + eyeballs.

``vertices = mean + identity @ B_id + expression @ B_exp``, then each eyeball's vertices turn
about that eyeball's centre by its (pitch, yaw). :meth:`LinearFaceModel.vertices_at` evaluates
only some vertices (the 478 landmarks, say), which is what makes landmark fitting cheap.
"""

import torch
from torch import Tensor, nn

__all__ = ["LinearFaceModel"]


class LinearFaceModel(nn.Module):
    """Base of the procedural, ICT and FaceVerse models (buffers set by :meth:`_set_bases`).

    Subclasses set ``n_eye`` (0 or 4) and, when the eyes turn in a different frame, override
    :meth:`eye_rotation`; they register the topology buffers ``_faces``, ``_uvs``,
    ``_face_mask``, ``_landmarks``, ``_landmark_valid`` and ``_to_canonical`` that the
    MorphableModel properties below read. A subclass may register an ``expression_prior_scale``
    buffer, ``(E,)``: the relative weight of each expression in the landmark fit's ``|exp|^2`` term
    (1 for all when absent).
    """

    n_eye: int = 0
    n_vertices: int
    n_identity: int
    n_expression: int
    model_name: str = "model"
    """Name used in error messages."""
    expression_max: float | None = None
    """Upper bound of the documented expression range (blendshape weights: 1); None: unbounded.
    Weights are non-negative in every model here; fitting keeps them in ``[0, expression_max]``."""

    def _set_bases(
        self,
        mean: Tensor,
        identity: Tensor,
        expression: Tensor,
        eyeballs: tuple[Tensor, ...] = (),
        eye_centers: Tensor | None = None,
    ) -> None:
        """Store the bases: ``mean (N, 3)``, ``identity (S, N, 3)``, ``expression (E, N, 3)``.

        ``eyeballs`` are vertex index tensors, one per eyeball, ``eye_centers`` their rest centres
        ``(len(eyeballs), 3)``.
        """
        f32 = torch.float32
        n = mean.shape[0]
        self.register_buffer("mean", mean.to(f32), persistent=False)
        self.register_buffer("identity_basis", identity.to(f32).reshape(identity.shape[0], n * 3), persistent=False)
        self.register_buffer(
            "expression_basis", expression.to(f32).reshape(expression.shape[0], n * 3), persistent=False
        )
        label = torch.zeros(n, dtype=torch.int64)
        centers_id, centers_exp = [], []
        for k, idx in enumerate(eyeballs):
            label[idx] = k + 1
            # An eyeball's centre moves with the mean displacement of its vertices.
            centers_id.append(identity[:, idx].mean(1))
            centers_exp.append(expression[:, idx].mean(1))
        self.register_buffer("eye_label", label, persistent=False)
        if eyeballs:
            self.register_buffer("eye_centers", eye_centers.to(f32), persistent=False)
            self.register_buffer("_center_identity", torch.stack(centers_id).to(f32), persistent=False)  # (2, S, 3)
            self.register_buffer("_center_expression", torch.stack(centers_exp).to(f32), persistent=False)
        self.n_vertices = n
        self.n_identity = identity.shape[0]
        self.n_expression = expression.shape[0]

    @property
    def faces(self) -> Tensor:
        """``(F, 3)`` int64 triangles, counter-clockwise seen from outside."""
        return self._faces

    @property
    def uvs(self) -> Tensor:
        """``(N, 2)`` per-vertex UV in [0, 1], v up."""
        return self._uvs

    @property
    def face_mask(self) -> Tensor:
        """``(N,)`` 1 on the face region and the eyeballs, else 0."""
        return self._face_mask

    @property
    def landmark_indices(self) -> Tensor:
        """``(478,)`` int64 vertex per MediaPipe landmark (see ``landmark_valid``)."""
        return self._landmarks

    @property
    def landmark_valid(self) -> Tensor:
        """``(478,)`` bool: the landmarks placed with their MediaPipe meaning (fitting ignores the rest)."""
        return self._landmark_valid

    @property
    def to_canonical(self) -> Tensor:
        """``(4, 4)`` similarity from model units to EG3D canonical space."""
        return self._to_canonical

    def eye_rotation(self, angles: Tensor) -> Tensor:
        """``(B, 2)`` (pitch, yaw) radians -> ``(B, 3, 3)`` for a y-up, z-forward model space.

        Positive pitch looks up (+y), positive yaw looks towards +x: the +z gaze becomes
        ``(sin yaw cos pitch, sin pitch, cos yaw cos pitch)``.
        """
        pitch, yaw = angles[:, 0], angles[:, 1]
        cp, sp, cy, sy = torch.cos(pitch), torch.sin(pitch), torch.cos(yaw), torch.sin(yaw)
        one, zero = torch.ones_like(cp), torch.zeros_like(cp)
        rx = torch.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).view(-1, 3, 3)  # R_x(-pitch)
        ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
        return ry @ rx

    def _check(self, identity: Tensor, expression: Tensor, eyes: Tensor | None) -> None:
        b = identity.shape[0]
        if identity.ndim != 2 or identity.shape[1] != self.n_identity or expression.shape != (b, self.n_expression):
            raise ValueError(
                f"{self.model_name}: expected identity (B, {self.n_identity}) and expression (B, {self.n_expression}), "
                f"got {tuple(identity.shape)} and {tuple(expression.shape)}"
            )
        if eyes is not None and eyes.numel() and eyes.shape != (b, self.n_eye):
            raise ValueError(f"{self.model_name}: expected eyes (B, {self.n_eye}), got {tuple(eyes.shape)}")

    def vertices(self, identity: Tensor, expression: Tensor, eyes: Tensor | None = None) -> Tensor:
        """``identity: (B, S)``, ``expression: (B, E)``, ``eyes: (B, n_eye)`` -> ``(B, N, 3)``."""
        self._check(identity, expression, eyes)
        dtype = self.mean.dtype
        offsets = identity.to(dtype) @ self.identity_basis + expression.to(dtype) @ self.expression_basis
        verts = self.mean + offsets.view(identity.shape[0], self.n_vertices, 3)
        return self._turn_eyes(verts, self.eye_label, identity, expression, eyes)

    def vertices_at(self, indices: Tensor, identity: Tensor, expression: Tensor, eyes: Tensor | None = None) -> Tensor:
        """The same as ``vertices(...)[:, indices]`` -> ``(B, K, 3)``, without the other vertices."""
        self._check(identity, expression, eyes)
        dtype = self.mean.dtype
        idx = indices.to(self.mean.device)
        b, k = identity.shape[0], idx.numel()
        # index_select: plain advanced indexing is far slower on CPU for this gather.
        bid = (
            self.identity_basis.view(self.n_identity, self.n_vertices, 3)
            .index_select(1, idx)
            .reshape(self.n_identity, k * 3)
        )
        bex = (
            self.expression_basis.view(self.n_expression, self.n_vertices, 3)
            .index_select(1, idx)
            .reshape(self.n_expression, k * 3)
        )
        verts = self.mean.index_select(0, idx) + (identity.to(dtype) @ bid + expression.to(dtype) @ bex).view(b, k, 3)
        return self._turn_eyes(verts, self.eye_label.index_select(0, idx), identity, expression, eyes)

    def _turn_eyes(
        self, verts: Tensor, label: Tensor, identity: Tensor, expression: Tensor, eyes: Tensor | None
    ) -> Tensor:
        if eyes is None or not self.n_eye or not eyes.numel():
            return verts
        out = verts
        for k in range(self.n_eye // 2):
            sel = torch.nonzero(label == k + 1).flatten()
            if not sel.numel():
                continue
            center = (
                self.eye_centers[k]
                + identity.to(verts.dtype) @ self._center_identity[k]
                + expression.to(verts.dtype) @ self._center_expression[k]
            )[:, None]  # (B, 1, 3)
            rot = self.eye_rotation(eyes[:, 2 * k : 2 * k + 2].to(verts.dtype))
            turned = (verts.index_select(1, sel) - center) @ rot.transpose(1, 2) + center
            out = out.index_copy(1, sel, turned)
        return out
