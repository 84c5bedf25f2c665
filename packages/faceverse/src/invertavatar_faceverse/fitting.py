"""Landmark fitting: identity, expression (non-negative), eyes and camera pose to 2D landmarks.

The mesh stays pose-free in EG3D canonical space (``model.to_canonical``); head pose lives in the
camera, an EG3D label with the FFHQ intrinsics, so the fit yields each frame's label directly and
the expression UV render of the fitted coefficients needs no pose at all. Projection goes through
:func:`invertavatar_core.cameras.project_points`.

Loss (as in the authors' released fitter): ``1e3 x`` the region-weighted mean squared landmark error in units of the
image size (lips 5, eyes 50, brows 5, irises 5, others 1) ``+ 3e-3 |id|^2 + 1e-3 |exp|^2``; for
videos ``+ 0.1 |d rot|^2 + 0.1 |d trans|^2`` between consecutive frames. Expression weights are
clamped to be non-negative after every step. Adam with lr 5e-2 for the first frame(s), 1e-2
afterwards, betas (0.8, 0.95), switching to lr 1e-3, betas (0.5, 0.9) after 60% of the steps.

A video is fitted in two stages: identity (shared), expressions, eyes and poses of the first
``identity_frames`` frames; then, identity frozen, every frame's expression, eyes and pose,
batched over frames, warm-started from the first stage and tied in time by the smoothness term.
"""

from dataclasses import dataclass

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from invertavatar_core.cameras import look_at_camera, make_camera, project_points, split_camera
from invertavatar_faceverse.mediapipe_landmarks import NUM_LANDMARKS, RegionWeights, landmark_region_weights

__all__ = [
    "FitDivergedError",
    "FitResult",
    "FittingConfig",
    "LandmarkInputError",
    "fit_image",
    "fit_video",
    "model_landmarks",
]


class FittingConfig(BaseModel):
    """Weights and schedule of the landmark fit (numbers from the authors' released fitter unless noted)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    landmark_weight: float = 1e3  # the authors' released fitter
    """Weight of the region-weighted mean squared landmark error (in image-size units)."""
    identity_weight: float = 3e-3  # the authors' released fitter
    """Weight of ``|id|^2``."""
    expression_weight: float = 1e-3  # the authors' released fitter
    """Weight of ``|exp|^2``."""
    eye_weight: float = 1e-3
    """Weight of ``|eyes|^2`` (ours: keeps the gaze at rest when the irises say nothing)."""
    rotation_smoothness: float = 0.1  # the authors' released fitter
    """Weight of ``|rot_t - rot_(t-1)|^2`` (axis-angle) in videos."""
    translation_smoothness: float = 0.1  # the authors' released fitter
    """Weight of ``|trans_t - trans_(t-1)|^2`` (canonical units) in videos."""
    regions: RegionWeights = RegionWeights()
    """Per-region landmark weights (lips 5, eyes 50, brows 5, irises 5, others 1)."""
    first_lr: float = 5e-2  # the authors' released fitter
    """Adam learning rate while identity is fitted."""
    lr: float = 1e-2  # the authors' released fitter
    """Adam learning rate once identity is frozen."""
    betas: tuple[float, float] = (0.8, 0.95)  # the authors' released fitter
    """Adam betas before the switch."""
    late_lr: float = 1e-3  # the authors' released fitter
    """Learning rate after ``switch_fraction`` of the steps."""
    late_betas: tuple[float, float] = (0.5, 0.9)  # the authors' released fitter
    """Adam betas after the switch."""
    switch_fraction: float = 0.6  # the authors' released fitter
    """Fraction of the steps after which the late settings apply."""
    steps: int = 200
    """Steps of the per-frame stage. The reference tracker (3.4) spends 100 per frame, each frame
    warm-started from its predecessor; here a batch of frames starts from one solution, so it
    gets more (still far fewer in total: the batch shares them)."""
    identity_steps: int = 500  # the authors' fitter: the first frame gets 5x more
    """Steps of the identity stage (and of single images)."""
    identity_frames: int = 4
    """Frames of a video whose landmarks determine the identity."""
    batch_frames: int = 64
    """Frames optimised together in the per-frame stage (bounds memory)."""
    early_stop: float = 5e-5  # the authors' released fitter
    """Stop a stage once the landmark loss is below this (after the switch)."""
    max_error: float = 0.1
    """Mean reprojection error, as a fraction of the face size, above which the fit has diverged."""
    max_outside: float = 0.25
    """Fraction of landmarks that may lie outside the image before the input is refused."""


class LandmarkInputError(ValueError):
    """Landmarks that cannot be fitted: wrong shape, missing face, mostly outside the image."""


class FitDivergedError(RuntimeError):
    """The optimisation produced NaNs or a reprojection error above ``max_error``."""


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficients and cameras of T frames.

    ``identity (T, S)`` (the same row for every frame of a video), ``expression (T, E)``,
    ``eyes (T, n_eye)`` or None, ``camera (T, 25)`` EG3D labels, ``projected (T, 478, 2)``
    landmarks of the fitted mesh in pixels, ``error (T,)`` mean reprojection error in pixels over
    the weighted landmarks, ``face_size (T,)`` the landmark box's longer side in pixels.
    """

    identity: Tensor
    expression: Tensor
    eyes: Tensor | None
    camera: Tensor
    projected: Tensor
    error: Tensor
    face_size: Tensor

    @property
    def relative_error(self) -> Tensor:
        """``(T,)`` reprojection error as a fraction of the face size."""
        return self.error / self.face_size


