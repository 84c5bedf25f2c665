"""The authors' released checkpoints, read without running their code (docs/release-weights.md).

:mod:`invertavatar_core.io.release_pickle` reads the persistence pickles into inert records;
:mod:`~invertavatar_prior_next3d.release.prior` converts the GAN (``ani3dgan512.pkl``) into a
``next3d`` checkpoint; :mod:`~invertavatar_prior_next3d.release.command` is ``invertavatar convert release-prior``.
"""
