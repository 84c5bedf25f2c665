"""FID: the Fréchet distance matches closed forms; the Inception network loads a torchvision-layout file."""

import math

import pytest
import torch
from safetensors.torch import save_file

from invertavatar_core.evaluation.metrics import FID, FIDConfig, FIDInceptionV3, frechet_distance
from invertavatar_core.evaluation.metrics.fid import FeatureStatistics, sqrtm_psd
from invertavatar_core.io.checkpoints import CheckpointError


def _random_spd(dim, seed):
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    expected = float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())  # = 5 + 1 + 1 + 4
    assert expected == pytest.approx(11.0)
    assert frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_of_commuting_covariances_uses_their_eigenvalues():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    d1, d2 = torch.arange(1.0, 7.0, dtype=torch.float64), torch.arange(6.0, 0.0, -1.0, dtype=torch.float64)
    s1, s2 = q @ torch.diag(d1) @ q.T, q @ torch.diag(d2) @ q.T
    mu = torch.zeros(6, dtype=torch.float64)
    expected = float((d1 + d2 - 2 * (d1 * d2).sqrt()).sum())
    assert frechet_distance(mu, s1, mu + 0.5, s2) == pytest.approx(expected + 6 * 0.25, abs=1e-9)


def test_general_case_matches_a_direct_matrix_square_root_and_identical_sets_give_zero():
    s1, s2 = _random_spd(20, 1), _random_spd(20, 2)
    mu1, mu2 = torch.randn(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    # Reference: tr sqrt(S1 S2) from the eigenvalues of S1 S2 (real and positive for SPD inputs).
    trace_sqrt = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    expected = float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * trace_sqrt)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    root = sqrtm_psd(s1)
    torch.testing.assert_close(root @ root, s1)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_rank_deficient_covariances_stay_finite_and_statistics_are_unbiased():
    features = torch.randn(5, 64, generator=torch.Generator().manual_seed(3))  # 5 samples, 64 dims: rank 4
    stats = FeatureStatistics(64)
    stats.add(features[:2])
    stats.add(features[2:])
    mu, sigma = stats.mean_and_covariance()
    torch.testing.assert_close(mu, features.double().mean(0))
    torch.testing.assert_close(sigma, torch.cov(features.double().T))
    value = frechet_distance(mu, sigma, mu, sigma)
    assert math.isfinite(value) and value == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="at least 2 images"):
        FeatureStatistics(4).mean_and_covariance()


def test_missing_weights_are_reported_with_the_field():
    ok, reason = FID(FIDConfig()).available()
    assert not ok and "fid.weights is not set" in reason


def test_fid_with_random_inception_weights(tmp_path):
    """A torchvision-layout file (with a classifier) loads; features accumulate; distinct sets score > 0."""
    net = FIDInceptionV3(input_resolution=96)
    for module in net.modules():  # He init keeps activations alive through ~50 random layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 4), torch.zeros(1008)
    save_file(state, str(tmp_path / "inception.safetensors"))
    metric = FID(FIDConfig(weights=tmp_path / "inception.safetensors", input_resolution=96))
    assert metric.available() == (True, "")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(4, 3, 64, 64, generator=g) * 0.2 - 0.9  # darker, low-contrast set
    metric.update(x, y)  # one 2048-d compute only: each costs two eigendecompositions (seconds on CPU)
    assert metric.predictions.count == metric.targets.count == 4
    features = metric.network(torch.cat([x, y]))
    assert features.shape == (8, 2048) and torch.isfinite(features).all()
    mu_x, _ = metric.predictions.mean_and_covariance()
    torch.testing.assert_close(mu_x, features[:4].double().mean(0), rtol=1e-4, atol=1e-6)
    mean_gap = float((features[:4].double().mean(0) - features[4:].double().mean(0)).pow(2).sum())
    assert metric.compute() >= mean_gap > 1e-6  # the trace term is >= 0, so the mean term bounds FID below
    del state["Mixed_7c.branch_pool.conv.weight"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensors \(1\): Mixed_7c\.branch_pool\.conv\.weight"):
        FID(FIDConfig(weights=tmp_path / "broken.safetensors"))
