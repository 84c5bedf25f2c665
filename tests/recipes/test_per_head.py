"""recipes/evaluation/per_head.py: one row per head, and the rows average to what `evaluate` reports."""

import pytest
import yaml
from recipe_scripts import load_recipe_script

from invertavatar_core.config.experiment import ExperimentConfig, load_experiment
from invertavatar_core.config.presets import preset_experiment_data
from invertavatar_core.evaluation.runner import evaluate
from invertavatar_core.inversion.models import InversionModels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def per_head():
    return load_recipe_script("evaluation/per_head.py", "evaluation_per_head")


def test_per_head_rows_average_to_the_evaluation(per_head, tmp_path, full_registry, capsys):
    faceverse = pytest.importorskip("invertavatar_faceverse.synthetic_heads")
    model_config = full_registry.tiny_config("morphable_model", "procedural")
    heads = faceverse.SyntheticHeadsConfig(identities=2, frames_per_identity=4, resolution=64, uv_resolution=64)
    faceverse.synthesize_heads(
        tmp_path / "heads",
        heads,
        full_registry.create("morphable_model", model_config),
        full_registry.create("rasterizer", "torch"),
        model_config=model_config.model_dump(mode="json"),
        progress=False,
    )
    data = preset_experiment_data(full_registry, "tiny", tmp_path / "model")
    data.update(morphable_model=model_config.model_dump(mode="json"))
    InversionModels.build(ExperimentConfig.model_validate(data, context={"registry": full_registry}),
                          full_registry).save(tmp_path / "model")  # fmt: skip
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({
        "name": "per-head",
        "data": {"root": str(tmp_path / "heads"), "image_resolution": 64},
        "evaluation": {
            "out_dir": str(tmp_path / "eval"),
            "metrics": ["head_psnr", "l1"],
            "protocols": [{"name": "few_shot", "source_frames": [1], "source_window": 2, "eval_frames": 2}],
            "models": [{"label": "ours", "checkpoint": str(tmp_path / "model")}],
        },
    }))  # fmt: skip

    assert per_head.main([str(config), "--frames", "1,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| head | yaw of frame 0 | yaw of scored frames | ours K=1 | ours K=2 |"
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [r[0].strip() for r in rows] == ["id0000", "id0001"]
    k1 = [float(r[3]) for r in rows]

    whole = evaluate(load_experiment(config, full_registry), full_registry, progress=False)
    (row,) = [r for r in whole.rows if r["source_frames"] == 1]
    assert sum(k1) / 2 == pytest.approx(row["head_psnr"], abs=0.006)  # the rows print 2 decimals
    assert per_head.main([str(config), "--models", "nobody"]) == 2
