"""Head-masked metrics on hand-made images: only the head's pixels count, as the evaluation feeds them."""

import math

import pytest
import torch
from safetensors.torch import save_file

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.evaluation.metric_set import MetricSet
from invertavatar_core.evaluation.metrics import (
    LPIPS,
    HeadLPIPS,
    HeadLPIPSConfig,
    HeadMSSSIM,
    HeadMSSSIMConfig,
    HeadPSNR,
    HeadPSNRConfig,
    LPIPSConfig,
    LPIPSNetwork,
    MSSSIMConfig,
    composite_over,
    head_psnr,
    ms_ssim,
    psnr,
)
from invertavatar_core.evaluation.metrics.lpips import TAP_CHANNELS
from invertavatar_core.evaluation.protocols import ModelUnderTest, run_protocol
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.inversion.observation import Observation


def _pair():
    """8x8 images in [-1, 1]: the target grey 0; the prediction off by 0.5 ([0, 1] units: 0.25) on the top rows."""
    target = torch.zeros(2, 3, 8, 8)
    prediction = target.clone()
    prediction[:, :, :2] = 0.5  # rows 0-1 wrong by 0.25 in [0, 1]
    prediction[1, :, 6:] = -1.0  # image 1: rows 6-7 wrong by 0.5 as well, outside the head below
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1.0  # the head: rows 0-3
    return prediction, target, mask


def test_head_psnr_is_the_psnr_of_the_head_pixels_alone():
    prediction, target, mask = _pair()
    # Head MSE: half the head's pixels off by 0.25 -> 0.03125, whatever happens outside the head.
    expected = -10 * math.log10(0.25**2 / 2)
    torch.testing.assert_close(head_psnr(prediction, target, mask), torch.full((2,), expected))
    # The full-frame PSNR mixes in the background: a quarter of the pixels wrong, and more for image 1.
    full = psnr(prediction, target)
    assert full[0] == pytest.approx(-10 * math.log10(0.25**2 / 4)) and full[1] < full[0]
    metric = HeadPSNR(HeadPSNRConfig())
    metric.update(prediction, target, mask)
    assert metric.compute() == pytest.approx(expected) and metric.count == 2
    # A soft mask weighs pixels: the wrong rows at weight 1, the right ones at 0.5 -> MSE 0.0625 * 2 / 3.
    soft = mask.clone()
    soft[:, :, 2:4] = 0.5
    torch.testing.assert_close(head_psnr(prediction, target, soft), torch.full((2,), -10 * math.log10(0.25**2 * 2 / 3)))
    # No mask: the whole frame is the head.
    metric.reset()
    metric.update(prediction, target)
    assert metric.compute() == pytest.approx(float(full.mean()), rel=1e-6)


def test_a_frame_without_head_is_left_out_and_counted():
    prediction, target, mask = _pair()
    mask[1] = 0
    metric = HeadPSNR(HeadPSNRConfig())
    metric.update(prediction, target, mask)
    assert metric.count == 1 and metric.compute() == pytest.approx(-10 * math.log10(0.25**2 / 2))
    assert metric.details() == {"empty_masks": 1.0}
    assert math.isnan(float(head_psnr(prediction, target, mask)[1]))
    metric.reset()
    assert metric.details() == {}


def test_head_ms_ssim_sees_only_the_head():
    config = HeadMSSSIMConfig(scale_weights=(0.5, 0.5), window_size=3, background=1.0)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1.0
    # Anything outside the head is ignored: noise there leaves the score at exactly 1.
    prediction = target + (1 - mask) * torch.randn(1, 3, 32, 32, generator=g)
    metric = HeadMSSSIM(config)
    metric.update(prediction, target, mask)
    assert metric.compute() == pytest.approx(1.0)
    # Inside it, the score is MS-SSIM of both images flat (white) outside the head.
    wrong = target.clone()
    wrong[:, :, 12:16, 12:16] = 1.0
    metric.reset()
    metric.update(wrong, target, mask)
    plain = MSSSIMConfig(scale_weights=(0.5, 0.5), window_size=3)
    expected = ms_ssim(composite_over(wrong, mask, 1.0), composite_over(target, mask, 1.0), plain)
    assert metric.compute() == pytest.approx(float(expected)) and metric.compute() < 0.99


