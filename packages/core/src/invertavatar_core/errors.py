"""Errors a user can fix, shared by the library and the command line.

:class:`UserError` is caused by input the user can fix; the ``invertavatar`` command prints it as
one line (exit status 2) instead of a traceback. Its kin name what was wrong more precisely and
stay beside the code that raises them, subclassing both :class:`UserError` and ``ValueError``:
``invertavatar_core.data.datasets.DatasetFormatError``,
``invertavatar_core.data.datasets.MorphableModelMismatchError``, ``invertavatar_core.io.media.ImageReadError``,
``invertavatar_core.io.checkpoints.CheckpointError`` and ``invertavatar_core.config.sweep.SweepValidationError``.
"""

__all__ = ["UserError"]


class UserError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""
