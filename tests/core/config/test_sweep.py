"""Sweeps: dotted overrides, name changes reset sub-configs, fail fast, resumable runs."""

import json

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
