"""Component checkpoints: strict loading with precise messages, atomic saves."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from invertavatar_core import CheckpointError, load_component, save_component
from invertavatar_core.io.checkpoints import WEIGHTS_FILE, load_module_weights


@pytest.fixture
def gru(registry):
    config = registry.default_config("aggregator", "conv_gru")
    return registry.create("aggregator", config, channels=4), config


def test_round_trip_restores_outputs_and_context(registry, gru, tmp_path):
    module, config = gru
    save_component(module, config, tmp_path / "gru", context={"channels": 4})
    loaded, loaded_config = load_component(tmp_path / "gru", registry)  # channels come from the file
    assert loaded_config == config and loaded.channels == 4
    frames = torch.randn(1, 3, 4, 5, 5)
    torch.testing.assert_close(loaded(frames), module(frames), rtol=0, atol=0)


def test_mismatch_names_missing_unexpected_and_misshaped(gru, tmp_path):
    module, _ = gru
    state = {k: v.clone() for k, v in module.state_dict().items()}
    del state["candidate.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["gates.weight"] = torch.zeros(8, 8, 1, 1)
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError) as info:
        load_module_weights(module, tmp_path / WEIGHTS_FILE)
    message = str(info.value)
    assert "missing tensors (1): candidate.bias" in message
    assert "unexpected tensors (1): extra.weight" in message
    assert "gates.weight: checkpoint (8, 8, 1, 1), model (8, 8, 3, 3)" in message


def test_wrong_kind_and_missing_files_are_clear(registry, gru, tmp_path):
    module, config = gru
    save_component(module, config, tmp_path / "gru", context={"channels": 4})
    with pytest.raises(CheckpointError, match="holds a aggregator, expected a prior"):
        load_component(tmp_path / "gru", registry, "prior")
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_component(tmp_path / "nothing", registry)
    (tmp_path / "gru" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_component(tmp_path / "gru", registry)


def test_crash_mid_save_leaves_the_old_checkpoint(registry, gru, tmp_path, monkeypatch):
    module, config = gru
    path = tmp_path / "gru"
    save_component(module, config, path, context={"channels": 4})
    old = path.joinpath(WEIGHTS_FILE).read_bytes()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("invertavatar_core.io.checkpoints.save_model", crash)
    with pytest.raises(OSError, match="disk full"):
        save_component(module, config, path, context={"channels": 4})
    assert path.joinpath(WEIGHTS_FILE).read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru"]  # no temporary leftovers
    load_component(path, registry)


def test_interrupted_directory_swap_is_recovered(registry, gru, tmp_path, monkeypatch):
    """A crash between the two renames of a swap: the next load restores the old directory."""
    module, config = gru
    path = tmp_path / "gru"
    save_component(module, config, path, context={"channels": 4})
    import os

    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append((src, dst))
        real_replace(src, dst)
        if len(calls) == 1:  # old directory moved to its backup, new one not yet in place
            raise KeyboardInterrupt

    monkeypatch.setattr("invertavatar_core.io.atomic.os.replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_component(module, config, path, context={"channels": 4})
    monkeypatch.undo()
    assert not path.exists()
    loaded, _ = load_component(path, registry)
    assert loaded.channels == 4 and path.is_dir()


def test_weights_json_and_folders_follow_the_current_umask(registry, gru, tmp_path):
    """Every file we write gets the mode a plain ``open`` would: one umask for weights and JSON."""
    from invertavatar_core.io.atomic import MARKER_FILE, atomic_write_text
    from invertavatar_core.io.checkpoints import save_tensors

    module, config = gru
    previous = os.umask(0o027)  # set after import: the mode must follow the umask at write time
    try:
        save_component(module, config, tmp_path / "gru")
        save_tensors(tmp_path / "state.safetensors", {"x": torch.ones(2)})
        atomic_write_text(tmp_path / "latest", "state.safetensors\n")
    finally:
        os.umask(previous)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {
        "gru": 0o750,
        "gru/config.json": 0o640,
        f"gru/{WEIGHTS_FILE}": 0o640,
        f"gru/{MARKER_FILE}": 0o640,
        "state.safetensors": 0o640,
        "latest": 0o640,
    }
