"""The released few-shot encoders (``FSInvertAvatar.pkl``) as our E_latent / E_tex / E_tri (docs/release-weights.md).

:func:`~invertavatar_encoders.release.mapping.convert_encoders` renames the tensors of the
release's ``inversionNet`` record and chooses the settings under which our encoders compute what
the release computes; :mod:`~invertavatar_encoders.release.command` is ``invertavatar convert
release-encoders``. Reading the pickle itself is the prior package's restricted unpickler: nothing
embedded in it is executed.
"""

from invertavatar_core.plugin.lazy_exports import lazy_exports

_EXPORTS = {
    "RELEASE_AGGREGATOR": "invertavatar_encoders.release.mapping",
    "ConvertedEncoders": "invertavatar_encoders.release.mapping",
    "UnusedTensor": "invertavatar_encoders.release.mapping",
    "convert_encoders": "invertavatar_encoders.release.mapping",
    "release_inference_mode": "invertavatar_encoders.release.mapping",
}
"""Public name -> the module defining it (imported on first use: ``convert --help`` loads this package)."""

__all__ = ["RELEASE_AGGREGATOR", "ConvertedEncoders", "UnusedTensor", "convert_encoders", "release_inference_mode"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
