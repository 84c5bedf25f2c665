"""CSIM: ArcFace IR-SE-50 weights load from a file; identical images give 1, different ones less."""

import pytest
import torch
from safetensors.torch import save_model

from invertavatar_core.evaluation.metrics import CSIM, CSIMConfig, arcface_embedding
from invertavatar_core.nn.ir_se import IRSENet


def test_missing_weights_name_the_field(tmp_path):
    ok, reason = CSIM(CSIMConfig()).available()
    assert not ok and "csim.weights is not set" in reason and "model_ir_se50.pth" in reason
    ok, reason = CSIM(CSIMConfig(weights=tmp_path / "model_ir_se50.pth")).available()
    assert not ok and "file not found" in reason


def test_csim_with_random_ir_se50_weights(tmp_path):
    reference = IRSENet(head_resolution=112).eval()
    save_model(reference, str(tmp_path / "ir_se50.safetensors"))
    metric = CSIM(CSIMConfig(weights=tmp_path / "ir_se50.safetensors"))
    assert metric.available() == (True, "")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    b = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    metric.update(a, a)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    metric.reset()
    metric.update(a, b)
    assert metric.compute() < 1.0 - 1e-6
    # The embedding is the loaded network's on the face crop, unit length.
    with torch.no_grad():
        embedding = arcface_embedding(metric.network, a)
        torch.testing.assert_close(embedding, arcface_embedding(reference, a))
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    assert not metric.network.training and not metric.train().network.training  # stays in eval mode
