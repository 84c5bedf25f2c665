"""The memory estimate: its terms, the budget it is checked against, and the refusal message."""

import pytest
import torch
from torch import nn

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.training.memory_estimate import (
    BUDGET_ENV,
    BYTES_PER_IMAGE_PIXEL,
    BYTES_PER_NEURAL_PIXEL,
    OVERHEAD_BYTES,
    MemoryBudgetError,
    MemoryEstimate,
    available_memory,
    build_on_meta,
    count_parameters,
    ensure_fits,
    parse_bytes,
)
from invertavatar_core.training.stages.incremental import IncrementalStage
from invertavatar_core.training.stages.latent import LatentStage
from invertavatar_core.training.stages.oneshot import OneShotStage


def test_parse_bytes():
    assert parse_bytes("8G") == 8 << 30
    assert parse_bytes("8GiB") == parse_bytes("8gb") == 8 << 30
    assert parse_bytes("512M") == 512 << 20
    assert parse_bytes("1.5K") == 1536
    assert parse_bytes("1024") == 1024
    with pytest.raises(ValueError, match=BUDGET_ENV):
        parse_bytes("lots")


def test_parameters_are_counted_on_the_meta_device_and_tied_ones_once():
    def build() -> nn.Module:
        shared = nn.Linear(1000, 1000)
        return nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(1000, 10))

    model = build_on_meta(build)
    assert all(p.is_meta for p in model.parameters())  # no storage was allocated
    assert count_parameters([model]) == 1000 * 1000 + 1000 + 1000 * 10 + 10
    assert count_parameters([model, model[3]]) == count_parameters([model])


def test_total_is_the_documented_formula():
    estimate = MemoryEstimate(
        what="x", trained_parameters=10, frozen_parameters=100, images=3, image_resolution=64, neural_resolution=32
    )
    expected_activations = 3 * (BYTES_PER_IMAGE_PIXEL * 64**2 + BYTES_PER_NEURAL_PIXEL * 32**2)
    assert estimate.parameter_bytes == 16 * 10 + 4 * 100
    assert estimate.total_bytes == 16 * 10 + 4 * 100 + expected_activations + OVERHEAD_BYTES


def test_budget_comes_from_the_environment_or_the_machine(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "3G")
    assert available_memory() == (3 << 30, BUDGET_ENV)
    monkeypatch.delenv(BUDGET_ENV)
    available, source = available_memory()
    assert available is not None and 0 < available < 1 << 50 and source


def test_refusal_names_both_figures(monkeypatch):
    estimate = MemoryEstimate(
        what="training X", trained_parameters=10**9, frozen_parameters=0, images=1, image_resolution=64,
        neural_resolution=32,
    )  # fmt: skip
    monkeypatch.setenv(BUDGET_ENV, str(estimate.total_bytes))
    ensure_fits(estimate)  # exactly enough is enough
    monkeypatch.setenv(BUDGET_ENV, "8G")
    with pytest.raises(MemoryBudgetError) as raised:
        ensure_fits(estimate)
    message = str(raised.value)
    assert message.startswith("training X needs about 16.1 GiB (1000.0M trained + 0.0M frozen parameters: 14.9 GiB;")
    assert "but only 8.0 GiB is available (INVERTAVATAR_MEMORY_BUDGET)" in message
    assert isinstance(raised.value, ValueError)  # the command line prints it as one line


def test_stage_estimates_follow_the_config(full_registry):
    tiny = preset_experiment(full_registry, "tiny")
    stages = (LatentStage, OneShotStage, IncrementalStage)
    latent, oneshot, incremental = (stage.memory_estimate(tiny, full_registry) for stage in stages)
    # Batch 2: one image each; with a novel view; two supervised frames, a novel view and one prefix frame.
    assert (latent.images, oneshot.images, incremental.images) == (2, 4, 8)
    total = latent.trained_parameters + latent.frozen_parameters
    assert oneshot.trained_parameters + oneshot.frozen_parameters == total  # the same networks, split differently
    assert (latent.image_resolution, latent.neural_resolution) == (64, 32)
    # Paper-size encoders on the tiny prior (the README's former example) run at 256 px, and are counted so.
    mixed = preset_experiment(
        full_registry, "tiny", encoders={"latent": "e4e", "texture": "texture_unet", "static": "triplane_sft_unet"}
    )
    estimate = LatentStage.memory_estimate(mixed, full_registry)
    assert (estimate.image_resolution, estimate.neural_resolution) == (256, 32)
    assert estimate.trained_parameters > 50 * latent.trained_parameters
    assert estimate.activation_bytes - latent.activation_bytes == 2 * BYTES_PER_IMAGE_PIXEL * (256**2 - 64**2)
    assert torch.get_default_device().type == "cpu"  # building on meta left the default device alone
