"""Sweeps through the runner: three aggregator names give one table; bad points fail before anything runs."""

import argparse
import json

import pytest
import yaml

from invertavatar_core.cli.sweep import run as run_sweep
from invertavatar_core.config.sweep import Sweep, SweepValidationError
from invertavatar_core.errors import UserError
from invertavatar_core.evaluation.sweep_runner import check_point, evaluation_scalars


def tiny_base(registry) -> dict:
    """A tiny experiment evaluated on two synthetic sequences of four frames (same-identity only)."""
    tiny = lambda kind, name: registry.tiny_config(kind, name).model_dump(mode="json")  # noqa: E731
    return {
        "name": "tiny-sweep",
        "prior": tiny("prior", "next3d"),
        "morphable_model": tiny("morphable_model", "procedural"),
        "rasterizer": tiny("rasterizer", "torch"),
        "encoders": {
            "latent": tiny("encoder", "e4e"),
            "texture": tiny("encoder", "texture_unet"),
            "static": tiny("encoder", "triplane_sft_unet"),
        },
        "aggregator": {"name": "conv_gru"},
        "data": {"root": None, "synthetic_drives": 2, "max_sequence_length": 3},
        "evaluation": {
            "metrics": ["psnr", "l1", "lpips"],
            "protocols": [{"name": "same_identity", "driving_frames": 2}],
        },
    }


def _args(config, out, sets, **extra):
    values = {
        "config": str(config),
        "sets": sets,
        "out": str(out),
        "dry_run": False,
        "stages": [],
        "no_evaluate": False,
        "device": "cpu",
        "no_progress": True,
    }
    return argparse.Namespace(**{**values, **extra})


@pytest.mark.slow
def test_a_sweep_over_three_aggregators_writes_one_table_and_resumes(tmp_path, full_registry, capsys):
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(tiny_base(full_registry)))
    out = tmp_path / "sweep"
    sets = ["aggregator.name=conv_gru,conv_fusion,mean"]
    assert run_sweep(_args(config, out, sets)) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["aggregator.name"] for r in rows] == ["conv_gru", "conv_fusion", "mean"]
    for row in rows:
        assert 0 < row["same_identity/psnr"] < 100 and 0 < row["same_identity/l1"] < 1
        assert row["skipped_metrics"] == "lpips"
    # Same data and seed at every point: only the aggregator differs, and it changes the renders.
    assert len({r["same_identity/psnr"] for r in rows}) == 3 and len({r["same_identity/l1"] for r in rows}) == 3
    assert (out / "results.md").read_text().count("\n") == 2 + 3  # header, rule, three points
    point = out / "aggregator.name=mean"
    assert json.loads((point / "config.json").read_text())["aggregator"]["name"] == "mean"
    assert (point / "evaluation" / "report.md").is_file() and (point / "evaluation" / "results.csv").is_file()
    capsys.readouterr()
    assert run_sweep(_args(config, out, sets)) == 0  # finished points are skipped on rerun
    assert capsys.readouterr().out.count("done before, skipped") == 3


def test_bad_points_fail_before_anything_runs(tmp_path, full_registry):
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(tiny_base(full_registry)))
    out = tmp_path / "sweep"
    with pytest.raises(SweepValidationError, match="1 of 2 sweep points are invalid"):
        run_sweep(_args(config, out, ["aggregator.name=conv_gru,no_such_aggregator"]))
    with pytest.raises(UserError, match="unknown training stage 'pretrain'"):
        run_sweep(_args(config, out, ["aggregator.name=conv_gru,mean"], stages=["pretrain"]))
    with pytest.raises(UserError, match="data.root: folder not found"):
        run_sweep(_args(config, out, ["data.root=/nonexistent/data,null"]))
    assert not out.exists()  # nothing ran, nothing was written


def test_check_point_and_scalar_flattening(full_registry):
    (point,) = Sweep(tiny_base(full_registry), [], full_registry).points
    assert check_point(point) == []
    assert check_point(point, evaluate=False) == ["nothing to do: no training stage and evaluation switched off"]
    rows = [
        {"model": "a", "protocol": "same_identity", "source_frames": 1, "sequences": 2, "frames": 4, "psnr": 20.0},
        {
            "model": "a",
            "protocol": "few_shot",
            "source_frames": 4,
            "sequences": 2,
            "frames": 4,
            "psnr": 21.0,
            "akd": float("nan"),
        },
    ]
    assert evaluation_scalars(rows) == {
        "same_identity/psnr": 20.0,
        "few_shot_k4/psnr": 21.0,
        "few_shot_k4/akd": None,
    }
