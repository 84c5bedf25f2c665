"""Read the authors' persistence pickles without executing anything they embed (docs/release-weights.md).

The released snapshots are StyleGAN-style *persistence* pickles: each persistent module is stored
as a call ``_reconstruct_persistent_obj(meta)`` whose ``meta`` carries the module's Python source,
its class name and its ``__dict__`` (parameters, buffers, children, ``_init_args`` /
``_init_kwargs``). The official loader ``exec()``s that source. Here nothing is executed:

- :class:`RestrictedUnpickler` resolves only the globals of its allow-list: the tensor / storage
  rebuilders, plain containers and numeric numpy scalars. Storages are read back by
  ``torch.load(weights_only=True)``.
- The persistence reconstructor and every module class of the release (``torch.nn``, the
  release's own packages) become inert :class:`ModuleRecord` s that only hold what was pickled.
- Any other global (``os.system``, ``builtins.eval``, ...) stops the load with an error naming it.
"""

import copy
import dataclasses
import hashlib
import io
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch._utils

__all__ = [
    "RELEASE_MODULE_PREFIXES",
    "ModuleRecord",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "load_release_pickle",
    "named_records",
    "record_state_dict",
]

RELEASE_MODULE_PREFIXES = (
    "torch.nn.modules",
    "training",
    "training_avatar_texture",
    "encoder_inversion",
    "torch_utils",
)
"""Modules whose classes become inert records instead of being imported."""


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


@dataclass
class ModuleRecord:
    """What a pickled module held, without its code: class, constructor arguments, tensors, children."""

    module: str
    """Python module of the class (``"<embedded>"`` for persistence classes, whose source is not run)."""
    class_name: str
    source_sha256: str | None = None
    """SHA-256 of the embedded source of a persistence class (never executed, never kept)."""
    init_args: tuple = ()
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, torch.Tensor | None] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor | None] = field(default_factory=dict)
    non_persistent_buffers: frozenset[str] = frozenset()
    children: dict[str, "ModuleRecord | None"] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    """Every other entry of the pickled ``__dict__`` (``training``, ``rendering_kwargs``, ...)."""

    @property
    def qualname(self) -> str:
        """``module.ClassName``."""
        return f"{self.module}.{self.class_name}"

    def set_state(self, state: Any) -> None:
        """Fill the record from a pickled ``__dict__`` (``(dict, slots)`` pairs are merged)."""
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, Mapping):
            raise pickle.UnpicklingError(f"{self.qualname}: state is a {type(state).__name__}, expected a dict")
        state = dict(state)
        self.parameters = dict(state.pop("_parameters", None) or {})
        self.buffers = dict(state.pop("_buffers", None) or {})
        self.non_persistent_buffers = frozenset(state.pop("_non_persistent_buffers_set", None) or ())
        self.children = dict(state.pop("_modules", None) or {})
        self.init_args = tuple(state.pop("_init_args", None) or ())
        self.init_kwargs = dict(state.pop("_init_kwargs", None) or {})
        for private in ("_orig_module_src", "_orig_class_name"):
            state.pop(private, None)
        self.attributes = {k: v for k, v in state.items() if not k.startswith("_")}

    __setstate__ = set_state  # pickle's BUILD opcode

    # ``copy`` would otherwise route through ``__setstate__`` and read the record as a module's ``__dict__``.
    def __copy__(self) -> "ModuleRecord":
        return dataclasses.replace(self)

    def __deepcopy__(self, memo: dict) -> "ModuleRecord":
        return ModuleRecord(**{f.name: copy.deepcopy(getattr(self, f.name), memo) for f in dataclasses.fields(self)})


def _record_class(module: str, name: str) -> type:
    """A stand-in class for ``module.name``: ``cls.__new__`` (pickle's NEWOBJ) makes an empty record."""

    def new(cls: type, *args: object, **kwargs: object) -> ModuleRecord:
        return ModuleRecord(module=module, class_name=name)

    return type(name, (), {"__new__": new, "__module__": __name__})


