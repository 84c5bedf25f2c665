"""Metric plots: noise far below the values' size is not drawn as a trend."""

import pytest

from invertavatar_core.evaluation.plots import MIN_RELATIVE_SPAN, metric_axis_limits, plot_metric_vs_frames


def test_tiny_spread_gets_an_axis_proportional_to_the_values():
    low, high = metric_axis_limits([0.5000, 0.5001, 0.50004])
    assert high - low == pytest.approx(MIN_RELATIVE_SPAN * 0.5001)
    assert (low + high) / 2 == pytest.approx(0.50005)


def test_real_trends_and_zeros_keep_matplotlib_limits():
    assert metric_axis_limits([0.10, 0.20, 0.35]) is None  # a spread of 70 %: drawn as it is
    assert metric_axis_limits([0.0, 0.0]) is None
    low, high = metric_axis_limits([-20.0, -20.001])  # negative values: the span follows the magnitude
    assert high - low == pytest.approx(MIN_RELATIVE_SPAN * 20.001)


def test_flat_curve_is_plotted(tmp_path):
    rows = [{"model": "demo", "source_frames": t, "l1": 0.25 + 1e-5 * t} for t in (1, 2, 3, 4)]
    path = plot_metric_vs_frames(rows, "l1", tmp_path / "l1.png")
    assert path.stat().st_size > 1000
