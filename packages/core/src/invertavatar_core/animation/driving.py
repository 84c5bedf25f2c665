"""A driving signal (fitted frames of a clip) -> per-frame expression UV render and camera for an avatar.

Two ways to drive an avatar:

- **same identity** (``"same"``): the driving clip shows the avatar's own person. Its cameras are
  used as they are (absolute head pose) and its expression coefficients are re-rendered on the
  avatar's identity (what ``invertavatar render --drive`` always did).
- **cross identity** (``"cross"``): another person drives. The avatar keeps its identity (its
  coefficients shape the expression UV render, as in the paper's cross-identity reenactment,
  Sec. 4.2.1), the driving expression coefficients are transferred as they are, and the head pose
  is transferred *relative* to a reference frame of the driving clip (its first frame by
  default): the rigid motion that takes the reference camera to frame ``t``'s camera, in the
  canonical (head) frame, is applied to the avatar's source camera (:func:`relative_cameras`).
  A driver who turns 0.3 rad to the left from the reference frame turns the avatar 0.3 rad to the
  left from its source pose, wherever both started.

``"auto"`` (:func:`choose_mode`) picks same identity when the driving frames are the avatar's own
sources or when the identity coefficients clearly agree (relative distance under
:data:`SAME_IDENTITY_DISTANCE`), else cross identity, and says why.

Coefficients fitted with one morphable model mean nothing to another: :func:`check_driving_model`
refuses a driving fit of another model with one line naming both, before anything is rendered
(with :func:`invertavatar_core.data.datasets.check_morphable_model`).
"""

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from invertavatar_core.data.datasets import MorphableModelMismatchError, check_morphable_model
from invertavatar_core.errors import UserError
from invertavatar_core.geometry.cameras import make_camera, split_camera
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.plugin.protocols import MorphableModel, Prior, Rasterizer
from invertavatar_core.tensor_types import Camera, Float, Tensor

__all__ = [
    "SAME_IDENTITY_DISTANCE",
    "AnimationMode",
    "AnimationStep",
    "AvatarAnimator",
    "DrivingFrame",
    "animation_steps",
    "avatar_source_camera",
    "check_driving_model",
    "choose_mode",
    "dataset_morphable_model",
    "driving_frames",
    "identity_distance",
    "relative_cameras",
]

AnimationMode = Literal["same", "cross"]
"""Same-identity (absolute pose) or cross-identity (relative pose) driving."""

SAME_IDENTITY_DISTANCE = 0.25
"""``"auto"`` treats driving identity coefficients within this relative distance of the avatar's as
the same person. Measured with the procedural model (docs/animation.md): single-frame fits of one
synthetic head lie 0.34-0.65 apart, of one real talking head 0.25-0.51, of different heads
0.45-1.2; so only a clear match (or the avatar's own sources) counts as the same person, and
anything else gets the relative pose, which is also right for the same person."""


def check_driving_model(
    avatar_model: Mapping[str, Any],
    driving_model: Mapping[str, Any] | None,
    model: MorphableModel | None,
    identity: Tensor | None,
    *,
    avatar: str,
    driving: str,
) -> None:
    """Refuse, in one line naming both, driving coefficients of another morphable model than the avatar's.

    Before anything is rendered: the model the driving frames were fitted with
    (:func:`dataset_morphable_model`; None: not recorded, nothing to compare) against the
    avatar's experiment's, then the avatar's identity coefficients against that model's size.
    The checks are :func:`invertavatar_core.data.datasets.check_morphable_model`'s.

    Raises:
        MorphableModelMismatchError: the models differ.
    """
    check_morphable_model(
        driving_model, avatar_model, found_from=f"the driving frames {driving}", expected_from=f"the avatar {avatar}"
    )
    if model is not None and identity is not None:
        check_morphable_model(
            None,
            avatar_model,
            found_from=f"the avatar {avatar}",
            expected_from="its model checkpoint",
            identity_size=int(identity.shape[-1]),
            expected_identity_size=int(model.n_identity),
        )


def _check_coefficients(model: MorphableModel, frame: "DrivingFrame", driving: str, avatar_model: str) -> None:
    """The same mismatch, caught on the coefficient sizes (folders that record no model, same-name variants)."""
    for what, value, expected in (
        ("expression", frame.expression, model.n_expression),
        ("eyes", frame.eyes, model.n_eye),
    ):
        if value is not None and value.numel() and value.shape[-1] != expected:
            raise MorphableModelMismatchError(
                f"{driving}: {what} coefficients have {value.shape[-1]} values, but the avatar's morphable model "
                f"{avatar_model!r} has {expected}; refit the driving clip with --model {avatar_model}"
            )


def identity_distance(a: Float[Tensor, "1 Sa"], b: Float[Tensor, "1 Sb"]) -> float:
    """``|a - b| / max(|a|, |b|)`` of two identity coefficient rows (0 for two mean faces)."""
    a, b = a.detach().float().reshape(-1).cpu(), b.detach().float().reshape(-1).cpu()
    if a.shape != b.shape:
        return math.inf
    scale = max(float(a.norm()), float(b.norm()))
    return 0.0 if scale < 1e-6 else float((a - b).norm()) / scale


