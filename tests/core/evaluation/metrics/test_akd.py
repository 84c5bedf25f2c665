"""AKD: shifted landmarks give the known normalised distance; missed faces are counted, not averaged."""

import math

import numpy as np
import pytest
import torch

from invertavatar_core.evaluation.metrics import AKD, AKDConfig, keypoint_distance


class BrightSquareDetector:
    """Three 'landmarks' around the centroid of bright pixels; no face when the image is dark."""

    num_landmarks = 3

    def detect(self, image: np.ndarray):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        ys, xs = np.nonzero(image[..., 0] > 127)
        if len(xs) == 0:
            return None
        cx, cy = xs.mean(), ys.mean()
        return torch.tensor([[cx, cy], [cx + 5, cy], [cx, cy + 5]], dtype=torch.float32)


def _square(top, left, size=64, side=10):
    image = -torch.ones(1, 3, size, size)
    image[..., top : top + side, left : left + side] = 1.0
    return image


def test_keypoint_distance_is_normalised_by_width(without_shape_checker):  # its own shape check
    target = torch.tensor([[10.0, 10.0], [20.0, 30.0]])
    assert keypoint_distance(target + torch.tensor([3.0, 4.0]), target, width=100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="differ in shape"):
        keypoint_distance(target[:1], target, width=100)


def test_shifted_landmarks_give_the_known_akd():
    metric = AKD(AKDConfig(), detector=BrightSquareDetector())
    assert metric.available() == (True, "")
    metric.update(_square(20, 20), _square(20, 20))
    assert metric.compute() == 0.0
    metric.reset()
    metric.update(torch.cat([_square(23, 24), _square(20, 26)]), torch.cat([_square(20, 20), _square(20, 20)]))
    # shifts (dx, dy) = (4, 3) -> 5 px and (6, 0) -> 6 px, over a 64-px frame
    assert metric.compute() == pytest.approx((5 / 64 + 6 / 64) / 2, abs=1e-6)
    assert metric.count == 2


def test_missed_and_faceless_pairs_are_counted_not_averaged():
    metric = AKD(AKDConfig(), detector=BrightSquareDetector())
    dark = -torch.ones(1, 3, 64, 64)
    metric.update(dark, _square(20, 20))  # the prediction lost the face
    metric.update(_square(20, 20), dark)  # no ground truth
    assert (metric.missed, metric.no_target_face, metric.count) == (1, 1, 0)
    assert math.isnan(metric.compute())
    metric.update(_square(20, 23), _square(20, 20))
    assert metric.compute() == pytest.approx(3 / 64, abs=1e-6)
    metric.reset()
    assert (metric.missed, metric.no_target_face) == (0, 0)


def test_unknown_detector_is_unavailable_with_the_registry_message():
    metric = AKD(AKDConfig(detector="no_such_detector"))
    ok, reason = metric.available()
    assert not ok and "akd.detector" in reason and "no_such_detector" in reason
    with pytest.raises(RuntimeError, match="AKD cannot run here"):
        metric.update(_square(0, 0), _square(0, 0))


@pytest.mark.assets
def test_mediapipe_akd_on_a_shifted_portrait(assets_dir, full_registry):
    """The paper's detector: translating a real portrait by 8 px moves its landmarks by ~8 px."""
    if ("landmark_detector", "mediapipe") not in full_registry:
        pytest.skip("landmark_detector 'mediapipe' is not registered here (invertavatar-faceverse[mediapipe])")
    from invertavatar_core.io.media import read_image

    image = read_image(assets_dir / "media" / "obama_official_portrait.jpg")
    side = min(image.shape[-2:])
    portrait = torch.nn.functional.interpolate(image[None, :, :side, :side], size=(256, 256), mode="area")
    shifted = torch.nn.functional.pad(portrait, (8, 0, 0, 0), mode="replicate")[..., :, :256]
    metric = AKD(AKDConfig(), detector=full_registry.create("landmark_detector", "mediapipe"))
    metric.update(shifted, portrait)
    assert metric.count == 1
    assert metric.compute() == pytest.approx(8 / 256, rel=0.25)
