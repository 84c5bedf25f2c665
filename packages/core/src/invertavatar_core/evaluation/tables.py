"""Result tables: CSV + Markdown + JSON files, and aligned text tables for the terminal."""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invertavatar_core.io.atomic import atomic_write_text

__all__ = ["format_cell", "format_table", "table_columns", "write_table"]


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names in first-seen order over all rows."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def format_cell(value: Any) -> str:
    """Floats to 4 significant digits, None to an empty cell."""
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An aligned plain-text table for the terminal."""
    columns = list(columns or table_columns(rows))
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def write_table(rows: Sequence[Mapping[str, Any]], stem: str | Path) -> list[Path]:
    """Write rows as ``stem.csv``, ``stem.md`` and ``stem.json``; returns the paths."""
    stem = Path(stem)
    columns = table_columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return [
        atomic_write_text(stem.with_suffix(".csv"), buffer.getvalue()),
        atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n"),
        atomic_write_text(stem.with_suffix(".json"), json.dumps(list(rows), indent=2, default=str) + "\n"),
    ]
