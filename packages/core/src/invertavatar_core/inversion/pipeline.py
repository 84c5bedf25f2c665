"""The two-stage inversion mechanism (paper Sec. 3.2-3.3), written against the protocols only.

Coarse stage: ``ws = E_latent(I_0) + w_avg`` (always frame 0), ``F_w = prior.canonical(ws)``,
``I_hat_t = prior.render(F_w, expression_uv_t, camera_t)``, residual ``Delta_t = I_t - I_hat_t``.
Fine stage: E_tex sees ``cat(unwrap(I_t), unwrap(Delta_t) with -1 where unseen, visibility)`` in
UV space, E_tri sees ``cat(I_t, Delta_t)`` in image space, each at its own input resolution; their
:class:`FeatureEdits` are merged and ``prior.canonical(ws, edits)`` gives the avatar.

The same functions serve inference (:class:`InversionSession`, streaming or batch) and training
(stages 2 and 3 call :meth:`InversionPipeline.encoder_inputs` and :meth:`InversionPipeline.fine`
with gradients). Batch layout for several identities: frames are avatar-major, frame ``t`` of
avatar ``b`` at index ``b * T + t``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.protocols import CanonicalFeatures, EncoderState, FeatureEdits, PriorRender

__all__ = [
    "EncoderInputs",
    "Inverter",
    "InverterSession",
    "InversionPipeline",
    "InversionSession",
    "conform_to_prior",
    "repeat_features",
    "resize_square",
]


@runtime_checkable
class InverterSession(Protocol):
    """Streaming inversion of one identity (what ``Inverter.start`` returns)."""

    def add(self, frames: Observation) -> "InverterSession":
        """Fold more frames of the same identity in."""
        ...

    def avatar(self) -> Avatar:
        """The avatar from every frame so far."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """The session as flat tensors (safetensors-ready)."""
        ...

    def load_state_dict(self, state: Mapping[str, Tensor]) -> "InverterSession":
        """Restore a saved session."""
        ...


@runtime_checkable
class Inverter(Protocol):
    """An inversion method (kind ``inverter``): ours, per-frame averaging, PTI, a third party's.

    Built by ``registry.create("inverter", config, registry=..., experiment=..., models=...)``
    where ``models`` (an :class:`InversionModels`, e.g. loaded from a checkpoint) is optional;
    without it the networks are built fresh from the experiment.
    """

    models: InversionModels

    def start(self, first: Observation) -> InverterSession:
        """Begin a session with the first frame(s)."""
        ...

    def invert(self, frames: Observation) -> Avatar:
        """One avatar from all ``frames`` (one identity): the same code as streaming them."""
        ...


def resize_square(image: Float[Tensor, "B C H W"], resolution: int) -> Float[Tensor, "B C R R"]:
    """``(B, C, H, W) -> (B, C, R, R)``: average pooling for integer downscales (512 -> 256), else bilinear."""
    h, w = image.shape[-2:]
    if (h, w) == (resolution, resolution):
        return image
    if h == w and h > resolution and h % resolution == 0:
        return F.avg_pool2d(image, h // resolution)
    return F.interpolate(
        image, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=h > resolution
    )


def conform_to_prior(frames: Observation, resolution: int) -> Observation:
    """Bring the expression UV renders to the prior's ``info.uv_resolution`` (u, v resampled, mask re-thresholded).

    Fitted data may store them at another size; the prior's face module needs its exact size.
    """
    uv = frames.expression_uv
    if uv.shape[-1] == resolution and uv.shape[-2] == resolution:
        return frames
    coords = resize_square(uv[:, :2], resolution)
    mask = (resize_square(uv[:, 2:3], resolution) > 0.5).to(uv.dtype)
    return replace(frames, expression_uv=torch.cat([coords * mask, mask], 1))


def repeat_features(features: CanonicalFeatures, times: int) -> CanonicalFeatures:
    """Each avatar's features repeated ``times`` (avatar-major), to render T frames of B avatars at once."""
    if times == 1:
        return features
    return CanonicalFeatures.from_tensors({k: v.repeat_interleave(times, 0) for k, v in features.tensors().items()})


@dataclass(frozen=True)
class EncoderInputs:
    """Per-frame inputs of the fine-stage encoders and the coarse render they were made from.

    ``inputs``: role -> ``(N, C_in, R, R)`` (texture: 7 channels in UV space; static: 6 in image
    space); ``coarse``: the coarse render of the N frames; ``residual``: ``(N, 3, H, W)``.
    """

    inputs: Mapping[str, Tensor]
    coarse: PriorRender
    residual: Tensor