def model_landmarks(model, identity: Tensor, expression: Tensor, eyes: Tensor | None) -> Tensor:
    """``(B, 478, 3)`` landmark positions of the model in EG3D canonical space."""
    indices = model.landmark_indices
    subset = getattr(model, "vertices_at", None)  # a cheap path some models offer (LinearFaceModel)
    if subset is not None:
        points = subset(indices, identity, expression, eyes)
    else:
        points = model.vertices(identity, expression, eyes).index_select(1, indices.to(identity.device))
    m = model.to_canonical.to(points)
    return points @ m[:3, :3].T + m[:3, 3]


def _weights(model, landmarks: Tensor, size: int, config: FittingConfig) -> Tensor:
    """``(T, 478)`` per-landmark weights: regions x model validity x inside the image."""
    w = landmark_region_weights(config.regions).to(landmarks)
    valid = getattr(model, "landmark_valid", None)
    if valid is not None:
        w = w * valid.to(landmarks)
    inside = ((landmarks >= 0) & (landmarks <= size)).all(-1) & torch.isfinite(landmarks).all(-1)
    return w * inside.to(landmarks)


def _check_landmarks(landmarks: Tensor, size: int, config: FittingConfig) -> None:
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise LandmarkInputError(f"landmarks: expected (T, {NUM_LANDMARKS}, 2) pixels, got {tuple(landmarks.shape)}")
    inside = ((landmarks >= 0) & (landmarks <= size)).all(-1) & torch.isfinite(landmarks).all(-1)
    outside = 1.0 - inside.float().mean(1)
    bad = torch.nonzero(outside > config.max_outside).flatten().tolist()
    if bad:
        raise LandmarkInputError(
            f"landmarks out of image in frame(s) {bad[:10]}: more than {config.max_outside:.0%} of the points lie "
            f"outside the {size}x{size} image"
        )


@dataclass
class _Pose:
    """Per-frame camera parameters: axis-angle offset and translation of world-to-camera."""

    rotation: Tensor  # (T, 3)
    translation: Tensor  # (T, 3)


def _base_world_to_camera(device, dtype) -> tuple[Tensor, Tensor]:
    cam2world, _ = split_camera(look_at_camera(0.0, 0.0).to(device=device, dtype=dtype))
    w2c = torch.linalg.inv(cam2world)[0]
    return w2c[:3, :3], w2c[:3, 3]


