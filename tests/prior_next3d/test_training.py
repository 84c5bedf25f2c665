"""GAN training of the prior: R1 against analytic gradients, 200 tiny steps, bit-exact resume, data, CLI."""

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from invertavatar_core.cli import main
from invertavatar_core.config.experiment import default_registry
from invertavatar_core.data.datasets import FitDatasetWriter, FittedFrame
from invertavatar_core.io.checkpoints import load_component
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.trainer import LOG_FILE, Trainer
from invertavatar_prior_next3d.gan_data import DatasetGanData, RandomGanData
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig
from invertavatar_prior_next3d.training import PRIOR_DIR, GanStage, PriorTrainingConfig, r1_regularization

TINY = {"name": "next3d", "preset": "tiny"}


def _config(out_dir: Path, **overrides) -> PriorTrainingConfig:
    values = {
        "prior": TINY,
        "out_dir": out_dir,
        "steps": 4,
        "batch_size": 2,
        "checkpoint_every": 2,
        "log_every": 1,
        "sample_every": 1000,
        "sample_count": 2,
        **overrides,
    }
    return PriorTrainingConfig.model_validate(values, context={"registry": default_registry()})


def _tiny_info():
    return Next3DPrior(Next3DPriorConfig(preset="tiny")).info


class _QuadraticD(nn.Module):
    """``D(x, r) = sum(w * x^2) + sum(v * r^2)``: its input gradient is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 8, 8))
        self.v = nn.Parameter(torch.randn(3, 4, 4))

    def forward(self, image, raw, camera, landmarks=None):
        return (self.w * image.square()).sum((1, 2, 3))[:, None] + (self.v * raw.square()).sum((1, 2, 3))[:, None]


def test_r1_matches_the_analytic_gradient_penalty():
    d = _QuadraticD()
    image, raw = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 4, 4)
    penalty = r1_regularization(d, image, raw, None)
    # dD/dx = 2 w x, dD/dr = 2 v r; R1 = mean_b (|2 w x|^2 + |2 v r|^2).
    expected = ((2 * d.w * image).square().sum((1, 2, 3)) + (2 * d.v * raw).square().sum((1, 2, 3))).mean()
    torch.testing.assert_close(penalty, expected.detach())
    penalty.backward()
    # Its gradient w.r.t. D's weights (double backprop): d/dw mean_b sum 4 w^2 x^2 = mean_b 8 w x^2.
    torch.testing.assert_close(d.w.grad, (8 * d.w * image.square()).mean(0).detach())
    torch.testing.assert_close(d.v.grad, (8 * d.v * raw.square()).mean(0).detach())


def test_schedules(tmp_path):
    stage = GanStage(
        _config(tmp_path / "run", fade_kimg=1.0, blur_fade_kimg=1.0, gpc_fade_kimg=1.0),
        data=RandomGanData(_tiny_info()),
    )
    assert [stage.neural_resolution(n) for n in (0, 500, 1000, 5000)] == [16, 24, 32, 32]  # 64 -> 128 at paper scale
    assert stage.blur_sigma(0) == pytest.approx(10 * 64 / 512) and stage.blur_sigma(1000) == 0.0
    assert stage.swap_probability(0) == pytest.approx(1.0) and stage.swap_probability(2000) == pytest.approx(0.5)
    # Lazy regularisation: Adam's lr and betas are scaled by interval / (interval + 1).
    g = stage.optimizers["G"].param_groups[0]
    assert g["lr"] == pytest.approx(0.0025 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert stage.optimizers["D"].param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)


def _write_dataset(root: Path, info, frames: int = 6) -> Path:
    """A small dataset in the fit layout, from :class:`RandomGanData` samples."""
    writer = FitDatasetWriter(
        root, {"name": "random"}, image_resolution=info.image_resolution, uv_resolution=info.uv_resolution
    )
    batch = RandomGanData(info).sample(frames, torch.Generator().manual_seed(3))
    for i in range(frames):
        writer.add(
            f"seq{i % 2}",
            f"{i:04d}",
            FittedFrame(
                image=batch.image[i],
                camera=batch.camera[i],
                expression_uv=batch.expression_uv[i],
                unwrap_grid=torch.zeros(8, 8, 2),
                visibility=torch.zeros(1, 8, 8),
                identity=torch.zeros(3),
                expression=torch.zeros(4),
            ),
        )
    return root


def _procedural_heads(root: Path, info) -> Path:
    """Procedurally rendered heads from ``invertavatar synth-heads`` (faceverse package), else random frames."""
    if importlib.util.find_spec("invertavatar_faceverse") is None:
        return _write_dataset(root, info)
    args = ["synth-heads", "--out", str(root), "--tiny", "--identities", "2", "--frames-per-identity", "4"]
    size = str(info.image_resolution)
    assert main([*args, "--resolution", size, "--uv-resolution", str(info.uv_resolution)]) == 0
    return root


@pytest.mark.slow
def test_tiny_prior_trains_32_steps(tmp_path):
    info = _tiny_info()
    data = DatasetGanData(_procedural_heads(tmp_path / "data", info), info)
    assert len(data) == 8 or importlib.util.find_spec("invertavatar_faceverse") is None
    config = _config(tmp_path / "run", steps=32, checkpoint_every=16, sample_every=16)
    stage = GanStage(config, data=data)
    start = {k: v.detach().clone() for k, v in stage.G.named_parameters()}
    Trainer(stage, config.trainer_config(), runtime=Runtime(), config=config, progress=False).fit()
    with (tmp_path / "run" / LOG_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 33))
    for key in ("g_loss", "d_loss", "d_real", "d_fake"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    r1 = [float(r["r1"]) for r in rows if r.get("r1")]
    density = [float(r["density_reg"]) for r in rows if r.get("density_reg")]
    assert len(r1) == 2 and len(density) == 8  # every 16th and every 4th step
    assert all(math.isfinite(v) and v >= 0 for v in r1 + density)
    assert [r["neural_resolution"] for r in (rows[0], rows[-1])] == ["16.0", "16.0"]  # 64 images << 1000 kimg
    still = [k for k, v in stage.G.named_parameters() if torch.equal(v, start[k])]
    assert not still, f"parameters that never moved: {still}"
    assert float(stage.G.w_avg.abs().sum()) > 0
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step-00000016.png",
        "step-00000032.png",
    ]
    exported, config_back = load_component(tmp_path / "run" / PRIOR_DIR, default_registry(), "prior")
    assert config_back == config.prior
    for (name, a), b in zip(exported.state_dict().items(), stage.G_ema.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_reproduces_the_next_step_bit_for_bit(tmp_path):
    info = _tiny_info()
    data = RandomGanData(info)
    # Step index 2 runs every phase: G, density reg (every 2nd), D, R1 (every 2nd), EMA.
    options = {"r1_interval": 2, "density_reg_interval": 2, "checkpoint_every": 2}

    def run(out: Path, steps: int, perturb: bool = False) -> GanStage:
        config = _config(out, steps=steps, **options)
        stage = GanStage(config, data=data)
        if perturb:  # everything must come from the checkpoint, not from the constructor
            with torch.no_grad():
                for p in list(stage.G.parameters()) + list(stage.D.parameters()):
                    p.add_(1.0)
        Trainer(
            stage, config.trainer_config(), runtime=Runtime(), config=config, seed=config.seed, progress=False
        ).fit()
        return stage

    straight = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 3, perturb=True)
    for name in ("G", "G_ema", "D"):
        a, b = straight.modules[name].state_dict(), resumed.modules[name].state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"
    for name in ("G", "D"):
        for sa, sb in zip(
            straight.optimizers[name].state.values(), resumed.optimizers[name].state.values(), strict=True
        ):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _one_step(out: Path, precision: str) -> tuple[dict, dict]:
    """One G and D step from the same weights and data; its scalars and each network's update."""
    torch.manual_seed(0)
    config = _config(out, steps=1, precision=precision, r1_interval=1, density_reg_interval=1)
    stage = GanStage(config, data=RandomGanData(_tiny_info()))
    before = {k: [p.detach().clone() for p in stage.modules[k].parameters()] for k in ("G", "D")}
    last = Trainer(stage, config.trainer_config(), config=config, progress=False).fit()
    update = {}
    for k in ("G", "D"):
        after = stage.modules[k].parameters()
        update[k] = torch.cat([(p.detach() - b).flatten() for p, b in zip(after, before[k], strict=True)])
    return last, update


