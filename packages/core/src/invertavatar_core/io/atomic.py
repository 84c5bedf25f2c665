"""Atomic writes and output folders: a reader sees the old file or the new one, never a half-written one.

Files are written to a temporary sibling, flushed to disk and moved over the target with
``os.replace``. Directories (a checkpoint is a directory) are built in a temporary sibling and
swapped in with two renames; :func:`recover_directory` restores the previous directory if a
crash fell between those renames.

Every folder invertavatar creates holds a marker file, :data:`MARKER_FILE` (JSON: ``kind``,
``version``). A folder is replaced or written into only when its marker says it is ours and of
the same kind; :func:`check_output_dir` / :func:`check_output_file` say so (or refuse, naming
the path) before a command does any work, so nothing a user wrote is overwritten or deleted.
"""

import contextlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER_FILE",
    "OutputPathError",
    "atomic_directory",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "read_marker",
    "recover_directory",
    "write_marker",
]

MARKER_FILE = ".invertavatar"
"""Marker file in every folder invertavatar creates: ``{"kind": ..., "version": 1, "invertavatar_version": ...}``."""
_MARKER_VERSION = 1
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


class OutputPathError(ValueError):
    """An output path invertavatar will not write (a user's folder, a file in the way, no permission)."""


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


def _marker_json(kind: str) -> str:
    from invertavatar_core.version import __version__

    return json.dumps({"kind": kind, "version": _MARKER_VERSION, "invertavatar_version": __version__}) + "\n"


def write_marker(folder: str | Path, kind: str) -> Path:
    """Mark ``folder`` (created if missing) as invertavatar output of ``kind``; returns the marker path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / MARKER_FILE, _marker_json(kind))


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of ``folder`` (``{"kind": ..., ...}``), or ``None`` when it has none or an unreadable one."""
    try:
        data = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _owned_kind(folder: Path, signature: Sequence[str]) -> str | None:
    """The kind our marker in ``folder`` records, or ``"?"``, or ``None`` for a folder we did not write.

    ``"?"``: no marker, but every ``signature`` file is there (written before markers existed).
    """
    marker = read_marker(folder)
    if marker is not None:
        return marker["kind"]
    if signature and all((folder / name).exists() for name in signature):
        return "?"
    return None


def _is_cwd_or_above(path: Path) -> bool:
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    return resolved == cwd or resolved in cwd.parents


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write in."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: cannot write in {ancestor} (permission denied)")


def check_output_dir(
    path: str | Path,
    kind: str,
    *,
    overwrite: bool = False,
    reuse: bool = False,
    signature: Sequence[str] = (),
    what: str = "--out",
) -> Path:
    """Check, before any work, that the folder ``path`` may receive output of ``kind``; sweep stale temporaries.

    Refused (:class:`OutputPathError`, one line naming ``path``): the current folder or one above
    it, a file where the folder goes, a parent that is a file, no write permission, a non-empty
    folder without our marker (``--overwrite`` does not change that), one marked as another kind,
    and one of the same kind unless ``overwrite`` (the caller replaces it) or ``reuse`` (the
    caller resumes or adds to it, e.g. a training run). ``signature``: files that identify a
    folder of this kind written before markers existed.
    """
    path = Path(path).expanduser()
    if path.name in ("", ".", "..") or _is_cwd_or_above(path):
        raise OutputPathError(f"{what} {path}: is the current folder or one above it; name a new folder")
    _check_parent(path, what)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path}: is a file; a folder goes there")
    recover_directory(path)
    if path.is_dir() and any(path.iterdir()):
        owned = _owned_kind(path, signature)
        if owned is None:
            raise OutputPathError(
                f"{what} {path}: folder holds files invertavatar did not write; nothing was changed, "
                f"choose a new folder"
            )
        if owned not in (kind, "?"):
            raise OutputPathError(f"{what} {path}: holds invertavatar output of kind {owned!r}, not {kind!r}")
        if not (overwrite or reuse):
            raise OutputPathError(f"{what} {path}: holds earlier output ({kind}); pass --overwrite to replace it")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{what} {path}: cannot write in it (permission denied)")
    return path


def check_output_file(path: str | Path, *, what: str = "--out") -> Path:
    """Check, before any work, that the file ``path`` can be written; sweep stale temporaries of earlier writes.

    Refused (:class:`OutputPathError`): a folder in the way, a parent that is a file, no permission.
    """
    path = Path(path).expanduser()
    if path.name in ("", ".", "..") or path.is_dir():
        raise OutputPathError(f"{what} {path}: is a folder; a file goes there")
    _check_parent(path, what)
    if path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: cannot write in {path.parent} (permission denied)")
    recover_directory(path)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, kind: str, *, signature: Sequence[str] = ()) -> Iterator[Path]:
    """Build a directory in a temporary sibling; on success it replaces ``path`` whole.

    The new directory carries the marker of ``kind``. An existing ``path`` is replaced only when
    it is empty or ours of the same ``kind`` (see :func:`check_output_dir`); otherwise
    :class:`OutputPathError` is raised before anything is written. The temporary sibling is
    removed on every failure.

    Example:
        >>> with atomic_directory("ckpt", "component") as tmp:  # doctest: +SKIP
        ...     (tmp / "config.json").write_text("{}")
    """
    path = Path(path)
    if path.name in ("", ".", "..") or _is_cwd_or_above(path):
        raise OutputPathError(f"{path}: is the current folder or one above it; refusing to replace it")
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file; a folder goes there")
    recover_directory(path)
    if path.is_dir() and any(path.iterdir()) and _owned_kind(path, signature) not in (kind, "?"):
        raise OutputPathError(f"{path}: holds files that are not invertavatar output of kind {kind!r}; not replaced")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path.parent, f".{path.name}{_TMP}", "", directory=True)
    file_mode = stat.S_IMODE(tmp.stat().st_mode) & 0o666
    backup = None
    try:
        yield tmp
        (tmp / MARKER_FILE).write_text(_marker_json(kind), encoding="utf-8")
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, file_mode)  # weights and JSON alike, whatever their writer did
                with open(child, "rb+") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(tmp)
        if path.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{path.name}{_BACKUP}", dir=path.parent))
            backup.rmdir()
            os.replace(path, backup)
        try:
            os.replace(tmp, path)
        except BaseException:
            if backup is not None:
                os.replace(backup, path)
                backup = None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(path.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