def _cameras(pose: _Pose) -> Tensor:
    """``(T, 25)`` EG3D labels of world-to-camera ``R(rotation) R0`` and ``translation``."""
    r0, _ = _base_world_to_camera(pose.rotation.device, pose.rotation.dtype)
    rot = axis_angle_to_rotation_matrix(pose.rotation) @ r0
    cam2world = torch.zeros(len(rot), 4, 4, dtype=rot.dtype, device=rot.device)
    cam2world[:, :3, :3] = rot.transpose(1, 2)
    cam2world[:, :3, 3] = -(rot.transpose(1, 2) @ pose.translation[..., None])[..., 0]
    cam2world[:, 3, 3] = 1.0
    return make_camera(cam2world)


def _initial_pose(
    model, landmarks: Tensor, weights: Tensor, size: int, identity, expression, eyes, rotation=None
) -> _Pose:
    """A camera (frontal, or turned by ``rotation (T, 3)``) matching the detections' centre and spread.

    The model's landmarks are projected and the camera translated until their weighted centre and
    spread agree with the detected ones.
    """
    t = len(landmarks)
    _, t0 = _base_world_to_camera(landmarks.device, landmarks.dtype)
    start = torch.zeros(t, 3, dtype=landmarks.dtype, device=landmarks.device) if rotation is None else rotation.clone()
    pose = _Pose(start, t0.expand(t, 3).clone())
    with torch.no_grad():
        points = model_landmarks(model, identity, expression, eyes)
        for _ in range(3):  # the depth update changes the projection a little; iterate
            projected, depth = project_points(points, _cameras(pose), size)
            w = weights / weights.sum(1, keepdim=True).clamp_min(1e-9)
            c_obs, c_pred = (w[..., None] * landmarks).sum(1), (w[..., None] * projected).sum(1)
            s_obs = ((w * (landmarks - c_obs[:, None]).square().sum(-1)).sum(1)).sqrt()
            s_pred = ((w * (projected - c_pred[:, None]).square().sum(-1)).sum(1)).sqrt()
            z = (w * depth).sum(1)
            z_new = z * s_pred / s_obs.clamp_min(1e-6)
            focal = 4.2647 * size
            shift = (c_obs - c_pred) / focal * z_new[:, None]
            pose.translation = pose.translation + torch.cat([shift, (z_new - z)[:, None]], 1)
    return pose


def _loss_terms(model, landmarks, weights, size, identity, expression, eyes, pose, config):
    points = model_landmarks(model, identity, expression, eyes)
    projected, depth = project_points(points, _cameras(pose), size)
    diff = (projected - landmarks) / size
    per_frame = (weights * diff.square().sum(-1)).sum(1) / weights.sum(1).clamp_min(1e-9)
    landmark = config.landmark_weight * per_frame.mean()
    regular = (
        config.identity_weight * identity.square().sum(-1).mean()
        + config.expression_weight * expression.square().sum(-1).mean()
    )
    if eyes is not None:
        regular = regular + config.eye_weight * eyes.square().sum(-1).mean()
    return landmark, regular, projected, depth


def _optimise(params, closure, steps: int, lr: float, config: FittingConfig, clamp) -> None:
    opt = torch.optim.Adam(params, lr=lr, betas=config.betas)
    switch = int(steps * config.switch_fraction)
    for step in range(steps):
        if step == switch:
            for group in opt.param_groups:
                group["lr"], group["betas"] = config.late_lr, config.late_betas
        opt.zero_grad(set_to_none=True)
        landmark, total = closure()
        if not torch.isfinite(total):
            raise FitDivergedError(f"landmark fit: the loss became {float(total)} at step {step}")
        total.backward()
        opt.step()
        clamp()
        if step >= switch and float(landmark.detach()) < config.early_stop:
            break


