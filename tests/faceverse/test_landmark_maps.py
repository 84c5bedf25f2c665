"""Landmark-contour images: lips, lids and iris dots drawn at the right place in their own channels."""

import math

import pytest
import torch

from invertavatar_faceverse.landmark_maps import landmark_contour_map
from invertavatar_faceverse.mediapipe_landmarks import CONTOURS


def _points() -> torch.Tensor:
    points = torch.full((478, 2), math.nan)
    lip = CONTOURS["lips_upper_outer"]
    xs = torch.linspace(40, 160, len(lip))
    points[list(lip)] = torch.stack([xs, torch.full_like(xs, 100.0)], dim=1)  # a straight lip at y = 100 px
    points[468] = torch.tensor([60.0, 60.0])  # right iris centre
    return points


def test_contours_are_drawn_in_their_channels_at_the_scaled_position():
    image = landmark_contour_map(_points(), image_size=200, resolution=100)  # half scale: lip at row 50
    assert image.shape == (3, 100, 100) and set(image.unique().tolist()) == {-1.0, 1.0}
    lips, lids, irises = image
    assert (lips[49:51, 22:78] == 1).all()  # the segment from x = 20 to 80, on the rows either side of y = 50
    assert (lips[:47] == -1).all() and (lips[53:] == -1).all() and (lips[:, :18] == -1).all()
    assert (lids == -1).all()  # no finite lid landmark: nothing drawn
    assert irises[29:31, 29:31].eq(1).all() and int(irises.gt(0).sum()) == 4  # one dot at (30, 30)


def test_wrong_landmark_count_is_refused():
    with pytest.raises(ValueError, match=r"\(478, 2\) MediaPipe points, got \(68, 2\)"):
        landmark_contour_map(torch.zeros(68, 2), 512, 128)