def choose_mode(
    requested: str,
    avatar_identity: Tensor | None,
    driving_identity: Tensor | None,
    *,
    own_sources: bool = False,
) -> tuple[AnimationMode, str]:
    """``(mode, why)`` for ``requested`` in ``"auto"``, ``"same"``, ``"cross"``.

    ``auto``: same identity when ``own_sources`` (the driving frames are the avatar's own
    sources) or the identities lie within :data:`SAME_IDENTITY_DISTANCE`; cross identity when
    they lie further apart; same identity, with a note, when either identity is unknown.
    """
    if requested in ("same", "cross"):
        return requested, "as requested"  # type: ignore[return-value]
    if requested != "auto":
        raise UserError(f"--mode: expected auto, same or cross, got {requested!r}")
    if own_sources:
        return "same", "the driving frames are the avatar's own sources"
    if avatar_identity is None or driving_identity is None:
        side = "avatar" if avatar_identity is None else "driving frames"
        return "same", f"the {side} record no identity coefficients to compare; --mode cross to transfer relative pose"
    distance = identity_distance(avatar_identity, driving_identity)
    if distance <= SAME_IDENTITY_DISTANCE:
        return "same", f"identity distance {distance:.2f} <= {SAME_IDENTITY_DISTANCE}"
    return "cross", (
        f"identity distance {distance:.2f} > {SAME_IDENTITY_DISTANCE}: taken as another person; "
        "--mode same uses the driving poses as they are"
    )


def relative_cameras(driving: Camera, reference: Float[Tensor, "1 25"], source: Float[Tensor, "1 25"]) -> Camera:
    """Cameras ``(T, 25)`` that move ``source`` as ``driving`` moves away from ``reference``.

    With cam-to-world matrices, ``G_t = C_t C_ref^-1`` is the rigid motion (in the canonical, head
    frame) that takes the reference camera to frame ``t``'s; the result is ``G_t S``, so a camera
    turn about the head's axes (equivalently, the head turning) carries over whatever the source
    pose; the source's intrinsics are kept.
    """
    c, _ = split_camera(driving)
    c_ref, _ = split_camera(reference.to(driving))
    s, k = split_camera(source.to(driving))
    moved = c @ torch.linalg.inv(c_ref) @ s
    moved[:, 3] = moved.new_tensor([0.0, 0.0, 0.0, 1.0])
    return make_camera(moved, k[0])


def avatar_source_camera(avatar: Avatar) -> tuple[Float[Tensor, "1 25"], str]:
    """The avatar's recorded source camera ``(1, 25)``, or the frontal FFHQ camera with a note saying so."""
    from invertavatar_core.geometry.cameras import look_at_camera

    if avatar.source_camera is not None:
        return avatar.source_camera[:1].float(), ""
    note = "the avatar records no source camera (made before this release): relative poses start from the frontal view"
    return look_at_camera(0.0, 0.0), note


@dataclass(frozen=True)
class DrivingFrame:
    """One driving frame (batch 1).

    ``camera (1, 25)``, its own ``expression_uv (1, 3, U, U)``, fitted ``identity (1, S)`` /
    ``expression (1, E)`` / ``eyes (1, n_eye)`` when known, and the driving
    ``image (1, 3, H, W)`` in [-1, 1] when wanted (side by side).
    """

    camera: Tensor
    expression_uv: Tensor | None = None
    identity: Tensor | None = None
    expression: Tensor | None = None
    eyes: Tensor | None = None
    image: Tensor | None = None


def dataset_morphable_model(dataset: Any) -> dict[str, Any] | None:
    """The morphable model config a driving dataset was fitted with (None when it does not say).

    A fit folder records it in ``dataset.json`` (``model``); the official InvertAvatar layout holds
    FaceVerse v3.1 coefficients by definition (docs/dataset-layout.md).
    """
    from invertavatar_core.data.datasets import FitDataset, InvertAvatarDataset

    if isinstance(dataset, FitDataset):
        model = dataset.meta.get("model")
        return dict(model) if isinstance(model, Mapping) else None
    if isinstance(dataset, InvertAvatarDataset):
        return {"name": "faceverse"}
    return None


def driving_frames(dataset: Any, indices: Iterable[int], *, images: bool = False) -> Iterator[DrivingFrame]:
    """The :class:`DrivingFrame` s of ``dataset`` at ``indices``, read one at a time (memory stays per frame).

    ``dataset`` is a :func:`~invertavatar_core.data.datasets.open_dataset` reader; ``images``: keep the crops.
    """
    for index in indices:
        frame = dataset[index]
        yield DrivingFrame(
            camera=frame.camera,
            expression_uv=frame.expression_uv,
            identity=frame.identity,
            expression=frame.expression,
            eyes=frame.eyes,
            image=frame.image if images else None,
        )


