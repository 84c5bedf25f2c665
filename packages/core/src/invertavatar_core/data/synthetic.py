"""Synthetic training data from the prior, with ground-truth intermediate features (supplement 6.2.2-6.2.3).

Two independent halves, as the paper combines them for stage 3 ("random identity sampled from the
GAN latent space, with poses and expressions sampled from the video dataset"):

- a :class:`DriveBank` of *drives*: sequences of frames, each frame a camera, an expression UV
  render and the UV unwrap grid / visibility of the posed mesh. Built once at start, either from
  the morphable model with random coefficients and look-at cameras (:meth:`DriveBank.procedural`)
  or from fitted real frames (:meth:`DriveBank.from_observations`);
- identities: random ``z`` through ``prior.mapping`` (truncated), ``prior.canonical`` gives the
  ground-truth ``F_tex`` / ``F_tri``, and ``prior.render`` at the drive frames gives the images.

:meth:`SyntheticSampler.sample` returns B identities, each with T source frames (one drive
sequence) and V supervision views (other frames of that sequence: other cameras and expressions).
"""

from dataclasses import dataclass

import torch

from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.protocols import CanonicalFeatures, MorphableModel, Prior, PriorRender, Rasterizer
from invertavatar_core.tensor_types import Float, Tensor

__all__ = ["DriveBank", "SyntheticBatch", "SyntheticSampler"]

IDENTITY_STD = 1.0
"""Standard deviation of random morphable-model identity coefficients (models are unit-scaled)."""
EXPRESSION_MAX = 0.8
"""Random expression coefficients (blendshape weights) are uniform in [0, this], then sparsified."""
EXPRESSION_ACTIVE = 0.3
"""Fraction of blendshapes active in a random expression."""
YAW_RANGE = 0.5
"""Random camera yaw, uniform in +- this (radians) around the frontal view."""
PITCH_RANGE = 0.3
"""Random camera pitch, uniform in +- this (radians) around the frontal view."""