def test_bf16_training_step_follows_the_fp32_step(tmp_path):
    fp32, fp32_update = _one_step(tmp_path / "fp32", "fp32")
    bf16, bf16_update = _one_step(tmp_path / "bf16", "bf16")
    for key in ("g_loss", "d_loss", "r1", "density_reg"):
        assert bf16[key] == pytest.approx(fp32[key], rel=0.05, abs=1e-3), key
    for name in ("G", "D"):
        assert (fp32_update[name] != 0).float().mean() > 0.5, name  # the step moved most weights
        cosine = torch.nn.functional.cosine_similarity(bf16_update[name], fp32_update[name], dim=0)
        assert cosine > 0.9, f"{name}: the bf16 update points elsewhere (cosine {cosine:.3f})"


def test_landmark_conditioned_discriminator(tmp_path):
    info = _tiny_info()
    config = _config(tmp_path / "run", steps=2, landmark_conditioning=True, r1_interval=1)
    stage = GanStage(config, data=RandomGanData(info, landmarks=True))
    assert stage.D.blocks[0].fromrgb.in_channels == 9  # image + raw + contour map (supplement 6.1)
    last = Trainer(stage, config.trainer_config(), runtime=Runtime(), config=config, progress=False).fit()
    assert math.isfinite(last["d_loss"]) and math.isfinite(last["r1"])
    with pytest.raises(ValueError, match="landmark_conditioning needs landmark-contour images"):
        GanStage(config, data=RandomGanData(info))