def _reconstruct_persistent(meta: Mapping[str, Any]) -> ModuleRecord:
    """The persistence reconstructor's stand-in: records ``meta`` and never runs its source."""
    if not isinstance(meta, Mapping) or meta.get("type") != "class" or "class_name" not in meta:
        raise pickle.UnpicklingError(f"persistent object meta is not a class record: keys {sorted(meta)}")
    source = meta.get("module_src")
    digest = hashlib.sha256(source.encode()).hexdigest() if isinstance(source, str) else None
    record = ModuleRecord(module="<embedded>", class_name=str(meta["class_name"]), source_sha256=digest)
    record.set_state(meta.get("state") or {})
    return record


def _load_storage(data: bytes) -> Any:
    """A storage pickled as ``torch.save`` bytes, read back tensor-only."""
    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError(f"storage payload is a {type(data).__name__}, expected bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _numpy_dtype(*args: object) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise RefusedGlobal(f"numpy dtype {dtype} holds Python objects; only numeric dtypes are allowed")
    return dtype


def _numpy_scalar(dtype: np.dtype, data: bytes = b"") -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise RefusedGlobal("numpy scalar of a non-numeric dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


class _PlainDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (it only adds attribute access)."""


_ALLOWED: dict[str, Callable[..., Any]] = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage,
    "torch.Size": torch.Size,
    "numpy.dtype": _numpy_dtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "dnnlib.util.EasyDict": _PlainDict,
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed`` globals and turns ``record_prefixes`` classes into records.

    Example:
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(print))).load()  # doctest: +SKIP
        RefusedGlobal: ... refuses global builtins.print ...
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        source: str = "<pickle>",
        allowed: Mapping[str, Callable[..., Any]] = _ALLOWED,
        record_prefixes: tuple[str, ...] = RELEASE_MODULE_PREFIXES,
    ) -> None:
        super().__init__(file)
        self.source, self.allowed, self.record_prefixes = source, dict(allowed), record_prefixes
        self.requested: set[str] = set()
        """Every global the pickle asked for (the allowed and recorded ones)."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global from the allow-list, as a record class, or refuse it by name."""
        full = f"{module}.{name}"
        if full in self.allowed:
            self.requested.add(full)
            return self.allowed[full]
        if any(module == p or module.startswith(p + ".") for p in self.record_prefixes):
            if "." in name or name.startswith("_"):
                raise RefusedGlobal(f"{self.source}: refuses global {full} (not a class name)")
            self.requested.add(full)
            return _record_class(module, name)
        raise RefusedGlobal(
            f"{self.source}: refuses global {full}; a release checkpoint needs only tensors, plain containers "
            "and module records"
        )

    def persistent_load(self, pid: Any) -> Any:
        """Plain pickles carry no persistent ids; one here means a format this reader does not know."""
        raise pickle.UnpicklingError(f"{self.source}: unexpected persistent id {pid!r}")


def load_release_pickle(path: str | Path) -> Any:
    """Unpickle a release snapshot with :class:`RestrictedUnpickler` (its embedded code is never run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        return RestrictedUnpickler(handle, source=str(path)).load()


def named_records(record: ModuleRecord, prefix: str = "") -> Iterator[tuple[str, ModuleRecord]]:
    """``(dotted name, record)`` of ``record`` and every descendant, parents first."""
    yield prefix, record
    for name, child in record.children.items():
        if child is not None:
            yield from named_records(child, f"{prefix}{name}.")


def record_state_dict(record: ModuleRecord) -> dict[str, torch.Tensor]:
    """The ``state_dict()`` the recorded module would give: same keys, same order, detached tensors."""
    out: dict[str, torch.Tensor] = {}
    for prefix, rec in named_records(record):
        for name, value in rec.parameters.items():
            if value is not None:
                out[prefix + name] = value.detach()
        for name, value in rec.buffers.items():
            if value is not None and name not in rec.non_persistent_buffers:
                out[prefix + name] = value.detach()
    return out
