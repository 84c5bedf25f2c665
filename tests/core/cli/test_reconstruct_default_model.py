"""``reconstruct`` without ``--checkpoint``: the built-in model, or one line saying there is none."""

import argparse
from pathlib import Path

import pytest

from invertavatar_core import pretrained
from invertavatar_core.cli import reconstruct
from invertavatar_core.errors import UserError


def test_without_checkpoint_the_builtin_model_is_used(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pretrained, "builtin_model_dir", lambda name=pretrained.DEFAULT_MODEL: tmp_path)
    assert reconstruct._checkpoint(argparse.Namespace(checkpoint=None)) == tmp_path
    assert f"built-in {pretrained.DEFAULT_MODEL}" in capsys.readouterr().out


def test_without_checkpoint_or_builtin_model_one_line_names_both(monkeypatch):
    monkeypatch.setattr(pretrained, "builtin_model_dir", lambda name=pretrained.DEFAULT_MODEL: None)
    with pytest.raises(UserError, match="no --checkpoint given.*synth-heads-tiny"):
        reconstruct._checkpoint(argparse.Namespace(checkpoint=None))


def test_a_missing_checkpoint_folder_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(UserError, match=f"--checkpoint {missing}: folder not found"):
        reconstruct._checkpoint(argparse.Namespace(checkpoint=str(missing)))
    assert reconstruct._checkpoint(argparse.Namespace(checkpoint=str(tmp_path))) == Path(tmp_path)