@dataclass(frozen=True)
class DriveBank:
    """S drive sequences of L frames: cameras, expression UV renders and unwraps (+ coefficients).

    ``camera (S, L, 25)``, ``expression_uv (S, L, 3, Hu, Wu)``, ``unwrap_grid (S, L, Ht, Wt, 2)``,
    ``visibility (S, L, 1, Ht, Wt)``, optional ``identity (S, n_id)`` and ``expression (S, L, n_exp)``.
    """

    camera: Tensor
    expression_uv: Tensor
    unwrap_grid: Tensor
    visibility: Tensor
    identity: Tensor | None = None
    expression: Tensor | None = None

    @property
    def sequences(self) -> int:
        """S."""
        return int(self.camera.shape[0])

    @property
    def length(self) -> int:
        """L."""
        return int(self.camera.shape[1])

    def to(self, device: torch.device | str) -> "DriveBank":
        """The bank on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DriveBank(
            *(
                move(t)
                for t in (
                    self.camera,
                    self.expression_uv,
                    self.unwrap_grid,
                    self.visibility,
                    self.identity,
                    self.expression,
                )
            )
        )

    def frames(self, sequence: Tensor, index: Tensor, image: Tensor) -> Observation:
        """Frames ``(sequence[i], index[i])`` as an :class:`Observation` with the given ``image (N, 3, H, W)``."""
        identity = None if self.identity is None else self.identity[sequence]
        expression = None if self.expression is None else self.expression[sequence, index]
        return Observation(
            image=image,
            camera=self.camera[sequence, index],
            expression_uv=self.expression_uv[sequence, index],
            unwrap_grid=self.unwrap_grid[sequence, index],
            visibility=self.visibility[sequence, index],
            identity=identity,
            expression=expression,
        )

    @classmethod
    def from_observations(cls, sequences: list[Observation], length: int) -> "DriveBank":
        """Drives from fitted real frames (their images are dropped): each sequence cut or cycled to ``length``."""
        if not sequences:
            raise ValueError("DriveBank.from_observations needs at least one sequence")
        parts = []
        for obs in sequences:
            index = torch.arange(length) % len(obs)
            parts.append(obs[index])
        stack = lambda name: torch.stack([getattr(p, name) for p in parts])  # noqa: E731
        identity = torch.stack([p.identity[0] for p in parts]) if all(p.identity is not None for p in parts) else None
        expression = stack("expression") if all(p.expression is not None for p in parts) else None
        return cls(
            stack("camera"), stack("expression_uv"), stack("unwrap_grid"), stack("visibility"), identity, expression
        )

    @classmethod
    def procedural(
        cls,
        model: MorphableModel,
        rasterizer: Rasterizer,
        *,
        sequences: int,
        length: int,
        expression_resolution: int,
        unwrap_resolution: int,
        image_resolution: int,
        generator: torch.Generator,
    ) -> "DriveBank":
        """Random drives: one random identity per sequence, random expressions and look-at cameras per frame.

        ``expression_resolution``: side of the expression UV render (the prior's ``info.uv_resolution``);
        ``unwrap_resolution``: side of the UV unwrap grid; ``image_resolution``: of the images it samples.
        """
        from invertavatar_core.geometry.cameras import look_at_camera
        from invertavatar_core.geometry.uv_maps import render_expression_uv, uv_unwrap_grid

        n = sequences * length
        identity = torch.randn(sequences, model.n_identity, generator=generator) * IDENTITY_STD
        active = torch.rand(n, model.n_expression, generator=generator) < EXPRESSION_ACTIVE
        expression = torch.rand(n, model.n_expression, generator=generator) * EXPRESSION_MAX * active
        eyes = torch.zeros(n, model.n_eye) if model.n_eye else None
        yaw = (torch.rand(n, generator=generator) * 2 - 1) * YAW_RANGE
        pitch = (torch.rand(n, generator=generator) * 2 - 1) * PITCH_RANGE
        camera = look_at_camera(yaw, pitch)
        per_frame_identity = identity.repeat_interleave(length, 0)
        expression_uv = render_expression_uv(
            model, rasterizer, per_frame_identity, expression, eyes, resolution=expression_resolution
        )
        grid, visibility = uv_unwrap_grid(
            model,
            rasterizer,
            per_frame_identity,
            expression,
            eyes,
            camera,
            uv_resolution=unwrap_resolution,
            image_resolution=image_resolution,
        )
        shape = lambda t: t.reshape(sequences, length, *t.shape[1:])  # noqa: E731
        return cls(shape(camera), shape(expression_uv), shape(grid), shape(visibility), identity, shape(expression))


@dataclass(frozen=True)
class SyntheticBatch:
    """B identities x (T sources + V views), avatar-major.

    - ``sources`` / ``views``: :class:`Observation` of ``B * T`` / ``B * V`` frames whose images
      are the prior's renders (``views`` None when V = 0);
    - ``features``: ground-truth canonical features of the B identities;
    - ``source_render`` / ``view_render``: the ground-truth renders (``raw`` for ``L_raw``).
    """

    sources: Observation
    views: Observation | None
    features: CanonicalFeatures
    source_render: PriorRender
    view_render: PriorRender | None
    ws: Float[Tensor, "B K D"]
    """``(B, K, D)`` ground-truth w+."""


class SyntheticSampler:
    """Random identities from the prior rendered on drives from a :class:`DriveBank`."""

    def __init__(self, prior: Prior, drives: DriveBank, *, truncation_psi: float = 0.6) -> None:
        self.prior = prior
        self.drives = drives
        self.truncation_psi = truncation_psi

    @torch.no_grad()
    def sample(
        self,
        identities: int,
        sources: int,
        views: int,
        generator: torch.Generator,
        *,
        device: torch.device | str = "cpu",
    ) -> SyntheticBatch:
        """``identities`` random identities, each on one random drive sequence: ``sources`` + ``views`` frames of it.

        Source frames are the first ``sources`` frames of a random window of the sequence (in
        time order, cycling past its end); views are random other frames of the same sequence.
        """
        info = self.prior.info
        bank = self.drives
        b, t, v = identities, sources, views
        z = torch.randn(b, info.z_dim, generator=generator).to(device)
        sequence = torch.randint(bank.sequences, (b,), generator=generator)
        start = torch.randint(bank.length, (b,), generator=generator)
        src_index = (start[:, None] + torch.arange(t)[None]) % bank.length
        view_index = torch.randint(bank.length, (b, max(v, 1)), generator=generator)[:, :v]
        bank = bank.to(device)
        conditioning = bank.camera[sequence, start]  # the first source frame's camera, as EG3D's pose conditioning
        ws = self.prior.mapping(z, conditioning, truncation_psi=self.truncation_psi)
        features = self.prior.canonical(ws)
        seq_t, seq_v = sequence.repeat_interleave(t).to(device), sequence.repeat_interleave(v).to(device)
        src_idx, view_idx = src_index.reshape(-1).to(device), view_index.reshape(-1).to(device)
        source_render = self._render(features, bank, seq_t, src_idx, t)
        view_render = self._render(features, bank, seq_v, view_idx, v) if v else None
        return SyntheticBatch(
            sources=bank.frames(seq_t, src_idx, source_render.image),
            views=bank.frames(seq_v, view_idx, view_render.image) if v else None,
            features=features,
            source_render=source_render,
            view_render=view_render,
            ws=ws,
        )

    def _render(
        self, features: CanonicalFeatures, bank: DriveBank, sequence: Tensor, index: Tensor, per: int
    ) -> PriorRender:
        from invertavatar_core.inversion.pipeline import repeat_features

        return self.prior.render(
            repeat_features(features, per), bank.expression_uv[sequence, index], bank.camera[sequence, index]
        )
