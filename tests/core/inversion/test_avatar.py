"""Avatars: save/load round-trip renders identically; orbit; clear errors for bad folders."""

import json

import pytest
import torch

from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.io.checkpoints import CheckpointError


@pytest.fixture(scope="module")
def avatar(full_registry, tiny_base, tiny_models, tiny_frames):
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    return inverter.invert(tiny_frames[:2])


def test_save_load_round_trip_renders_identically(avatar, tiny_models, tiny_frames, tmp_path):
    avatar.save(tmp_path / "avatar")
    loaded = Avatar.load(tmp_path / "avatar")
    assert loaded.frame_count == 2 and loaded.inverter == "incremental"
    assert loaded.prior_config == avatar.prior_config
    if avatar.identity is not None:
        torch.testing.assert_close(loaded.identity, avatar.identity)
    prior = tiny_models.prior
    with torch.no_grad():
        a = avatar.animate(prior, tiny_frames.expression_uv, tiny_frames.camera)
        b = loaded.animate(prior, tiny_frames.expression_uv, tiny_frames.camera)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    # Different expressions and cameras give different images (animation is live).
    assert (a.image[0] - a.image[-1]).abs().mean() > 1e-4


def test_orbit_renders_every_view(avatar, tiny_models, tiny_frames):
    frames = list(avatar.render_orbit(tiny_models.prior, tiny_frames.expression_uv[:1], frames=6, batch_size=4))
    assert len(frames) == 6 and frames[0].shape == tiny_frames.image.shape[1:]
    assert (frames[0] - frames[2]).abs().mean() > 1e-4  # the view moved


def test_bad_avatar_folders_name_the_problem(avatar, tmp_path):
    with pytest.raises(FileNotFoundError, match="avatar not found"):
        Avatar.load(tmp_path / "missing")
    avatar.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "avatar.json").read_text())
    (tmp_path / "a" / "avatar.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(CheckpointError, match="'format'"):
        Avatar.load(tmp_path / "a")


def test_animate_refuses_a_mismatched_prior(avatar, tiny_models, tiny_frames):
    features = avatar.features
    wrong = Avatar(type(features)(features.ws[:, :1], features.texture, features.static), avatar.prior_config)
    with pytest.raises(ValueError, match="ws"):
        wrong.animate(tiny_models.prior, tiny_frames.expression_uv[:1], tiny_frames.camera[:1])
