"""Frame-by-frame face tracking for live driving: MediaPipe in tracking mode, then a few Gauss-Newton steps.

:class:`LiveFaceTracker` turns one video frame (an ``(H, W, 3)`` uint8 RGB array) into the
driving coefficients of that frame: expression, eyes and head pose, the pose as an EG3D camera
label (docs/dataset-layout.md, conventions). It is the per-frame counterpart of the batch fit
(:mod:`invertavatar_faceverse.fitting`), built for speed:

- MediaPipe FaceMesh runs in *tracking* mode (``static_image_mode=False``): after the first
  detection it follows the face from the previous frame's landmarks instead of detecting anew;
- the first frame with a face is fitted in full (:func:`~invertavatar_faceverse.fitting.fit_image`),
  which fixes the driver's identity and the crop box; later frames keep both;
- every later frame is a few Gauss-Newton (Levenberg-Marquardt) steps on rotation, translation,
  expression and eyes, warm-started from the previous frame: the residuals are the batch fit's
  (region-weighted landmark error in image-size units, ``|exp|^2`` and ``|eyes|^2``, the released
  tracker's weights, docs/design/preprocessing.md, landmark fitting) plus a pull towards the
  previous frame's values. The Jacobian comes from forward-mode differentiation of the same
  projection, so any model with ``landmark_indices`` works. Expression weights are kept in
  their documented range after each step (``[0, model.expression_max]``; ``[0, 1]`` for blendshape
  models, which is what a model that does not say gets).

The pose is the batch fit's parametrisation: world-to-camera rotation ``R(omega) R0`` (axis-angle
``omega`` about the frontal look-at camera ``R0``) and translation ``t``; :func:`pose_camera`
turns ``(omega, t)`` rows, raw or smoothed, into labels.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from invertavatar_core.geometry.cameras import FFHQ_FOCAL, look_at_camera, make_camera, split_camera
from invertavatar_core.tensor_types import Camera, Float
from invertavatar_faceverse.face_crop import CropBox, crop_box
from invertavatar_faceverse.fitting import FittingConfig, fit_image, model_landmarks
from invertavatar_faceverse.mediapipe_landmarks import NUM_LANDMARKS, landmark_region_weights

__all__ = ["LiveFaceTracker", "LiveTrackerConfig", "TrackedFrame", "pose_camera", "pose_from_camera"]


class LiveTrackerConfig(BaseModel):
    """Settings of the live tracker (the batch fit's loss weights unless noted)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    crop_resolution: int = Field(512, ge=64)
    """Side of the square frame of reference the landmarks are fitted in (labels do not depend on it)."""
    iterations: int = Field(1, ge=1)
    """Gauss-Newton steps per frame after the first."""
    recover_iterations: int = Field(6, ge=1)
    """Steps for a frame whose error stays above ``recover_error`` (a fast turn, a face found again)."""
    recover_error: float = Field(0.03, gt=0)
    """Mean landmark error, as a fraction of the face size, above which more steps are taken."""
    previous_weight: float = Field(1e-3, ge=0)
    """Pull of every coefficient towards its previous-frame value (ours: keeps a step from jumping
    where the landmarks say little; in the units of the landmark term)."""
    damping: float = Field(1e-4, ge=0)
    """Levenberg-Marquardt damping added to the normal equations' diagonal."""
    identity_steps: int = Field(300, ge=1)
    """Steps of the full fit of the first frame (identity, expression, pose)."""
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    """MediaPipe's face detector threshold."""
    min_tracking_confidence: float = Field(0.5, ge=0.0, le=1.0)
    """Below this MediaPipe drops the track and detects again."""


@dataclass(frozen=True)
class TrackedFrame:
    """One tracked frame (batch 1).

    ``pose (1, 6)`` axis-angle offset and translation of world-to-camera (:func:`pose_camera`),
    ``expression (1, E)`` in the documented range, ``eyes (1, n_eye)`` or None, ``landmarks (478, 2)`` in
    pixels of the tracker's crop frame, ``error`` the mean landmark error as a fraction of the
    face size, ``iterations`` the steps taken.
    """

    pose: Tensor
    expression: Tensor
    eyes: Tensor | None
    landmarks: Tensor
    error: float
    iterations: int

    @property
    def camera(self) -> Tensor:
        """``(1, 25)`` EG3D label of ``pose``."""
        return pose_camera(self.pose)


@functools.cache
def _frontal_rotation() -> Tensor:
    cam2world, _ = split_camera(look_at_camera(0.0, 0.0))
    return cam2world[0, :3, :3].T.contiguous()


def _base_rotation() -> Tensor:
    """``(3, 3)`` world-to-camera rotation of the frontal look-at camera (the pose's ``R0``)."""
    return _frontal_rotation().clone()


def _rodrigues(omega: Tensor) -> Tensor:
    """``(..., 3)`` axis-angle -> ``(..., 3, 3)`` rotation, smooth through zero (forward-mode safe)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]
    theta = (theta2 + 1e-12).sqrt()
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*omega.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    a = torch.sin(theta) / theta
    b = (1 - torch.cos(theta)) / (theta2 + 1e-12)
    return eye + a * k + b * (k @ k)


def _axis_angle(rotation: Tensor) -> Tensor:
    """``(3, 3)`` rotation (angle under pi) -> ``(3,)`` axis-angle."""
    cos = ((rotation.diagonal().sum() - 1) / 2).clamp(-1.0, 1.0)
    angle = torch.arccos(cos)
    axis = torch.stack(
        [rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]]
    )
    scale = 0.5 if float(angle) < 1e-6 else float(angle / (2 * torch.sin(angle)))
    return axis * scale


def pose_camera(pose: Float[Tensor, "B 6"]) -> Camera:
    """EG3D labels ``(B, 25)`` of poses ``(B, 6)``: world-to-camera ``R(omega) R0`` and translation ``t``."""
    rotation = _rodrigues(pose[:, :3]) @ _base_rotation().to(pose)
    cam2world = torch.zeros(len(pose), 4, 4, dtype=pose.dtype, device=pose.device)
    cam2world[:, :3, :3] = rotation.transpose(1, 2)
    cam2world[:, :3, 3] = -(rotation.transpose(1, 2) @ pose[:, 3:, None])[..., 0]
    cam2world[:, 3, 3] = 1.0
    return make_camera(cam2world)


def pose_from_camera(camera: Camera) -> Float[Tensor, "B 6"]:
    """Inverse of :func:`pose_camera`: ``(B, 25)`` labels -> ``(B, 6)`` poses (rotations under pi)."""
    from kornia.geometry.conversions import rotation_matrix_to_axis_angle

    cam2world, _ = split_camera(camera)
    world2cam = torch.linalg.inv(cam2world)
    offset = world2cam[:, :3, :3] @ _base_rotation().to(camera).T
    return torch.cat([rotation_matrix_to_axis_angle(offset.contiguous()), world2cam[:, :3, 3]], 1)


class _TrackingFaceMesh:
    """MediaPipe FaceMesh in tracking mode, one face, refined irises: ``(478, 2)`` pixels or None."""

    def __init__(self, config: LiveTrackerConfig) -> None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:
            raise ImportError(
                'live tracking needs the mediapipe package: pip install "invertavatar-faceverse[mediapipe]"'
            ) from exc
        from invertavatar_faceverse.mediapipe_detector import _quiet_native_stderr

        self._quiet = _quiet_native_stderr
        with self._quiet():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=config.min_tracking_confidence,
            )
        self._calls = 0

    def __call__(self, image: np.ndarray) -> Tensor | None:
        h, w = image.shape[:2]
        if self._calls == 0:  # the graph's first run prints TFLite start-up lines on the native stderr
            with self._quiet():
                result = self._mesh.process(image)
        else:
            result = self._mesh.process(image)
        self._calls += 1
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        if len(points) != NUM_LANDMARKS:
            raise RuntimeError(f"mediapipe returned {len(points)} landmarks, expected {NUM_LANDMARKS}")
        xy = np.array([(p.x, p.y) for p in points], dtype=np.float32) * np.array([w, h], dtype=np.float32)
        return torch.from_numpy(xy)

    def close(self) -> None:
        self._mesh.close()


class LiveFaceTracker:
    """``track(image (H, W, 3) uint8 RGB) -> TrackedFrame | None`` (None: no face in this frame).

    Args:
        model: the morphable model the avatar was made with (``landmark_indices``, ``to_canonical``,
            ``vertices`` or ``vertices_at``).
        config: tracker settings.
        fitting: settings of the first frame's full fit (default: the batch fit's, with
            ``config.identity_steps`` steps).

    ``identity`` ``(1, S)`` is the driver's identity once the first face was fitted.
    """

    def __init__(self, model, config: LiveTrackerConfig | None = None, *, fitting: FittingConfig | None = None) -> None:
        self.model = model
        self.config = config or LiveTrackerConfig()
        self.fitting = fitting or FittingConfig(identity_steps=self.config.identity_steps)
        self.identity: Tensor | None = None
        self.box: CropBox | None = None
        self._mesh: _TrackingFaceMesh | None = None
        self._state: Tensor | None = None  # (P,) pose, expression, eyes of the previous frame
        weights = landmark_region_weights(self.fitting.regions)
        valid = getattr(model, "landmark_valid", None)
        self._region_weights = weights if valid is None else weights * valid.to(weights)
        self._n_expression = int(model.n_expression)
        self._n_eye = int(model.n_eye)
        self._expression_max = getattr(model, "expression_max", 1.0)  # None: no upper bound
        # Forward-difference steps: exact for the linear expression part; eyes turn (small steps).
        self._fd_steps = torch.cat([torch.full((self._n_expression,), 1e-2), torch.full((self._n_eye,), 1e-3)])
        self._rotation = torch.eye(3)
        self._r0 = _base_rotation()

    @property
    def started(self) -> bool:
        """Whether the first face was fitted (identity and crop box fixed)."""
        return self.identity is not None

    def detect(self, image: np.ndarray) -> Tensor | None:
        """``(478, 2)`` landmarks in image pixels of an ``(H, W, 3)`` uint8 RGB frame (tracking mode), or None."""
        if self._mesh is None:
            self._mesh = _TrackingFaceMesh(self.config)
        return self._mesh(np.ascontiguousarray(image))

    def track(self, image: np.ndarray) -> TrackedFrame | None:
        """Landmarks, then the fit (in full for the first face, a few steps after); None without a face."""
        points = self.detect(image)
        return None if points is None else self.fit_landmarks(points)

    @staticmethod
    def camera(pose: Float[Tensor, "B 6"]) -> Camera:
        """EG3D labels ``(B, 25)`` of (smoothed) poses: :func:`pose_camera`."""
        return pose_camera(pose)

    def fit_landmarks(self, points: Float[Tensor, "478 2"]) -> TrackedFrame:
        """Fit one frame's ``(478, 2)`` landmarks in image pixels (what :meth:`track` does after detecting)."""
        size = self.config.crop_resolution
        if self.box is None:
            self.box = crop_box(points)
        landmarks = self.box.to_crop(points.float(), size)
        if self.identity is None:
            return self._start(landmarks)
        return self._step(landmarks)

    def _start(self, landmarks: Tensor) -> TrackedFrame:
        result = fit_image(self.model, landmarks, self.config.crop_resolution, self.fitting)
        self.identity = result.identity[:1].detach()
        pose = pose_from_camera(result.camera)
        eyes = result.eyes if result.eyes is not None else landmarks.new_zeros(1, 0)
        expression = result.expression.clamp(0.0, self._expression_max)
        self._state = torch.cat([pose, expression, eyes], 1)[0]
        self._rotation = _rodrigues(pose[0, :3]) @ self._r0
        self._prepare()
        self._points = self._landmarks(self._state[6:])
        return self._frame(self._state, landmarks, float(result.relative_error[0]), self.fitting.identity_steps)

    def _frame(self, state: Tensor, landmarks: Tensor, error: float, iterations: int) -> TrackedFrame:
        e = self._n_expression
        pose = state[None, :6]
        eyes = state[None, 6 + e :] if self._n_eye else None
        return TrackedFrame(
            pose=pose,
            expression=state[None, 6 : 6 + e],
            eyes=eyes,
            landmarks=landmarks,
            error=error,
            iterations=iterations,
        )

    def _prepare(self) -> None:
        """Linearise the landmarks of the fixed identity once: ``P(e, g) = base + J_e e``.

        The few landmarks the eyes move are evaluated exactly (with their eye Jacobian) each step.
        """
        e, n_eye = self._n_expression, self._n_eye
        k = e + n_eye
        steps = self._fd_steps
        batch = torch.zeros(k + 1, k)
        batch[1:] += torch.diag(steps)
        with torch.no_grad():
            points = model_landmarks(
                self.model, self.identity.expand(k + 1, -1), batch[:, :e], batch[:, e:] if n_eye else None
            )
        self._base = points[0]
        jacobian = (points[1:] - points[:1]) / steps[:, None, None]  # (K, L, 3)
        self._expression_basis = jacobian[:e].reshape(e, -1).T.contiguous()  # (L*3, E)
        # Every model here is linear in its expression weights; one that is not (a plugin's) gets
        # its landmarks and their Jacobian evaluated in full at every step instead.
        probe = torch.full((1, e), 0.5)
        with torch.no_grad():
            exact = model_landmarks(self.model, self.identity, probe, torch.zeros(1, n_eye) if n_eye else None)[0]
        linear = self._base + (self._expression_basis @ probe[0]).view(-1, 3)
        self._linear = bool((exact - linear).abs().max() <= 1e-4 * self._base.abs().max().clamp_min(1e-6))
        moved = jacobian[e:].abs().amax(dim=(0, 2)) > 0 if n_eye else torch.zeros(NUM_LANDMARKS, dtype=torch.bool)
        self._eye_points = torch.nonzero(moved).flatten()
        subset = getattr(self.model, "vertices_at", None)
        self._eye_vertices = self.model.landmark_indices[self._eye_points] if subset is not None else None
        m = self.model.to_canonical.float()
        self._canonical = (m[:3, :3].T.contiguous(), m[:3, 3].clone())
        self._d_translation = torch.eye(3).expand(NUM_LANDMARKS, 3, 3)

    def _eye_landmarks(self, coefficients: Tensor) -> tuple[Tensor, Tensor]:
        """The eye-moved landmarks ``(M, 3)`` and their eye Jacobian ``(M, 3, n_eye)`` (forward differences)."""
        e, n_eye = self._n_expression, self._n_eye
        batch = coefficients.expand(n_eye + 1, -1).clone()
        batch[1:, e:] += torch.diag(self._fd_steps[e:])
        identity = self.identity.expand(n_eye + 1, -1)
        if self._eye_vertices is not None:
            rotation, offset = self._canonical
            points = (
                self.model.vertices_at(self._eye_vertices, identity, batch[:, :e], batch[:, e:]) @ rotation + offset
            )
        else:
            points = model_landmarks(self.model, identity, batch[:, :e], batch[:, e:])[:, self._eye_points]
        jacobian = (points[1:] - points[:1]).permute(1, 2, 0) / self._fd_steps[e:]
        return points[0], jacobian

    def _landmarks(self, coefficients: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Canonical landmarks ``(478, 3)`` of ``(K,)`` coefficients, and what changed in their Jacobian.

        Returns ``(points, rows, jacobian)``: for a linear model the eye-moved landmarks ``rows``
        and their eye Jacobian ``(M, 3, n_eye)`` (the expression part is constant); otherwise
        ``rows`` None and the full Jacobian ``(478, 3, K)``, by forward differences in one batch.
        """
        e, n_eye = self._n_expression, self._n_eye
        if not self._linear:
            k = len(coefficients)
            batch = coefficients.expand(k + 1, k).clone()
            batch[1:] += torch.diag(self._fd_steps)
            identity = self.identity.expand(k + 1, -1)
            points = model_landmarks(self.model, identity, batch[:, :e], batch[:, e:] if n_eye else None)
            return points[0], None, (points[1:] - points[:1]).permute(1, 2, 0) / self._fd_steps
        points = self._base + (self._expression_basis @ coefficients[:e]).view(-1, 3)
        if not len(self._eye_points):
            return points, self._eye_points, None
        eye_points, eye_jacobian = self._eye_landmarks(coefficients)
        points = points.index_copy(0, self._eye_points, eye_points)
        return points, self._eye_points, eye_jacobian

    def _project(self, camera_points: Tensor) -> Tensor:
        """Camera-space points ``(478, 3)`` -> crop pixels ``(478, 2)``."""
        size = self.config.crop_resolution
        return camera_points[:, :2] / camera_points[:, 2:] * (FFHQ_FOCAL * size) + 0.5 * size

    @torch.no_grad()
    def _step(self, landmarks: Tensor) -> TrackedFrame:
        size = self.config.crop_resolution
        inside = ((landmarks >= 0) & (landmarks <= size)).all(-1) & torch.isfinite(landmarks).all(-1)
        weights = self._region_weights * inside.to(self._region_weights)
        # The batch fit's landmark term: landmark_weight x the weighted mean squared image-size error.
        sqrt_w = (self.fitting.landmark_weight * weights / weights.sum().clamp_min(1e-9)).sqrt()[:, None] / size
        target = torch.nan_to_num(landmarks)
        e, n_eye = self._n_expression, self._n_eye
        n = 6 + e + n_eye
        previous = self._state
        rotation, translation = self._rotation, previous[3:6].clone()
        coefficients = previous[6:].clone()
        turned = torch.zeros(3)  # rotation since the previous frame (the sum of the small steps)
        focal = FFHQ_FOCAL * size
        mu = self.config.previous_weight
        prior = torch.cat([torch.zeros(6), torch.full((e,), self.fitting.expression_weight)])
        prior = torch.cat([prior, torch.full((n_eye,), self.fitting.eye_weight)])
        diagonal = torch.diag(prior + mu + self.config.damping)
        d_points = torch.empty(NUM_LANDMARKS, 3, e + n_eye)
        d_points[:, :, :e] = self._expression_basis.view(NUM_LANDMARKS, 3, e)
        d_points[:, :, e:] = 0.0
        points, rows, jacobian = self._points  # the previous frame's, at this start state
        steps, limit = 0, self.config.iterations
        while True:
            if rows is None:
                d_points = jacobian
            elif jacobian is not None:
                d_points[rows, :, e:] = jacobian
            q = points @ rotation.T  # (L, 3): rotated, before translation
            cam = q + translation
            inv_z = 1.0 / cam[:, 2:]
            # d(camera point)/d(parameters) (L, 3, n): left rotation step -[q]x, translation, R dP.
            qx, qy, qz = q.unbind(-1)
            zero = torch.zeros_like(qx)
            d_rotation = torch.stack([zero, qz, -qy, -qz, zero, qx, qy, -qx, zero], -1).view(-1, 3, 3)
            d_cam = torch.cat([d_rotation, self._d_translation, rotation @ d_points], 2)
            # Perspective: d(pixel) = focal / z (d(x, y) - (x, y) / z dz).
            ratio = cam[:, :2] * inv_z  # (L, 2)
            jac = (focal * inv_z)[:, :, None] * (d_cam[:, :2] - ratio[:, :, None] * d_cam[:, 2:3])
            jac = (sqrt_w[:, :, None] * jac).reshape(-1, n)
            res = (sqrt_w * (focal * ratio + 0.5 * size - target)).reshape(-1)
            current = torch.cat([turned, translation - previous[3:6], coefficients - previous[6:]])
            gradient = jac.T @ res + prior * torch.cat([torch.zeros(6), coefficients]) + mu * current
            delta = torch.linalg.solve(jac.T @ jac + diagonal, -gradient)
            rotation = _rodrigues(delta[:3]) @ rotation
            turned = turned + delta[:3]
            translation = translation + delta[3:6]
            coefficients = coefficients + delta[6:]
            coefficients[:e].clamp_(0.0, self._expression_max)  # the documented range of the weights
            steps += 1
            points, rows, jacobian = self._landmarks(coefficients)
            if steps >= limit:
                error = self._relative_error(self._project(points @ rotation.T + translation), target, weights)
                if error <= self.config.recover_error or limit >= self.config.recover_iterations:
                    break
                limit = self.config.recover_iterations
        self._rotation = rotation
        self._points = (points, rows, jacobian)
        pose = torch.cat([_axis_angle(rotation @ self._r0.T), translation])
        self._state = torch.cat([pose, coefficients])
        return self._frame(self._state, landmarks, error, steps)

    @staticmethod
    def _relative_error(projected: Tensor, target: Tensor, weights: Tensor) -> float:
        """Mean landmark error over the used landmarks, as a fraction of their box's longer side."""
        used = weights > 0
        if not bool(used.any()):
            return math.inf
        present = target[used]
        span = float((present.amax(0) - present.amin(0)).max())
        return float((projected[used] - present).norm(dim=-1).mean()) / max(span, 1.0)

    def close(self) -> None:
        """Release MediaPipe's graph."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
