"""Fitted frames are reused only when a content key of the input file and the settings matches, never by name."""

import importlib.util
import shutil

import pytest
import torch

from invertavatar_core.cli import main
from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.inversion.avatar import Avatar

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs the [mediapipe] extra"),
]


@pytest.fixture
def fit_calls(monkeypatch):
    """Count landmark fits, and make each a short one (the tests are about reuse, not fit quality)."""
    from invertavatar_faceverse import fitting

    real = fitting.fit_video
    calls = []

    def short_fit(model, landmarks, image_size, config=None, **kwargs):
        calls.append(len(landmarks))
        # Short, but long enough to stay under the 10 % error limit at which a frame counts as failed.
        config = (config or fitting.FittingConfig()).model_copy(update={"steps": 20, "identity_steps": 40})
        return real(model, landmarks, image_size, config, **kwargs)

    monkeypatch.setattr(fitting, "fit_video", short_fit)
    return calls


@pytest.fixture
def portraits(assets_dir):
    media = assets_dir / "media"
    found = [media / "biden_official_portrait.jpg", media / "obama_official_portrait.jpg"]
    if not all(p.is_file() for p in found):
        pytest.skip(f"portraits missing in {media}")
    return found


def test_fit_refits_a_different_photo_under_the_same_name(portraits, fit_calls, tmp_path, capsys):
    photo = tmp_path / "person.jpg"
    argv = ["preprocess", str(photo), "--out", str(tmp_path / "fit"), "--resolution", "128", "--uv-resolution", "32"]
    shutil.copy(portraits[0], photo)
    assert main(argv) == 0 and len(fit_calls) == 1
    first = FitDataset(tmp_path / "fit").sequence("person")

    assert main(argv) == 0 and len(fit_calls) == 1  # same bytes, same settings: reused
    assert "already preprocessed from the same input and settings" in capsys.readouterr().out

    shutil.copy(portraits[1], photo)  # another person, same file name
    assert main(argv) == 0 and len(fit_calls) == 2
    assert "changed since it was preprocessed" in capsys.readouterr().out
    second = FitDataset(tmp_path / "fit").sequence("person")
    assert len(second) == 1 and (second.image - first.image).abs().mean() > 0.05
    assert not torch.equal(second.identity, first.identity)

    # Same photo, another UV size: the fit is kept (it does not depend on it), the frames are made again.
    assert main([*argv[:-1], "16"]) == 0 and len(fit_calls) == 2
    assert FitDataset(tmp_path / "fit").sequence("person").expression_uv.shape[-1] == 16
    assert main([*argv[:4], "--resolution", "96", "--uv-resolution", "16"]) == 0 and len(fit_calls) == 3  # refitted
    assert FitDataset(tmp_path / "fit").sequence("person").image.shape[-1] == 96


def test_reconstruct_of_person_b_is_not_person_a(portraits, fit_calls, tiny_models, tmp_path):
    checkpoint = tiny_models.save(tmp_path / "run")
    photo = tmp_path / "photos" / "person.jpg"
    photo.parent.mkdir()
    out = tmp_path / "avatar"
    argv = ["reconstruct", "--checkpoint", str(checkpoint), "--source", str(photo), "--device", "cpu"]
    shutil.copy(portraits[0], photo)
    assert main([*argv, "--out", str(out)]) == 0
    person_a = Avatar.load(out)

    shutil.copy(portraits[1], photo)  # person B under the same file name, into the same --out
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    person_b = Avatar.load(out)
    assert (person_b.features.ws - person_a.features.ws).abs().max() > 1e-4
    assert not torch.equal(person_b.identity, person_a.identity)

    # B's avatar is what a fresh folder gives for B.
    assert main([*argv, "--out", str(tmp_path / "fresh")]) == 0
    fresh = Avatar.load(tmp_path / "fresh")
    for key, value in fresh.features.tensors().items():
        torch.testing.assert_close(person_b.features.tensors()[key], value)
