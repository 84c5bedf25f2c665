"""`reconstruct` with a checkpoint converted from the release-format fixture, on real photos and a video.

Slow: conversion, MediaPipe fitting and the tiny-width release model at 512 px on CPU (about 3 min).
"""

import os
from pathlib import Path

import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.inversion.avatar import Avatar

FIXTURE = Path(
    os.environ.get(
        "INVERTAVATAR_RELEASE_FIXTURES",
        Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "official-release",
    )
)
PICKLE = FIXTURE / "encoders" / "fsinvertavatar_small.pkl"

pytestmark = [pytest.mark.slow, pytest.mark.assets]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """convert release-prior (the snapshot's generator) + convert release-encoders -> a model checkpoint."""
    if not PICKLE.is_file():
        pytest.skip(f"release fixtures not found at {FIXTURE} (set INVERTAVATAR_RELEASE_FIXTURES)")
    pytest.importorskip("invertavatar_prior_next3d.release.prior")
    pytest.importorskip("mediapipe")
    root = tmp_path_factory.mktemp("release")
    canary = root / "canary"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IA_FIXTURE_CANARY", str(canary))
        assert (
            main(["convert", "release-prior", str(PICKLE), "--key", "G.generator", "--out", str(root / "prior")]) == 0
        )
        command = [
            "convert",
            "release-encoders",
            str(PICKLE),
            "--prior",
            str(root / "prior"),
            "--out",
            str(root / "model"),
        ]
        assert main(command) == 0
    assert not canary.exists()  # nothing of the pickle ran
    return root / "model"


def _finite(avatar: Avatar) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in avatar.features.tensors().values())


def test_reconstruct_a_portrait(converted, assets_dir, tmp_path):
    out = tmp_path / "portrait"
    photo = assets_dir / "media" / "obama_official_portrait.jpg"
    command = ["reconstruct", "--checkpoint", str(converted), "--source", str(photo), "--out", str(out)]
    assert main([*command, "--device", "cpu"]) == 0
    avatar = Avatar.load(out)
    assert avatar.frame_count == 1 and _finite(avatar)
    assert avatar.features.ws.shape == (1, 14, 16)  # the converted fixture's w+ (14 styles of width 16)


def test_reconstruct_a_video_folds_the_released_groups(converted, assets_dir, tmp_path, full_registry):
    from invertavatar_core.cli.reconstruct import fitted_frames
    from invertavatar_core.inversion.models import InversionModels

    out = tmp_path / "video"
    video = assets_dir / "media" / "talking_head_512.mp4"
    command = ["reconstruct", "--checkpoint", str(converted), "--source-video", str(video), "--frames", "4"]
    assert main([*command, "--out", str(out), "--device", "cpu"]) == 0
    avatar = Avatar.load(out)
    assert avatar.frame_count == 4 and _finite(avatar)
    # The four frames form one released group (one call); streaming them one by one would cycle each alone.
    models = InversionModels.load(converted, full_registry, device="cpu")
    inverter = full_registry.create(
        "inverter", models.experiment.inverter, registry=full_registry, experiment=models.experiment, models=models
    )
    frames = fitted_frames(Path(f"{out}.fit"))
    assert len(frames) == 4
    streamed = inverter.start(frames[:1])
    for t in range(1, 4):
        streamed = streamed.add(frames[t : t + 1])
    saved, one_by_one = avatar.features.tensors(), streamed.avatar().features.tensors()
    assert any(not torch.allclose(saved[k], one_by_one[k]) for k in saved)
    together = inverter.start(frames).avatar().features.tensors()
    for key, value in saved.items():
        torch.testing.assert_close(value, together[key], rtol=1e-5, atol=1e-6)
