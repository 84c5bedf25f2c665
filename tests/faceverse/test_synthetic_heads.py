"""The synthetic-heads benchmark data: head masks, backgrounds, view-dependent details, trajectories, splits."""

import json
import math

import pytest
import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.geometry.cameras import look_at_camera
from invertavatar_core.geometry.uv_maps import uv_unwrap_grid
from invertavatar_faceverse.synthetic_heads import (
    SEEDS_PER_SPLIT,
    SyntheticHeadsConfig,
    identity_seeds,
    paint_albedo,
    smooth_trajectory,
    synthesize_heads,
)


@pytest.fixture(scope="module")
def tiny_head():
    registry = default_registry()
    model = registry.create("morphable_model", registry.tiny_config("morphable_model", "procedural"))
    return registry, model, registry.create("rasterizer", "torch")


@pytest.fixture(scope="module")
def heads(tiny_head, tmp_path_factory):
    _, model, rasterizer = tiny_head
    out = tmp_path_factory.mktemp("heads")
    config = SyntheticHeadsConfig(identities=2, frames_per_identity=3, resolution=64, uv_resolution=32)
    return synthesize_heads(out, config, model, rasterizer, progress=False)


def test_mask_is_the_head_and_the_background_is_one_per_identity(heads):
    dataset = FitDataset(heads)
    frames = dataset.sequence("id0000")
    mask = frames.head_mask
    assert mask is not None and mask.shape == (3, 1, 64, 64)
    assert 0.05 < float(mask.mean()) < 0.8
    # The background is a vertical gradient: its colour per row is read off column 0 (never head).
    assert float(mask[..., 0].max()) == 0.0
    background = frames.image[..., :1].expand_as(frames.image)
    differs = ((frames.image - background).abs().amax(1, keepdim=True) > 2 / 255 * 2).float()
    # Outside the mask the frame is the background; inside, the head (not the background) shows.
    assert float((differs * (1 - mask)).sum()) / float((1 - mask).sum()) < 0.01
    assert float((differs * mask).sum()) / float(mask.sum()) > 0.9
    # One background per identity: every frame of id0000 shares it, id0001 has another.
    assert torch.allclose(frames.image[0, :, :, 0], frames.image[2, :, :, 0], atol=1e-2)
    other = dataset.sequence("id0001").image[0, :, :, 0]
    assert (other - frames.image[0, :, :, 0]).abs().max() > 0.05


def test_textures_and_split_are_recorded(heads):
    meta = json.loads((heads / "dataset.json").read_text())
    assert meta["synthetic"]["split"] == "train"
    assert meta["synthetic"]["identity_seeds"] == {"id0000": 0, "id0001": 1}
    assert (heads / "textures" / "id0000.png").is_file() and (heads / "textures" / "id0001.png").is_file()


def test_heldout_seeds_never_meet_training_seeds():
    heldout = SyntheticHeadsConfig(identities=50, split="heldout")
    last_train = SyntheticHeadsConfig(identities=50, seed=SEEDS_PER_SPLIT - 50, split="train")
    heldout_seeds = set(identity_seeds(heldout).values())
    assert heldout_seeds.isdisjoint(identity_seeds(last_train).values())
    assert min(heldout_seeds) == SEEDS_PER_SPLIT and all(n.startswith("heldout") for n in identity_seeds(heldout))
    with pytest.raises(ValueError, match="seed range"):
        SyntheticHeadsConfig(identities=51, seed=SEEDS_PER_SPLIT - 50)


def test_cheek_marks_show_from_one_side_only(tiny_head):
    _, model, rasterizer = tiny_head
    hidden = []
    for seed in (0, 1, 2, 3):
        identity = 0.8 * torch.randn(1, model.n_identity, generator=torch.Generator().manual_seed(seed))
        painted = [
            paint_albedo(model, rasterizer, identity, torch.Generator().manual_seed(seed), 64, details=d)
            for d in (True, False)
        ]
        changed = (painted[0] - painted[1]).abs().amax(1)[0] > 0.05  # (64, 64) texels the details repainted
        seen = []
        for yaw in (1.0, -1.0):
            _, visibility = uv_unwrap_grid(
                model, rasterizer, identity, torch.zeros(1, model.n_expression), torch.zeros(1, model.n_eye),
                look_at_camera(yaw), uv_resolution=64, image_resolution=64,
            )  # fmt: skip
            # Visibility includes the face mask: only the cheek marks (face texels) count.
            seen.append(float(visibility[0, 0][changed].gt(0.5).float().sum()))
        marks = max(seen)
        assert marks > 5, f"seed {seed}: no cheek marks visible from either side"
        hidden.append(min(seen) / marks)
    assert max(hidden) < 0.15


def test_pose_trajectories_are_smooth_and_reach_the_yaw_range():
    peaks = []
    for seed in range(20):
        yaw = smooth_trajectory(torch.Generator().manual_seed(seed), 120, math.radians(60))
        assert float(yaw.abs().max()) <= math.radians(60) + 1e-5
        assert float((yaw[1:] - yaw[:-1]).abs().max()) < 0.15  # smooth: small steps between frames
        peaks.append(float(yaw.abs().max()))
    assert min(peaks) > 0.55 * math.radians(60) and max(peaks) > 0.9 * math.radians(60)


def test_a_split_folder_refuses_the_other_split(tiny_head, heads):
    _, model, rasterizer = tiny_head
    config = SyntheticHeadsConfig(identities=1, frames_per_identity=1, resolution=64, uv_resolution=32, split="heldout")
    with pytest.raises(ValueError, match="split"):
        synthesize_heads(heads, config, model, rasterizer, progress=False)
