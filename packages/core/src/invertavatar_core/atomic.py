"""Atomic writes: a reader sees the old file or the new one, never a half-written one.

Files are written to a temporary sibling, flushed to disk and moved over the target with
``os.replace``. Directories (a checkpoint is a directory) are built in a temporary sibling and
swapped in with two renames; :func:`recover_directory` restores the previous directory if a
crash fell between those renames.
"""

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_write", "atomic_write_bytes", "atomic_write_text", "recover_directory"]

_BACKUP = ".bak-"
_TMP = ".tmp-"


def _create_sibling(parent: Path, prefix: str, suffix: str, *, directory: bool) -> Path:
    """Create a new, uniquely named file or directory with the mode a plain ``open``/``mkdir`` gives.

    ``mkstemp``/``mkdtemp`` create 0600/0700 whatever the umask; creating with 0666/0777 lets the
    kernel apply the process's umask at write time (read back from the result's mode, since
    reading the umask means changing it).
    """
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            if directory:
                os.mkdir(candidate, 0o777)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows fsync on a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result over ``path`` atomically.

    If ``write`` raises, ``path`` is untouched and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path.parent, f".{path.name}{_TMP}", path.suffix, directory=False)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(tmp)
        # Some writers (safetensors) replace the file with a 0600 one of their own.
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def recover_directory(path: str | Path) -> Path:
    """Undo an interrupted directory swap: restore ``path`` from its backup if it is missing.

    Leftover temporary directories of failed writes are removed.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return path
    backups = sorted(parent.glob(f".{path.name}{_BACKUP}*"))
    if not path.exists() and backups:
        os.replace(backups[-1], path)
        backups = backups[:-1]
    for stale in backups + list(parent.glob(f".{path.name}{_TMP}*")):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling; on success it replaces ``path`` whole.

    Example:
        >>> with atomic_directory("ckpt") as tmp:  # doctest: +SKIP
        ...     (tmp / "config.json").write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    tmp = _create_sibling(path.parent, f".{path.name}{_TMP}", "", directory=True)
    file_mode = stat.S_IMODE(tmp.stat().st_mode) & 0o666
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, file_mode)  # weights and JSON alike, whatever their writer did
                with open(child, "rb+") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = None
    if path.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{path.name}{_BACKUP}", dir=path.parent))
        backup.rmdir()
        os.replace(path, backup)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
