"""The jaxtyping annotations are checked while the suite runs (pyproject's --jaxtyping-packages)."""

import jaxtyping
import pytest
import torch

from invertavatar_core.evaluation.metrics.akd import keypoint_distance


def test_a_mis_shaped_call_is_refused_by_the_checker():
    with pytest.raises(jaxtyping.TypeCheckError, match="keypoint_distance"):
        keypoint_distance(torch.zeros(5, 3), torch.zeros(5, 3), width=10)  # (L, 3) where (L, 2) is annotated


def test_a_wrong_dtype_is_refused_by_the_checker():
    with pytest.raises(jaxtyping.TypeCheckError):
        keypoint_distance(torch.zeros(5, 2, dtype=torch.int64), torch.zeros(5, 2, dtype=torch.int64), width=10)


def test_dimensions_bind_across_arguments():
    with pytest.raises(jaxtyping.TypeCheckError):
        keypoint_distance(torch.zeros(5, 2), torch.zeros(4, 2), width=10)  # L = 5, then L = 4
    assert keypoint_distance(torch.zeros(5, 2), torch.ones(5, 2), width=2) == pytest.approx(2**0.5 / 2)


def test_the_checker_covers_every_package():
    import invertavatar_aggregators
    import invertavatar_core
    import invertavatar_encoders
    import invertavatar_faceverse
    import invertavatar_prior_next3d

    packages = (invertavatar_core, invertavatar_aggregators, invertavatar_encoders, invertavatar_faceverse)
    for package in (*packages, invertavatar_prior_next3d):
        # The import hook adds `import jaxtyping` to each module it instruments; no package imports it itself.
        assert "jaxtyping" in vars(package), f"{package.__name__} was imported without the checker's import hook"