def _stage(
    model, landmarks, weights, size, identity, pose, config, *, steps, lr, fit_identity, previous=None, init=None
):
    """Optimise one batch of frames; returns (identity, expression, eyes, pose)."""
    t = len(landmarks)
    dev, dt = landmarks.device, landmarks.dtype
    identity = identity.detach().clone().requires_grad_(fit_identity)
    if init is None:
        expression = torch.zeros(t, model.n_expression, device=dev, dtype=dt)
        eyes = torch.zeros(t, model.n_eye, device=dev, dtype=dt) if model.n_eye else None
    else:
        expression, eyes = init
    expression = expression.detach().clone().requires_grad_(True)
    eyes = eyes.detach().clone().requires_grad_(True) if eyes is not None else None
    rotation = pose.rotation.detach().clone().requires_grad_(True)
    translation = pose.translation.detach().clone().requires_grad_(True)
    params = (
        [expression, rotation, translation]
        + ([identity] if fit_identity else [])
        + ([eyes] if eyes is not None else [])
    )

    def closure():
        ident = identity.expand(t, -1) if identity.shape[0] == 1 else identity
        landmark, regular, _, _ = _loss_terms(
            model, landmarks, weights, size, ident, expression, eyes, _Pose(rotation, translation), config
        )
        total = landmark + regular
        if t > 1 or previous is not None:
            rot_seq, trans_seq = rotation, translation
            if previous is not None:
                rot_seq = torch.cat([previous.rotation, rotation])
                trans_seq = torch.cat([previous.translation, translation])
            if len(rot_seq) > 1 and not fit_identity:
                total = total + config.rotation_smoothness * (rot_seq[1:] - rot_seq[:-1]).square().sum(-1).sum()
                total = total + config.translation_smoothness * (trans_seq[1:] - trans_seq[:-1]).square().sum(-1).sum()
        return landmark, total

    def clamp():
        with torch.no_grad():
            expression.clamp_(min=0.0)  # blendshape weights are non-negative (as in the authors' fitter)

    _optimise(params, closure, steps, lr, config, clamp)
    return (
        identity.detach(),
        expression.detach(),
        None if eyes is None else eyes.detach(),
        _Pose(rotation.detach(), translation.detach()),
    )


def _result(model, landmarks, weights, size, identity, expression, eyes, pose, config) -> FitResult:
    with torch.no_grad():
        ident = identity.expand(len(landmarks), -1) if identity.shape[0] == 1 else identity
        _, _, projected, _ = _loss_terms(model, landmarks, weights, size, ident, expression, eyes, pose, config)
        used = (weights > 0).to(landmarks)
        error = ((projected - landmarks).norm(dim=-1) * used).sum(1) / used.sum(1).clamp_min(1)
        face_size = _span(landmarks, torch.isfinite(landmarks).all(-1)).amax(-1).clamp_min(1.0)
    result = FitResult(ident.detach(), expression, eyes, _cameras(pose), projected, error, face_size)
    bad = (
        torch.nonzero(~torch.isfinite(result.relative_error) | (result.relative_error > config.max_error))
        .flatten()
        .tolist()
    )
    if bad:
        worst = float(result.relative_error[bad[0]])
        raise FitDivergedError(
            f"landmark fit diverged in frame(s) {bad[:10]}: mean reprojection error {worst:.1%} of the face size "
            f"(limit {config.max_error:.0%})"
        )
    return result


def _span(landmarks: Tensor, present: Tensor) -> Tensor:
    """``(T, 2)`` width and height of the box around the present landmarks."""
    hi = torch.where(present[..., None], landmarks, torch.full_like(landmarks, -torch.inf)).amax(1)
    lo = torch.where(present[..., None], landmarks, torch.full_like(landmarks, torch.inf)).amin(1)
    return (hi - lo).clamp_min(0.0)


def fit_image(model, landmarks: Tensor, image_size: int, config: FittingConfig | None = None) -> FitResult:
    """Fit one square image's ``(478, 2)`` (or ``(1, 478, 2)``) landmarks in pixels; T = 1."""
    landmarks = landmarks[None] if landmarks.ndim == 2 else landmarks
    return fit_video(model, landmarks, image_size, config, identity_frames=len(landmarks))


