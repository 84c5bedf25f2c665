"""The invertavatar command: plugins, config show/schema, sweep dry runs, clear errors."""

import json

import pytest
import yaml

from invertavatar_core.cli import main

DISTRIBUTIONS = {
    "invertavatar-core",
    "invertavatar-prior-next3d",
    "invertavatar-encoders",
    "invertavatar-aggregators",
    "invertavatar-faceverse",
}


def test_plugins_lists_every_package_with_its_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    found = {row["distribution"] for row in listing["components"]}
    assert DISTRIBUTIONS <= found, f"missing: {DISTRIBUTIONS - found}"
    assert listing["problems"] == [] and listing["conflicts"] == []
    gru = [r for r in listing["components"] if r["name"] == "conv_gru"]
    assert gru == [
        {
            "kind": "aggregator",
            "name": "conv_gru",
            "plugin": "aggregators",
            "distribution": "invertavatar-aggregators",
            "description": "ConvGRU of the paper's Eq. 1 (ours)",
        }
    ]


def test_plugins_table(capsys):
    assert main(["plugins", "--kind", "aggregator"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "DESCRIPTION"]
    assert [line.split()[1] for line in lines[1:]] == ["conv_fusion", "conv_gru", "mean"]


def test_config_schema(capsys):
    assert main(["config", "schema", "aggregator", "conv_gru"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["kernel_size"]["default"] == 3
    assert "Spatial kernel" in schema["properties"]["kernel_size"]["description"]


def test_unknown_name_is_one_clear_line(capsys):
    assert main(["config", "schema", "aggregator", "conv_gur"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invertavatar config: error: unknown aggregator 'conv_gur'")
    assert "Did you mean 'conv_gru'" in err and "\n" not in err


def test_config_show_resolves_defaults(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "cli", "aggregator": {"name": "conv_fusion", "window": 2}}))
    assert main(["config", "show", str(path)]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["aggregator"] == {"name": "conv_fusion", "window": 2, "kernel_size": 3, "negative_slope": 0.2}
    assert resolved["prior"]["name"] == "next3d"


def test_sweep_dry_run_and_fail_fast(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("{}\n")
    assert (
        main(["sweep", "--config", str(path), "--set", "aggregator.name=conv_gru,conv_fusion,mean", "--dry-run"]) == 0
    )
    assert "3 valid points" in capsys.readouterr().out
    assert main(["sweep", "--config", str(path), "--set", "aggregator.name=conv_gru,nope", "--dry-run"]) == 2
    assert "1 of 2 sweep points are invalid" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0 and "invertavatar 0.1.0" in capsys.readouterr().out


def test_a_closed_output_pipe_ends_quietly_without_a_traceback():
    # `invertavatar plugins | head`: the reader is gone before the listing is written.
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "invertavatar_core.cli", "plugins"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141
