"""User-supplied weight files: wrappers are unwrapped, bad files are named, nothing is unpickled."""

import argparse

import pytest
import torch

from invertavatar_core.io.checkpoints import CheckpointError
from invertavatar_core.io.weight_files import missing_weights_reason, read_state_dict


def test_state_dict_wrappers_are_unwrapped(tmp_path):
    weight = torch.arange(6.0).reshape(2, 3)
    torch.save({"state_dict": {"module.conv.weight": weight}}, tmp_path / "wrapped.pth")
    state = read_state_dict(tmp_path / "wrapped.pth", "test weights")
    assert list(state) == ["conv.weight"] and torch.equal(state["conv.weight"], weight)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="test weights: file not found"):
        read_state_dict(tmp_path / "missing.pth", "test weights")
    torch.save({"conv.weight": torch.zeros(1), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_state_dict(tmp_path / "mixed.pth", "test weights")
    torch.save({"object": argparse.Namespace(a=1)}, tmp_path / "pickle.pth")  # weights_only=True refuses objects
    with pytest.raises(CheckpointError, match=r"torch.load\(weights_only=True\)"):
        read_state_dict(tmp_path / "pickle.pth", "test weights")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "broken.safetensors", "test weights")


def test_missing_weights_reason_names_field_and_file(tmp_path):
    assert "lpips.head_weights is not set" in missing_weights_reason(None, "lpips.head_weights", "LPIPS heads")
    assert f"file not found: {tmp_path / 'x.pth'}" in missing_weights_reason(tmp_path / "x.pth", "f", "w")
    (tmp_path / "x.pth").write_bytes(b"")
    assert missing_weights_reason(tmp_path / "x.pth", "f", "w") == ""
