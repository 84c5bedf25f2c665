"""Metric plots: noise far below the values' size is not drawn as a trend; image grids show every cell."""

import numpy as np
import pytest
import torch

from invertavatar_core.evaluation.plots import (
    MIN_RELATIVE_SPAN,
    metric_axis_limits,
    plot_metric_vs_frames,
    save_image_grid,
)


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


def test_image_grid_draws_every_cell_and_refuses_ragged_input(tmp_path):
    from PIL import Image

    red, blue = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    red[0], blue[2] = 1.0, 1.0  # pure red / blue in [-1, 1]: the other channels at 0 = mid grey
    one = save_image_grid([[red]], tmp_path / "one.png", column_titles=["a"], row_titles=["r"])
    wide = save_image_grid([[red, blue, red]] * 2, tmp_path / "wide.png", column_titles=list("abc"), title="t")
    with Image.open(wide) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
        width_wide = image.size[0]
    with Image.open(one) as image:
        width_one = image.size[0]
    # Both colours appear (as (255, 128, 128) and (128, 128, 255)); the bigger grid is the bigger picture.
    assert (np.abs(pixels - [255, 128, 128]).max(1) <= 2).any() and (np.abs(pixels - [128, 128, 255]).max(1) <= 2).any()
    assert width_wide > 2 * width_one
    with pytest.raises(ValueError, match="different lengths"):
        save_image_grid([[red, blue], [red]], tmp_path / "x.png")
    with pytest.raises(ValueError, match="1 row_titles for 2"):
        save_image_grid([[red], [blue]], tmp_path / "x.png", row_titles=["only one"])
    assert not (tmp_path / "x.png").exists()
