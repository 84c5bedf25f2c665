"""Evaluation protocols: frame selection, metric routing, known answers with an oracle inverter, reports."""

import json
from typing import Literal

import pytest
import torch
from evaluation_fakes import eval_experiment, oracle_model

from invertavatar_core.evaluation.metric_set import MetricSet
from invertavatar_core.evaluation.protocols import ProtocolBase, few_shot_indices
from invertavatar_core.evaluation.report import write_report
from invertavatar_core.evaluation.runner import evaluate
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob


def test_few_shot_indices_follow_the_paper_and_scale_down():
    sources, evaluation = few_shot_indices(300, 4, 200, 100)
    assert sources == [0, 66, 133, 199] and evaluation == list(range(200, 300))
    assert few_shot_indices(300, 1, 200, 100)[0] == [0]
    assert few_shot_indices(10, 8, 4, 3)[0] == [0, 1, 2, 3]  # a window shorter than K gives fewer sources
    assert few_shot_indices(6, 2, 4, 3) is None  # too short for window + evaluation frames
    # The ceiling setting draws the sources from the evaluated frames themselves.
    assert few_shot_indices(24, 4, 16, 8, from_evaluated=True) == ([16, 18, 21, 23], list(range(16, 24)))
    assert few_shot_indices(24, 1, 16, 8, from_evaluated=True)[0] == [16]
    assert few_shot_indices(24, 16, 16, 8, from_evaluated=True)[0] == list(range(16, 24))


def test_oracle_reconstructs_exactly_and_rows_have_the_known_answers(eval_registry, fake_prior, rendered):
    experiment = eval_experiment(eval_registry, protocols=["reconstruction", "same_identity"])
    exact = oracle_model(fake_prior, experiment)
    worse = oracle_model(fake_prior, experiment, label="halfway", exact=False)
    report = evaluate(experiment, eval_registry, rendered, models=[exact, worse], progress=False)
    rows = {(r["model"], r["protocol"]): r for r in report.rows}
    same = rows[("oracle", "same_identity")]
    assert (same["sequences"], same["frames"], same["source_frames"]) == (3, 12, 1)  # 3 clips x next 4 frames
    assert same["psnr"] == pytest.approx(100.0)  # identical renders hit the PSNR cap
    assert same["l1"] < 1e-6 and same["ssim"] == pytest.approx(1.0, abs=1e-5)  # batched vs single renders: float noise
    assert rows[("oracle", "reconstruction")]["frames"] == 3
    assert rows[("halfway", "same_identity")]["psnr"] < 90 and rows[("halfway", "same_identity")]["l1"] > 0
    assert exact.inverter.calls == [1, 1, 1, 1, 1, 1]  # one source frame per clip and protocol
    assert same["reconstruct_s"] >= 0
    assert set(report.skipped) == {"lpips", "csim"} and "lpips.backbone_weights" in report.skipped["lpips"]
    assert "lpips" not in same


def test_cross_identity_drops_ground_truth_metrics_and_falls_back_on_driving_uv(eval_registry, fake_prior, rendered):
    experiment = eval_experiment(eval_registry, protocols=["cross_identity"])
    report = evaluate(
        experiment, eval_registry, rendered, models=[oracle_model(fake_prior, experiment)], progress=False
    )
    (row,) = report.rows
    assert (row["protocol"], row["sequences"], row["frames"]) == ("cross_identity", 3, 9)
    assert not {"psnr", "l1", "ssim"} & set(row)
    assert any("no ground truth: l1, psnr, ssim" in n for n in report.notes)
    assert any("own expression UV renders were used" in n and "no driving expression" in n for n in report.notes)
    example = report.examples[("oracle", "cross_identity")][0]
    first = rendered[0].image[0]
    torch.testing.assert_close(example.source, first)  # clip0's first frame is the source ...
    torch.testing.assert_close(example.driving, rendered[8].image[0])  # ... driven by clip1's first frame


