"""The ``paper`` presets: parameter counts of the released networks and one forward each at 256² on CPU."""

import gc

import pytest
import torch

# docs/design/encoders.md (counted from the released architecture).
EXPECTED = {
    ("e4e", None): 209.5e6,
    ("texture_unet", None): 42.4e6,
    ("triplane_sft_unet", None): 56.6e6,
    ("texture_unet", "conv_gru"): 68.5e6,
    ("triplane_sft_unet", "conv_gru"): 82.8e6,
}


def build(registry, info, name, aggregator=None):
    return registry.create("encoder", {"name": name}, prior_info=info, aggregator=aggregator, registry=registry)


@pytest.mark.parametrize(("name", "aggregator"), list(EXPECTED))
def test_parameter_counts(registry, paper_info, aggregator_config, name, aggregator) -> None:
    enc = build(registry, paper_info, name, aggregator_config(aggregator))
    count = sum(p.numel() for p in enc.parameters())
    # Measured: 209.45 M, 42.36 M, 56.62 M, 68.52 M, 82.78 M: held to 0.5 %.
    assert count == pytest.approx(EXPECTED[(name, aggregator)], rel=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["e4e", "texture_unet", "triplane_sft_unet"])
def test_forward_at_paper_size(registry, paper_info, name) -> None:
    enc = build(registry, paper_info, name).eval()
    assert enc.input_resolution == 256
    x = torch.rand(1, enc.input_channels, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        out = enc(x) if enc.role == "latent" else enc(x[:, None])
    if name == "e4e":
        assert out.shape == (1, 14, 512) and torch.isfinite(out).all()
    elif name == "texture_unet":
        shapes = {k: tuple(v.shape[1:]) for k, v in out.texture_offsets.items()}
        assert shapes == {"rgb32": (32, 32, 32), "x32": (512, 32, 32), "x64": (512, 64, 64), "x128": (256, 128, 128)}
        assert all(torch.isfinite(v).all() for v in out.texture_offsets.values())
    else:
        shapes = {k: tuple(s.shape[1:]) for k, (s, _) in out.static_sft.items()}
        assert shapes == {
            "x16": (256, 16, 16),
            "x32": (256, 32, 32),
            "x64": (256, 64, 64),
            "x128": (128, 128, 128),
            "x256": (64, 256, 256),
        }
        assert all(torch.isfinite(s).all() and torch.isfinite(t).all() for s, t in out.static_sft.values())
    del enc
    gc.collect()
