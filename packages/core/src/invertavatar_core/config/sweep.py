"""Ablation sweeps: a base config plus dotted overrides, every point validated before any runs.

``--set aggregator.name=conv_gru,conv_fusion,mean --set training.lr=1e-4,3e-4`` gives the
cartesian product (6 points). Values are parsed as JSON, else YAML scalars. Changing a component's ``name``
replaces that sub-config with the new component's defaults plus keys set alongside it in the
same point, because the old component's keys would not validate for the new one.

Each point runs in its own folder, named from its overrides; a name that had to drop characters
(or would be shared by two points) ends in a short hash of the overrides, so no two points share a
folder. A point counts as done only when its folder's stored resolved config (``config.json``)
and run settings (``point.json``) equal the point's own and a ``result.json`` exists: a stale
point (the base config or the settings changed) runs again in a fresh folder, and its earlier
folder is kept, renamed ``<name>.stale-<n>``.
"""

import collections
import copy
import dataclasses
import hashlib
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
    hashed: bool = False
    """Always end the name in the overrides' hash (set by :class:`Sweep` when names collide)."""

    @property
    def slug(self) -> str:
        """A filesystem-safe folder name built from the overrides (``aggregator.name=mean``).

        When the plain name would lose information (characters dropped, a value that does not
        read back as itself), ``-<8 hex digits>`` of the overrides' hash is appended.
        """
        if not self.overrides:
            return "base"
        text = "__".join(f"{k}={v}" for k, v in self.overrides)
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", text)
        exact = slug == text and all(_same_value(_scalar(str(v)), v) for _, v in self.overrides)
        if exact and not self.hashed:
            return slug
        digest = hashlib.sha256(_canonical([list(kv) for kv in self.overrides]).encode()).hexdigest()
        return f"{slug}-{digest[:8]}"


def _same_value(parsed: Any, value: Any) -> bool:
    """``--set`` reading ``str(value)`` gives back ``value``, of the same type (``1`` is not ``"1"``)."""
    return type(parsed) is type(value) and parsed == value


def _canonical(data: Any) -> str:
    """One text per JSON value: sorted keys, no whitespace (non-JSON scalars as their ``str``)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


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
        if leaf == "name" and len(parts) > 1 and node.get("name") != value:  # the experiment's own name is no component
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
        names = collections.Counter(p.slug for p in points)
        points = [dataclasses.replace(p, hashed=True) if names[p.slug] > 1 else p for p in points]
        self.points: tuple[SweepPoint, ...] = tuple(points)

    def run(
        self,
        run_point: Callable[[SweepPoint, Path], Mapping[str, Any]],
        out_dir: str | Path,
        *,
        settings: Mapping[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run every point not finished yet; write ``results.{csv,md,json}``; return the rows.

        ``run_point(point, point_dir)`` returns the point's scalar results; ``settings`` (JSON-able:
        what ``run_point`` does besides the config, e.g. the stages it trains) is stored with the
        point. A point whose folder holds the same config and settings and a ``result.json`` is
        skipped; one with the same config and settings but no result resumes in its folder; a
        stale one starts over in a fresh folder (see the module doc).

        Raises:
            ValueError: a point's folder exists but was not written by a sweep (checked first).
        """
        out_dir = Path(out_dir)
        states = [_folder_state(out_dir / p.slug, p, settings or {}) for p in self.points]
        foreign = [out_dir / p.slug for p, state in zip(self.points, states, strict=True) if state == "foreign"]
        if foreign:
            raise ValueError(
                "sweep output folder(s) exist but were not written by a sweep (no config.json); nothing was run: "
                + ", ".join(str(f) for f in foreign)
            )
        rows = []
        for index, (point, state) in enumerate(zip(self.points, states, strict=True)):
            point_dir = out_dir / point.slug
            label = f"[{index + 1}/{len(self.points)}] {point.slug}"
            if state == "done":
                result = json.loads((point_dir / _RESULT).read_text(encoding="utf-8"))
                if progress:
                    progress(f"{label}: done before, skipped (same config and settings)")
            else:
                if state == "stale":
                    kept = _move_aside(point_dir)
                    if progress:
                        progress(f"{label}: config or settings changed since its last run; that run is kept in {kept}")
                if progress:
                    progress(f"{label}: {'resuming' if state == 'resume' else 'running'}")
                point_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(point_dir / _CONFIG, point.config.model_dump_json(indent=2) + "\n")
                record = _point_record(point, settings or {})
                atomic_write_text(point_dir / _POINT, json.dumps(record, indent=2, default=str) + "\n")
                result = dict(run_point(point, point_dir))
                atomic_write_text(point_dir / _RESULT, json.dumps(result, indent=2) + "\n")
            rows.append({"point": point.slug, **{k: v for k, v in point.overrides}, **result})
        write_table(rows, out_dir / "results")
        return rows


_CONFIG, _POINT, _RESULT = "config.json", "point.json", "result.json"


def _point_record(point: SweepPoint, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"overrides": [list(kv) for kv in point.overrides], "settings": dict(settings)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _folder_state(point_dir: Path, point: SweepPoint, settings: Mapping[str, Any]) -> str:
    """``new`` / ``done`` / ``resume`` (same config, no result yet) / ``stale`` / ``foreign`` (not ours)."""
    if not point_dir.exists() or (point_dir.is_dir() and not any(point_dir.iterdir())):
        return "new"
    if not (point_dir / _CONFIG).is_file():
        return "foreign"
    same = _canonical(_read_json(point_dir / _CONFIG)) == _canonical(json.loads(point.config.model_dump_json()))
    same = same and _canonical(_read_json(point_dir / _POINT)) == _canonical(_point_record(point, settings))
    if not same:
        return "stale"
    return "done" if isinstance(_read_json(point_dir / _RESULT), dict) else "resume"


def _move_aside(point_dir: Path) -> Path:
    """Rename a stale point folder to the first free ``<name>.stale-<n>``; nothing is deleted."""
    n = 1
    while (target := point_dir.with_name(f"{point_dir.name}.stale-{n}")).exists():
        n += 1
    point_dir.rename(target)
    return target
