"""Encoder training stages 1-3 on the tiny preset: they run, write the model checkpoint, resume after a crash."""

from pathlib import Path

import pytest
import torch

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.inversion.models import InversionModels, is_model_checkpoint
from invertavatar_core.training.stages.incremental import IncrementalStage, supervised_indices, train_incremental
from invertavatar_core.training.stages.latent import train_latent
from invertavatar_core.training.stages.oneshot import OneShotStage, train_oneshot
from invertavatar_core.training.state import latest_checkpoint


def _training(out_dir: Path, **kw) -> dict:
    return {"out_dir": str(out_dir), "steps": 2, "log_every": 1, "checkpoint_every": 2, "sample_every": 2, **kw}


def test_three_stages_chain_through_model_checkpoints(full_registry, tmp_path, caplog):
    stage1 = preset_experiment(full_registry, "tiny", aggregator=None, training=_training(tmp_path / "s1"))
    scalars = train_latent(stage1, full_registry, progress=False)
    assert "training.prior_weights is not set: the prior has RANDOM weights" in caplog.text
    caplog.clear()
    assert {"l1", "latent_adv", "w_delta", "dw_loss"} <= scalars.keys()
    assert is_model_checkpoint(tmp_path / "s1") and (tmp_path / "s1" / "samples" / "step-00000002.png").is_file()

    stage2 = preset_experiment(
        full_registry,
        "tiny",
        aggregator=None,
        training=_training(tmp_path / "s2", init_from=str(tmp_path / "s1"), adversarial=True),
    )
    scalars = train_oneshot(stage2, full_registry, progress=False)
    assert "RANDOM weights" not in caplog.text  # the prior came from stage 1's checkpoint
    # The tiny preset has no LPIPS weights: the MS-SSIM stand-in is logged under its own name.
    assert {"l1", "perceptual_ms_ssim", "raw", "tex", "tri", "adv", "d_loss", "d_r1"} <= scalars.keys()
    assert "lpips" not in scalars
    s1 = InversionModels.load(tmp_path / "s1", full_registry)
    s2 = InversionModels.load(tmp_path / "s2", full_registry)
    for a, b in zip(s1.latent.parameters(), s2.latent.parameters(), strict=True):
        assert torch.equal(a, b)  # E_latent is frozen in stage 2 and came from stage 1

    stage3 = preset_experiment(
        full_registry, "tiny", training=_training(tmp_path / "s3", init_from=str(tmp_path / "s2"))
    )
    stage = IncrementalStage(stage3, full_registry)
    trunk_before = [p.detach().clone() for p in stage.models.texture.trunk.parameters()]
    assert all(not p.requires_grad for p in stage.models.texture.trunk.parameters())
    for a, b in zip(s2.texture.trunk.parameters(), stage.models.texture.trunk.parameters(), strict=True):
        assert torch.equal(a, b)  # initialised from stage 2
    scalars = train_incremental(stage3, full_registry, progress=False)
    assert 2 <= scalars["frames"] <= 4
    s3 = InversionModels.load(tmp_path / "s3", full_registry)
    for a, b in zip(trunk_before, s3.texture.trunk.parameters(), strict=True):
        assert torch.equal(a, b)  # the trunk stayed frozen
    for part in ("latent", "prior"):  # frozen in stage 3: exactly stage 2's
        for (name, a), b in zip(getattr(s2, part).named_parameters(), getattr(s3, part).parameters(), strict=True):
            assert torch.equal(a, b), f"{part}.{name} moved"
    for part in ("texture", "static"):  # every decoder weight carried over from stage 2 learned
        before = {n: p for n, p in getattr(s2, part).named_parameters() if not n.startswith("trunk.")}
        after = dict(getattr(s3, part).named_parameters())
        carried = before.keys() & after.keys()
        assert len(carried) > 0.5 * len(before), f"{part}: stage 3 lost stage 2's decoder"
        still = sorted(n for n in carried if torch.equal(before[n], after[n]))
        assert not still, f"{part}: trainable parameters that did not move: {still}"


class Crash(RuntimeError):
    """A simulated crash mid-training."""


