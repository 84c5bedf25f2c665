"""Multi-process training: process-group setup from torchrun's environment and gradient averaging.

``torchrun --nproc-per-node N invertavatar train ...`` sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :meth:`Runtime.from_env` joins the group
(gloo on CPU, nccl on CUDA). Our components are called through methods other than ``forward``
(``prior.render``, ``encoder.update``), which ``DistributedDataParallel``'s hooks never see, so
the trainer applies DDP's rule explicitly: parameters and buffers start from rank 0, and every
optimiser step averages the gradients of its parameters over all processes first.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Runtime", "average_gradients", "broadcast_module"]


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank, the number of processes and its torch device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    """Whether :meth:`from_env` created the process group (and :meth:`close` should end it)."""

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, samples and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | torch.device | None = None) -> "Runtime":
        """Join the process group torchrun describes (``WORLD_SIZE > 1``), else a single process.

        Args:
            device: ``cpu`` / ``cuda``; ``None`` picks CUDA when available. With several
                processes on CUDA each uses ``cuda:LOCAL_RANK``.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        owns = False
        if world_size > 1 and not dist.is_initialized():
            for key in ("MASTER_ADDR", "MASTER_PORT"):
                if key not in os.environ:
                    raise RuntimeError(f"WORLD_SIZE={world_size} but {key} is not set; launch with torchrun")
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
            owns = True
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns)

    def barrier(self) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average a scalar dict over processes (every rank must pass the same keys)."""
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(packed)
        return {k: float(v) / self.world_size for k, v in zip(keys, packed.tolist(), strict=True)}

    def close(self) -> None:
        """End the process group if this runtime created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every process (in place)."""
    tensors = [t.data for t in list(module.parameters()) + list(module.buffers())]
    _coalesced(tensors, lambda flat: dist.broadcast(flat, src))


def average_gradients(parameters: Iterable[Tensor], world_size: int) -> None:
    """All-reduce-average the gradients of ``parameters`` over the ranks.

    A parameter with a gradient on some ranks only counts as zero on the others (what DDP's
    ``find_unused_parameters`` does); one with no gradient on any rank keeps ``grad = None``, so
    the optimizer skips it as it would in one process (a zero gradient would still move it
    through Adam's momentum or weight decay). Every rank must hold the same parameter list.
    """
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(present)
    grads = []
    for p, ranks_with_grad in zip(params, present.tolist(), strict=True):
        if ranks_with_grad == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)

    def reduce(flat: Tensor) -> None:
        dist.all_reduce(flat)
        flat.div_(world_size)

    _coalesced(grads, reduce)


def _coalesced(tensors: list[Tensor], op) -> None:
    """Run a collective ``op`` on one flat buffer per (device, dtype), then copy the result back."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        op(flat)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n