class InversionPipeline:
    """Coarse and fine stage on an :class:`InversionModels`; no component is special-cased by name.

    Args:
        models: the prior and encoders.
        image_fill: value of the image's UV unwrap where a texel is unseen (white, as the
            released ``*_uvgttex.png`` unwraps, docs/design/preprocessing.md).
        residual_fill: value of the residual's UV unwrap where unseen (-1, docs/design/encoders.md).
        residual: ``"image_minus_render"`` (``I - I_hat``, the paper) or ``"render_minus_image"``
            (``I_hat - I``, what the released encoders were trained on; docs/release-weights.md).
    """

    def __init__(
        self,
        models: InversionModels,
        *,
        image_fill: float = 1.0,
        residual_fill: float = -1.0,
        residual: str = "image_minus_render",
    ) -> None:
        if residual not in ("image_minus_render", "render_minus_image"):
            raise ValueError(f"residual must be 'image_minus_render' or 'render_minus_image', got {residual!r}")
        self.models = models
        self.image_fill = image_fill
        self.residual_fill = residual_fill
        self.residual_sign = 1.0 if residual == "image_minus_render" else -1.0

    @property
    def prior(self):
        """The prior."""
        return self.models.prior

    def latent(self, image: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B K D"]:
        """Coarse stage: ``E_latent(image at its input resolution) + w_avg``."""
        encoder = self.models.latent
        offsets = encoder(resize_square(image, encoder.input_resolution))
        return offsets + self.prior.w_avg.to(offsets.dtype)

    def encoder_inputs(self, coarse: CanonicalFeatures, frames: Observation) -> EncoderInputs:
        """Render ``coarse`` at every frame's camera and expression and build E_tex / E_tri inputs.

        ``coarse`` holds 1 avatar (broadcast over the frames) or B avatars with ``len(frames)``
        a multiple of B (avatar-major).
        """
        from invertavatar_core.geometry.uv_maps import unwrap_image

        n, b = len(frames), coarse.batch_size
        if b != 1 and n % b:
            raise ValueError(f"{n} frames cannot be split over {b} avatars")
        features = coarse if b == 1 else repeat_features(coarse, n // b)
        render = self.prior.render(features, frames.expression_uv, frames.camera)
        image = frames.image
        residual = self.residual_sign * (image - resize_square(render.image, image.shape[-1]).to(image.dtype))
        inputs: dict[str, Tensor] = {}
        for role, encoder in self.models.feature_encoders().items():
            r = encoder.input_resolution
            if role == "texture":
                seen = frames.visibility
                parts = [
                    unwrap_image(image, frames.unwrap_grid, seen, self.image_fill),
                    unwrap_image(residual, frames.unwrap_grid, seen, self.residual_fill),
                    seen,
                ]
                inputs[role] = torch.cat([resize_square(p, r) for p in parts], 1)
            else:
                inputs[role] = resize_square(torch.cat([image, residual], 1), r)
        return EncoderInputs(inputs=inputs, coarse=render, residual=residual)

    def encode(self, inputs: Mapping[str, Tensor], frames_per_avatar: int) -> FeatureEdits:
        """Run every fine-stage encoder over whole sequences (``(B * T, ...)`` avatar-major) -> merged edits."""
        edits = FeatureEdits()
        for role, encoder in self.models.feature_encoders().items():
            x = inputs[role]
            edits = edits.merge(encoder(x.reshape(-1, frames_per_avatar, *x.shape[1:])))
        return edits

    def fine(self, ws: Float[Tensor, "B K D"], edits: FeatureEdits) -> CanonicalFeatures:
        """Canonical features with the encoders' edits applied."""
        return self.prior.canonical(ws, edits)

    def invert(self, frames: Observation, frames_per_avatar: int) -> tuple[CanonicalFeatures, EncoderInputs]:
        """Whole pipeline for B avatars of T frames each (differentiable; training uses it)."""
        ws = self.latent(frames.image[::frames_per_avatar])
        inputs = self.encoder_inputs(self.prior.canonical(ws), frames)
        return self.fine(ws, self.encode(inputs.inputs, frames_per_avatar)), inputs


class InversionSession:
    """Streaming inversion of one identity: ``start`` with frame 0, ``add`` frames, read ``avatar()`` any time.

    w+ comes from the first frame only; every added frame is folded into each fine-stage
    encoder's state. Batch inversion of N frames is ``InversionSession(pipeline, obs[:1])``
    then ``add(obs[1:])``, the same code. The state (``state_dict``) is a flat mapping of
    tensors: ``ws``, ``frames`` and ``<role>.<key>`` encoder states, so it saves to safetensors;
    the coarse features are recomputed from ``ws`` (the prior is deterministic).
    """

    def __init__(self, pipeline: InversionPipeline, first: Observation | None, *, inverter: str = "") -> None:
        self.pipeline = pipeline
        self.inverter = inverter
        self.ws: Tensor | None = None
        self.coarse: CanonicalFeatures | None = None
        self.identity: Tensor | None = None
        self.frames = 0
        self.states: dict[str, EncoderState] = {}
        if first is not None:
            self.add(first)

    @torch.no_grad()
    def add(self, frames: Observation) -> "InversionSession":
        """Fold one or more frames of the same identity in (the first call also sets w+ from frame 0)."""
        models = self.pipeline.models
        frames = conform_to_prior(frames.to(models.device), models.prior.info.uv_resolution)
        if len(frames) == 0:
            return self
        if self.ws is None:
            self._begin(frames[:1])
        groups = models.frame_groups(len(frames))
        if groups is not None:
            # Encoders that fold frames in groups (the released ones): each group rendered and folded together.
            for group in groups:
                inputs = self.pipeline.encoder_inputs(self.coarse, frames[torch.tensor(group)]).inputs
                for role, encoder in models.feature_encoders().items():
                    self.states[role] = encoder.update_group(self.states[role], inputs[role][None])
            self.frames += len(frames)
            return self
        inputs = self.pipeline.encoder_inputs(self.coarse, frames).inputs
        for role, encoder in models.feature_encoders().items():
            state = self.states[role]
            for t in range(len(frames)):
                state = encoder.update(state, inputs[role][t : t + 1])
            self.states[role] = state
        self.frames += len(frames)
        return self

    def _begin(self, first: Observation) -> None:
        self.ws = self.pipeline.latent(first.image)
        self.coarse = self.pipeline.prior.canonical(self.ws)
        self.identity = first.identity
        for role, encoder in self.pipeline.models.feature_encoders().items():
            self.states[role] = encoder.init_state(1, device=self.ws.device, dtype=self.ws.dtype)

    def edits(self) -> FeatureEdits:
        """The merged edits of everything folded in so far."""
        edits = FeatureEdits()
        for role, encoder in self.pipeline.models.feature_encoders().items():
            edits = edits.merge(encoder.read(self.states[role]))
        return edits

    @torch.no_grad()
    def avatar(self) -> Avatar:
        """The avatar from every frame added so far."""
        if self.ws is None:
            raise RuntimeError("InversionSession.avatar: no frame added yet")
        features = self.pipeline.fine(self.ws, self.edits())
        return Avatar(
            features=features,
            prior_config=self.pipeline.models.experiment.prior.model_dump(mode="json"),
            identity=self.identity,
            frame_count=self.frames,
            inverter=self.inverter,
        )

    def state_dict(self) -> dict[str, Tensor]:
        """Flat tensors: ``ws``, ``frames``, ``identity`` (when known), ``<role>.<key>``."""
        if self.ws is None:
            raise RuntimeError("InversionSession.state_dict: no frame added yet")
        state = {"ws": self.ws, "frames": torch.tensor(self.frames)}
        if self.identity is not None:
            state["identity"] = self.identity
        for role, encoder_state in self.states.items():
            state.update({f"{role}.{k}": v for k, v in encoder_state.items()})
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> "InversionSession":
        """Restore a state from :meth:`state_dict` (the same models); errors name missing keys."""
        device = self.pipeline.models.device
        roles = self.pipeline.models.feature_encoders()
        missing = [k for k in ("ws", "frames") if k not in state]
        missing += [f"{r}.*" for r in roles if not any(k.startswith(f"{r}.") for k in state)]
        if missing:
            raise KeyError(f"inversion session state lacks {missing}; it has {sorted(state)}")
        self.ws = state["ws"].to(device)
        self.frames = int(state["frames"])
        self.identity = state["identity"].to(device) if "identity" in state else None
        with torch.no_grad():
            self.coarse = self.pipeline.prior.canonical(self.ws)
        self.states = {
            r: {k.removeprefix(f"{r}."): v.to(device) for k, v in state.items() if k.startswith(f"{r}.")} for r in roles
        }
        return self
