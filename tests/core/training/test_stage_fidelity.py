"""Stages 1-2 train what the paper says: L_raw on all feature channels (Eq. 3), D_W's real codes at data cameras."""

from pathlib import Path

import torch

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.plugin.protocols import PriorRender
from invertavatar_core.training.stages.latent import LatentStage
from invertavatar_core.training.stages.oneshot import OneShotStage
from invertavatar_core.training.trainer import StepContext


def _training(out_dir: Path) -> dict:
    return {"out_dir": str(out_dir), "steps": 1, "log_every": 1, "checkpoint_every": 1, "sample_every": 100}


def _context(stage) -> StepContext:
    scalers = {name: torch.amp.GradScaler("cpu", enabled=False) for name in stage.optimizers}
    return StepContext(0, torch.Generator().manual_seed(3), stage.runtime, "fp32", stage.optimizers, scalers)


def _render(feature_image: torch.Tensor) -> PriorRender:
    b, _, n, _ = feature_image.shape
    return PriorRender(
        image=torch.zeros(b, 3, 2 * n, 2 * n),
        raw=feature_image[:, :3],
        feature_image=feature_image,
        depth=torch.ones(b, 1, n, n),
        triplane=torch.zeros(b, 3, 4, n, n),
    )


def test_l_raw_compares_every_feature_channel(full_registry, tmp_path):
    experiment = preset_experiment(full_registry, "tiny", aggregator=None, training=_training(tmp_path))
    stage = OneShotStage(experiment, full_registry)
    target = torch.rand(2, 32, 8, 8) * 2 - 1
    prediction = target.clone()
    prediction[:, 3:] += 0.25  # RGB identical, the other 29 channels off by 0.25
    prediction.requires_grad_(True)
    total, scalars = stage.eq3_loss([(_render(prediction), _render(target))], None, None)
    assert abs(scalars["raw"] - 0.25 * 29 / 32) < 1e-5  # mean L1 over all 32 channels
    total.backward()
    grad = prediction.grad
    assert grad[:, 3:].abs().min() > 0  # the feature channels are supervised
    assert grad[:, :3].abs().max() == 0  # the identical RGB channels contribute no L_raw gradient


def test_d_w_real_codes_are_mapped_at_the_data_cameras(full_registry, tmp_path):
    experiment = preset_experiment(full_registry, "tiny", aggregator=None, training=_training(tmp_path))
    stage = LatentStage(experiment, full_registry)
    sampled, mapped = [], []
    sample, mapping = stage.sampler.sample, stage.models.prior.mapping

    def recording_sample(*args, **kwargs):
        batch = sample(*args, **kwargs)
        sampled.append(batch.sources.camera.clone())
        mapped.clear()  # only mapping calls after the batch was drawn belong to the step's losses
        return batch

    def recording_mapping(z, camera, *args, **kwargs):
        mapped.append(camera.clone())
        return mapping(z, camera, *args, **kwargs)

    stage.sampler.sample = recording_sample
    stage.models.prior.mapping = recording_mapping
    scalars = stage.step(_context(stage))
    assert "dw_loss" in scalars and len(sampled) == 1
    assert len(mapped) == 1  # the D_W update's real codes
    assert sampled[0].abs().sum() > 0
    torch.testing.assert_close(mapped[0], sampled[0], rtol=0, atol=0)
