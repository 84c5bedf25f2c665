"""Head rotation implied by the 2D landmarks alone, independent of the iterative fit.

A weak-perspective (affine) camera is fitted in closed form to the model's mean-face landmarks
that do not move with expressions (nose, eye corners, brows, forehead midline, the upper face
contour). On a turned head a detector still reports the landmarks of the far side, but it cannot
see them: MediaPipe places them along the visible silhouette, where a less turned face would have
them, so they pull any estimate that trusts them towards a frontal view. The estimate is therefore
made twice: on all rigid landmarks, which tells the side the head is turned to, then on the
midline and the side turned towards the camera only.

The fit uses it as its starting pose and the quality check compares the fitted yaw with it
(:mod:`invertavatar_faceverse.fit_quality`).

Yaw is in degrees, positive when the camera sits towards the subject's left (+x), as
:func:`invertavatar_core.geometry.cameras.look_at_camera` counts it; 0 is the frontal view.
"""

import torch
from torch import Tensor

from invertavatar_core.geometry.cameras import split_camera
from invertavatar_core.tensor_types import Bool, Float
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS, NUM_LANDMARKS

__all__ = [
    "MIDLINE_PROFILE",
    "camera_yaw",
    "landmark_rotation",
    "landmark_sides",
    "landmark_yaw",
    "rigid_landmarks",
    "rotation_yaw",
]

# The face contour from the forehead down to the cheekbones on both sides (the rest follows the jaw).
_UPPER_OVAL = CONTOURS["face_oval"][:10] + CONTOURS["face_oval"][-9:]
_EYE_CORNERS = (33, 133, 263, 362)

MIDLINE_PROFILE: tuple[int, ...] = (
    *CONTOURS["midline_forehead"],
    *CONTOURS["nose_ridge"][1:],
    164,
    0,
    17,
    18,
    200,
    199,
    175,
    152,
)
"""The outer midline from the hairline over the nose and the closed lips to the chin (the profile line)."""

_SIDE_THRESHOLD = 15.0
"""Degrees of yaw beyond which only the near side (and the midline) is trusted."""


def rigid_landmarks() -> Bool[Tensor, " L"]:
    """``(478,)`` bool: landmarks that expressions barely move (nose, eye corners, brows, forehead, upper contour)."""
    mask = torch.zeros(NUM_LANDMARKS, dtype=torch.bool)
    for name in (
        "nose_ridge",
        "right_ala",
        "left_ala",
        "nostril_base",
        "midline_forehead",
        "right_brow_upper",
        "right_brow_lower",
        "left_brow_upper",
        "left_brow_lower",
    ):
        mask[list(CONTOURS[name])] = True
    mask[list(_EYE_CORNERS)] = True
    mask[list(_UPPER_OVAL)] = True
    return mask


def landmark_sides(model) -> tuple[Float[Tensor, "L 3"], Tensor]:
    """The model's mean-face landmarks ``(478, 3)`` in canonical space and their side ``(478,)`` int64.

    The side is +1 on the subject's left (+x), -1 on the right and 0 on the midline (within 3% of
    the face width of x = 0).
    """
    from invertavatar_faceverse.fitting import model_landmarks

    dev = model.to_canonical.device
    with torch.no_grad():
        points = model_landmarks(
            model,
            torch.zeros(1, model.n_identity, device=dev),
            torch.zeros(1, model.n_expression, device=dev),
            None,
        )[0]
    valid = model.landmark_valid.to(dev)
    x = points[:, 0] - points[list(MIDLINE_PROFILE), 0][valid[list(MIDLINE_PROFILE)]].mean()
    width = (x[valid].amax() - x[valid].amin()).clamp_min(1e-9)
    side = torch.where(x.abs() < 0.03 * width, torch.zeros_like(x), torch.sign(x)).to(torch.int64)
    side[list(MIDLINE_PROFILE)] = 0
    return points, side


