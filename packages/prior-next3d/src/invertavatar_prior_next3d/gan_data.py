"""What the GAN training draws each step: real images with their cameras, and drives for the fakes.

A *drive* is what a fake is generated with: a camera (rendering pose, and conditioning pose
unless swapped) and an expression UV render, both taken from the data as EG3D takes its
conditioning labels from the dataset; a landmark-contour image comes along when the data has
one (the deformation-aware discriminator; ``fit`` and ``synth-heads`` write them, see
docs/dataset-layout.md). Two sources:

- :class:`DatasetGanData`: frames of a dataset in the layout ``invertavatar preprocess`` writes (or the
  official layout, docs/dataset-layout.md), read through :func:`invertavatar_core.data.datasets.open_dataset`;
  ``invertavatar synth-heads`` writes procedurally rendered heads in that layout;
- :class:`MultiViewData`: the same frames held in memory with what supervised pre-training needs
  (the head mask of each frame, which identity it shows, each identity's painted albedo), drawn
  as several views of a few identities at a time;
- :class:`RandomGanData`: smooth random images, random look-at cameras and elliptic expression
  renders with a random mouth opening, for smoke tests of the training machinery only.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from invertavatar_core.plugin.protocols import PriorFeatureInfo
from invertavatar_prior_next3d.resample import resize

__all__ = ["DatasetGanData", "GanBatch", "GanData", "MultiViewData", "RandomGanData"]


@dataclass(frozen=True)
class GanBatch:
    """One batch of frames (real samples, or drives for fakes).

    ``image (B, 3, R, R)`` in [-1, 1] (None for drives), ``camera (B, 25)``, ``expression_uv
    (B, 3, Hu, Hu)``, ``landmarks (B, 3, h, w)`` contour image or None; from
    :class:`MultiViewData` also ``mask (B, 1, R, R)`` (the head), ``identity_index (B,)`` (which
    identity of the data set) and ``texture (B, 3, T, T)`` (its painted albedo in [-1, 1]).
    """

    image: Tensor | None
    camera: Tensor
    expression_uv: Tensor
    landmarks: Tensor | None = None
    mask: Tensor | None = None
    identity_index: Tensor | None = None
    texture: Tensor | None = None


@runtime_checkable
class GanData(Protocol):
    """A source of training batches; all randomness comes from the given generator."""

    has_landmarks: bool
    """Whether batches carry landmark-contour images."""

    def sample(self, count: int, generator: torch.Generator, *, images: bool = True) -> GanBatch:
        """``count`` random frames (``images=False``: drives only, no image is read)."""
        ...


class RandomGanData:
    """Random smooth images, look-at cameras and elliptic expression renders (machinery tests only)."""

    def __init__(
        self,
        info: PriorFeatureInfo,
        *,
        device: torch.device | str = "cpu",
        yaw: float = 0.4,
        pitch: float = 0.25,
        landmarks: bool = False,
    ) -> None:
        """``landmarks``: also return random sparse 3-channel contour images (at the neural resolution)."""
        self.info, self.device, self.yaw, self.pitch = info, torch.device(device), yaw, pitch
        self.has_landmarks = landmarks

    def sample(self, count: int, generator: torch.Generator, *, images: bool = True) -> GanBatch:
        """``count`` random frames."""
        from invertavatar_core.geometry.cameras import look_at_camera

        yaw = (torch.rand(count, generator=generator) * 2 - 1) * self.yaw
        pitch = (torch.rand(count, generator=generator) * 2 - 1) * self.pitch
        camera = look_at_camera(yaw, pitch).float()
        opening = torch.rand(count, generator=generator) * 0.25
        expression_uv = _elliptic_expression(self.info.uv_resolution, opening)
        image = None
        if images:
            coarse = torch.randn(count, 3, 8, 8, generator=generator)
            image = torch.tanh(resize(coarse, self.info.image_resolution))
            image = image.to(self.device)
        landmarks = None
        if self.has_landmarks:
            n = self.info.neural_resolution
            landmarks = (torch.rand(count, 3, n, n, generator=generator) > 0.95).float() * 2 - 1
            landmarks = landmarks.to(self.device)
        return GanBatch(
            image=image, camera=camera.to(self.device), expression_uv=expression_uv.to(self.device), landmarks=landmarks
        )


def _elliptic_expression(resolution: int, opening: Tensor) -> Tensor:
    """``(N, 3, R, R)``: an elliptic face mask with a UV ramp and a mouth hole of height ``opening``."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij")
    face = (xs / 0.8) ** 2 + (ys / 0.9) ** 2 < 1
    mouth = (xs / 0.3) ** 2 + ((ys - 0.45) / opening.clamp_min(1e-3)[:, None, None]) ** 2 < 1
    mask = (face & ~(mouth & (opening[:, None, None] > 1 / resolution))).float()
    uv = torch.stack([xs * 0.9, ys * 0.9]).unsqueeze(0) * mask.unsqueeze(1)
    return torch.cat([uv, mask.unsqueeze(1)], dim=1)