def test_stage2_resumes_after_a_crash_exactly(full_registry, tmp_path, monkeypatch):
    original = OneShotStage.step

    def run(out: Path, crash_at: int | None) -> OneShotStage:
        experiment = preset_experiment(
            full_registry, "tiny", aggregator=None, training=_training(out, steps=4, sample_every=100)
        )

        def step(self, ctx):
            if ctx.step == crash_at:
                raise Crash(f"simulated crash at step {ctx.step}")
            return original(self, ctx)

        monkeypatch.setattr(OneShotStage, "step", step)
        from invertavatar_core.training.trainer import Trainer

        stage = OneShotStage(experiment, full_registry)
        Trainer(stage, experiment.training, config=experiment, progress=False).fit()
        return stage

    reference = run(tmp_path / "a", None)
    with pytest.raises(Crash):
        run(tmp_path / "b", 3)
    assert latest_checkpoint(tmp_path / "b").name == "state-00000002.safetensors"
    resumed = run(tmp_path / "b", None)
    for part in ("texture", "static"):
        ref, res = getattr(reference.models, part).state_dict(), getattr(resumed.models, part).state_dict()
        for key in ref:
            assert torch.equal(ref[key], res[key]), f"{part}.{key}"


def test_stage3_needs_an_aggregator(full_registry, tmp_path):
    experiment = preset_experiment(full_registry, "tiny", aggregator=None, training=_training(tmp_path))
    with pytest.raises(ValueError, match="aggregator"):
        IncrementalStage(experiment, full_registry)


def test_a_fine_stage_without_e_tex_trains_e_tri_alone(full_registry, tmp_path):
    # The Table 3 ablation trained without the neural texture encoder (recipes/evaluation/README.md).
    experiment = preset_experiment(
        full_registry, "tiny", aggregator=None, encoders={"texture": None}, training=_training(tmp_path)
    )
    stage = OneShotStage(experiment, full_registry)
    assert stage.models.texture is None and stage.trainable == ("static",)
    decoder = [p for n, p in stage.models.static.named_parameters() if not n.startswith("trunk.")]
    assert decoder and all(p.requires_grad for p in decoder) and stage.models.static.training
    assert not any(p.requires_grad for p in stage.models.latent.parameters())


def test_head_masked_image_l1_weighs_only_the_head_when_the_background_weight_is_zero():
    from invertavatar_core.training.stages.runner import image_l1

    prediction, target = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    target[..., :4] = 1.0  # the left half differs ...
    head = torch.zeros(1, 1, 8, 8)
    head[..., 4:] = 1.0  # ... and is background
    assert float(image_l1(prediction, target)) == pytest.approx(0.5)
    assert float(image_l1(prediction, target, head)) == 0.0
    assert float(image_l1(prediction, target, head + 0.1 * (1 - head))) == pytest.approx(0.1 / 1.1)


def test_real_synthetic_frames_bring_their_head_masks_into_the_losses(full_registry, tmp_path):
    pytest.importorskip("invertavatar_faceverse")
    from invertavatar_core.cli import main
    from invertavatar_core.training.stages.latent import LatentStage

    heads = tmp_path / "heads"
    args = ["synth-heads", "--out", str(heads), "--tiny", "--identities", "1", "--frames-per-identity", "3"]
    assert main([*args, "--resolution", "128", "--uv-resolution", "64"]) == 0
    training = _training(tmp_path / "s1", background_weight=0.0)
    experiment = preset_experiment(full_registry, "tiny", aggregator=None, data={"root": str(heads)}, training=training)
    stage = LatentStage(experiment, full_registry)
    frames = stage.real_frames(2, 1, torch.Generator().manual_seed(0))
    assert frames.image.shape == (2, 3, 64, 64) and frames.head_mask.shape == (2, 1, 64, 64)
    assert torch.equal(stage.loss_weight(frames.head_mask), frames.head_mask)  # background weight 0
    assert 0.05 < float(frames.head_mask.mean()) < 0.9
    scalars = train_latent(experiment, full_registry, progress=False)  # step 1 is a real batch
    assert torch.isfinite(torch.tensor(scalars["l1"]))


def test_stage1_w_code_term_pulls_codes_to_the_synthetic_ones(full_registry, tmp_path):
    # Only the w_code term (off by default, the paper has none): the logged error must fall.
    losses = {"l1": 0.0, "lpips": 0.0, "id": 0.0, "latent_adv": 0.0, "w_delta": 0.0, "w_code": 1.0}
    experiment = preset_experiment(
        full_registry,
        "tiny",
        aggregator=None,
        training={**_training(tmp_path / "s1"), "steps": 8, "log_every": 4, "lr": 3e-3, "stage1_losses": losses},
    )
    assert preset_experiment(full_registry, "tiny").training.stage1_losses.w_code == 0.0
    train_latent(experiment, full_registry, progress=False)
    lines = (tmp_path / "s1" / "log.csv").read_text().splitlines()
    column = lines[0].split(",").index("w_code")
    values = [float(line.split(",")[column]) for line in lines[1:]]
    assert len(values) == 2 and values[-1] < 0.6 * values[0]