def test_few_shot_rows_per_source_count(eval_registry, fake_prior, rendered):
    experiment = eval_experiment(eval_registry, protocols=["few_shot"])
    model = oracle_model(fake_prior, experiment)
    report = evaluate(experiment, eval_registry, rendered, models=[model], progress=False)
    assert [r["source_frames"] for r in report.rows] == [1, 2, 4]
    assert all(r["frames"] == 9 and r["psnr"] == pytest.approx(100.0) for r in report.rows)  # last 3 of 8, x3 clips
    assert model.inverter.calls == [1] * 3 + [2] * 3 + [4] * 3


class ProbeMetric:
    """Records the targets it is given; ``reference`` as a metric class declares it."""

    higher_is_better = True

    def __init__(self, reference):
        self.reference = reference
        self.targets = []

    def reset(self):
        self.targets = []

    def update(self, prediction, target):
        self.targets.append(target)

    def compute(self):
        return float(len(self.targets))


def test_metric_targets_follow_their_reference(eval_registry):
    metrics = MetricSet([], eval_registry, torch.device("cpu"))
    metrics.metrics = {
        "pixels": ProbeMetric("ground_truth"),
        "identity": ProbeMetric("source_identity"),
        "motion": ProbeMetric("driving_motion"),
    }
    output, source, driving = torch.zeros(2, 3, 4, 4), torch.ones(1, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    metrics.update(output, None, source, driving)  # cross-identity: no ground truth
    assert metrics.metrics["pixels"].targets == []
    assert torch.equal(metrics.metrics["identity"].targets[0], source.expand(2, -1, -1, -1))
    assert torch.equal(metrics.metrics["motion"].targets[0], driving)
    truth = torch.full((2, 3, 4, 4), -0.5)
    metrics.update(output, truth, source, driving)  # same identity: everything against the true frame
    assert all(torch.equal(m.targets[-1], truth) for m in metrics.metrics.values())
    assert set(metrics.results(False)) == {"identity", "motion"}


def test_report_files_list_skipped_metrics_and_plots(tmp_path, eval_registry, fake_prior, rendered):
    experiment = eval_experiment(
        eval_registry, protocols=["same_identity", "few_shot"], metrics=["psnr", "lpips", "csim"]
    )
    models = [oracle_model(fake_prior, experiment), oracle_model(fake_prior, experiment, label="halfway", exact=False)]
    report = evaluate(experiment, eval_registry, rendered, models=models, progress=False)
    written = {p.name for p in write_report(report, tmp_path)}
    assert {"results.csv", "results.md", "results.json", "report.md", "report.json"} <= written
    assert {
        "few_shot_psnr_vs_frames.png",
        "qualitative_oracle_same_identity.png",
        "qualitative_halfway_few_shot.png",
    } <= written
    assert len([n for n in written if n.startswith("qualitative_")]) == 4  # per model: same_identity, few_shot at K=4
    for name in written:
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.md").read_text()
    assert "## Skipped metrics" in text and "**lpips**: lpips.backbone_weights is not set" in text
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["skipped"].keys() == {"lpips", "csim"} and len(payload["rows"]) == 2 * (1 + 3)
    csv_header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert csv_header.startswith("model,protocol,source_frames,sequences,frames,psnr")


def test_an_empty_dataset_is_a_clear_error(eval_registry, fake_prior):
    class Empty:
        def sequences(self):
            return {}

        def __getitem__(self, index):
            raise IndexError(index)

    experiment = eval_experiment(eval_registry)
    with pytest.raises(ValueError, match="no sequences"):
        evaluate(experiment, eval_registry, Empty(), models=[oracle_model(fake_prior, experiment)], progress=False)


def test_core_registers_the_paper_protocols_by_name(eval_registry):
    from invertavatar_core.evaluation.protocols import CrossIdentity, FewShot, Reconstruction, SameIdentity

    assert eval_registry.names("evaluation_protocol") == [
        "cross_identity",
        "few_shot",
        "reconstruction",
        "same_identity",
    ]
    experiment = eval_experiment(eval_registry)
    built = [eval_registry.create("evaluation_protocol", c) for c in experiment.evaluation.protocols]
    assert [type(p) for p in built] == [Reconstruction, SameIdentity, CrossIdentity, FewShot]
    assert [p.has_ground_truth for p in built] == [True, True, False, True]
    assert built[3].source_counts() == (1, 2, 4) and built[1].config.driving_frames == 4


class LastFrameConfig(EvaluationProtocolConfig):
    """Reconstruct the last frame of each clip (a third-party protocol)."""

    name: Literal["last_frame"] = "last_frame"


class LastFrame(ProtocolBase):
    def jobs(self, sequences, source_count, report):
        return [EvaluationJob(name, [indices[-1]], [indices[-1]]) for name, indices in sequences]


def test_a_plugin_protocol_runs_by_name(eval_registry, fake_prior, rendered):
    """A third-party protocol (the last frame of each clip, reconstructed) is named in the config like ours."""
    from evaluation_fakes import StubRasterizerPlugin

    from invertavatar_core import build_registry, get_plugin_manager, hookimpl
    from invertavatar_core.testing.fake_prior import FakePriorPlugin

    class Plugin:
        @hookimpl
        def invertavatar_register_evaluation_protocols(self, registrar):
            registrar.add("last_frame", LastFrame, LastFrameConfig, description="last frame, reconstructed")

    pm = get_plugin_manager(autoload=True)
    pm.register(FakePriorPlugin(), name="testing-fake-prior")
    pm.register(StubRasterizerPlugin(), name="testing-stub-rasterizer")
    pm.register(Plugin(), name="acme-last-frame")
    registry = build_registry(pm)
    experiment = eval_experiment(registry, protocols=(), metrics=["psnr"])
    experiment = experiment.model_validate(
        {**experiment.model_dump(mode="json"), "evaluation": {"metrics": ["psnr"], "protocols": ["last_frame"]}},
        context={"registry": registry},
    )
    model = oracle_model(fake_prior, experiment)
    report = evaluate(experiment, registry, rendered, models=[model], progress=False)
    (row,) = report.rows
    assert (row["protocol"], row["sequences"], row["frames"]) == ("last_frame", 3, 3)
    assert row["psnr"] == pytest.approx(100.0)
    example = report.examples[("oracle", "last_frame")][0]
    torch.testing.assert_close(example.source, rendered[7].image[0])  # clip0's last frame


def test_an_unknown_protocol_name_is_a_config_error(eval_registry):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="evaluation.protocols.0") as caught:
        eval_experiment(eval_registry, protocols=(), metrics=["psnr"]).model_validate(
            {"evaluation": {"protocols": ["same_identity_typo"]}}, context={"registry": eval_registry}
        )
    assert "same_identity" in str(caught.value)  # the known names are listed


def test_protocol_settings_written_as_evaluation_keys_still_load_with_a_warning(eval_registry):
    from invertavatar_core.config.experiment import EvaluationConfig

    with pytest.warns(DeprecationWarning, match="moved into the protocols' own configs"):
        config = EvaluationConfig.model_validate(
            {
                "metrics": ["psnr"],
                "protocols": ["same_identity", {"name": "few_shot", "eval_frames": 7}],
                "driving_frames": 3,
                "source_frames": [1, 3],
                "few_shot_eval_frames": 9,
                "cross_driving_frames": 5,  # cross_identity is not run: nothing to move it to
            },
            context={"registry": eval_registry},
        )
    same, few = config.protocols
    assert same.driving_frames == 3
    assert (few.source_frames, few.source_window, few.eval_frames) == ((1, 3), 200, 7)  # explicit setting wins
