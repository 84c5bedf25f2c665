"""The released few-shot encoders (``FSInvertAvatar.pkl``) as our E_latent / E_tex / E_tri (docs/release-weights.md).

:func:`~invertavatar_encoders.release.mapping.convert_encoders` renames the tensors of the
release's ``inversionNet`` record and chooses the settings under which our encoders compute what
the release computes; :mod:`~invertavatar_encoders.release.command` is ``invertavatar convert
release-encoders``. Reading the pickle itself is the prior package's restricted unpickler: nothing
embedded in it is executed.
"""

from invertavatar_encoders.release.mapping import (
    RELEASE_AGGREGATOR,
    ConvertedEncoders,
    UnusedTensor,
    convert_encoders,
    release_inference_mode,
)

__all__ = ["RELEASE_AGGREGATOR", "ConvertedEncoders", "UnusedTensor", "convert_encoders", "release_inference_mode"]
