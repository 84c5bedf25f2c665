"""Models shipped inside the package: where they live and how to find one by name.

A shipped model is a model checkpoint folder (``InversionModels.save``: ``config.json``,
``prior/``, ``encoders/...``; docs/checkpoints.md) placed in this package directory under its
name, e.g. ``invertavatar_core/pretrained/synth-heads-tiny/``. The wheel carries every file under
``src/invertavatar_core`` (hatchling's default for package data), so a model copied there ships
with ``invertavatar-core``; nothing is ever downloaded. A slot with no model in it is simply
absent: :func:`builtin_model_dir` returns ``None`` and callers fall back (``invertavatar demo``
then uses the tiny preset with random weights and says so).

Put a trained run in the slot with ``python recipes/ship_model.py RUN`` (it rewrites only the
model parts, checks the size limit and that the copy loads back).
"""

from pathlib import Path

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "MAX_SHIPPED_BYTES",
    "builtin_model_dir",
    "pretrained_root",
    "shipped_size",
]

DEFAULT_MODEL = "synth-heads-tiny"
"""The model ``invertavatar demo`` uses when it is present."""
BUILTIN_MODELS: dict[str, str] = {
    DEFAULT_MODEL: "tiny preset (64 px) trained on synthetic procedural heads (recipes/README.md)",
}
"""Name -> what it is, for every slot this package knows (present or not)."""
MAX_SHIPPED_BYTES = 25_000_000
"""Size limit of one shipped model folder (issue 13: 25 MB in all)."""

_ROOT = Path(__file__).resolve().parent
"""This package's directory (a module attribute so tests can point the lookup elsewhere)."""


def pretrained_root() -> Path:
    """The directory that holds the shipped model folders."""
    return _ROOT


def builtin_model_dir(name: str = DEFAULT_MODEL) -> Path | None:
    """The folder of shipped model ``name``, or ``None`` when that slot holds no model checkpoint.

    Raises:
        KeyError: ``name`` is not one of :data:`BUILTIN_MODELS` (the message lists them).
    """
    from invertavatar_core.inversion.models import is_model_checkpoint

    if name not in BUILTIN_MODELS:
        raise KeyError(f"no built-in model named {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}")
    folder = pretrained_root() / name
    return folder if is_model_checkpoint(folder) else None


def shipped_size(folder: str | Path) -> int:
    """Bytes of every file under ``folder`` (what shipping it adds to the wheel, before compression)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
