"""invertavatar-faceverse: morphable face models, landmark fitting, synthetic heads and the fit command.

Models: the procedural head (generated in code), ICT Face Model Light and FaceVerse v3.1. The
public API: :func:`fit_dataset` (photos or videos -> a fitted dataset, what ``invertavatar preprocess``
runs) and :data:`COEFFICIENT_LAYOUT` (the parts of FaceVerse v3.1's 610-d coefficient vector).
"""

from invertavatar_core.plugin.lazy_exports import lazy_exports

_EXPORTS = {
    "COEFFICIENT_LAYOUT": "invertavatar_faceverse.faceverse",
    "fit_dataset": "invertavatar_faceverse.dataset_fitting",
}
"""Public name -> the module defining it (imported on first use)."""

__all__ = ["COEFFICIENT_LAYOUT", "fit_dataset"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
