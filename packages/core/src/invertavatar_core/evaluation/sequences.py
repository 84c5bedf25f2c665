"""Frames grouped by sequence: what the evaluation protocols read, and sequences rendered by a prior."""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.plugin.registry import Registry

__all__ = [
    "FrameSequences",
    "SyntheticSequences",
]


@runtime_checkable
class FrameSequences(Protocol):
    """What the protocols read: frames grouped by sequence (``invertavatar_core.data.datasets`` readers)."""

    def sequences(self) -> Mapping[str, Sequence[int]]:
        """Sequence name -> dataset indices of its frames, in time order."""
        ...

    def __getitem__(self, index: int) -> Observation:
        """One frame as an :class:`Observation` of batch 1."""
        ...


class SyntheticSequences:
    """Sequences rendered by a prior: identity ``i`` (a truncated random ``z``) on procedural drive ``i``.

    What ``data.root: null`` means for an evaluation ("synthetic from the prior"): ``sequences``
    drives of ``length`` frames from the experiment's morphable model and rasterizer
    (:meth:`~invertavatar_core.data.synthetic.DriveBank.procedural`), each rendered in time
    order. Numbers on such data check the pipeline; they are not the paper's benchmarks.
    """

    def __init__(
        self,
        experiment: ExperimentConfig,
        registry: Registry,
        prior: Any,
        *,
        sequences: int,
        length: int,
        seed: int = 0,
    ) -> None:
        from invertavatar_core.data.synthetic import DriveBank

        info = prior.info
        generator = torch.Generator().manual_seed(seed)
        drives = DriveBank.procedural(
            registry.create("morphable_model", experiment.morphable_model),
            registry.create("rasterizer", experiment.rasterizer),
            sequences=sequences,
            length=length,
            expression_resolution=info.uv_resolution,
            unwrap_resolution=info.uv_resolution,
            image_resolution=info.image_resolution,
            generator=generator,
        )
        device = next(iter(prior.parameters())).device if hasattr(prior, "parameters") else torch.device("cpu")
        self.frames: list[Observation] = []
        self._sequences: dict[str, list[int]] = {}
        z = torch.randn(sequences, info.z_dim, generator=generator)
        with torch.no_grad():
            for s in range(sequences):
                camera = drives.camera[s].to(device)
                psi = experiment.training.sample_truncation  # synthetic samples' truncation, docs/design/training.md
                ws = prior.mapping(z[s : s + 1].to(device), camera[:1], truncation_psi=psi)
                features = prior.canonical(ws)
                index = torch.arange(length)
                images = torch.cat(
                    [
                        prior.render(features, drives.expression_uv[s, chunk].to(device), camera[chunk])
                        .image.float()
                        .cpu()
                        for chunk in index.split(8)
                    ]
                )
                observation = drives.frames(torch.full((length,), s), index, images.clamp(-1, 1))
                start = len(self.frames)
                self.frames += [observation[t] for t in range(length)]
                self._sequences[f"synthetic{s:03d}"] = list(range(start, start + length))

    def sequences(self) -> Mapping[str, Sequence[int]]:
        """Sequence name -> frame indices."""
        return self._sequences

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Observation:
        """One frame (batch 1)."""
        return self.frames[index]
