"""timm_backbone: with real timm when it imports (it needs torchvision), else through a stand-in timm module."""

import sys
import types

import pytest
import torch
from torch import nn

from invertavatar_core.plugin.protocols import LatentEncoder


def build(registry, info, **overrides):
    config = registry.tiny_config("encoder", "timm_backbone", **overrides)
    return registry.create("encoder", config, prior_info=info, aggregator=None, registry=registry)


class _FeatureInfo:
    def __init__(self, channels, reductions):
        self._channels, self._reductions = channels, reductions

    def channels(self):
        return list(self._channels)

    def reduction(self):
        return list(self._reductions)


class _FakeBackbone(nn.Module):
    """Four stride-2 conv stages, exposing timm's features_only interface."""

    def __init__(self):
        super().__init__()
        widths = (3, 4, 6, 8, 12)
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in zip(widths, widths[1:], strict=False))
        self.feature_info = _FeatureInfo(widths[1:], (2, 4, 8, 16))
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    def forward(self, x):
        out = []
        for stage in self.stages:
            x = torch.relu(stage(x))
            out.append(x)
        return out


@pytest.fixture
def fake_timm(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        return _FakeBackbone()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    return calls


def test_real_timm(registry, tiny_info) -> None:
    try:
        import timm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken torchvision raises RuntimeError
        pytest.skip(f"timm does not import here (it needs a torchvision matching torch): {type(exc).__name__}: {exc}")
    enc = build(registry, tiny_info).eval()
    with torch.no_grad():
        w = enc(torch.zeros(2, 3, 64, 64))
    assert w.shape == (2, tiny_info.num_ws, tiny_info.w_dim) and torch.isfinite(w).all()


def test_glue_with_a_stand_in_timm(registry, tiny_info, fake_timm, tmp_path) -> None:
    enc = build(registry, tiny_info, model_name="fake_net")
    assert isinstance(enc, LatentEncoder) and enc.role == "latent"
    assert fake_timm == [("fake_net", {"features_only": True, "in_chans": 3, "pretrained": False})]
    # The last three levels (strides 4, 8, 16 -> 16², 8², 4² at 64) feed the pyramid.
    assert enc.styles.resolutions == (16, 8, 4)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    w = enc(x)
    assert w.shape == (2, tiny_info.num_ws, tiny_info.w_dim)
    w.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    # The weights are read by us (safetensors / weights-only) and handed to timm as a state dict:
    # timm never opens a file a config names.
    from safetensors.torch import save_file

    weights = tmp_path / "fake.safetensors"
    save_file({"stem.weight": torch.arange(6.0).view(2, 3)}, str(weights))
    build(registry, tiny_info, weights=str(weights))
    overlay = fake_timm[-1][1]["pretrained_cfg_overlay"]
    assert fake_timm[-1][1]["pretrained"] is True and list(overlay) == ["state_dict"]
    assert torch.equal(overlay["state_dict"]["stem.weight"], torch.arange(6.0).view(2, 3))
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        build(registry, tiny_info, weights=str(tmp_path / "absent.safetensors"))
    with pytest.raises(ValueError, match="divisible"):
        build(registry, tiny_info, input_resolution=72)


def test_clear_error_without_timm(registry, tiny_info, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ImportError, match=r"invertavatar-encoders\[timm\]"):
        build(registry, tiny_info)
