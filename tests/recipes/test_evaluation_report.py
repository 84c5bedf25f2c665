"""recipes/evaluation/report.py: evaluate's results become pivoted tables, plots and issue 13's acceptance checks."""

import json
from pathlib import Path

import pytest

from recipe_scripts import load_recipe_script


@pytest.fixture(scope="module")
def report():
    return load_recipe_script("evaluation/report.py", "evaluation_report")


def _row(model, k, head_psnr, protocol="few_shot"):
    return {"model": model, "protocol": protocol, "source_frames": k, "sequences": 8, "frames": 64,
            "head_psnr": head_psnr, "head_ms_ssim": 0.5 + head_psnr / 100, "head_lpips": float("nan"),
            "psnr": head_psnr - 2, "l1": 0.1, "reconstruct_s": 0.01 * k}  # fmt: skip


def _write(folder: Path, rows, skipped=None) -> None:
    folder.mkdir(parents=True)
    payload = {"rows": rows, "skipped": skipped or {}, "notes": ["a note"]}
    (folder / "report.json").write_text(json.dumps(payload))


def test_tables_plots_and_acceptance_from_the_evaluations(report, tmp_path, capsys):
    fig6 = [_row("conv_gru", k, v) for k, v in ((1, 20.0), (2, 20.5), (4, 21.5), (8, 22.0))]
    fig6 += [_row("mean", k, 20.0 + 0.1 * k) for k in (1, 2, 4, 8)] + [
        _row("copy_source", k, 16.0) for k in (1, 2, 4, 8)
    ]
    _write(tmp_path / "eval" / "fig6", fig6, skipped={"head_lpips": "weights not set"})
    table3 = [
        _row("ours", 1, 21.0, "reconstruction"),
        _row("ours", 1, 20.0),
        _row("copy_source", 1, 100.0, "reconstruction"),
    ]
    _write(tmp_path / "eval" / "table3", table3)
    out = tmp_path / "docs"
    assert report.main(["--eval", str(tmp_path / "eval"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # 21.5 >= 20 + 1; 22.0 > 20.8 (mean at 8); 22.0 > 20.0; 20.0 >= 16 + 3.
    assert printed.count("PASS") == 4 and "FAIL" not in printed
    checks = json.loads((out / "report.json").read_text())["acceptance"]
    assert checks[0] == {
        "check": "conv_gru: 4 frames >= 1 frame + 1 dB",
        "figures": "21.50 vs 20.00 + 1",
        "result": "PASS",
    }
    # Fig. 6: a row per metric and model, a column per K; LPIPS (never finite) is left out, as its plot.
    rows = json.loads((out / "fig6.json").read_text())
    assert [(r["metric"], r["model"]) for r in rows[:3]] == [("head_psnr", "conv_gru"), ("head_psnr", "mean"),
                                                              ("head_psnr", "copy_source")]  # fmt: skip
    assert rows[0] == {"metric": "head_psnr", "model": "conv_gru", "K=1": 20.0, "K=2": 20.5, "K=4": 21.5, "K=8": 22.0}
    assert not any(r["metric"] == "head_lpips" for r in rows)
    assert sorted(p.name for p in out.glob("fig6-*.png")) == ["fig6-head_ms_ssim.png", "fig6-head_psnr.png"]
    # Table 3: the reconstruction and driven columns; copying the source has no reconstruction figure.
    table3 = {r["model"]: r for r in json.loads((out / "table3.json").read_text())}
    assert table3["ours"]["recon head_psnr"] == 21.0 and table3["ours"]["driven head_psnr"] == 20.0
    assert table3["copy_source"]["recon head_psnr"] is None
    text = (out / "tables.md").read_text()
    assert "table2/report.json" in text and "skipped head_lpips: weights not set (fig6)" in text
    assert "- a note (fig6, table3)" in text

    # A weaker model fails the checks it misses, with its numbers.
    fig6[2] = _row("conv_gru", 4, 20.5)
    (tmp_path / "eval" / "fig6" / "report.json").write_text(json.dumps({"rows": fig6}))
    assert report.main(["--eval", str(tmp_path / "eval"), "--out", str(out)]) == 0
    assert "FAIL  conv_gru: 4 frames >= 1 frame + 1 dB: 20.50 vs 20.00 + 1" in capsys.readouterr().out


def test_no_evaluation_is_an_error_naming_what_was_looked_for(report, tmp_path, capsys):
    assert report.main(["--eval", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "fig6/report.json" in capsys.readouterr().err and not (tmp_path / "out").exists()
