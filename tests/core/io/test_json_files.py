"""read_json: the one reader of our JSON files, with errors that name the file."""

import pytest

from invertavatar_core.io.checkpoints import CheckpointError
from invertavatar_core.io.json_files import read_json


def test_read_json_parses_and_names_the_file_when_it_cannot(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2.5, "x"]}', encoding="utf-8")
    assert read_json(good) == {"a": [1, 2.5, "x"]}
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": [1,', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"bad\.json: not valid JSON \("):
        read_json(bad, CheckpointError)
    with pytest.raises(ValueError, match=r"missing\.json: file not found"):
        read_json(tmp_path / "missing.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(ValueError, match=r"binary\.json: not valid JSON"):
        read_json(binary)
