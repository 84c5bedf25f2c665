"""Where the work runs: the torch device and the CPU thread policy.

Threads: torch's default (one OpenMP worker per core, spin-waiting between parallel regions)
is the slowest choice whenever anything else uses the cores: the spinning workers take the CPU
the others need (``benchmarks/threads.py``: 5-35x slower on 2 shared cores). The policy is
therefore: ``INVERTAVATAR_THREADS`` (or ``--threads``) when given, else :func:`default_threads`
(the usable cores, at most :data:`MAX_DEFAULT_THREADS`, which is 1); OpenMP workers sleep instead
of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the user set a policy. Measured on a quiet
2-core machine, one passive thread beat two on every figure, with and without competing
processes (reconstruction 1.35-1.56x, training step 1.77-1.81x, demo 1.03-1.10x;
``benchmarks/RESULTS.md``): the models' kernels are small, so a second worker mostly adds
synchronisation. Large models on many cores want ``--threads N``.
The OpenMP variables only count when set before torch is imported,
which is why :func:`prepare_threads` imports nothing heavy and ``invertavatar``'s entry point
calls it before any command module imports torch.

Nothing here imports torch at module level.
"""

import os
from dataclasses import dataclass

__all__ = [
    "ENV_THREADS",
    "MAX_DEFAULT_THREADS",
    "ThreadSettings",
    "apply_threads",
    "default_threads",
    "prepare_threads",
    "resolve_device",
    "thread_settings",
]

ENV_THREADS = "INVERTAVATAR_THREADS"
"""Environment variable: torch intra-op threads for invertavatar commands."""

MAX_DEFAULT_THREADS = 1
"""Cap of the default: the models run small kernels, where more workers mostly add synchronisation."""

_WAIT_POLICY = "OMP_WAIT_POLICY"


@dataclass(frozen=True)
class ThreadSettings:
    """The thread policy of this process and where each figure came from."""

    threads: int
    """torch intra-op threads."""
    source: str
    """``--threads``, ``INVERTAVATAR_THREADS`` or ``default``."""
    wait_policy: str
    """``OMP_WAIT_POLICY`` as the OpenMP runtime saw it (``PASSIVE`` unless the user set one)."""


def _parse_threads(value: str | int, origin: str) -> int:
    try:
        threads = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{origin}: expected a whole number of threads >= 1, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"{origin}: expected a whole number of threads >= 1, got {threads}")
    return threads


def default_threads() -> int:
    """Intra-op threads when nothing is asked for: the usable cores, at most :data:`MAX_DEFAULT_THREADS`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(usable, MAX_DEFAULT_THREADS))


def _choose(requested: int | None) -> tuple[int, str]:
    if requested is not None:
        return _parse_threads(requested, "--threads"), "--threads"
    if os.environ.get(ENV_THREADS):
        return _parse_threads(os.environ[ENV_THREADS], ENV_THREADS), ENV_THREADS
    return default_threads(), "default"


def prepare_threads(requested: int | None = None) -> ThreadSettings:
    """Choose the thread count and set the OpenMP environment; call before importing torch for full effect.

    ``requested`` (``--threads``) wins over ``INVERTAVATAR_THREADS``, which wins over
    :func:`default_threads`. ``OMP_NUM_THREADS`` is set to the choice (a user's own value is left
    alone) and ``OMP_WAIT_POLICY`` defaults to ``PASSIVE``. Raises ``ValueError`` for a bad count.
    """
    threads, source = _choose(requested)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault(_WAIT_POLICY, "PASSIVE")
    return ThreadSettings(threads=threads, source=source, wait_policy=os.environ[_WAIT_POLICY])


def apply_threads(settings: ThreadSettings) -> None:
    """Set torch's intra-op thread count (imports torch)."""
    import torch

    if torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)


def thread_settings() -> ThreadSettings:
    """The policy :func:`prepare_threads` would choose now, without changing anything."""
    threads, source = _choose(None)
    return ThreadSettings(threads=threads, source=source, wait_policy=os.environ.get(_WAIT_POLICY, "PASSIVE"))


def resolve_device(requested: str | None = None):
    """The torch device to run on: ``requested``, else ``INVERTAVATAR_DEVICE``, else CUDA when available.

    Raises ``ValueError`` with one line saying why when the device cannot be used here (an unknown
    name, CUDA asked of a CPU-only torch or of a machine without a GPU, an index past the last GPU).
    """
    import torch

    from invertavatar_core.config.settings import RuntimeSettings

    name = requested or RuntimeSettings().device
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if torch.version.cuda is None:
            raise ValueError(
                f"--device {name}: this torch ({torch.__version__}) was built without CUDA; use --device cpu "
                "or install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"--device {name}: unsupported device type {device.type!r} (use cpu or cuda)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device
