"""The one place invertavatar reads a pickle: a restricted unpickler for converters.

Some upstream files are pickles (the official FaceVerse ``.npy`` is a pickled dict of NumPy
arrays). A plain ``pickle.load`` / ``np.load(allow_pickle=True)`` runs whatever callable the
file names, so the library never calls one. Converters (``invertavatar convert faceverse``,
run on a file the user names on the command line) read such files through
:class:`RestrictedUnpickler`, whose ``find_class`` resolves only the globals in its allow
list, NumPy array reconstruction and a few builtin containers, and refuses anything else
with :class:`UnpicklingRefused` naming the global. A converter that needs more subclasses it:
it sets ``allowed`` to the exact callables it trusts and, for names it turns into inert
stand-ins, overrides :meth:`RestrictedUnpickler.find_unlisted`
(:mod:`invertavatar_core.io.release_pickle` does both for the authors' released snapshots).
See docs/security.md.
"""

import builtins
import codecs
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "NUMPY_GLOBALS",
    "RestrictedUnpickler",
    "UnpicklingRefused",
    "read_npy_restricted",
    "restricted_loads",
]


class UnpicklingRefused(pickle.UnpicklingError, ValueError):
    """A pickle named a global outside the allow list; nothing it named was called."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Take the callables from the running NumPy's own reductions rather than importing
    # ``numpy.core`` (deprecated and warning on NumPy 2) or ``numpy._core`` (absent on 1.x); files
    # written by either major version name their own module path.
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    found: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        found[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        found[(f"{core}.multiarray", "scalar")] = scalar
        found[(f"{core}.numeric", "_frombuffer")] = frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


NUMPY_GLOBALS: Mapping[tuple[str, str], Any] = _numpy_globals()
"""``(module, name)`` -> object for NumPy arrays, dtypes and scalars (NumPy 1.x and 2.x names)."""

_CONTAINER_GLOBALS: Mapping[tuple[str, str], Any] = {
    ("builtins", name): getattr(builtins, name) for name in ("set", "frozenset", "bytearray", "complex", "slice")
} | {("_codecs", "encode"): codecs.encode}  # protocol 2 writes bytes as _codecs.encode(str, "latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only the globals in ``allowed`` (and :meth:`find_unlisted`).

    Example:
        >>> import pickle, numpy as np
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": np.arange(3)}))).load()["a"].tolist()
        [0, 1, 2]
    """

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {**NUMPY_GLOBALS, **_CONTAINER_GLOBALS}
    """``(module, name)`` -> the object returned for it; extend in a subclass, never loosen to modules."""
    refusal_hint: ClassVar[str] = "only NumPy arrays and plain containers are read"
    """What the reader accepts, said after a refused global's name."""

    def __init__(self, file: io.BufferedIOBase, *, source: str = "pickle") -> None:
        # latin1: arrays pickled by Python 2 store their bytes as str (NumPy's own advice).
        super().__init__(file, encoding="latin1")
        self.source = source
        self.requested: set[str] = set()
        """Every global the pickle asked for and got (``module.name``)."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for ``module.name``; anything else raises :class:`UnpicklingRefused`."""
        if module == "__builtin__":  # protocol <= 2 pickles name builtins the Python 2 way
            module = "builtins"
        found = self.allowed.get((module, name))
        if found is None:
            found = self.find_unlisted(module, name)
        if found is None:
            raise UnpicklingRefused(f"{self.source}: refuses global {module}.{name}; {self.refusal_hint}")
        self.requested.add(f"{module}.{name}")
        return found

    def find_unlisted(self, module: str, name: str) -> Any | None:
        """A stand-in for a global outside ``allowed``, or ``None`` to refuse it (the default)."""
        return None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids would reach outside the file; refused."""
        raise UnpicklingRefused(f"{self.source}: refused a persistent id {pid!r} (not a plain pickle)")


def restricted_loads(data: bytes, *, source: str = "pickle") -> Any:
    """Unpickle ``data`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), source=source).load()


def read_npy_restricted(path: str | Path) -> Any:
    """A ``.npy`` file's contents; an object (pickled) array goes through :class:`RestrictedUnpickler`.

    Returns the array, or for a 0-d object array its single element (e.g. the pickled dict).
    """
    path = Path(path)
    fmt = np.lib.format
    with open(path, "rb") as handle:
        try:
            version = fmt.read_magic(handle)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header(handle)
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable .npy file: {exc}") from None
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        try:
            array = RestrictedUnpickler(handle, source=str(path)).load()
        except UnpicklingRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises many types
            raise ValueError(f"{path}: not a readable pickled .npy: {type(exc).__name__}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: the pickle holds a {type(array).__name__}, expected a NumPy array")
    if array.shape == () and array.dtype == object:
        return array.item()
    return array
