"""LPIPS: weight layouts load, identical images give 0, distance grows with distortion, gradients flow."""

import pytest
import torch
from safetensors.torch import save_file

from invertavatar_core.evaluation.metrics import LPIPS, LPIPSConfig, LPIPSNetwork
from invertavatar_core.evaluation.metrics.lpips import TAP_CHANNELS
from invertavatar_core.io.checkpoints import CheckpointError


def _random_weights(tmp_path, *, backbone_layout="torchvision", suffix=".pth"):
    """A random AlexNet in the given layout and random non-negative heads in LPIPS layout."""
    net = LPIPSNetwork()
    features = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
    if backbone_layout == "lpips_model":  # net.slice{k}.{i}.* as in a whole LPIPS model
        slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
        features = {f"net.slice{slice_of[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in features.items()}
    backbone = {**features, "classifier.1.weight": torch.zeros(2, 3)}  # a classifier is ignored
    g = torch.Generator().manual_seed(0)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(TAP_CHANNELS)}
    paths = tmp_path / f"alexnet{suffix}", tmp_path / f"alex_heads{suffix}"
    for path, state in zip(paths, (backbone, heads), strict=True):
        if suffix == ".pth":
            torch.save(state, path)
        else:
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return paths, net, heads


def _images(n=2, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_missing_weights_make_it_unavailable_naming_the_field(tmp_path):
    metric = LPIPS(LPIPSConfig())
    ok, reason = metric.available()
    assert not ok and "lpips.backbone_weights is not set" in reason and "lpips.head_weights is not set" in reason
    metric = LPIPS(LPIPSConfig(backbone_weights=tmp_path / "nope.pth", head_weights=tmp_path / "heads.pth"))
    ok, reason = metric.available()
    assert not ok and f"file not found: {tmp_path / 'nope.pth'}" in reason
    with pytest.raises(RuntimeError, match="lpips.backbone_weights"):
        metric.update(_images(), _images())


@pytest.mark.parametrize(("layout", "suffix"), [("torchvision", ".pth"), ("lpips_model", ".safetensors")])
def test_weights_load_in_both_layouts_and_identical_images_score_zero(tmp_path, layout, suffix):
    (backbone, heads_path), reference, heads = _random_weights(tmp_path, backbone_layout=layout, suffix=suffix)
    metric = LPIPS(LPIPSConfig(backbone_weights=backbone, head_weights=heads_path))
    assert metric.available() == (True, "")
    torch.testing.assert_close(metric.network.features[3].weight, reference.features[3].weight)
    torch.testing.assert_close(metric.network.heads[2].weight, heads["lin2.model.1.weight"])
    x = _images()
    metric.update(x, x)
    assert metric.compute() == 0.0


def test_distance_grows_with_distortion_and_is_differentiable(tmp_path):
    (backbone, heads), _, _ = _random_weights(tmp_path)
    metric = LPIPS(LPIPSConfig(backbone_weights=backbone, head_weights=heads))
    x = _images(n=2, size=64)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    values = []
    for sigma in (0.05, 0.2, 0.6):
        metric.reset()
        metric.update((x + sigma * noise).clamp(-1, 1), x)
        values.append(metric.compute())
    assert 0 < values[0] < values[1] < values[2]
    prediction = (x + 0.1 * noise).requires_grad_(True)
    distance = metric.distance(prediction, x)
    assert distance.shape == (2,)
    distance.sum().backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None for p in metric.parameters())  # the network itself stays frozen


def test_mismatched_and_negative_weights_are_rejected_by_name(tmp_path):
    (backbone, heads), _, head_state = _random_weights(tmp_path)
    state = torch.load(backbone, weights_only=True)
    state["features.3.weight"] = state["features.3.weight"][:10]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"features\.3\.weight: checkpoint \(10, 64, 5, 5\)"):
        LPIPS(LPIPSConfig(backbone_weights=tmp_path / "bad.pth", head_weights=heads))
    torch.save({k: -v for k, v in head_state.items()}, tmp_path / "neg.pth")
    with pytest.raises(CheckpointError, match="non-negative"):
        LPIPS(LPIPSConfig(backbone_weights=backbone, head_weights=tmp_path / "neg.pth"))
