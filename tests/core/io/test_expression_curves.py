"""ARKit naming of expression curves: the mapping of split halves, clipping, refusal, and the JSON/CSV files."""

import csv
import io
import json

import pytest
import torch

from invertavatar_core.io.expression_curves import (
    ARKIT_BLENDSHAPES,
    ExpressionCurves,
    NotArkitNamedError,
    arkit_swift_name,
    curves_csv,
    curves_json,
    non_arkit_names,
    to_arkit,
)


def _curves(names, values, model="m"):
    frames = tuple(range(0, 2 * len(values), 2))
    return ExpressionCurves(tuple(names), torch.tensor(values), frames, tuple(f / 10 for f in frames), model)


def test_arkit_has_52_distinct_shapes_with_paired_sides():
    assert len(ARKIT_BLENDSHAPES) == 52 == len(set(ARKIT_BLENDSHAPES))
    left = {n[:-2] for n in ARKIT_BLENDSHAPES if n.endswith("_L")}
    right = {n[:-2] for n in ARKIT_BLENDSHAPES if n.endswith("_R")}
    assert left == right and len(left) == 18  # 18 paired shapes + 16 single ones
    assert arkit_swift_name("eyeBlink_L") == "eyeBlinkLeft" and arkit_swift_name("jawOpen") == "jawOpen"
    assert len({arkit_swift_name(n) for n in ARKIT_BLENDSHAPES}) == 52


def test_split_halves_are_averaged_missing_shapes_are_zero_and_values_clipped():
    names = ["jawOpen", "browInnerUp_L", "browInnerUp_R", "eyeBlink_L"]
    curves = to_arkit(_curves(names, [[0.5, 0.2, 0.6, 1.4], [-0.1, 0.0, 0.0, 0.3]]))
    assert curves.names == ARKIT_BLENDSHAPES and curves.naming == "arkit"
    column = {n: k for k, n in enumerate(curves.names)}
    torch.testing.assert_close(curves.values[:, column["jawOpen"]], torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(curves.values[:, column["browInnerUp"]], torch.tensor([0.4, 0.0]))
    torch.testing.assert_close(curves.values[:, column["eyeBlink_L"]], torch.tensor([1.0, 0.3]))
    assert curves.clipped == 2  # 1.4 and -0.1
    assert "tongueOut" in curves.not_modelled and "jawOpen" not in curves.not_modelled
    assert len(curves.not_modelled) == 52 - 3
    assert float(curves.values[:, column["tongueOut"]].abs().sum()) == 0
    assert curves.frames == (0, 2) and curves.times == (0.0, 0.2)


def test_a_model_with_other_names_is_refused_naming_it():
    names = ["jaw_open", "smile", "eyeBlink_L"]
    assert non_arkit_names(names) == ["jaw_open", "smile"]
    with pytest.raises(NotArkitNamedError, match=r"morphable model 'procedural' are not ARKit-named .*jaw_open"):
        to_arkit(_curves(names, [[0.1, 0.2, 0.3]], model="procedural"))
    assert non_arkit_names(["browInnerUp", "cheekPuff_L", "cheekPuff_R"]) == []  # whole or split: both ARKit


def test_json_and_csv_hold_one_row_per_frame():
    curves = to_arkit(_curves(["jawOpen", "mouthSmile_R"], [[0.25, 0.5], [0.75, 0.0], [0.0, 1.0]]))
    data = json.loads(curves_json(curves))
    assert data["names"] == list(ARKIT_BLENDSHAPES) and data["naming"] == "arkit"
    assert data["swift_names"]["mouthSmile_R"] == "mouthSmileRight"
    assert [row["frame"] for row in data["frames"]] == [0, 2, 4]
    assert [row["weights"]["jawOpen"] for row in data["frames"]] == [0.25, 0.75, 0.0]
    rows = list(csv.reader(io.StringIO(curves_csv(curves))))
    assert rows[0] == ["frame", "time", *ARKIT_BLENDSHAPES]
    assert len(rows) == 4 and all(len(row) == 54 for row in rows)
    jaw = rows[0].index("jawOpen")
    assert [float(row[jaw]) for row in rows[1:]] == [0.25, 0.75, 0.0]
    assert [float(row[1]) for row in rows[1:]] == [0.0, 0.2, 0.4]
    # The model's own names pass through untouched.
    own = curves_json(_curves(["a", "b"], [[0.1, 2.0]]))
    assert json.loads(own)["names"] == ["a", "b"] and "swift_names" not in json.loads(own)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="for 3 names"):
        ExpressionCurves(("a", "b", "c"), torch.zeros(2, 2), (0, 1), (0.0, 0.1), "m")
