"""Machine-local settings (never part of an experiment config): env prefix ``INVERTAVATAR_``.

Example: ``INVERTAVATAR_WEIGHTS_DIR=/data/weights`` or ``INVERTAVATAR_DEVICE=cuda``.
"""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RuntimeSettings"]


class RuntimeSettings(BaseSettings):
    """Where things are on this machine and what to run on."""

    model_config = SettingsConfigDict(
        env_prefix="INVERTAVATAR_", env_nested_delimiter="__", extra="ignore", use_attribute_docstrings=True
    )

    data_root: Path | None = None
    """Default folder for datasets."""
    weights_dir: Path | None = None
    """Folder searched for user-supplied pretrained files (IR-SE-50, LPIPS, FaceVerse, ...)."""
    cache_dir: Path = Path.home() / ".cache" / "invertavatar"
    """Scratch space (converted assets, intermediate renders)."""
    device: str | None = None
    """Torch device when ``--device`` is not given; unset: CUDA when available, else the CPU."""

    def find_weights(self, filename: str) -> Path | None:
        """``weights_dir/filename`` if it exists, else None."""
        if self.weights_dir is None:
            return None
        candidate = self.weights_dir / filename
        return candidate if candidate.is_file() else None