def test_stage3_renders_the_folded_avatar_at_frames_from_the_whole_sequence():
    last = supervised_indices(3, 5, 2, "last")
    assert last.tolist() == [3, 4, 8, 9, 13, 14]

    generator = torch.Generator().manual_seed(0)
    seen: set[int] = set()
    for _ in range(50):
        chosen = supervised_indices(3, 5, 2, "any", generator).reshape(3, 2)
        for b, pair in enumerate(chosen.tolist()):
            offsets = [i - 5 * b for i in pair]
            assert all(0 <= t < 5 for t in offsets) and offsets[0] != offsets[1]
            seen.update(offsets)
    assert seen == {0, 1, 2, 3, 4}  # early frames are supervised too, not only the last ones
    again = supervised_indices(3, 5, 2, "any", torch.Generator().manual_seed(0))
    assert torch.equal(again, supervised_indices(3, 5, 2, "any", torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="between 1 and the sequence length 2"):
        supervised_indices(1, 2, 3, "any")


def test_stage3_renders_real_clips_at_frames_it_did_not_fold(full_registry, tmp_path, monkeypatch):
    # data.unseen_frames: the real clips' novel views are other frames of the clip, never folded.
    pytest.importorskip("invertavatar_faceverse")
    from invertavatar_core.cli import main

    heads = tmp_path / "heads"
    args = ["synth-heads", "--out", str(heads), "--tiny", "--identities", "1", "--frames-per-identity", "6"]
    assert main([*args, "--resolution", "128", "--uv-resolution", "64"]) == 0
    data = {"root": str(heads), "max_sequence_length": 3, "frames_per_sequence": 1, "unseen_frames": 2}
    experiment = preset_experiment(
        full_registry, "tiny", data={**data, "novel_views": 1}, training={**_training(tmp_path / "s3"), "steps": 2}
    )
    stage = IncrementalStage(experiment, full_registry)
    clip = stage.real[0].camera  # (6, 25): every frame of the clip has its own camera
    picked = stage.real_frames(2, 3, torch.Generator().manual_seed(1), unseen=2).camera.reshape(2, 5, 25)
    positions = [[int((clip - camera).abs().sum(1).argmin()) for camera in sequence] for sequence in picked]
    assert len({tuple(c.tolist()) for c in clip}) == 6
    for window_and_unseen in positions:
        window, unseen = window_and_unseen[:3], window_and_unseen[3:]
        assert [(t - window[0]) % 6 for t in window] == [0, 1, 2]  # consecutive frames, folded
        assert len(set(unseen)) == 2 and not set(unseen) & set(window)  # two other frames of the clip

    rendered = []
    real_frames, render_views = IncrementalStage.real_frames, IncrementalStage.render_views

    def record_frames(self, *a, **kw):
        rendered.append(("clip", real_frames(self, *a, **kw)))
        return rendered[-1][1]

    def record_render(self, features, frames, per_avatar):
        rendered.append(("render", frames, per_avatar))
        return render_views(self, features, frames, per_avatar)

    monkeypatch.setattr(IncrementalStage, "real_frames", record_frames)
    monkeypatch.setattr(IncrementalStage, "render_views", record_render)
    scalars = train_incremental(experiment, full_registry, progress=False)  # step 1 is a real batch
    assert torch.isfinite(torch.tensor(scalars["l1"]))
    at = [kind for kind, *_ in rendered].index("clip")
    (_, clips), (_, targets, per_avatar) = rendered[at : at + 2]
    length = clips.image.shape[0] // experiment.training.batch_size - 2
    assert per_avatar == 3  # one folded frame and the two unseen ones, per avatar
    grouped = clips.image.reshape(-1, length + 2, *clips.image.shape[1:])
    for sequence, (folded, *unseen) in zip(grouped, targets.image.reshape(-1, 3, *clips.image.shape[1:])):
        assert any(torch.equal(folded, frame) for frame in sequence[:length])
        assert torch.equal(torch.stack(unseen), sequence[length:])

    too_long = {**data, "unseen_frames": 4}  # 3 folded + 4 unseen frames from a 6-frame clip
    short = preset_experiment(full_registry, "tiny", data=too_long, training=_training(tmp_path / "s3b"))
    with pytest.raises(ValueError, match=r"takes 7 frames from each clip .*id0000 \(6\)"):
        IncrementalStage(short, full_registry)