class DatasetGanData:
    """Frames of a fitted dataset, read on demand: every frame is both a real sample and a drive."""

    def __init__(self, root: str | Path, info: PriorFeatureInfo, *, device: torch.device | str = "cpu") -> None:
        from invertavatar_core.data.datasets import open_dataset

        self.root, self.info, self.device = Path(root), info, torch.device(device)
        self.dataset = open_dataset(self.root, image_resolution=info.image_resolution)
        if len(self.dataset) == 0:
            raise ValueError(f"{self.root}: the dataset holds no frames")
        self.has_landmarks = self.dataset.has_landmark_maps
        """Whether every frame stores a landmark-contour image (``fit`` / ``synth-heads`` write them)."""
        hu = info.uv_resolution
        shape = tuple(self.dataset[0].expression_uv.shape[1:])
        if shape != (3, hu, hu):
            raise ValueError(
                f"{self.root}: expression UV renders are {shape}, the prior needs (3, {hu}, {hu}) "
                f"(its info.uv_resolution); write the dataset with that UV resolution"
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, count: int, generator: torch.Generator, *, images: bool = True) -> GanBatch:
        """``count`` frames drawn uniformly with replacement."""
        index = torch.randint(len(self.dataset), (count,), generator=generator).tolist()
        frames = [self.dataset[i] for i in index]
        image = torch.cat([f.image for f in frames]).to(self.device) if images else None
        landmarks = None
        if self.has_landmarks:
            landmarks = torch.cat([self.dataset.landmark_map(i) for i in index]).to(self.device)
        return GanBatch(
            image=image,
            camera=torch.cat([f.camera for f in frames]).to(self.device),
            expression_uv=torch.cat([f.expression_uv for f in frames]).to(self.device),
            landmarks=landmarks,
        )


class MultiViewData:
    """A synthetic-heads data set in memory: random frames, or ``views`` frames of each of a few identities.

    Needs what ``invertavatar synth-heads`` writes: ``head_mask`` in every frame and
    ``textures/<sequence>.png`` per identity. Identities are the sequences, numbered in
    ``dataset.json`` order (the auto-decoder's latent rows).
    """

    has_landmarks = False

    def __init__(self, root: str | Path, info: PriorFeatureInfo, *, device: torch.device | str = "cpu") -> None:
        from invertavatar_core.data.datasets import open_dataset
        from invertavatar_core.io.media import read_image

        self.root, self.info, self.device = Path(root), info, torch.device(device)
        dataset = open_dataset(self.root, image_resolution=info.image_resolution)
        sequences = dataset.sequences()
        if not sequences:
            raise ValueError(f"{self.root}: the dataset holds no frames")
        first = dataset[0]
        hu = info.uv_resolution
        if tuple(first.expression_uv.shape[1:]) != (3, hu, hu):
            raise ValueError(
                f"{self.root}: expression UV renders are {tuple(first.expression_uv.shape[1:])}, the prior needs "
                f"(3, {hu}, {hu}); write the dataset with --uv-resolution {hu}"
            )
        if first.head_mask is None:
            raise ValueError(f"{self.root}: frames hold no head_mask; write the data with `invertavatar synth-heads`")
        missing = [name for name in sequences if not (self.root / "textures" / f"{name}.png").is_file()]
        if missing:
            raise ValueError(f"{self.root}/textures: no painted albedo for {missing[:3]}; written by synth-heads")
        self.names = list(sequences)
        """Sequence name of each identity index."""
        frames = [dataset[i] for indices in sequences.values() for i in indices]
        self.image = torch.cat([f.image for f in frames])
        self.mask = torch.cat([f.head_mask for f in frames])
        self.camera = torch.cat([f.camera for f in frames])
        self.expression_uv = torch.cat([f.expression_uv for f in frames])
        self.identity_index = torch.cat(
            [torch.full((len(indices),), k, dtype=torch.int64) for k, indices in enumerate(sequences.values())]
        )
        self.textures = torch.stack([read_image(self.root / "textures" / f"{name}.png") for name in self.names])
        self.frames_of = [torch.nonzero(self.identity_index == k)[:, 0] for k in range(len(self.names))]

    def __len__(self) -> int:
        return len(self.image)

    @property
    def identities(self) -> int:
        """Number of identities (sequences)."""
        return len(self.names)

    def _batch(self, index: Tensor, images: bool) -> GanBatch:
        ids = self.identity_index[index]
        return GanBatch(
            image=self.image[index].to(self.device) if images else None,
            camera=self.camera[index].to(self.device),
            expression_uv=self.expression_uv[index].to(self.device),
            mask=self.mask[index].to(self.device) if images else None,
            identity_index=ids.to(self.device),
            texture=self.textures[ids].to(self.device) if images else None,
        )

    def sample(self, count: int, generator: torch.Generator, *, images: bool = True) -> GanBatch:
        """``count`` frames drawn uniformly with replacement."""
        return self._batch(torch.randint(len(self), (count,), generator=generator), images)

    def sample_views(self, identities: int, views: int, generator: torch.Generator) -> GanBatch:
        """``identities`` distinct identities x ``views`` of their frames each, identity-major."""
        chosen = torch.randperm(self.identities, generator=generator)[: min(identities, self.identities)]
        index = []
        for k in chosen.tolist():
            frames = self.frames_of[k]
            index.append(frames[torch.randint(len(frames), (views,), generator=generator)])
        return self._batch(torch.cat(index), True)
