"""What an evaluation produced (rows, skipped metrics, notes, qualitative examples) and how it is written."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = [
    "EvaluationReport",
    "QualitativeExample",
    "write_report",
]


@dataclass(frozen=True)
class QualitativeExample:
    """One row of a qualitative grid: ``(3, H, W)`` images in [-1, 1] on the CPU."""

    source: Tensor
    driving: Tensor
    output: Tensor


@dataclass
class EvaluationReport:
    """Everything an evaluation produced: table rows, skipped metrics with reasons, notes, examples."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)
    """Names of the metrics that ran."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric name -> why it did not run."""
    notes: list[str] = field(default_factory=list)
    """Other things a reader of the numbers must know (fresh weights, fallbacks, skipped clips)."""
    examples: dict[tuple[str, str], list[QualitativeExample]] = field(default_factory=dict)
    """``(model label, protocol)`` -> qualitative rows."""

    def note(self, text: str) -> None:
        """Add a note once."""
        if text not in self.notes:
            self.notes.append(text)


def write_report(
    report: EvaluationReport, out_dir: str | Path, *, plot_metrics: Sequence[str] | None = None
) -> list[Path]:
    """Write ``results.{csv,md,json}``, ``report.{md,json}`` and the PNG plots; returns the paths.

    Args:
        report: what :func:`evaluate` returned.
        out_dir: the folder (created).
        plot_metrics: columns plotted against the number of source frames (default: every
            metric that ran, and ``reconstruct_s``).
    """
    import json

    from invertavatar_core.evaluation.plots import plot_metric_vs_frames, save_qualitative_grid
    from invertavatar_core.evaluation.tables import write_table
    from invertavatar_core.io.atomic import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(write_table(report.rows, out_dir / "results")) if report.rows else []
    plots = []
    few_shot = [r for r in report.rows if r["protocol"] == "few_shot"]
    candidates = plot_metrics or [*report.measured, "reconstruct_s"]
    for metric in candidates:
        if any(isinstance(r.get(metric), float) and math.isfinite(r[metric]) for r in few_shot):
            plots.append(plot_metric_vs_frames(few_shot, metric, out_dir / f"few_shot_{metric}_vs_frames.png"))
    for (label, protocol), examples in report.examples.items():
        if examples:
            slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
            plots.append(
                save_qualitative_grid(
                    examples, out_dir / f"qualitative_{slug}_{protocol}.png", title=f"{label}: {protocol}"
                )
            )
    written += plots
    lines = ["# Evaluation", ""]
    if report.rows:
        lines += [(out_dir / "results.md").read_text(encoding="utf-8").rstrip(), ""]
    lines += ["## Skipped metrics", ""]
    lines += [f"- **{name}**: {reason}" for name, reason in report.skipped.items()] or ["- none"]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report.notes] or ["- none"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    written.append(atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n"))
    payload = {
        "rows": report.rows,
        "measured": report.measured,
        "skipped": report.skipped,
        "notes": report.notes,
        "plots": [p.name for p in plots],
    }
    written.append(atomic_write_text(out_dir / "report.json", json.dumps(payload, indent=2, default=str) + "\n"))
    return written