def test_the_mask_must_match_the_images(without_shape_checker):
    prediction, target, mask = _pair()
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        HeadPSNR(HeadPSNRConfig()).update(prediction, target, mask[:, :, :4])


def _configs(registry, *names):
    return [registry.validate_config("metric", {"name": name}) for name in names]


def test_metric_set_passes_head_masks_and_reports_data_without_them(full_registry):
    prediction, target, mask = _pair()
    metrics = MetricSet(_configs(full_registry, "head_psnr", "psnr"), full_registry, torch.device("cpu"))
    metrics.update(prediction, target, target[:1], target, head_mask=mask)
    results = metrics.results(True)
    assert results["head_psnr"] == pytest.approx(-10 * math.log10(0.25**2 / 2))
    assert results["psnr"] == pytest.approx(float(psnr(prediction, target).mean()), rel=1e-6)
    # Frames without masks: the head metric is not measured (NaN, named for the report); the rest is.
    metrics.reset()
    metrics.update(prediction, target, target[:1], target)
    results = metrics.results(True)
    assert math.isnan(results["head_psnr"]) and math.isfinite(results["psnr"]) and metrics.unmasked == {"head_psnr"}
    metrics.reset()
    assert metrics.unmasked == set()


def test_an_evaluation_on_data_without_masks_says_so(full_registry):
    class Frames:
        """Two frames of one sequence, no head masks."""

        def __init__(self):
            self.frames = [
                Observation(
                    image=torch.zeros(1, 3, 8, 8),
                    camera=torch.zeros(1, 25),
                    expression_uv=torch.zeros(1, 3, 4, 4),
                    unwrap_grid=torch.zeros(1, 4, 4, 2),
                    visibility=torch.zeros(1, 1, 4, 4),
                )
                for _ in range(2)
            ]

        def sequences(self):
            return {"clip": [0, 1]}

        def __getitem__(self, index):
            return self.frames[index]

    class Info:
        image_resolution = 8

    class Prior:
        info = Info()

    experiment = preset_experiment(full_registry, "tiny", "unused")
    inverter = full_registry.create("inverter", "copy_source", registry=full_registry, experiment=experiment)
    model = ModelUnderTest("copy", experiment, inverter, Prior(), trained=True)
    protocol = full_registry.create("evaluation_protocol", {"name": "same_identity", "driving_frames": 1})
    metrics = MetricSet(_configs(full_registry, "head_psnr", "l1"), full_registry, torch.device("cpu"))
    report = EvaluationReport()
    row = run_protocol(protocol, model, Frames(), [("clip", [0, 1])], metrics, report, full_registry,
                       torch.device("cpu"), progress=False)  # fmt: skip
    assert math.isnan(row["head_psnr"]) and row["l1"] == 0.0  # copying a grey frame onto a grey frame
    assert any("head_psnr" in note and "no head masks" in note for note in report.notes)


def test_head_lpips_is_lpips_of_the_composites_and_names_its_own_fields(tmp_path):
    net = LPIPSNetwork()
    backbone, heads = tmp_path / "alexnet.safetensors", tmp_path / "heads.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items() if k.startswith("features.")}, str(backbone))
    g = torch.Generator().manual_seed(0)
    save_file({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(TAP_CHANNELS)},
              str(heads))  # fmt: skip
    ok, reason = HeadLPIPS(HeadLPIPSConfig()).available()
    assert not ok and "head_lpips.backbone_weights is not set" in reason
    metric = HeadLPIPS(HeadLPIPSConfig(backbone_weights=backbone, head_weights=heads, background=-1.0))
    plain = LPIPS(LPIPSConfig(backbone_weights=backbone, head_weights=heads))
    g = torch.Generator().manual_seed(1)
    prediction, target = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1.0
    metric.update(prediction, target, mask)
    plain.update(composite_over(prediction, mask, -1.0), composite_over(target, mask, -1.0))
    assert metric.compute() == pytest.approx(plain.compute(), rel=1e-6) and metric.compute() > 0
    metric.reset()  # the same image inside the head: nothing outside it counts
    metric.update(target + (1 - mask) * 0.5, target, mask)
    assert metric.compute() == 0.0
