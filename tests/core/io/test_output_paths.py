"""Where output may go: marker files, refusals before any work, no temporaries left on any exit path."""

import json
import os

import pytest

from invertavatar_core.io import atomic
from invertavatar_core.io.atomic import (
    MARKER_FILE,
    OutputPathError,
    atomic_directory,
    check_output_dir,
    check_output_file,
    read_marker,
    write_marker,
)


def _temporaries(root):
    return sorted(p.name for p in root.rglob("*") if ".tmp-" in p.name or ".bak-" in p.name)


def test_marker_round_trip_and_kind(tmp_path):
    write_marker(tmp_path / "out", "avatar")
    assert read_marker(tmp_path / "out")["kind"] == "avatar"
    assert json.loads((tmp_path / "out" / MARKER_FILE).read_text())["version"] == 1
    (tmp_path / "out" / MARKER_FILE).write_text("not json")
    assert read_marker(tmp_path / "out") is None and read_marker(tmp_path / "absent") is None


def test_a_folder_we_did_not_write_is_refused_even_with_overwrite(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    for overwrite, reuse in ((False, False), (True, False), (False, True)):
        with pytest.raises(OutputPathError, match="did not write"):
            check_output_dir(mine, "avatar", overwrite=overwrite, reuse=reuse)
    with pytest.raises(OutputPathError, match="not invertavatar output of kind 'avatar'; not replaced"):
        with atomic_directory(mine, "avatar") as tmp:
            (tmp / "avatar.json").write_text("{}")
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"] and _temporaries(tmp_path) == []


def test_our_folder_needs_overwrite_and_the_same_kind(tmp_path):
    with atomic_directory(tmp_path / "a", "avatar") as tmp:
        (tmp / "x").write_text("1")
    assert read_marker(tmp_path / "a")["kind"] == "avatar"
    with pytest.raises(OutputPathError, match="--overwrite"):
        check_output_dir(tmp_path / "a", "avatar")
    assert check_output_dir(tmp_path / "a", "avatar", overwrite=True) == tmp_path / "a"
    with pytest.raises(OutputPathError, match="holds invertavatar output of kind 'avatar', not 'fit'"):
        check_output_dir(tmp_path / "a", "fit", overwrite=True)
    with atomic_directory(tmp_path / "a", "avatar") as tmp:
        (tmp / "y").write_text("2")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MARKER_FILE, "y"]
    # Written before marker files existed: recognised by its signature files.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "avatar.json").write_text("{}")
    assert check_output_dir(tmp_path / "old", "avatar", overwrite=True, signature=("avatar.json",))
    assert check_output_dir(tmp_path / "empty-new", "avatar") == tmp_path / "empty-new"


def test_impossible_places_are_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    cases = {
        ".": "current folder",
        str(tmp_path): "current folder",
        str(tmp_path.parent): "current folder",
        "file.txt": "is a file; a folder goes there",
        "file.txt/out": "is a file, not a folder",
        "file.txt/deeper/out": "is a file, not a folder",
    }
    for path, message in cases.items():
        with pytest.raises(OutputPathError, match=message) as info:
            check_output_dir(path, "avatar", overwrite=True)
        assert path in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OutputPathError, match="is a folder; a file goes there"):
        check_output_file(".")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_file("file.txt/video.mp4")
    check_output_file("new/video.mp4")
    with pytest.raises(OutputPathError, match="current folder"):
        with atomic_directory(".", "avatar"):
            pass
    assert _temporaries(tmp_path) == []


def test_no_permission_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Root may write anywhere, so the permission answer is simulated for this one folder.
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    with pytest.raises(OutputPathError, match="permission denied"):
        check_output_dir(locked / "out", "avatar")
    with pytest.raises(OutputPathError, match="permission denied"):
        check_output_file(locked / "video.mp4")


def test_a_failed_swap_restores_the_old_folder_and_leaves_no_temporaries(tmp_path, monkeypatch):
    with atomic_directory(tmp_path / "a", "avatar") as tmp:
        (tmp / "old").write_text("old")
    real_replace = os.replace

    def failing(src, dst):
        if ".tmp-" in str(src):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        with atomic_directory(tmp_path / "a", "avatar") as tmp:
            (tmp / "new").write_text("new")
    assert (tmp_path / "a" / "old").read_text() == "old" and _temporaries(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "b", "avatar"):
            raise RuntimeError("interrupted")
    assert not (tmp_path / "b").exists() and _temporaries(tmp_path) == []


def test_stale_temporaries_of_a_killed_run_are_swept(tmp_path):
    (tmp_path / ".avatar.tmp-abc123").mkdir()
    (tmp_path / ".avatar.tmp-abc123" / "avatar.safetensors").write_bytes(b"half")
    (tmp_path / ".orbit.mp4.tmp-xyz.mp4").write_bytes(b"half")
    check_output_dir(tmp_path / "avatar", "avatar")
    check_output_file(tmp_path / "orbit.mp4")
    assert _temporaries(tmp_path) == []