def fit_video(
    model,
    landmarks: Tensor,
    image_size: int,
    config: FittingConfig | None = None,
    *,
    identity_frames: int | None = None,
) -> FitResult:
    """Fit ``(T, 478, 2)`` landmarks (pixels of square ``image_size`` frames) of one identity.

    Raises:
        LandmarkInputError: wrong shape, or a frame with most landmarks outside the image.
        FitDivergedError: NaNs, or a frame whose error exceeds ``config.max_error``.
    """
    config = config or FittingConfig()
    landmarks = landmarks.float()
    _check_landmarks(landmarks, image_size, config)
    if landmarks.device.type != "cpu":
        return _fit(model, landmarks, image_size, config, identity_frames)
    # Thousands of tiny ops: on CPU one thread is several times faster than a contended pool.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(model, landmarks, image_size, config, identity_frames)
    finally:
        torch.set_num_threads(threads)


def _fit(model, landmarks: Tensor, image_size: int, config: FittingConfig, identity_frames: int | None) -> FitResult:
    """:func:`fit_video` after the input checks."""
    dev, dt = landmarks.device, landmarks.dtype
    weights = _weights(model, landmarks, image_size, config)
    k = min(identity_frames or config.identity_frames, len(landmarks))

    identity = torch.zeros(1, model.n_identity, device=dev, dtype=dt)
    neutral = torch.zeros(k, model.n_expression, device=dev, dtype=dt)
    eyes0 = torch.zeros(k, model.n_eye, device=dev, dtype=dt) if model.n_eye else None
    pose = _initial_pose(model, landmarks[:k], weights[:k], image_size, identity.expand(k, -1), neutral, eyes0)
    identity, expression, eyes, pose = _stage(
        model,
        landmarks[:k],
        weights[:k],
        image_size,
        identity,
        pose,
        config,
        steps=config.identity_steps,
        lr=config.first_lr,
        fit_identity=True,
    )
    expressions, eyes_all, rotations, translations = [expression], [eyes], [pose.rotation], [pose.translation]
    if len(landmarks) > k:
        previous = _Pose(pose.rotation[-1:], pose.translation[-1:])
        warm = (expression[-1:], None if eyes is None else eyes[-1:], pose.rotation[-1:], pose.translation[-1:])
        for start in range(k, len(landmarks), config.batch_frames):
            chunk = slice(start, min(start + config.batch_frames, len(landmarks)))
            t = chunk.stop - chunk.start
            init = (warm[0].expand(t, -1), None if warm[1] is None else warm[1].expand(t, -1))
            # Every frame of a batch starts from the same solution, not from its predecessor as in
            # the sequential tracker: re-centre each frame's translation on its landmarks first,
            # and use the first-frame learning rate, since frames may start further away.
            init_pose = _initial_pose(
                model,
                landmarks[chunk],
                weights[chunk],
                image_size,
                identity.expand(t, -1),
                *init,
                rotation=warm[2].expand(t, 3),
            )
            _, expression, eyes, pose = _stage(
                model,
                landmarks[chunk],
                weights[chunk],
                image_size,
                identity,
                init_pose,
                config,
                steps=config.steps,
                lr=config.first_lr,
                fit_identity=False,
                previous=previous,
                init=init,
            )
            expressions.append(expression)
            eyes_all.append(eyes)
            rotations.append(pose.rotation)
            translations.append(pose.translation)
            previous = _Pose(pose.rotation[-1:], pose.translation[-1:])
            warm = (expression[-1:], None if eyes is None else eyes[-1:], pose.rotation[-1:], pose.translation[-1:])
    expression = torch.cat(expressions)
    eyes = None if eyes_all[0] is None else torch.cat(eyes_all)
    pose = _Pose(torch.cat(rotations), torch.cat(translations))
    return _result(model, landmarks, weights, image_size, identity, expression, eyes, pose, config)
