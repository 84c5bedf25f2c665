"""The shipped-model slot: a model checkpoint placed under the package is found by name; an empty slot is None."""

from pathlib import Path

import pytest
import torch

from invertavatar_core import pretrained
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.inversion.models import InversionModels


@pytest.fixture
def slot_root(tmp_path, monkeypatch):
    """The package's model directory pointed at an empty temporary one."""
    monkeypatch.setattr(pretrained, "_ROOT", tmp_path)
    return tmp_path


def test_an_empty_slot_is_none_and_a_saved_model_is_found(slot_root, full_registry):
    assert pretrained.pretrained_root() == slot_root
    assert pretrained.builtin_model_dir() is None
    folder = slot_root / pretrained.DEFAULT_MODEL
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert pretrained.builtin_model_dir() is None  # a config alone is no model checkpoint

    experiment = preset_experiment(full_registry, "tiny", folder, seed=3)
    models = InversionModels.build(experiment, full_registry).save(folder)
    found = pretrained.builtin_model_dir(pretrained.DEFAULT_MODEL)
    assert found == folder == models
    loaded = InversionModels.load(found, full_registry)
    built = InversionModels.build(experiment, full_registry)
    pairs = zip(loaded.state_dict().values(), built.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # Its size is what the wheel grows by; the tiny preset is far under the limit.
    size = pretrained.shipped_size(found)
    weights = sum(p.stat().st_size for p in found.rglob("model.safetensors"))
    assert weights < size < pretrained.MAX_SHIPPED_BYTES


def test_an_unknown_name_lists_the_known_ones(slot_root):
    with pytest.raises(KeyError, match=pretrained.DEFAULT_MODEL):
        pretrained.builtin_model_dir("synth-heads-huge")


def test_the_real_slot_is_inside_the_installed_package():
    import invertavatar_core

    # What lies there ships in the wheel (hatchling packs every file under src/invertavatar_core).
    assert pretrained.pretrained_root() == Path(invertavatar_core.__file__).resolve().parent / "pretrained"
