"""How much memory a training run needs, estimated from its config before any weight is allocated.

The estimate is deliberately conservative (it may refuse a run that would just fit, never the
reverse on the configs in ``configs/``) and is checked before the models are built, so a config
that cannot fit fails in a second with the figure instead of being killed minutes later::

    bytes = BYTES_PER_TRAINED_PARAMETER * P_trained + BYTES_PER_FROZEN_PARAMETER * P_frozen
          + images * (BYTES_PER_IMAGE_PIXEL * R_image^2 + BYTES_PER_NEURAL_PIXEL * R_neural^2)
          + OVERHEAD_BYTES

- ``P_trained`` / ``P_frozen``: parameters of the networks a stage trains / only runs, counted
  exactly by building them on PyTorch's ``meta`` device (shapes only, no storage);
- ``images``: images rendered per optimiser step (the stage's batch times the frames of each item);
- ``R_image``: the largest of the prior's output and the encoders' input resolutions (encoders and
  super-resolution); ``R_neural``: the prior's volume-rendering resolution (rays x depth samples);
- the per-pixel constants bound what the built-in components keep for the backward pass: every
  stage of every runnable file in ``configs/`` peaks below its estimate (``tests/configs``
  measures one step of each with ``resource.getrusage``; estimate over peak: 1.3 to 10), and
  paper-width encoders on the tiny prior peaked at 2.3 GiB against an estimate of 5.3 GiB (batch 2).

The budget is the memory available now (``MemAvailable`` of ``/proc/meminfo``, else the free
physical pages; free device memory on CUDA), or ``INVERTAVATAR_MEMORY_BUDGET`` (bytes, or with a
``K``/``M``/``G`` suffix) when set.
"""

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

__all__ = [
    "BUDGET_ENV",
    "MemoryBudgetError",
    "MemoryEstimate",
    "available_memory",
    "build_on_meta",
    "count_parameters",
    "ensure_fits",
    "format_bytes",
    "parse_bytes",
]

BYTES_PER_TRAINED_PARAMETER = 16
"""fp32 weight, its gradient and Adam's two moments."""
BYTES_PER_FROZEN_PARAMETER = 4
"""fp32 weight only."""
BYTES_PER_IMAGE_PIXEL = 24 * 1024
"""Activations kept per pixel of an image at the prior's output resolution (encoders, super-resolution, losses)."""
BYTES_PER_NEURAL_PIXEL = 96 * 1024
"""Activations kept per ray of the volume renderer (every depth sample's features and decoder layers)."""
OVERHEAD_BYTES = 1 << 30
"""Python, torch and the libraries loaded, plus allocator slack."""
BUDGET_ENV = "INVERTAVATAR_MEMORY_BUDGET"
"""Environment variable overriding the budget (e.g. ``8G``)."""

T = TypeVar("T")

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class MemoryBudgetError(ValueError):
    """A run whose estimated memory exceeds what is available (raised before anything is built)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """The terms of the estimate, in bytes (see the module doc for the formula)."""

    what: str
    """What is estimated, for messages (``train oneshot``)."""
    trained_parameters: int
    frozen_parameters: int
    images: int
    """Images rendered per optimiser step."""
    image_resolution: int
    neural_resolution: int

    @property
    def parameter_bytes(self) -> int:
        """Weights, gradients and optimiser state."""
        return (
            BYTES_PER_TRAINED_PARAMETER * self.trained_parameters + BYTES_PER_FROZEN_PARAMETER * self.frozen_parameters
        )

    @property
    def activation_bytes(self) -> int:
        """Activations kept for the backward pass of one step."""
        per_image = (
            BYTES_PER_IMAGE_PIXEL * self.image_resolution**2 + BYTES_PER_NEURAL_PIXEL * self.neural_resolution**2
        )
        return self.images * per_image

    @property
    def total_bytes(self) -> int:
        """The estimated peak."""
        return self.parameter_bytes + self.activation_bytes + OVERHEAD_BYTES

    def describe(self) -> str:
        """One line: the total and its terms."""
        return (
            f"{self.what} needs about {format_bytes(self.total_bytes)} "
            f"({self.trained_parameters / 1e6:.1f}M trained + {self.frozen_parameters / 1e6:.1f}M frozen parameters: "
            f"{format_bytes(self.parameter_bytes)}; {self.images} images per step at {self.image_resolution} px "
            f"(rendered at {self.neural_resolution} px): {format_bytes(self.activation_bytes)}; "
            f"runtime {format_bytes(OVERHEAD_BYTES)})"
        )


def format_bytes(n: int) -> str:
    """``n`` bytes in GiB (or MiB below one GiB), one decimal."""
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"8GiB"`` or a plain number of bytes -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.I)
    if match is None:
        raise ValueError(f"{BUDGET_ENV}={text!r}: expected a size such as 8G, 512M or 8589934592")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def _proc_meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory(device: torch.device | str = "cpu") -> tuple[int | None, str]:
    """Bytes a run may use now and where the figure comes from; ``None`` when it cannot be told."""
    budget = os.environ.get(BUDGET_ENV)
    if budget:
        return parse_bytes(budget), BUDGET_ENV
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free memory of {device}"
    available = _proc_meminfo_available()
    if available is not None:
        return available, "MemAvailable in /proc/meminfo"
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages"
    except (AttributeError, ValueError, OSError):
        return None, "unknown"


def build_on_meta(build: Callable[[], T]) -> T:
    """What ``build`` returns, with every tensor it creates on the ``meta`` device (shapes only, no storage)."""
    with torch.device("meta"):
        return build()


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """Parameters of ``modules``; a parameter shared between them (tied) counts once."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total


def ensure_fits(estimate: MemoryEstimate, device: torch.device | str = "cpu") -> None:
    """Raise :class:`MemoryBudgetError` naming both figures when ``estimate`` exceeds the available memory."""
    available, source = available_memory(device)
    if available is None or estimate.total_bytes <= available:
        return
    raise MemoryBudgetError(
        f"{estimate.describe()}, but only {format_bytes(available)} is available ({source}); "
        "use a smaller config (configs/tiny, configs/small) or a smaller training.batch_size, "
        f"or set {BUDGET_ENV} to override"
    )
