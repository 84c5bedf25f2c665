"""The mapping network: ``z`` and the 25-d camera label -> ``num_ws`` copies of ``w`` (docs/design/prior.md).

The camera label is embedded by one fully connected layer to ``w_dim``; ``z`` and the embedding
are each normalised to unit second moment and concatenated, then ``num_layers`` fully connected
layers with leaky ReLU and learning-rate multiplier 0.01 give ``w``. The generator's mapping
tracks the running mean ``w_avg`` (the truncation centre); the discriminator's camera mapping
(``z_dim = 0``, ``num_ws = None``) returns one vector per sample and tracks nothing.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_prior_next3d.fully_connected import FullyConnected

__all__ = ["MappingNetwork", "normalize_second_moment"]


def normalize_second_moment(x: Float[Tensor, "B D"], eps: float = 1e-8) -> Float[Tensor, "B D"]:
    """Scale each row to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """``(z (B, z_dim), c (B, c_dim)) -> ws (B, num_ws, w_dim)`` (or ``(B, w_dim)`` when ``num_ws`` is None)."""

    def __init__(
        self,
        *,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 2,  # --map-depth 2, as released
        lr_multiplier: float = 0.01,  # StyleGAN2 mapping learning-rate multiplier
        w_avg_beta: float | None = 0.998,  # StyleGAN2 running-mean decay per call
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork needs z_dim > 0 or c_dim > 0")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnected(c_dim, w_dim) if c_dim else None
        widths = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnected(widths[i], widths[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Float[Tensor, "B Z"] | None,
        c: Float[Tensor, "B C"] | None,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> Tensor:
        """Map to ``w``; ``update_w_avg`` (training) moves ``w_avg`` towards this batch's mean.

        Truncation lerps the first ``truncation_cutoff`` (default: all) of the ``num_ws`` copies
        towards ``w_avg`` by ``truncation_psi``.
        """
        parts = []
        if self.z_dim:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"mapping expects z (B, {self.z_dim}), got {None if z is None else tuple(z.shape)}")
            parts.append(normalize_second_moment(z.float()))
        if self.c_dim:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(
                    f"mapping expects camera (B, {self.c_dim}), got {None if c is None else tuple(c.shape)}"
                )
            parts.append(normalize_second_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs a mapping network that tracks w_avg")
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            head = self.w_avg.to(x.dtype).lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([head, x[:, cutoff:]], dim=1)
        return x
