"""Resumable training state: modules, optimisers and RNG survive a save/load bit-for-bit."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from invertavatar_core import CheckpointError
from invertavatar_core.training.state import TrainingState, latest_checkpoint, load_training_state, save_training_state


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, optimizer


def _step(model, optimizer):
    x = torch.randn(16, 3)
    noise = float(np.random.rand()) + random.random()
    loss = (model(x) - x.sum(1, keepdim=True) * noise).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_resume_reproduces_the_next_steps_exactly(tmp_path):
    model, optimizer = _setup()
    for _ in range(3):
        _step(model, optimizer)
    save_training_state(tmp_path, 3, TrainingState({"model": model}, {"adam": optimizer}, {"note": "x", "epoch": 1}))
    for _ in range(2):
        _step(model, optimizer)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, optimizer2 = _setup(seed=123)  # different init, RNG elsewhere: everything must be restored
    state = TrainingState({"model": model2}, {"adam": optimizer2})
    step = load_training_state(latest_checkpoint(tmp_path), state)
    assert step == 3 and state.extra_state == {"note": "x", "epoch": 1}
    for _ in range(2):
        _step(model2, optimizer2)
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_keeps_the_newest_checkpoints(tmp_path):
    model, optimizer = _setup()
    for step in (10, 20, 30):
        save_training_state(tmp_path, step, TrainingState({"model": model}, {"adam": optimizer}), keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("state-*"))
    assert names == ["state-00000020.safetensors", "state-00000030.safetensors"]
    assert latest_checkpoint(tmp_path).name == "state-00000030.safetensors"


def test_mismatched_module_is_named(tmp_path):
    model, optimizer = _setup()
    path = save_training_state(tmp_path, 1, TrainingState({"model": model}))
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(CheckpointError, match=r"(?s)\[model\].*0.weight: checkpoint \(8, 3\), model \(4, 3\)"):
        load_training_state(path, TrainingState({"model": other}))