@pytest.mark.skipif(importlib.util.find_spec("invertavatar_faceverse") is None, reason="synth-heads is in faceverse")
def test_written_landmark_maps_feed_the_deformation_aware_discriminator(tmp_path):
    info = _tiny_info()
    data = DatasetGanData(_procedural_heads(tmp_path / "data", info), info)
    assert data.has_landmarks
    batch = data.sample(3, torch.Generator().manual_seed(0), images=False)
    maps = batch.landmarks
    assert maps.shape == (3, 3, 128, 128) and set(maps.unique().tolist()) == {-1.0, 1.0}
    on = (maps > 0).flatten(2).sum(-1)
    assert (on[:, :2] > 20).all() and (on[:, 2] >= 2).all()  # lip and lid polylines, two iris dots
    config = _config(tmp_path / "run", steps=1, landmark_conditioning=True, r1_interval=1)
    stage = GanStage(config, data=data)
    last = Trainer(stage, config.trainer_config(), runtime=Runtime(), config=config, progress=False).fit()
    assert math.isfinite(last["d_loss"]) and math.isfinite(last["r1"])


def test_dataset_without_landmark_maps_has_no_landmarks(tmp_path):
    info = _tiny_info()
    data = DatasetGanData(_write_dataset(tmp_path / "data", info, frames=2), info)
    assert not data.has_landmarks and data.sample(2, torch.Generator().manual_seed(0)).landmarks is None


def test_dataset_with_other_uv_resolution_is_refused(tmp_path):
    info = _tiny_info()
    writer = FitDatasetWriter(tmp_path / "data", {"name": "x"}, image_resolution=64, uv_resolution=32)
    writer.add(
        "s",
        "0",
        FittedFrame(
            image=torch.zeros(3, 64, 64),
            camera=torch.zeros(25),
            expression_uv=torch.zeros(3, 32, 32),
            unwrap_grid=torch.zeros(4, 4, 2),
            visibility=torch.zeros(1, 4, 4),
            identity=torch.zeros(1),
            expression=torch.zeros(1),
        ),
    )
    with pytest.raises(ValueError, match=r"expression UV renders are \(3, 32, 32\), the prior needs \(3, 64, 64\)"):
        DatasetGanData(tmp_path / "data", info)


def test_cli_trains_and_exports(tmp_path, capsys):
    path = tmp_path / "prior.yaml"
    path.write_text(yaml.safe_dump({"prior": TINY, "batch_size": 2, "sample_every": 1000, "checkpoint_every": 1}))
    code = main(
        [
            "train",
            "prior",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "1",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert (tmp_path / "run" / PRIOR_DIR / "model.safetensors").is_file()
    assert str(tmp_path / "run" / PRIOR_DIR) in capsys.readouterr().out
    path.write_text(yaml.safe_dump({"prior": TINY, "r1_gamma": -1}))
    assert main(["train", "prior", "--config", str(path)]) == 2
    assert "r1_gamma" in capsys.readouterr().err
