"""Hand-checked numerics of each aggregator."""

import math

import pytest
import torch

from invertavatar_aggregators import (
    ConvFusionAggregator,
    ConvFusionAggregatorConfig,
    ConvGRUAggregator,
    ConvGRUAggregatorConfig,
    MeanAggregator,
    MeanAggregatorConfig,
)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_conv_gru_matches_eq1_by_hand():
    """One channel, 1x1 kernels with set weights: two steps of Eq. 1 computed by hand."""
    gru = ConvGRUAggregator(ConvGRUAggregatorConfig(kernel_size=1), channels=1)
    with torch.no_grad():
        # gates([f, h]) -> (z, r): z = sigmoid(0.5 f - 1.0 h + 0.1), r = sigmoid(-0.3 f + 2.0 h - 0.2)
        gru.gates.weight.copy_(torch.tensor([[0.5, -1.0], [-0.3, 2.0]]).view(2, 2, 1, 1))
        gru.gates.bias.copy_(torch.tensor([0.1, -0.2]))
        # candidate([f, r h]) -> o = tanh(0.7 f + 1.5 (r h) + 0.05)
        gru.candidate.weight.copy_(torch.tensor([[0.7, 1.5]]).view(1, 2, 1, 1))
        gru.candidate.bias.copy_(torch.tensor([0.05]))

    f1, f2 = 0.8, -0.4
    h = 0.0  # h_0 = 0
    for f in (f1, f2):
        z = _sigmoid(0.5 * f - 1.0 * h + 0.1)
        r = _sigmoid(-0.3 * f + 2.0 * h - 0.2)
        o = math.tanh(0.7 * f + 1.5 * (r * h) + 0.05)
        h = z * h + (1 - z) * o

    frames = torch.tensor([f1, f2]).view(1, 2, 1, 1, 1)
    assert gru(frames).item() == pytest.approx(h, abs=1e-6)


def test_conv_gru_first_step_from_zero_state():
    """With h_0 = 0 the first output is (1 - z_1) * o_1, never the raw input."""
    gru = ConvGRUAggregator(ConvGRUAggregatorConfig(), channels=3)
    frame = torch.randn(2, 3, 4, 4)
    state = gru.init_state(frame)
    assert torch.equal(state["h"], torch.zeros_like(frame))
    h1 = gru.read(gru.update(state, frame))
    z = torch.sigmoid(gru.gates(torch.cat([frame, torch.zeros_like(frame)], 1)))[:, :3]
    o = torch.tanh(gru.candidate(torch.cat([frame, torch.zeros_like(frame)], 1)))
    torch.testing.assert_close(h1, (1 - z) * o)


def test_conv_gru_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        ConvGRUAggregator(ConvGRUAggregatorConfig(kernel_size=2), channels=1)


def test_mean_is_the_average_and_order_free():
    frames = torch.randn(2, 5, 3, 4, 4)
    agg = MeanAggregator(MeanAggregatorConfig(), channels=3)
    torch.testing.assert_close(agg(frames), frames.mean(1))
    torch.testing.assert_close(agg(frames[:, [4, 2, 0, 1, 3]]), frames.mean(1))
    with pytest.raises(ValueError, match="before any frame"):
        agg.read(agg.init_state(frames[:, 0]))


def test_conv_fusion_windows_then_average():
    """Window 2 over frames a, b, c: mean(fuse(a, b), fuse(c, c)); over a..d: mean(fuse(a,b), fuse(c,d))."""
    agg = ConvFusionAggregator(ConvFusionAggregatorConfig(window=2), channels=3)
    a, b, c, d = torch.randn(4, 1, 3, 5, 5)

    def fuse(x, y):
        return agg._fuse(torch.stack([x, y], 1))

    three = agg(torch.stack([a, b, c], 1))
    torch.testing.assert_close(three, (fuse(a, b) + fuse(c, c)) / 2)
    four = agg(torch.stack([a, b, c, d], 1))
    torch.testing.assert_close(four, (fuse(a, b) + fuse(c, d)) / 2)
    one = agg(torch.stack([a], 1))
    torch.testing.assert_close(one, fuse(a, a))


def test_conv_gru_release_convention_by_hand():
    """The release's reading of the same weights: r is the first gate half, z weights the candidate."""
    config = ConvGRUAggregatorConfig(kernel_size=1, gate_order="reset_update", update_weights="candidate")
    gru = ConvGRUAggregator(config, channels=1)
    with torch.no_grad():
        # gates([f, h]) -> (r, z): r = sigmoid(0.5 f - 1.0 h + 0.1), z = sigmoid(-0.3 f + 2.0 h - 0.2)
        gru.gates.weight.copy_(torch.tensor([[0.5, -1.0], [-0.3, 2.0]]).view(2, 2, 1, 1))
        gru.gates.bias.copy_(torch.tensor([0.1, -0.2]))
        gru.candidate.weight.copy_(torch.tensor([[0.7, 1.5]]).view(1, 2, 1, 1))
        gru.candidate.bias.copy_(torch.tensor([0.05]))

    h = 0.0
    for f in (0.8, -0.4, 0.3):
        r = _sigmoid(0.5 * f - 1.0 * h + 0.1)
        z = _sigmoid(-0.3 * f + 2.0 * h - 0.2)
        c = math.tanh(0.7 * f + 1.5 * (r * h) + 0.05)
        h = (1 - z) * h + z * c

    frames = torch.tensor([0.8, -0.4, 0.3]).view(1, 3, 1, 1, 1)
    assert gru(frames).item() == pytest.approx(h, abs=1e-6)
    paper = ConvGRUAggregator(ConvGRUAggregatorConfig(kernel_size=1), channels=1)
    paper.load_state_dict(gru.state_dict())
    assert abs(paper(frames).item() - h) > 1e-3  # the paper's reading of these weights is another function
