"""The UNet feature encoders (texture_unet, triplane_sft_unet, triplane_offset_unet) at tiny size."""

import pytest
import torch

from invertavatar_core.io.checkpoints import load_tensors, save_tensors
from invertavatar_core.plugin.protocols import FeatureEdits, FeatureEncoder, FeatureLevel, PriorFeatureInfo
from invertavatar_encoders import TextureUNet, TriplaneSFTUNet
from invertavatar_encoders.unet_decoder import LastFrame

UNETS = ["texture_unet", "triplane_sft_unet", "triplane_offset_unet"]


def build(registry, name, info, aggregator=None, **overrides):
    config = registry.tiny_config("encoder", name, **overrides)
    return registry.create("encoder", config, prior_info=info, aggregator=aggregator, registry=registry)


def frames(encoder, t: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = encoder.input_resolution
    return torch.rand(batch, t, encoder.input_channels, r, r, generator=g) * 2 - 1


def flat(edits: FeatureEdits) -> dict[str, torch.Tensor]:
    out = {f"tex.{k}": v for k, v in edits.texture_offsets.items()}
    for k, (scale, shift) in edits.static_sft.items():
        out[f"sft.{k}.scale"], out[f"sft.{k}.shift"] = scale, shift
    if edits.triplane_offset is not None:
        out["triplane"] = edits.triplane_offset
    return out


@pytest.mark.parametrize("name", UNETS)
@pytest.mark.parametrize("aggregator", [None, "test_decay"])
def test_shapes_match_the_prior(registry, tiny_info, aggregator_config, name, aggregator) -> None:
    enc = build(registry, name, tiny_info, aggregator_config(aggregator)).eval()
    assert isinstance(enc, FeatureEncoder)
    with torch.no_grad():
        out = enc(frames(enc, 2))
    got = {k: tuple(v.shape) for k, v in flat(out).items()}
    if name == "texture_unet":
        assert enc.role == "texture" and enc.input_channels == 7
        assert got == {
            f"tex.{lv.name}": (2, lv.channels, lv.resolution, lv.resolution) for lv in tiny_info.texture_levels
        }
    elif name == "triplane_sft_unet":
        assert enc.role == "static" and enc.input_channels == 6
        want = {}
        for lv in tiny_info.sft_levels:
            want[f"sft.{lv.name}.scale"] = want[f"sft.{lv.name}.shift"] = (2, lv.channels, lv.resolution, lv.resolution)
        assert got == want
    else:
        r = tiny_info.triplane_resolution
        assert got == {"triplane": (2, 3, tiny_info.triplane_channels, r, r)}
    assert all(torch.isfinite(v).all() for v in flat(out).values())


@pytest.mark.parametrize(("name", "aggregator"), [("texture_unet", "test_decay"), ("triplane_sft_unet", "conv_gru")])
def test_streaming_equals_batch_and_state_survives_safetensors(
    registry, tiny_info, aggregator_config, tmp_path, name, aggregator
) -> None:
    """Streaming == batch exactly (same fold); a state saved after 3 frames continues identically."""
    enc = build(registry, name, tiny_info, aggregator_config(aggregator)).eval()
    x = frames(enc, 5)
    with torch.no_grad():
        batch = flat(enc(x))
        state = enc.init_state(2)
        for t in range(3):
            state = enc.update(state, x[:, t])
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        save_tensors(tmp_path / "session.safetensors", state)
        restored, _ = load_tensors(tmp_path / "session.safetensors")
        assert restored.keys() == state.keys()
        for t in range(3, 5):
            restored = enc.update(restored, x[:, t])
        streamed = flat(enc.read(restored))
        after_one = flat(enc(x[:, :1]))
    assert streamed.keys() == batch.keys()
    for key in batch:
        torch.testing.assert_close(streamed[key], batch[key], rtol=0, atol=0)
    # Not vacuous: five frames give a different result from the first frame alone.
    assert any((batch[k] - after_one[k]).abs().max() > 1e-4 for k in batch)
    assert int(restored["frames"][0]) == 5


def test_one_shot_and_recurrent_are_one_class(registry, tiny_info, aggregator_config) -> None:
    """One-shot keeps the last frame; mean over copies of a frame equals one-shot on it."""
    one_shot = build(registry, "texture_unet", tiny_info, None).eval()
    mean = build(registry, "texture_unet", tiny_info, aggregator_config("mean")).eval()
    assert type(one_shot) is type(mean) is TextureUNet
    assert all(isinstance(a, LastFrame) for a in one_shot.decoder.aggregators)
    mean.load_state_dict(one_shot.state_dict())  # the mean has no parameters: same weights
    x = frames(one_shot, 4)
    with torch.no_grad():
        last = flat(one_shot(x))
        only_last = flat(one_shot(x[:, -1:]))
        repeated = flat(mean(x[:, 1:2].expand(-1, 3, -1, -1, -1)))
        single = flat(one_shot(x[:, 1:2]))
        averaged = flat(mean(x))
    for k in last:
        torch.testing.assert_close(last[k], only_last[k], rtol=0, atol=0)
        torch.testing.assert_close(repeated[k], single[k], rtol=1e-5, atol=1e-6)
    assert any((averaged[k] - last[k]).abs().max() > 1e-4 for k in last)


def test_frozen_trunk_still_trains_the_decoder(registry, tiny_info, aggregator_config) -> None:
    enc = build(registry, "triplane_sft_unet", tiny_info, aggregator_config("test_decay"))
    enc.trunk.requires_grad_(False).eval()
    enc.decoder.train()
    loss = sum(v.square().mean() for v in flat(enc(frames(enc, 3))).values())
    loss.backward()
    assert all(p.grad is None for p in enc.trunk.parameters())
    no_grad = [n for n, p in enc.decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"no gradient reached {no_grad}"
    assert any(n.startswith("aggregators.") for n, _ in enc.decoder.named_parameters())


def test_recurrent_encoder_overfits(registry, tiny_info, aggregator_config) -> None:
    """A tiny recurrent E_tex regresses smooth fixed targets from 3-frame sequences: the L1 loss falls 3x."""
    enc = build(registry, "texture_unet", tiny_info, aggregator_config("test_decay"))
    x = frames(enc, 3)
    g = torch.Generator().manual_seed(5)
    target = {
        k: torch.nn.functional.interpolate(
            torch.randn(*v.shape[:2], 2, 2, generator=g), size=v.shape[-2:], mode="bilinear"
        )
        for k, v in flat(enc(x)).items()
    }
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        out = flat(enc(x))
        loss = sum((out[k] - target[k]).abs().mean() for k in target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, losses[::10]


def test_sft_scale_starts_near_one(registry, tiny_info) -> None:
    """A fresh E_tri should leave G_static nearly unchanged: scale around 1, shift around 0."""
    enc = build(registry, "triplane_sft_unet", tiny_info).eval()
    with torch.no_grad():
        out = enc(frames(enc, 1))
    for scale, shift in out.static_sft.values():
        assert abs(float(scale.mean()) - 1) < 0.3 and abs(float(shift.mean())) < 0.3


def test_levels_off_the_decoder_grid_are_resized(registry, tiny_info) -> None:
    info = PriorFeatureInfo(
        **{**tiny_info.__dict__, "texture_levels": (FeatureLevel("odd", 3, 12), FeatureLevel("big", 2, 128))}
    )
    enc = build(registry, "texture_unet", info).eval()
    # 12 reads the 16x16 map (nearest on a log scale), 128 the 64x64 tail.
    assert enc.decoder.sources == {"odd": 2, "big": 4}
    with torch.no_grad():
        out = enc(frames(enc, 1)).texture_offsets
    assert out["odd"].shape == (2, 3, 12, 12) and out["big"].shape == (2, 2, 128, 128)


def test_bad_inputs_are_named(registry, tiny_info, without_shape_checker) -> None:  # its own messages
    enc = build(registry, "texture_unet", tiny_info).eval()
    with pytest.raises(ValueError, match=r"\(B, 7, 64, 64\)"):
        enc.update(enc.init_state(1), torch.zeros(1, 6, 64, 64))
    with pytest.raises(ValueError, match="at least one frame"):
        enc.read(enc.init_state(1))
    with pytest.raises(ValueError, match="T >= 1"):
        enc(torch.zeros(1, 7, 64, 64))
    with pytest.raises(FileNotFoundError, match="missing_ir_se50.pth"):
        build(registry, "texture_unet", tiny_info, ir_se50_weights="missing_ir_se50.pth")
    with pytest.raises(ValueError, match="input_resolution"):
        registry.tiny_config("encoder", "triplane_sft_unet", input_resolution=72)


def test_input_resolution_override(registry, tiny_info) -> None:
    enc = build(registry, "triplane_sft_unet", tiny_info, input_resolution=32).eval()
    assert isinstance(enc, TriplaneSFTUNet) and enc.input_resolution == 32
    with torch.no_grad():
        out = enc(frames(enc, 1))
    assert out.static_sft["x256"][0].shape == (2, 2, 64, 64)
