"""Supervised pre-training of the prior on synthetic heads: multi-view batches, learning, export, init, sampling."""

import csv

import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.config.experiment import default_registry
from invertavatar_core.io.checkpoints import WEIGHTS_FILE, load_tensors
from invertavatar_core.io.media import read_image
from invertavatar_core.training.distributed import Runtime
from invertavatar_core.training.trainer import LOG_FILE
from invertavatar_prior_next3d.gan_data import MultiViewData
from invertavatar_prior_next3d.training import PriorTrainingConfig, build_prior, train_prior

pytest.importorskip("invertavatar_faceverse")

TINY = {"name": "next3d", "preset": "tiny"}


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    args = ["synth-heads", "--out", str(root), "--tiny", "--identities", "3", "--frames-per-identity", "4"]
    assert main([*args, "--resolution", "64", "--uv-resolution", "64"]) == 0
    return root


def _info():
    return default_registry().create("prior", TINY).info


def test_multiview_batches_are_views_of_few_identities_with_masks_and_textures(heads):
    data = MultiViewData(heads, _info())
    assert data.identities == 3 and len(data) == 12
    batch = data.sample_views(2, 3, torch.Generator().manual_seed(0))
    ids = batch.identity_index.view(2, 3)
    assert (ids == ids[:, :1]).all() and ids[0, 0] != ids[1, 0]
    k = int(ids[0, 0])
    assert torch.allclose(batch.texture[0], read_image(heads / "textures" / f"{data.names[k]}.png"))
    assert batch.mask.shape == (6, 1, 64, 64) and 0.05 < float(batch.mask.mean()) < 0.9
    assert float(batch.mask.amin()) >= 0 and float(batch.mask.amax()) <= 1


def test_supervised_pretraining_learns_exports_and_starts_the_adversarial_stage(heads, tmp_path):
    run = tmp_path / "run"
    config = PriorTrainingConfig(
        prior=TINY, data_root=heads, out_dir=run, objective="supervised", steps=24, batch_size=4, views=2,
        g_lr=0.002, betas=(0.9, 0.99), log_every=8, checkpoint_every=24, sample_every=24, sample_count=4,
    )  # fmt: skip
    train_prior(config, runtime=Runtime(), progress=False)
    with (run / LOG_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [8, 16, 24]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[-1]["head_psnr"]) > float(rows[0]["head_psnr"])
    latents, _ = load_tensors(run / "latents.safetensors")
    assert latents["latents"].shape == (3, _info().z_dim)
    assert (run / "samples" / "step-00000024.png").is_file()

    # The adversarial objective starts from the exported prior (G and G_ema alike).
    fine = PriorTrainingConfig(prior=TINY, data_root=heads, init_prior=run / "prior", data_in_memory=True)
    started = build_prior(fine, default_registry())
    exported, _ = load_tensors(run / "prior" / WEIGHTS_FILE)
    for name, value in started.state_dict().items():
        if name in exported:
            assert torch.equal(value, exported[name]), name

    out = tmp_path / "sample"
    argv = ["sample", "--prior", str(run / "prior"), "--latents", str(run / "latents.safetensors"), "--out", str(out)]
    assert main([*argv, "--identities", "2", "--columns", "3"]) == 0
    yaw = read_image(out / "yaw.png")
    expression = read_image(out / "expression.png")
    assert yaw.shape == expression.shape and yaw.std() > 0.01
    assert (out / "identities.png").is_file()


def test_sample_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    # Refused before the prior is looked at (there is none here).
    assert main(["sample", "--prior", str(tmp_path / "no-prior"), "--out", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"


def test_init_prior_names_a_missing_folder(tmp_path):
    config = PriorTrainingConfig(prior=TINY, init_prior=tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="init_prior"):
        build_prior(config, default_registry())


def test_head_psnr_counts_only_the_head():
    from invertavatar_prior_next3d.latent_fitting import head_psnr

    target = torch.zeros(2, 3, 8, 8)
    prediction = target + 0.2  # mse 0.04 on the head: 10 log10(4 / 0.04) = 20 dB
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    prediction[..., :2, :] = 5.0  # off the head: ignored
    torch.testing.assert_close(head_psnr(prediction, target, mask), torch.full((2,), 20.0))


def test_fitting_w_to_frames_of_a_head_brings_the_render_closer(heads):
    from invertavatar_prior_next3d.latent_fitting import fit_w, head_psnr

    prior = default_registry().create("prior", TINY).eval()
    data = MultiViewData(heads, prior.info)
    frames = data.sample_views(1, 2, torch.Generator().manual_seed(1))
    args = (frames.image, frames.mask, frames.camera, frames.expression_uv)

    def score(ws):
        with torch.no_grad():
            render = prior.render(prior.canonical(ws), frames.expression_uv, frames.camera).image
        return float(head_psnr(render, frames.image, frames.mask).mean())

    start = prior.w_avg.reshape(1, 1, -1).expand(1, prior.info.num_ws, -1)
    assert score(fit_w(prior, *args, steps=15, lr=0.05)) > score(start) + 0.5
