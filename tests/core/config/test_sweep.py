"""Sweeps: dotted overrides, name changes reset sub-configs, fail fast, resumable runs."""

import json
import re

import pytest

from invertavatar_core.config.sweep import Sweep, SweepValidationError, apply_overrides, parse_set


def test_parse_set_reads_yaml_scalars():
    assert parse_set("training.lr=1e-4,3e-4") == ("training.lr", [1e-4, 3e-4])
    assert parse_set("aggregator.name=conv_gru,mean") == ("aggregator.name", ["conv_gru", "mean"])
    assert parse_set("encoders.texture=null") == ("encoders.texture", [None])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set("aggregator.name")


def test_changing_name_replaces_the_sub_config():
    base = {"aggregator": {"name": "conv_gru", "kernel_size": 5}}
    assert apply_overrides(base, [("aggregator.name", "mean")]) == {"aggregator": {"name": "mean"}}
    both = apply_overrides(base, [("aggregator.window", 2), ("aggregator.name", "conv_fusion")])
    assert both == {"aggregator": {"name": "conv_fusion", "window": 2}}
    assert base == {"aggregator": {"name": "conv_gru", "kernel_size": 5}}  # not mutated


def test_product_of_axes(registry, experiment_data):
    sweep = Sweep(experiment_data, ["aggregator.name=conv_gru,mean", "seed=1,2,3"], registry)
    assert len(sweep.points) == 6
    assert {p.config.seed for p in sweep.points} == {1, 2, 3}
    assert sweep.points[0].slug == "aggregator.name=conv_gru__seed=1"


def test_one_bad_point_fails_before_anything_runs(registry, experiment_data, tmp_path):
    ran = []
    with pytest.raises(SweepValidationError) as info:
        sweep = Sweep(experiment_data, ["aggregator.name=conv_gru,conv_gur,mean"], registry)
        sweep.run(lambda point, d: ran.append(point) or {}, tmp_path)
    message = str(info.value)
    assert (
        "1 of 3 sweep points are invalid" in message and "conv_gur" in message and "Did you mean 'conv_gru'" in message
    )
    assert ran == [] and not any(tmp_path.iterdir())


def test_every_bad_point_is_listed(registry, experiment_data):
    with pytest.raises(SweepValidationError, match="2 of 2"):
        Sweep(experiment_data, ["aggregator.kernel_size=wide,-1"], registry)


def test_run_writes_one_table_and_resumes(registry, experiment_data, tmp_path):
    sweep = Sweep(experiment_data, ["aggregator.name=conv_gru,conv_fusion,mean"], registry)
    calls = []

    def run_point(point, point_dir):
        calls.append(point.config.aggregator.name)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return {"score": float(len(point.config.aggregator.name))}

    with pytest.raises(RuntimeError):
        sweep.run(run_point, tmp_path)
    rows = sweep.run(run_point, tmp_path)
    # conv_gru finished the first time and is not run again; conv_fusion is retried.
    assert calls == ["conv_gru", "conv_fusion", "conv_fusion", "mean"]
    assert [r["aggregator.name"] for r in rows] == ["conv_gru", "conv_fusion", "mean"]
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0] == "| point | aggregator.name | score |" and len(table) == 5
    assert json.loads((tmp_path / "results.json").read_text())[2]["score"] == 4.0
    saved = json.loads((tmp_path / "aggregator.name=mean" / "config.json").read_text())
    assert saved["aggregator"] == {"name": "mean"}


def test_changed_base_config_reruns_its_points_and_keeps_the_old_run(registry, experiment_data, tmp_path):
    def run_point(point, point_dir):
        return {"seed": float(point.config.seed)}

    sweep = Sweep({**experiment_data, "seed": 1}, ["aggregator.name=conv_gru,mean"], registry)
    assert [r["seed"] for r in sweep.run(run_point, tmp_path)] == [1.0, 1.0]
    (tmp_path / "aggregator.name=mean" / "notes.txt").write_text("mine")
    messages = []
    changed = Sweep({**experiment_data, "seed": 2}, ["aggregator.name=conv_gru,mean"], registry)
    rows = changed.run(run_point, tmp_path, progress=messages.append)
    assert [r["seed"] for r in rows] == [2.0, 2.0]  # not the stale seed-1 rows
    assert json.loads((tmp_path / "aggregator.name=mean" / "config.json").read_text())["seed"] == 2
    # The stale run (and the user's file in it) is kept, not deleted.
    assert (tmp_path / "aggregator.name=mean.stale-1" / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "aggregator.name=mean.stale-1" / "result.json").read_text()) == {"seed": 1.0}
    assert any("changed since its last run" in m for m in messages)
    # Same config again: skipped; different run settings: stale again.
    calls = []
    changed.run(lambda p, d: calls.append(p) or {"seed": 0.0}, tmp_path)
    assert calls == []
    changed.run(lambda p, d: calls.append(p) or {"seed": 0.0}, tmp_path, settings={"stages": ["latent"]})
    assert len(calls) == 2


def test_values_differing_only_in_dropped_characters_get_their_own_folders(registry, experiment_data, tmp_path):
    roots = [tmp_path / "data" / "a b", tmp_path / "data" / "a/b"]
    sweep = Sweep(experiment_data, [f"data.root={roots[0]},{roots[1]}"], registry)
    slugs = [p.slug for p in sweep.points]
    assert len(set(slugs)) == 2 and all(re.fullmatch(r"data.root=[A-Za-z0-9_.=-]+-[0-9a-f]{8}", s) for s in slugs)
    rows = sweep.run(lambda point, d: {"root_length": float(len(str(point.config.data.root)))}, tmp_path / "out")
    assert [r["root_length"] for r in rows] == [float(len(str(r))) for r in roots]
    stored = [json.loads((tmp_path / "out" / s / "config.json").read_text())["data"]["root"] for s in slugs]
    assert stored == [str(r) for r in roots]


def test_names_that_would_collide_or_not_read_back_are_hashed(registry, experiment_data):
    # ``null`` prints as None, like the bare word None: it gets the hash, the string keeps the name.
    sweep = Sweep(experiment_data, ["data.root=null,None"], registry)
    assert sweep.points[1].slug == "data.root=None"
    assert re.fullmatch(r"data.root=None-[0-9a-f]{8}", sweep.points[0].slug)
    # Exact names that still coincide (the separator inside a value): both get the hash.
    sweep = Sweep(experiment_data, ["name=u,u__data.root=v", "data.root=w,v__data.root=w"], registry)
    slugs = [p.slug for p in sweep.points]
    assert slugs[0] == "name=u__data.root=w" and slugs[3] == "name=u__data.root=v__data.root=v__data.root=w"
    assert slugs[1].startswith("name=u__data.root=v__data.root=w-") and slugs[1] != slugs[2]
    assert len(set(slugs)) == 4
    assert Sweep(experiment_data, ["seed=3"], registry).points[0].slug == "seed=3"  # exact names stay plain


def test_a_folder_not_written_by_a_sweep_is_refused_before_anything_runs(registry, experiment_data, tmp_path):
    (tmp_path / "aggregator.name=mean").mkdir()
    (tmp_path / "aggregator.name=mean" / "thesis.tex").write_text("mine")
    sweep = Sweep(experiment_data, ["aggregator.name=conv_gru,mean"], registry)
    ran = []
    with pytest.raises(ValueError, match="not written by a sweep"):
        sweep.run(lambda p, d: ran.append(p) or {}, tmp_path)
    assert ran == [] and (tmp_path / "aggregator.name=mean" / "thesis.tex").read_text() == "mine"