@dataclass(frozen=True)
class AnimationStep:
    """What the avatar is rendered with for one driving frame: ``expression_uv (1, 3, U, U)``, ``camera (1, 25)``."""

    expression_uv: Tensor
    camera: Tensor
    frame: DrivingFrame


class AvatarAnimator:
    """Renders one avatar frame by frame: driving coefficients -> expression UV on its identity -> image.

    Args:
        avatar: the avatar (batch 1), on the device to render on.
        prior: the prior its features belong to (checked).
        model: the experiment's morphable model (None: driving frames' own UV renders are used).
        rasterizer: the experiment's rasteriser (with ``model``).

    The morphable model stays on the CPU, where its tensors live; renders run under
    ``torch.inference_mode`` at the avatar's native resolution.
    """

    def __init__(
        self,
        avatar: Avatar,
        prior: Prior,
        model: MorphableModel | None = None,
        rasterizer: Rasterizer | None = None,
    ) -> None:
        avatar.check_prior(prior)
        self.avatar = avatar
        self.prior = prior
        self.model = model
        self.rasterizer = rasterizer
        self.device = avatar.features.ws.device
        self.uv_resolution = prior.info.uv_resolution
        self.resolution = prior.info.image_resolution
        self._identity = None if avatar.identity is None else avatar.identity[:1].detach().float().cpu()

    @property
    def can_transfer(self) -> bool:
        """Whether driving coefficients can be re-rendered on the avatar's identity."""
        return self.model is not None and self.rasterizer is not None and self._identity is not None

    def expression_uv(
        self, expression: Float[Tensor, "B E"], eyes: Float[Tensor, "B Y"] | None = None
    ) -> Float[Tensor, "B 3 U U"]:
        """``(B, 3, U, U)`` expression UV render of ``expression`` / ``eyes`` on the avatar's identity."""
        from invertavatar_core.geometry.uv_maps import render_expression_uv

        if not self.can_transfer:
            raise ValueError("AvatarAnimator.expression_uv needs the morphable model, a rasteriser and the identity")
        b = expression.shape[0]
        eyes = None if eyes is None or not eyes.numel() else eyes.detach().float().cpu()
        with torch.inference_mode():
            uv = render_expression_uv(
                self.model,
                self.rasterizer,
                self._identity.expand(b, -1),
                expression.detach().float().cpu(),
                eyes,
                resolution=self.uv_resolution,
            )
        return uv.to(self.device)

    def render(self, expression_uv: Float[Tensor, "B 3 U U"], camera: Camera) -> Float[Tensor, "B 3 H W"]:
        """``(B, 3, H, W)`` avatar images in [-1, 1] (``prior.render`` only, no gradients)."""
        with torch.inference_mode():
            return self.prior.render(
                self.avatar.features, expression_uv.to(self.device), camera.to(self.device, torch.float32)
            ).image


def animation_steps(
    animator: AvatarAnimator,
    frames: Iterable[DrivingFrame],
    *,
    mode: AnimationMode,
    reference_camera: Tensor | None = None,
    source_camera: Tensor | None = None,
    avatar_model: str = "",
    driving: str = "driving frames",
) -> Iterator[AnimationStep]:
    """Per driving frame, the expression UV render and camera to render the avatar with.

    Args:
        animator: the avatar's animator.
        frames: driving frames in time order (a one-shot stream is fine: memory stays per frame).
        mode: ``"same"`` (driving cameras as they are) or ``"cross"`` (relative pose).
        reference_camera: ``(1, 25)`` the driving camera poses are relative to (cross identity;
            default: the first frame's).
        source_camera: ``(1, 25)`` the avatar's pose at the reference (cross identity; default:
            the avatar's recorded source camera, :func:`avatar_source_camera`).
        avatar_model: the avatar's morphable model name, for error messages.
        driving: what to call the driving frames in error messages.

    Raises:
        MorphableModelMismatchError: coefficient sizes that are not the avatar model's.
    """
    if mode == "cross" and source_camera is None:
        source_camera, _ = avatar_source_camera(animator.avatar)
    for frame in frames:
        if reference_camera is None:
            reference_camera = frame.camera[:1]
        if animator.model is not None:
            _check_coefficients(animator.model, frame, driving, avatar_model)
        if animator.can_transfer and frame.expression is not None:
            expression_uv = animator.expression_uv(frame.expression, frame.eyes)
        elif frame.expression_uv is not None:
            expression_uv = frame.expression_uv.to(animator.device)
        else:
            raise ValueError(f"{driving}: a frame carries neither expression coefficients nor an expression UV render")
        if expression_uv.shape[-1] != animator.uv_resolution:
            raise UserError(
                f"{driving}: expression UV renders are {expression_uv.shape[-1]}px, the avatar's prior expects "
                f"{animator.uv_resolution}px (refit with --uv-resolution {animator.uv_resolution})"
            )
        camera = frame.camera if mode == "same" else relative_cameras(frame.camera, reference_camera, source_camera)
        yield AnimationStep(expression_uv, camera, frame)
