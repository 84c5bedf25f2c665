"""Landmark fitting: identity, expression, eyes and camera pose to 2D landmarks.

The mesh stays pose-free in EG3D canonical space (``model.to_canonical``); head pose lives in the
camera, an EG3D label with the FFHQ intrinsics, so the fit yields each frame's label directly and
the expression UV render of the fitted coefficients needs no pose at all. Projection goes through
:func:`invertavatar_core.geometry.cameras.project_points`.

Loss per frame: ``1e3 x`` the region-weighted mean squared landmark error in units of the image
size (lips 5, eyes 50, brows 5, irises 5, others 1; ours: jaw line 5) ``+ 3e-3 |id|^2 + 1e-3 |exp|^2``
(each expression scaled by ``model.expression_prior_scale`` when a model has one); for videos
``+ 0.1 |d rot|^2 + 0.1 |d trans|^2`` to the previous frame, averaged over frames. Adam with lr
5e-2 for the first frame(s), 1e-2 afterwards, betas (0.8, 0.95), switching to lr 1e-3, betas
(0.5, 0.9) after 60% of the steps. These are the released tracker's settings
(docs/design/preprocessing.md, landmark fitting). Ours on top (docs/design/preprocessing.md):

- expression weights are kept in the model's documented range, ``[0, model.expression_max]``
  (``[0, 1]`` for blendshape models), by clamping after every step; the tracker clamps at 0 only;
- ``+ expression_smoothness |d exp|^2 + eye_smoothness |d eyes|^2`` between consecutive video
  frames, and ``+ pose_acceleration |d^2 rot|^2 + pose_acceleration |d^2 trans|^2``;
- landmarks the current head estimate says the camera cannot see get no weight
  (:mod:`invertavatar_faceverse.landmark_visibility`), re-evaluated every ``visibility_every`` steps;
- the starting rotation is the one the landmarks imply on their own
  (:mod:`invertavatar_faceverse.landmark_pose`), not the frontal view;
- every frame gets quality flags (:mod:`invertavatar_faceverse.fit_quality`).

A video is fitted in two stages: identity (shared), expressions, eyes and poses of
``identity_frames`` frames spread over the video, jointly; then, identity frozen, every frame's
expression, eyes and pose, batched over frames, started from the nearest identity frame and tied
in time by the smoothness terms. Several photos of one person (:func:`fit_images`) are the first
stage alone, over all of them, with no temporal term.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from invertavatar_core.geometry.cameras import look_at_camera, make_camera, project_points, split_camera
from invertavatar_core.tensor_types import Float
from invertavatar_faceverse.fit_quality import FrameQuality, QualityConfig, assess_frames
from invertavatar_faceverse.landmark_pose import camera_yaw, landmark_rotation, rotation_yaw
from invertavatar_faceverse.landmark_visibility import LandmarkVisibility
from invertavatar_faceverse.mediapipe_landmarks import NUM_LANDMARKS, RegionWeights, landmark_region_weights

__all__ = [
    "FitDivergedError",
    "FitResult",
    "FittingConfig",
    "LandmarkInputError",
    "fit_image",
    "fit_images",
    "fit_video",
    "model_landmarks",
]


class FittingConfig(BaseModel):
    """Weights and schedule of the landmark fit (the released tracker's numbers unless noted)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    # "released tracker": docs/design/preprocessing.md, landmark fitting.
    landmark_weight: float = 1e3  # released tracker
    """Weight of the region-weighted mean squared landmark error (in image-size units)."""
    identity_weight: float = 3e-3  # released tracker
    """Weight of ``|id|^2``."""
    expression_weight: float = 1e-3  # released tracker
    """Weight of ``|exp|^2``."""
    eye_weight: float = 1e-3
    """Weight of ``|eyes|^2`` (ours: keeps the gaze at rest when the irises say nothing)."""
    rotation_smoothness: float = 0.1  # released tracker
    """Weight of ``|rot_t - rot_(t-1)|^2`` (axis-angle) in videos, per frame."""
    translation_smoothness: float = 0.1  # released tracker
    """Weight of ``|trans_t - trans_(t-1)|^2`` (canonical units) in videos, per frame."""
    pose_acceleration: float = 10.0
    """Weight of ``|x_(t+1) - 2 x_t + x_(t-1)|^2`` for rotation and translation in videos, per frame
    (ours). The released tracker starts every frame from its predecessor's solution, which smooths
    by itself; batched frames do not, and a still head's rotation then jitters by 0.45 deg per frame
    with 1 px of landmark noise (0.06 deg with this term). Raising the first-difference weights
    instead holds real turns back (at 3, a 86 deg/s turn over 6 frames loses 3-4 deg at its ends);
    second differences leave steady motion alone (a 33 deg/s turn: yaw RMS 0.82 deg, 0.86 without).
    benchmarks/fit_quality.py."""
    expression_smoothness: float = 0.05
    """Weight of ``|exp_t - exp_(t-1)|^2`` in videos, per frame (ours; the released tracker has
    none). On a still synthetic clip with 1 px landmark noise it cuts the mean frame-to-frame
    change of the weights from 0.028 to 0.0036 (largest 0.26 to 0.04); a jaw opening and closing
    at 4 Hz (fast speech, 25 fps) is followed with an RMS error of 0.036 instead of 0.028 (0.1:
    0.046, 0.2: 0.064). benchmarks/fit_quality.py."""
    eye_smoothness: float = 0.05
    """Weight of ``|eyes_t - eyes_(t-1)|^2`` (radians) in videos, per frame (ours, as ``expression_smoothness``)."""
    regions: RegionWeights = RegionWeights()
    """Per-region landmark weights (lips 5, eyes 50, brows 5, irises 5, others 1)."""
    visibility: bool = True
    """Give no weight to landmarks the current head estimate hides (ours; see the module docs)."""
    facing: tuple[float, float] = (-0.05, 0.2)
    """Cosine between a landmark's normal and the camera direction at which its weight is 0 and 1."""
    visibility_every: int = Field(20, ge=1)
    """Steps between updates of the visibility weights."""
    initial_pose: Literal["landmarks", "frontal"] = "landmarks"
    """Start from the rotation the landmarks imply (ours) or from the frontal view (the tracker)."""
    first_lr: float = 5e-2  # released tracker
    """Adam learning rate while identity is fitted."""
    lr: float = 1e-2  # released tracker
    """Adam learning rate once identity is frozen."""
    betas: tuple[float, float] = (0.8, 0.95)  # released tracker
    """Adam betas before the switch."""
    late_lr: float = 1e-3  # released tracker
    """Learning rate after ``switch_fraction`` of the steps."""
    late_betas: tuple[float, float] = (0.5, 0.9)  # released tracker
    """Adam betas after the switch."""
    switch_fraction: float = 0.6  # released tracker
    """Fraction of the steps after which the late settings apply."""
    steps: int = Field(200, ge=1)
    """Steps of the per-frame stage. The released tracker spends 100 per frame, each frame
    warm-started from its predecessor; here a batch of frames starts from one solution, so it
    gets more (still far fewer in total: the batch shares them)."""
    identity_steps: int = Field(500, ge=1)  # released tracker: the first frame gets 5x more
    """Steps of the identity stage (photos, and the identity frames of a video)."""
    identity_frames: int = Field(8, ge=1)
    """Frames of a video, spread evenly over it, whose landmarks determine the identity (ours: spread
    frames see the mouth both open and closed, so the identity does not absorb an open jaw)."""
    batch_frames: int = Field(256, ge=1)
    """Frames optimised together in the per-frame stage (bounds memory). Batches run one after
    another and a step costs little more for 256 frames than for 64 (thousands of tiny ops), so the
    200-frame talking-head clip fits in one batch: 6.8 s instead of 10.8 s at 64, with the same
    landmark error (1.96 % of the face size) and jitter (benchmarks/preprocess.py)."""
    early_stop: float = 5e-5  # released tracker
    """Stop a stage once the landmark loss is below this (after the switch)."""
    max_error: float = 0.1
    """Mean reprojection error, as a fraction of the face size, above which the fit has diverged."""
    max_outside: float = 0.25
    """Fraction of landmarks that may lie outside the image before the input is refused."""
    quality: QualityConfig = QualityConfig()
    """Thresholds of the per-frame quality flags (:mod:`invertavatar_faceverse.fit_quality`)."""

    def with_steps(self, steps: int) -> "FittingConfig":
        """This config with ``steps`` per-frame steps and the identity stage scaled alike (500/200 of them)."""
        if steps < 1:
            raise ValueError(f"steps: expected at least 1, got {steps}")
        ratio = type(self)().identity_steps / type(self)().steps
        return self.model_copy(update={"steps": steps, "identity_steps": max(1, round(steps * ratio))})


class LandmarkInputError(ValueError):
    """Landmarks that cannot be fitted: wrong shape, missing face, mostly outside the image."""


class FitDivergedError(RuntimeError):
    """The optimisation produced NaNs or a reprojection error above ``max_error``."""


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficients and cameras of T frames.

    ``identity (T, S)`` (the same row for every frame of one person), ``expression (T, E)``,
    ``eyes (T, n_eye)`` or None, ``camera (T, 25)`` EG3D labels, ``projected (T, 478, 2)``
    landmarks of the fitted mesh in pixels, ``error (T,)`` mean reprojection error in pixels over
    the landmarks the fit used, ``face_size (T,)`` the landmark box's longer side in pixels;
    ``weights (T, 478)`` each landmark's weight in the final loss (0: invalid for the model,
    outside the image or hidden from the camera), ``landmark_yaw (T,)`` the yaw in degrees the
    landmarks imply on their own, ``quality`` one :class:`~invertavatar_faceverse.fit_quality.FrameQuality`
    per frame (flags and reasons; ``flagged`` lists the frames whose fit they call unreliable).
    """

    identity: Tensor
    expression: Tensor
    eyes: Tensor | None
    camera: Tensor
    projected: Tensor
    error: Tensor
    face_size: Tensor
    weights: Tensor | None = None
    landmark_yaw: Tensor | None = None
    quality: tuple[FrameQuality, ...] = ()

    @property
    def relative_error(self) -> Tensor:
        """``(T,)`` reprojection error as a fraction of the face size."""
        return self.error / self.face_size

    @property
    def yaw(self) -> Tensor:
        """``(T,)`` fitted head yaw in degrees (0 frontal, + camera towards the subject's left)."""
        return camera_yaw(self.camera)

    @property
    def flagged(self) -> list[int]:
        """Indices of the frames whose fit a quality flag calls unreliable (``not quality[t].ok``)."""
        return [t for t, q in enumerate(self.quality) if not q.ok]


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


def _inside(landmarks: Tensor, size: int) -> Tensor:
    return ((landmarks >= 0) & (landmarks <= size)).all(-1) & torch.isfinite(landmarks).all(-1)


def _weights(model, landmarks: Tensor, size: int, config: FittingConfig) -> Tensor:
    """``(T, 478)`` per-landmark weights: regions x model validity x inside the image."""
    w = landmark_region_weights(config.regions).to(landmarks)
    valid = getattr(model, "landmark_valid", None)
    if valid is not None:
        w = w * valid.to(landmarks)
    return w * _inside(landmarks, size).to(landmarks)


def _check_landmarks(landmarks: Tensor, size: int, config: FittingConfig) -> None:
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise LandmarkInputError(f"landmarks: expected (T, {NUM_LANDMARKS}, 2) pixels, got {tuple(landmarks.shape)}")
    outside = 1.0 - _inside(landmarks, size).float().mean(1)
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


@dataclass
class _Frames:
    """Per-frame unknowns of a batch (and, detached, of the frame before it)."""

    expression: Tensor  # (T, E)
    eyes: Tensor | None  # (T, n_eye)
    pose: _Pose


def _base_world_to_camera(device, dtype) -> tuple[Tensor, Tensor]:
    cam2world, _ = split_camera(look_at_camera(0.0, 0.0).to(device=device, dtype=dtype))
    w2c = torch.linalg.inv(cam2world)[0]
    return w2c[:3, :3], w2c[:3, 3]


def _world_to_camera(rotation: Tensor) -> Tensor:
    """``(T, 3, 3)`` world-to-camera rotation of the axis-angle offsets ``(T, 3)``."""
    r0, _ = _base_world_to_camera(rotation.device, rotation.dtype)
    return axis_angle_to_rotation_matrix(rotation) @ r0


def _offset(world_to_camera: Tensor) -> Tensor:
    """``(T, 3)`` axis-angle offsets of world-to-camera rotations ``(T, 3, 3)`` (inverts :func:`_world_to_camera`)."""
    r0, _ = _base_world_to_camera(world_to_camera.device, world_to_camera.dtype)
    return rotation_matrix_to_axis_angle(world_to_camera @ r0.T)


def _cameras(pose: _Pose) -> Tensor:
    """``(T, 25)`` EG3D labels of world-to-camera ``R(rotation) R0`` and ``translation``."""
    rot = _world_to_camera(pose.rotation)
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
    camera = _cameras(pose)
    projected, _ = project_points(points, camera, size)
    diff = (projected - landmarks) / size
    per_frame = (weights * diff.square().sum(-1)).sum(1) / weights.sum(1).clamp_min(1e-9)
    landmark = config.landmark_weight * per_frame.mean()
    prior = getattr(model, "expression_prior_scale", None)
    squares = expression.square() if prior is None else expression.square() * prior.to(expression)
    regular = (
        config.identity_weight * identity.square().sum(-1).mean() + config.expression_weight * squares.sum(-1).mean()
    )
    if eyes is not None:
        regular = regular + config.eye_weight * eyes.square().sum(-1).mean()
    return landmark, regular, points, projected, camera


def _optimise(params, closure, steps: int, lr: float, config: FittingConfig, clamp) -> None:
    opt = torch.optim.Adam(params, lr=lr, betas=config.betas)
    switch = int(steps * config.switch_fraction)
    for step in range(steps):
        if step == switch:
            for group in opt.param_groups:
                group["lr"], group["betas"] = config.late_lr, config.late_betas
        opt.zero_grad(set_to_none=True)
        landmark, total = closure(step)
        if not torch.isfinite(total):
            raise FitDivergedError(f"landmark fit: the loss became {float(total)} at step {step}")
        total.backward()
        opt.step()
        clamp()
        if step >= switch and float(landmark.detach()) < config.early_stop:
            break


def _temporal(sequence: Tensor, previous: Tensor | None, order: int = 1) -> Tensor:
    """Sum over frames of the squared ``order``-th difference (from ``previous``, the frames before the batch)."""
    if previous is not None:
        sequence = torch.cat([previous, sequence])
    if len(sequence) <= order:
        return sequence.new_zeros(())
    return torch.diff(sequence, n=order, dim=0).square().sum()


def _smoothness(config: FittingConfig, frames: _Frames, previous: _Frames | None) -> Tensor:
    """The temporal terms summed over a batch's frames (``previous``: the frames before the batch, detached)."""
    zero = frames.expression.new_zeros(())

    def term(now: Tensor | None, before: Tensor | None, order: int = 1) -> Tensor:
        return zero if now is None else _temporal(now, None if before is None else before[-order:], order)

    p = previous
    rotation, translation = (None, None) if p is None else (p.pose.rotation, p.pose.translation)
    total = config.rotation_smoothness * term(frames.pose.rotation, rotation)
    total = total + config.translation_smoothness * term(frames.pose.translation, translation)
    total = total + config.expression_smoothness * term(frames.expression, None if p is None else p.expression)
    total = total + config.eye_smoothness * term(frames.eyes, None if p is None else p.eyes)
    if config.pose_acceleration:
        total = total + config.pose_acceleration * (
            term(frames.pose.rotation, rotation, 2) + term(frames.pose.translation, translation, 2)
        )
    return total


@dataclass
class _Context:
    """What every stage of one fit shares."""

    model: object
    size: int
    config: FittingConfig
    visibility: LandmarkVisibility | None
    expression_max: float | None


def _stage(
    ctx: _Context,
    landmarks: Tensor,
    base_weights: Tensor,
    face_size: Tensor,
    identity: Tensor,
    start: _Frames,
    *,
    steps: int,
    lr: float,
    fit_identity: bool,
    previous: _Frames | None = None,
    temporal: bool = False,
) -> tuple[Tensor, _Frames, Tensor]:
    """Optimise one batch of frames; returns (identity, frames, weights used last)."""
    config, model, t = ctx.config, ctx.model, len(landmarks)
    identity = identity.detach().clone().requires_grad_(fit_identity)
    expression = start.expression.detach().clone().requires_grad_(True)
    eyes = start.eyes.detach().clone().requires_grad_(True) if start.eyes is not None else None
    rotation = start.pose.rotation.detach().clone().requires_grad_(True)
    translation = start.pose.translation.detach().clone().requires_grad_(True)
    params = (
        [expression, rotation, translation]
        + ([identity] if fit_identity else [])
        + ([eyes] if eyes is not None else [])
    )
    state = {"weights": base_weights}

    def reweight(points: Tensor, projected: Tensor, camera: Tensor) -> None:
        if ctx.visibility is not None:
            seen = ctx.visibility(points.detach(), projected.detach(), camera.detach(), face_size, config.facing)
            state["weights"] = base_weights * seen

    def closure(step: int):
        ident = identity.expand(t, -1) if identity.shape[0] == 1 else identity
        pose = _Pose(rotation, translation)
        if step == 0 and ctx.visibility is not None:
            with torch.no_grad():
                _, _, points, projected, camera = _loss_terms(
                    model, landmarks, base_weights, ctx.size, ident, expression, eyes, pose, config
                )
            reweight(points, projected, camera)
        landmark, regular, points, projected, camera = _loss_terms(
            model, landmarks, state["weights"], ctx.size, ident, expression, eyes, pose, config
        )
        total = landmark + regular
        if temporal:
            smooth = _smoothness(config, _Frames(expression, eyes, pose), previous)
            total = total + smooth / t  # per frame, as the landmark term
        if (step + 1) % config.visibility_every == 0:
            reweight(points, projected, camera)
        return landmark, total

    def clamp():
        with torch.no_grad():
            # Blendshape weights live in [0, expression_max] (the model's documented range).
            expression.clamp_(min=0.0, max=ctx.expression_max)

    _optimise(params, closure, steps, lr, config, clamp)
    frames = _Frames(
        expression.detach(),
        None if eyes is None else eyes.detach(),
        _Pose(rotation.detach(), translation.detach()),
    )
    return identity.detach(), frames, state["weights"]


def _span(landmarks: Tensor, present: Tensor) -> Tensor:
    """``(T, 2)`` width and height of the box around the present landmarks."""
    hi = torch.where(present[..., None], landmarks, torch.full_like(landmarks, -torch.inf)).amax(1)
    lo = torch.where(present[..., None], landmarks, torch.full_like(landmarks, torch.inf)).amin(1)
    return (hi - lo).clamp_min(0.0)


def _face_size(landmarks: Tensor) -> Tensor:
    return _span(landmarks, torch.isfinite(landmarks).all(-1)).amax(-1).clamp_min(1.0)


def _result(
    ctx: _Context,
    landmarks: Tensor,
    base_weights: Tensor,
    weights: Tensor,
    identity: Tensor,
    frames: _Frames,
    lm_rotation: Tensor,
) -> FitResult:
    model, config = ctx.model, ctx.config
    with torch.no_grad():
        ident = identity.expand(len(landmarks), -1) if identity.shape[0] == 1 else identity
        _, _, _, projected, camera = _loss_terms(
            model, landmarks, weights, ctx.size, ident, frames.expression, frames.eyes, frames.pose, config
        )
        used = (weights > 0.5 * base_weights) & (base_weights > 0)
        usedf = used.to(landmarks.dtype)
        error = ((projected - landmarks).norm(dim=-1) * usedf).sum(1) / usedf.sum(1).clamp_min(1)
        face_size = _face_size(landmarks)
        usable = (base_weights > 0).sum(1).clamp_min(1)
        lm_yaw = rotation_yaw(lm_rotation)
        quality = assess_frames(
            fitted_yaw=camera_yaw(camera),
            landmark_yaw=lm_yaw,
            relative_error=error / face_size,
            expression=frames.expression,
            identity=ident,
            used=used.sum(1) / usable,
            expression_max=ctx.expression_max,
            expression_names=getattr(model, "expression_names", None),
            config=config.quality,
        )
    result = FitResult(
        ident.detach(), frames.expression, frames.eyes, camera, projected, error, face_size, weights, lm_yaw, quality
    )
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


def fit_image(
    model, landmarks: Float[Tensor, "*T L 2"], image_size: int, config: FittingConfig | None = None
) -> FitResult:
    """Fit one square image's ``(478, 2)`` (or ``(1, 478, 2)``) landmarks in pixels; T = 1."""
    landmarks = landmarks[None] if landmarks.ndim == 2 else landmarks
    return fit_video(model, landmarks, image_size, config, identity_frames=len(landmarks))


def fit_images(
    model,
    landmarks: Sequence[Float[Tensor, "L 2"]] | Float[Tensor, "T L 2"],
    image_sizes: Sequence[int] | int,
    config: FittingConfig | None = None,
) -> FitResult:
    """Fit several photos of one person jointly: one shared identity, each photo its own pose and expression.

    Args:
        model: the morphable model.
        landmarks: ``(478, 2)`` pixels per photo (or one ``(T, 478, 2)`` tensor).
        image_sizes: each photo's square size in pixels (or one size for all).
        config: fit settings; the identity stage (``identity_steps``) runs over all photos at once,
            with no temporal term.

    Returns:
        A :class:`FitResult` of T = len(landmarks) frames in the order given; ``projected``,
        ``error`` and ``face_size`` are in each photo's own pixels.
    """
    points = [torch.as_tensor(p) for p in landmarks]
    if not points:
        raise LandmarkInputError("fit_images: no photos given")
    sizes = [int(image_sizes)] * len(points) if isinstance(image_sizes, int) else [int(s) for s in image_sizes]
    if len(sizes) != len(points):
        raise LandmarkInputError(f"fit_images: {len(points)} landmark sets but {len(sizes)} image sizes")
    if any(p.shape != (NUM_LANDMARKS, 2) for p in points):
        shapes = sorted({tuple(p.shape) for p in points})
        raise LandmarkInputError(f"landmarks: expected ({NUM_LANDMARKS}, 2) pixels per photo, got {shapes}")
    # EG3D intrinsics are relative to the image size, so every photo is fitted at one common size.
    common = max(sizes)
    scale = torch.tensor([common / s for s in sizes], dtype=torch.float32, device=points[0].device)
    stacked = torch.stack([p.float() for p in points]) * scale[:, None, None]
    fitted = fit_video(model, stacked, common, config, identity_frames=len(points))
    back = (1.0 / scale).to(fitted.error)
    return FitResult(
        fitted.identity,
        fitted.expression,
        fitted.eyes,
        fitted.camera,
        fitted.projected * back[:, None, None],
        fitted.error * back,
        fitted.face_size * back,
        fitted.weights,
        fitted.landmark_yaw,
        fitted.quality,
    )


def fit_video(
    model,
    landmarks: Float[Tensor, "T L 2"],
    image_size: int,
    config: FittingConfig | None = None,
    *,
    identity_frames: int | None = None,
    frame_step: int = 1,
) -> FitResult:
    """Fit ``(T, 478, 2)`` landmarks (pixels of square ``image_size`` frames) of one identity.

    ``identity_frames`` (default ``config.identity_frames``) frames spread over the video fix the
    identity; when it covers every frame, all frames are fitted jointly with no temporal term
    (several photos, see :func:`fit_images`). ``frame_step`` is the number of source frames
    between consecutive landmark frames (``fit --every k``): the smoothness weights assume
    consecutive frames and are loosened accordingly (first differences by ``1 / k``, the
    acceleration term by ``1 / k^3``, as for a randomly drifting motion).

    Raises:
        LandmarkInputError: wrong shape, or a frame with most landmarks outside the image.
        FitDivergedError: NaNs, or a frame whose error exceeds ``config.max_error``.
    """
    config = config or FittingConfig()
    landmarks = landmarks.float()
    _check_landmarks(landmarks, image_size, config)
    if landmarks.device.type != "cpu":
        return _fit(model, landmarks, image_size, config, identity_frames, frame_step)
    # Thousands of tiny ops: on CPU one thread is several times faster than a contended pool.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(model, landmarks, image_size, config, identity_frames, frame_step)
    finally:
        torch.set_num_threads(threads)


def _spread(count: int, total: int) -> Tensor:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    if count >= total:
        return torch.arange(total)
    return torch.linspace(0, total - 1, count).round().long().unique()


def _fit(
    model, landmarks: Tensor, image_size: int, config: FittingConfig, identity_frames: int | None, frame_step: int
) -> FitResult:
    """:func:`fit_video` after the input checks."""
    if frame_step < 1:
        raise ValueError(f"frame_step: expected 1 or more, got {frame_step}")
    if frame_step > 1:  # fewer, further-apart frames: each may change more (see fit_video)
        gap = float(frame_step)
        config = config.model_copy(
            update={
                "rotation_smoothness": config.rotation_smoothness / gap,
                "translation_smoothness": config.translation_smoothness / gap,
                "expression_smoothness": config.expression_smoothness / gap,
                "eye_smoothness": config.eye_smoothness / gap,
                "pose_acceleration": config.pose_acceleration / gap**3,
            }
        )
    dev, dt = landmarks.device, landmarks.dtype
    n = len(landmarks)
    base = _weights(model, landmarks, image_size, config)
    face_size = _face_size(landmarks)
    expression_max = getattr(model, "expression_max", None)
    visibility = LandmarkVisibility(model) if config.visibility else None
    ctx = _Context(model, image_size, config, visibility, expression_max)

    from_landmarks = config.initial_pose == "landmarks"
    lm_rotation = landmark_rotation(model, landmarks, image_size)  # the quality check needs it either way
    pick = _spread(min(identity_frames or config.identity_frames, n), n).to(dev)
    k = len(pick)

    identity = torch.zeros(1, model.n_identity, device=dev, dtype=dt)
    neutral = torch.zeros(k, model.n_expression, device=dev, dtype=dt)
    eyes0 = torch.zeros(k, model.n_eye, device=dev, dtype=dt) if model.n_eye else None
    start_rot = _offset(lm_rotation[pick]) if from_landmarks else None
    pose = _initial_pose(
        model, landmarks[pick], base[pick], image_size, identity.expand(k, -1), neutral, eyes0, start_rot
    )
    identity, first, weights = _stage(
        ctx,
        landmarks[pick],
        base[pick],
        face_size[pick],
        identity,
        _Frames(neutral, eyes0, pose),
        steps=config.identity_steps,
        lr=config.first_lr,
        fit_identity=True,
    )
    if k == n:
        order = torch.argsort(pick)
        frames = _Frames(
            first.expression[order],
            None if first.eyes is None else first.eyes[order],
            _Pose(first.pose.rotation[order], first.pose.translation[order]),
        )
        return _result(ctx, landmarks, base, weights[order], identity, frames, lm_rotation)

    if visibility is not None:
        visibility = LandmarkVisibility(model, identity)  # the fitted face's normals
        ctx = _Context(model, image_size, config, visibility, expression_max)
    # Every frame starts from the nearest identity frame: its expression and eyes, and its fitted
    # rotation (turned by the change the landmarks imply between the two frames).
    nearest = (torch.arange(n, device=dev)[:, None] - pick[None]).abs().argmin(1)
    start_rotation = first.pose.rotation[nearest]
    if from_landmarks:
        correction = _world_to_camera(first.pose.rotation) @ lm_rotation[pick].transpose(1, 2)  # (k, 3, 3)
        start_rotation = _offset(correction[nearest] @ lm_rotation)
    parts: list[_Frames] = []
    weights_all = []
    previous = None
    for begin in range(0, n, config.batch_frames):
        chunk = slice(begin, min(begin + config.batch_frames, n))
        near = nearest[chunk]
        expression = first.expression[near]
        eyes = None if first.eyes is None else first.eyes[near]
        t = chunk.stop - chunk.start
        init_pose = _initial_pose(
            model,
            landmarks[chunk],
            base[chunk],
            image_size,
            identity.expand(t, -1),
            expression,
            eyes,
            rotation=start_rotation[chunk],
        )
        # The tracker's later-frame learning rate: every frame starts near its solution (the nearest
        # identity frame's, turned as the landmarks say).
        _, frames, weights = _stage(
            ctx,
            landmarks[chunk],
            base[chunk],
            face_size[chunk],
            identity,
            _Frames(expression, eyes, init_pose),
            steps=config.steps,
            lr=config.lr,
            fit_identity=False,
            previous=previous,
            temporal=True,
        )
        parts.append(frames)
        weights_all.append(weights)
        # The last two frames of the batch tie the next one in time (first and second differences).
        previous = _Frames(
            frames.expression[-1:],
            None if frames.eyes is None else frames.eyes[-1:],
            _Pose(
                frames.pose.rotation[-2:]
                if previous is None
                else torch.cat([previous.pose.rotation, frames.pose.rotation])[-2:],
                frames.pose.translation[-2:]
                if previous is None
                else torch.cat([previous.pose.translation, frames.pose.translation])[-2:],
            ),
        )
    frames = _Frames(
        torch.cat([p.expression for p in parts]),
        None if parts[0].eyes is None else torch.cat([p.eyes for p in parts]),
        _Pose(torch.cat([p.pose.rotation for p in parts]), torch.cat([p.pose.translation for p in parts])),
    )
    return _result(ctx, landmarks, base, torch.cat(weights_all), identity, frames, lm_rotation)
