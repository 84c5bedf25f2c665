"""Finding the data file of a morphable model: a configured path, else the user's weights folder."""

from pathlib import Path

__all__ = ["ModelFileError", "resolve_model_path"]


class ModelFileError(FileNotFoundError):
    """A model's data file is not where the config (or the weights folder) says."""


def resolve_model_path(path: Path | None, default_name: str, component: str, field: str) -> Path:
    """``path`` if set, else ``INVERTAVATAR_WEIGHTS_DIR/default_name``; raises naming what is missing."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise ModelFileError(f"{component}: {field} {path} does not exist")
        return path
    from invertavatar_core.config.settings import RuntimeSettings

    found = RuntimeSettings().find_weights(default_name)
    if found is None:
        raise ModelFileError(
            f"{component}: set `{field}` to the model file (or put {default_name} in INVERTAVATAR_WEIGHTS_DIR); "
            f"it is not shipped with invertavatar"
        )
    return found
