"""IR-SE-50 (invertavatar_core.nn.ir_se): taps, parameter count, loading the InsightFace layout, round trip."""

import pytest
import torch

from invertavatar_core.io.checkpoints import CheckpointError, save_tensors
from invertavatar_core.nn.ir_se import IR_SE_50, IRSEArchitecture, IRSENet, load_ir_se50_weights

# Same depths as IR-SE-50 (so body indices are realistic), narrow widths so the test is fast.
NARROW = IRSEArchitecture(stem_channels=16, stage_channels=(16, 32, 48, 64), stage_units=(3, 4, 14, 3), se_reduction=16)


def _bn(prefix: str, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    # No num_batches_tracked: the public model_ir_se50.pth predates that buffer.
    return {
        f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
    }


def insightface_state(arch: IRSEArchitecture, in_channels: int = 3, embedding: int = 32) -> dict[str, torch.Tensor]:
    """A synthetic state dict in the TreB1eN/InsightFace_Pytorch Backbone layout (input_layer, body.N, output_layer)."""
    g = torch.Generator().manual_seed(0)
    s = arch.stem_channels
    state = {"input_layer.0.weight": torch.randn(s, in_channels, 3, 3, generator=g) * 0.1}
    state |= _bn("input_layer.1", s, g)
    state["input_layer.2.weight"] = torch.full((s,), 0.25)
    n, width = 0, s
    for depth, units in zip(arch.stage_channels, arch.stage_units, strict=True):
        for _ in range(units):
            p = f"body.{n}"
            if width != depth:
                state[f"{p}.shortcut_layer.0.weight"] = torch.randn(depth, width, 1, 1, generator=g) * 0.1
                state |= _bn(f"{p}.shortcut_layer.1", depth, g)
            state |= _bn(f"{p}.res_layer.0", width, g)
            state[f"{p}.res_layer.1.weight"] = torch.randn(depth, width, 3, 3, generator=g) * 0.05
            state[f"{p}.res_layer.2.weight"] = torch.full((depth,), 0.25)
            state[f"{p}.res_layer.3.weight"] = torch.randn(depth, depth, 3, 3, generator=g) * 0.05
            state |= _bn(f"{p}.res_layer.4", depth, g)
            state[f"{p}.res_layer.5.fc1.weight"] = torch.randn(depth // 16, depth, 1, 1, generator=g)
            state[f"{p}.res_layer.5.fc2.weight"] = torch.randn(depth, depth // 16, 1, 1, generator=g)
            n, width = n + 1, depth
    state |= _bn("output_layer.0", width, g)
    state["output_layer.3.weight"] = torch.randn(embedding, width * 7 * 7, generator=g) * 0.01
    state["output_layer.3.bias"] = torch.randn(embedding, generator=g) * 0.01
    state |= _bn("output_layer.4", embedding, g)
    return state


def test_taps_shapes_and_ir_se50_size() -> None:
    net = IRSENet(NARROW, in_channels=7).eval()
    with torch.no_grad():
        feats = net(torch.randn(2, 7, 64, 64))
    assert [tuple(f.shape) for f in feats.stages] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 48, 8, 8), (2, 64, 4, 4)]
    assert [f.shape for f in feats.first_units] == [f.shape for f in feats.stages]
    # The first unit's output differs from the stage's output when the stage has more units.
    assert not torch.equal(feats.first_units[3], feats.stages[3])
    full = IRSENet()
    assert sum(len(stage) for stage in full.stages) == 24
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(30.95e6, rel=1e-3)  # docs/design/encoders.md
    assert IRSENet(IR_SE_50, head_resolution=112).head is not None


def test_loads_insightface_layout(tmp_path) -> None:
    state = insightface_state(NARROW)
    path = tmp_path / "model_ir_se50.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # a DDP-wrapped save
    net = load_ir_se50_weights(IRSENet(NARROW, head_resolution=112, embedding_dim=32), path)
    sd = net.state_dict()
    # body index -> (stage, unit), counted by hand for 3/4/14/3 units.
    for body, ours in [
        (0, "0.0"),
        (2, "0.2"),
        (3, "1.0"),
        (6, "1.3"),
        (7, "2.0"),
        (20, "2.13"),
        (21, "3.0"),
        (23, "3.2"),
    ]:
        assert torch.equal(sd[f"stages.{ours}.residual.3.weight"], state[f"body.{body}.res_layer.3.weight"])
        assert torch.equal(sd[f"stages.{ours}.residual.5.fc2.weight"], state[f"body.{body}.res_layer.5.fc2.weight"])
    assert torch.equal(sd["stages.1.0.shortcut.0.weight"], state["body.3.shortcut_layer.0.weight"])
    assert torch.equal(sd["stem.0.weight"], state["input_layer.0.weight"])
    assert torch.equal(sd["head.3.weight"], state["output_layer.3.weight"])
    assert torch.equal(sd["head.4.running_var"], state["output_layer.4.running_var"])
    net.eval()
    emb = net.embed(torch.rand(3, 3, 112, 112) * 2 - 1)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    # Trunk only: the file's head tensors are not used.
    trunk = load_ir_se50_weights(IRSENet(NARROW), path)
    assert torch.equal(trunk.state_dict()["stages.2.13.residual.1.weight"], state["body.20.res_layer.1.weight"])


def test_adapts_input_channels_of_unet_trunks(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save(insightface_state(NARROW), path)
    rgb = load_ir_se50_weights(IRSENet(NARROW), path).eval()
    seven = load_ir_se50_weights(IRSENet(NARROW, in_channels=7), path, adapt_input_channels=True).eval()
    stem = seven.state_dict()["stem.0.weight"]
    assert torch.equal(stem[:, :3], rgb.state_dict()["stem.0.weight"]) and not stem[:, 3:].any()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = rgb(x).stages[-1]
        b = seven(torch.cat([x, torch.randn(1, 4, 32, 32)], 1)).stages[-1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="stem.0.weight"):
        load_ir_se50_weights(IRSENet(NARROW, in_channels=7), path)


def test_errors_name_the_file_and_the_keys(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_ir_se50_weights(IRSENet(NARROW), tmp_path / "nowhere.pth")
    state = insightface_state(NARROW)
    del state["body.5.res_layer.1.weight"]
    state["body.5.res_layer.9.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_ir_se50_weights(IRSENet(NARROW), path)
    message = str(info.value)
    assert (
        "broken.pth" in message and "stages.1.2.residual.1.weight" in message and "body.5.res_layer.9.weight" in message
    )


def test_safetensors_round_trip(tmp_path) -> None:
    net = IRSENet(NARROW, in_channels=6).eval()
    path = save_tensors(tmp_path / "trunk.safetensors", net.state_dict())
    again = load_ir_se50_weights(IRSENet(NARROW, in_channels=6), path).eval()
    x = torch.randn(2, 6, 32, 32)
    with torch.no_grad():
        for a, b in zip(net(x).stages, again(x).stages, strict=True):
            assert torch.equal(a, b)


def test_embed_needs_the_head() -> None:
    with pytest.raises(RuntimeError, match="head_resolution"):
        IRSENet(NARROW).embed(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="multiples of 16"):
        IRSENet(NARROW)(torch.zeros(1, 3, 40, 40))


def test_channels_last_input_trains_like_nchw():
    # The prior's renders are channels-last; with that layout torch 2.13's CPU backward of the strided 1x1
    # shortcut convolution corrupted the heap at 128 px (the crash was in this very call).
    tiny = IRSEArchitecture(stem_channels=8, stage_channels=(8, 16, 16, 32), stage_units=(1, 1, 1, 1), se_reduction=4)
    net = IRSENet(tiny)
    image = torch.randn(2, 3, 128, 128)
    grads = []
    for x in (image, image.contiguous(memory_format=torch.channels_last)):
        net.zero_grad()
        sum(s.square().mean() for s in net(x).stages).backward()
        grads.append(net.stem[0].weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])
