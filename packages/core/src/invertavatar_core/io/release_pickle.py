"""Read the authors' persistence pickles without executing anything they embed (docs/release-weights.md).

Both release converters read them (``convert release-prior`` in invertavatar-prior-next3d,
``convert release-encoders`` in invertavatar-encoders), so the reader lives here, beside the
allow-list mechanism it extends (:mod:`invertavatar_core.io.restricted_unpickle`).

The released snapshots are StyleGAN-style *persistence* pickles: each persistent module is stored
as a call ``_reconstruct_persistent_obj(meta)`` whose ``meta`` carries the module's Python source,
its class name and its ``__dict__`` (parameters, buffers, children, ``_init_args`` /
``_init_kwargs``). The official loader ``exec()``s that source. Here nothing is executed:

- :class:`ReleaseUnpickler` resolves only the globals of its allow-list: the tensor / storage
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch._utils

from invertavatar_core.io.restricted_unpickle import RestrictedUnpickler, UnpicklingRefused

__all__ = [
    "RELEASE_MODULE_PREFIXES",
    "ModuleRecord",
    "ReleaseUnpickler",
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
        raise UnpicklingRefused(f"numpy dtype {dtype} holds Python objects; only numeric dtypes are allowed")
    return dtype


def _numpy_scalar(dtype: np.dtype, data: bytes = b"") -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnpicklingRefused("numpy scalar of a non-numeric dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


class _PlainDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (it only adds attribute access)."""


class ReleaseUnpickler(RestrictedUnpickler):
    """The restricted unpickler with the release's allow-list; classes under ``record_prefixes`` become records.

    Example:
        >>> ReleaseUnpickler(io.BytesIO(pickle.dumps(print))).load()  # doctest: +SKIP
        UnpicklingRefused: ... refuses global builtins.print ...
    """

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch", "Size"): torch.Size,
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("dnnlib.util", "EasyDict"): _PlainDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    }
    refusal_hint: ClassVar[str] = "a release checkpoint needs only tensors, plain containers and module records"
    record_prefixes: ClassVar[tuple[str, ...]] = RELEASE_MODULE_PREFIXES
    """Modules whose classes are read as inert :class:`ModuleRecord` s."""

    def find_unlisted(self, module: str, name: str) -> Any | None:
        """A record class for a class under ``record_prefixes``; ``None`` (refused) for anything else."""
        if not any(module == p or module.startswith(p + ".") for p in self.record_prefixes):
            return None
        if "." in name or name.startswith("_"):
            raise UnpicklingRefused(f"{self.source}: refuses global {module}.{name} (not a class name)")
        return _record_class(module, name)


def load_release_pickle(path: str | Path) -> Any:
    """Unpickle a release snapshot with :class:`ReleaseUnpickler` (its embedded code is never run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        return ReleaseUnpickler(handle, source=str(path)).load()


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