def _affine_rotation(points: Tensor, landmarks: Tensor, weights: Tensor) -> Tensor:
    """``(T, 3, 3)`` world-to-camera rotations of the weak-perspective cameras best mapping ``points`` to pixels."""
    w = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    x3 = points[None] - (w[..., None] * points[None]).sum(1, keepdim=True)  # (T, L, 3)
    x2 = landmarks - (w[..., None] * landmarks).sum(1, keepdim=True)  # (T, L, 2)
    m = (x3 * w[..., None]).transpose(1, 2) @ x3  # (T, 3, 3)
    b = (x3 * w[..., None]).transpose(1, 2) @ x2  # (T, 3, 2)
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    affine = torch.linalg.solve(m + 1e-9 * eye, b).transpose(1, 2)  # (T, 2, 3): image u, v per world axis
    # The nearest pair of orthonormal rows (polar decomposition); the third row completes a rotation.
    u, _, vh = torch.linalg.svd(affine, full_matrices=False)
    rows = u @ vh  # (T, 2, 3)
    third = torch.linalg.cross(rows[:, 0], rows[:, 1], dim=-1)
    return torch.cat([rows, third[:, None]], 1)


def landmark_rotation(
    model, landmarks: Float[Tensor, "T L 2"], image_size: int, weights: Float[Tensor, "T L"] | None = None
) -> Float[Tensor, "T 3 3"]:
    """``(T, 3, 3)`` world-to-camera head rotations implied by ``(T, 478, 2)`` landmarks (pixels).

    Args:
        model: a morphable model with MediaPipe landmark correspondences (``landmark_indices``).
        landmarks: detected landmarks in pixels of square ``image_size`` frames.
        image_size: frame size in pixels (landmarks outside the frame are ignored).
        weights: optional ``(T, 478)`` extra weights (0 drops a landmark).
    """
    points, side = landmark_sides(model)
    points, side = points.to(landmarks), side.to(landmarks.device)
    present = ((landmarks >= 0) & (landmarks <= image_size)).all(-1) & torch.isfinite(landmarks).all(-1)
    base = (rigid_landmarks().to(landmarks.device) & model.landmark_valid.to(landmarks.device))[None] & present
    w = base.to(landmarks.dtype)
    if weights is not None:
        w = w * weights
    clean = torch.where(present[..., None], landmarks, torch.zeros_like(landmarks))
    rotation = _affine_rotation(points, clean, w)
    yaw = rotation_yaw(rotation)
    turned = yaw.abs() > _SIDE_THRESHOLD
    if bool(turned.any()):
        near = torch.sign(yaw)[:, None]  # camera towards +x: the subject's left side faces it
        keep = (side[None] == 0) | (side[None] == near.to(side.dtype))
        w_near = w * keep.to(w.dtype)
        rotation = torch.where(turned[:, None, None], _affine_rotation(points, clean, w_near), rotation)
    return rotation


def rotation_yaw(rotation: Float[Tensor, "T 3 3"]) -> Float[Tensor, " T"]:
    """``(T,)`` yaw in degrees of world-to-camera rotations ``(T, 3, 3)`` (the camera's viewing direction)."""
    forward = rotation[:, 2]  # the camera's z axis in world coordinates
    return torch.rad2deg(torch.atan2(-forward[:, 0], -forward[:, 2]))


def camera_yaw(camera: Float[Tensor, "T 25"]) -> Float[Tensor, " T"]:
    """``(T,)`` head yaw in degrees seen from EG3D cameras ``(T, 25)`` (0 frontal, + camera towards +x)."""
    cam2world, _ = split_camera(camera)
    return rotation_yaw(cam2world[:, :3, :3].transpose(1, 2))


def landmark_yaw(model, landmarks: Float[Tensor, "T L 2"], image_size: int) -> Float[Tensor, " T"]:
    """``(T,)`` yaw in degrees implied by ``(T, 478, 2)`` landmarks alone (see the module docs)."""
    return rotation_yaw(landmark_rotation(model, landmarks, image_size))
