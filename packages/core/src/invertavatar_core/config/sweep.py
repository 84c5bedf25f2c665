"""Ablation sweeps: a base config plus dotted overrides, every point validated before any runs.

``--set aggregator.name=conv_gru,conv_fusion,mean --set training.lr=1e-4,3e-4`` gives the
cartesian product (6 points). Values are parsed as JSON, else YAML scalars. Changing a component's ``name``
replaces that sub-config with the new component's defaults plus keys set alongside it in the
same point, because the old component's keys would not validate for the new one.
"""

import copy
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.errors import UserError
from invertavatar_core.evaluation.tables import write_table
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.plugin.registry import Registry

__all__ = ["Sweep", "SweepPoint", "SweepValidationError", "apply_overrides", "parse_set"]


class SweepValidationError(UserError, ValueError):
    """One or more sweep points are invalid; the message lists every one."""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its overrides, its validated config and a stable folder name."""

    overrides: tuple[tuple[str, Any], ...]
    config: ExperimentConfig

    @property
    def slug(self) -> str:
        """A filesystem-safe name built from the overrides (``aggregator.name=mean``)."""
        if not self.overrides:
            return "base"
        text = "__".join(f"{k}={v}" for k, v in self.overrides)
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text)


def parse_set(expression: str) -> tuple[str, list[Any]]:
    """``"a.b=1,2"`` -> ``("a.b", [1, 2])``; values are YAML scalars."""
    if "=" not in expression:
        raise ValueError(f"--set expects KEY=VALUE[,VALUE...], got {expression!r}")
    key, _, values = expression.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ValueError(f"--set: {key!r} is not a dotted field path")
    return key, [_scalar(v) for v in values.split(",")]


def _scalar(text: str) -> Any:
    """JSON first (YAML 1.1 reads ``1e-4`` as a string), then YAML (``null``, bare words)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return yaml.safe_load(text) if text else ""


def apply_overrides(base: Mapping[str, Any], overrides: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Apply dotted overrides to a nested mapping (name changes first, see module doc)."""
    data = copy.deepcopy(dict(base))
    ordered = sorted(overrides, key=lambda kv: not kv[0].endswith(".name"))
    for key, value in ordered:
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ValueError(f"--set {key}: {part!r} is not a section")
                node[part] = child
            node = child
        leaf = parts[-1]
        if leaf == "name" and node.get("name") != value:
            node.clear()
        node[leaf] = value
    return data


class Sweep:
    """Expand and validate a sweep; run it with resumable, per-point result rows."""

    def __init__(self, base: Mapping[str, Any], sets: Sequence[str], registry: Registry) -> None:
        self.base = dict(base)
        self.registry = registry
        axes = [parse_set(s) for s in sets]
        keys = [k for k, _ in axes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a key is swept twice: {keys}")
        points, errors = [], []
        for values in itertools.product(*[v for _, v in axes]) if axes else [()]:
            overrides = tuple(zip(keys, values, strict=True))
            try:
                data = apply_overrides(self.base, overrides)
                config = ExperimentConfig.model_validate(data, context={"registry": registry})
            except (ValidationError, ValueError) as exc:
                label = ", ".join(f"{k}={v}" for k, v in overrides) or "base"
                errors.append(f"point [{label}]:\n    " + str(exc).replace("\n", "\n    "))
                continue
            points.append(SweepPoint(overrides, config))
        if errors:
            raise SweepValidationError(
                f"{len(errors)} of {len(errors) + len(points)} sweep points are invalid; nothing was run.\n"
                + "\n".join(errors)
            )
        self.points: tuple[SweepPoint, ...] = tuple(points)

    def run(
        self,
        run_point: Callable[[SweepPoint, Path], Mapping[str, Any]],
        out_dir: str | Path,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run every point not finished yet; write ``results.{csv,md,json}``; return the rows.

        ``run_point(point, point_dir)`` returns the point's scalar results. A finished point
        leaves ``point_dir/result.json`` and is skipped on rerun.
        """
        out_dir = Path(out_dir)
        rows = []
        for index, point in enumerate(self.points):
            point_dir = out_dir / point.slug
            result_file = point_dir / "result.json"
            if result_file.is_file():
                result = json.loads(result_file.read_text())
                if progress:
                    progress(f"[{index + 1}/{len(self.points)}] {point.slug}: done before, skipped")
            else:
                if progress:
                    progress(f"[{index + 1}/{len(self.points)}] {point.slug}: running")
                point_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(point_dir / "config.json", point.config.model_dump_json(indent=2) + "\n")
                result = dict(run_point(point, point_dir))
                atomic_write_text(result_file, json.dumps(result, indent=2) + "\n")
            rows.append({"point": point.slug, **{k: v for k, v in point.overrides}, **result})
        write_table(rows, out_dir / "results")
        return rows
