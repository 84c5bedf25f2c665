"""Errors a user can fix: one class the CLI prints as a message, its kin beside the code raising them."""

import pytest

from invertavatar_core.config.sweep import SweepValidationError
from invertavatar_core.data.datasets import DatasetFormatError, MorphableModelMismatchError, open_dataset
from invertavatar_core.errors import UserError
from invertavatar_core.io.checkpoints import CheckpointError
from invertavatar_core.io.media import ImageReadError


@pytest.mark.parametrize(
    "error", [DatasetFormatError, MorphableModelMismatchError, ImageReadError, CheckpointError, SweepValidationError]
)
def test_input_errors_are_user_errors_and_still_value_errors(error):
    assert issubclass(error, UserError) and issubclass(error, ValueError)


def test_the_cli_and_the_library_raise_one_user_error(tmp_path):
    from invertavatar_core import cli

    assert cli.UserError is UserError
    with pytest.raises(UserError, match="nowhere: dataset folder not found"):
        open_dataset(tmp_path / "nowhere")
