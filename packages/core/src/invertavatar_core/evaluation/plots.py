"""PNG figures of evaluations: metric versus number of source frames (Fig. 6), qualitative and image grids.

matplotlib runs with its non-interactive Agg backend (no display needed); files are written
atomically.
"""

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invertavatar_core.io.atomic import atomic_write_bytes

__all__ = [
    "MIN_RELATIVE_SPAN",
    "metric_axis_limits",
    "plot_metric_vs_frames",
    "save_image_grid",
    "save_qualitative_grid",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


MIN_RELATIVE_SPAN = 0.05
"""The metric axis spans at least this fraction of the largest value, around the values' middle."""


def metric_axis_limits(values: Sequence[float]) -> tuple[float, float] | None:
    """Y limits for a metric plot, or None to let matplotlib choose.

    Matplotlib stretches any spread to fill the axis, so differences a thousand times smaller than
    the values (noise of an untrained model) would read as a trend; a spread below
    :data:`MIN_RELATIVE_SPAN` of the largest magnitude is drawn on an axis that wide instead.
    """
    low, high = min(values), max(values)
    half = MIN_RELATIVE_SPAN * max(abs(low), abs(high)) / 2
    if half == 0 or high - low >= 2 * half:
        return None
    middle = (low + high) / 2
    return middle - half, middle + half


def plot_metric_vs_frames(
    rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, *, group: str = "model", x: str = "source_frames"
) -> Path:
    """One line per ``group`` value (model / aggregator): ``metric`` against the number of source frames.

    Args:
        rows: table rows holding ``group``, ``x`` and ``metric`` (rows without a finite value are left out).
        metric: the column plotted.
        path: the PNG to write.
        group: the column that names a line.
        x: the column on the horizontal axis (log2 scale).
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.0, 3.6))
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            lines.setdefault(str(row[group]), []).append((float(row[x]), float(value)))
    if not lines:
        raise ValueError(f"plot_metric_vs_frames: no row has a finite {metric!r}")
    for label, points in lines.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    limits = metric_axis_limits([p[1] for points in lines.values() for p in points])
    if limits is not None:
        axes.set_ylim(*limits)
    ticks = sorted({p[0] for points in lines.values() for p in points})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks)
    axes.set_xticklabels([f"{t:g}" for t in ticks])
    axes.ticklabel_format(axis="y", useOffset=False)  # absolute values, not "+1.57e1" offsets
    axes.set_xlabel("number of source frames")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} vs source frames")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _to_display(image) -> np.ndarray:
    """``(3, H, W)`` tensor in [-1, 1] -> ``(H, W, 3)`` float array in [0, 1]."""
    return ((image.detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()


def save_qualitative_grid(examples: Sequence[Any], path: str | Path, *, title: str = "") -> Path:
    """A grid with one row per example and columns source / driving / output.

    Args:
        examples: objects with ``source``, ``driving`` and ``output`` ``(3, H, W)`` images in [-1, 1].
        path: the PNG to write.
        title: figure title.
    """
    if not examples:
        raise ValueError("save_qualitative_grid: no examples")
    plt = _pyplot()
    columns = ("source", "driving", "output")
    figure, axes = plt.subplots(len(examples), 3, figsize=(3 * 2.2, len(examples) * 2.2), squeeze=False)
    for r, example in enumerate(examples):
        for c, name in enumerate(columns):
            axis = axes[r][c]
            axis.imshow(_to_display(getattr(example, name)), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(name)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def save_image_grid(
    rows: Sequence[Sequence[Any]],
    path: str | Path,
    *,
    column_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """A grid of ``(3, H, W)`` images in [-1, 1], ``rows[r][c]``, with titled columns and labelled rows.

    Args:
        rows: equally long rows of images.
        path: the PNG to write.
        column_titles: one per column, over the first row.
        row_titles: one per row, left of it.
        title: figure title.
    """
    if not rows or not rows[0]:
        raise ValueError("save_image_grid: no images")
    columns = len(rows[0])
    if any(len(row) != columns for row in rows):
        raise ValueError(f"save_image_grid: rows of different lengths {[len(row) for row in rows]}")
    for name, labels, count in (("column_titles", column_titles, columns), ("row_titles", row_titles, len(rows))):
        if labels is not None and len(labels) != count:
            raise ValueError(f"save_image_grid: {len(labels)} {name} for {count}")
    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), columns, figsize=(columns * 2.0, len(rows) * 2.0), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.imshow(_to_display(image), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0 and column_titles is not None:
                axis.set_title(column_titles[c], fontsize=9)
            if c == 0 and row_titles is not None:
                axis.set_ylabel(row_titles[r], fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)
