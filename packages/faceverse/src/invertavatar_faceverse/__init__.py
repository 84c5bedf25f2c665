"""invertavatar-faceverse: morphable face models, landmark fitting, synthetic heads and the fit command.

Models: the procedural head (generated in code), ICT Face Model Light and FaceVerse v3.1. The
public API: :func:`fit_dataset` (photos or videos -> a fitted dataset, what ``invertavatar fit``
runs) and :data:`COEFFICIENT_LAYOUT` (the parts of FaceVerse v3.1's 610-d coefficient vector).
"""

from invertavatar_faceverse.dataset_fitting import fit_dataset
from invertavatar_faceverse.faceverse import COEFFICIENT_LAYOUT

__all__ = ["COEFFICIENT_LAYOUT", "fit_dataset"]
