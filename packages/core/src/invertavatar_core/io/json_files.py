"""Reading the JSON files invertavatar writes and reads (indexes, configs, avatar metadata)."""

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json"]


def read_json(path: str | Path, error: type[Exception] = ValueError) -> Any:
    """``path`` parsed as UTF-8 JSON; a missing file or invalid JSON raises ``error`` with a line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
