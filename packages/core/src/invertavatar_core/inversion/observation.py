"""What one batch of frames carries into inversion, training and evaluation.

Produced by ``invertavatar preprocess`` (read back by the dataset readers) or synthesised from the prior.
"""

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["Observation"]


@dataclass(frozen=True)
class Observation:
    """A batch of B frames (of one or several identities), everything channel-first.

    - ``image``: ``(B, 3, H, W)`` RGB in [-1, 1];
    - ``camera``: ``(B, 25)`` EG3D labels;
    - ``expression_uv``: ``(B, 3, Hu, Wu)`` the expression UV render (u, v in [-1, 1], mask);
    - ``unwrap_grid``: ``(B, Ht, Wt, 2)`` texel -> image position in [-1, 1];
    - ``visibility``: ``(B, 1, Ht, Wt)`` in [0, 1];
    - ``identity`` / ``expression`` / ``eyes``: fitted coefficients ``(B, S)``, ``(B, E)``,
      ``(B, n_eye)`` when known (needed to re-render a driving expression on a source identity);
    - ``head_mask``: ``(B, 1, H, W)`` in [0, 1], where the head is (synthetic heads; None when unknown).
    """

    image: Tensor
    camera: Tensor
    expression_uv: Tensor
    unwrap_grid: Tensor
    visibility: Tensor
    identity: Tensor | None = None
    expression: Tensor | None = None
    eyes: Tensor | None = None
    head_mask: Tensor | None = None

    def __post_init__(self) -> None:
        b = self.image.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value.shape[0] != b:
                raise ValueError(f"Observation.{f.name} has batch {value.shape[0]}, image has {b}")
        if self.image.ndim != 4 or self.image.shape[1] != 3:
            raise ValueError(f"Observation.image must be (B, 3, H, W), got {tuple(self.image.shape)}")
        if self.camera.shape[1:] != (25,):
            raise ValueError(f"Observation.camera must be (B, 25), got {tuple(self.camera.shape)}")

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def _map(self, fn) -> "Observation":
        return replace(
            self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}
        )

    def to(self, device: torch.device | str) -> "Observation":
        """The same frames on ``device``."""
        return self._map(lambda t: t.to(device))

    def __getitem__(self, index: int | slice | Tensor) -> "Observation":
        """Frames ``index`` (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(parts: "list[Observation]") -> "Observation":
        """Concatenate along the batch."""
        first = parts[0]
        values = {}
        for f in fields(first):
            items = [getattr(p, f.name) for p in parts]
            values[f.name] = None if any(i is None for i in items) else torch.cat(items)
        return Observation(**values)
