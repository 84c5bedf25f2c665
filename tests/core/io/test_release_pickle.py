"""The restricted unpickler for release snapshots: tensors and records in, any other global refused by name."""

import io
import os
import pickle
import sys
import types

import pytest
import torch
from torch import nn

from invertavatar_core.io.release_pickle import ModuleRecord, ReleaseUnpickler, load_release_pickle, record_state_dict
from invertavatar_core.io.restricted_unpickle import RestrictedUnpickler, UnpicklingRefused


def _load(data: bytes):
    return ReleaseUnpickler(io.BytesIO(data), source="crafted.pkl").load()


class _Call:
    """Pickles as ``func(*args)``: what a malicious pickle's REDUCE opcode does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_os_system_is_refused_by_name_and_never_called(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"G_ema": _Call(os.system, f"touch {marker}")})
    with pytest.raises(UnpicklingRefused, match=r"crafted\.pkl: refuses global (os|posix)\.system"):
        _load(data)
    assert not marker.exists()


def test_builtins_eval_is_refused_by_name(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps([_Call(eval, f"open({str(marker)!r}, 'w')")])
    with pytest.raises(UnpicklingRefused, match=r"refuses global builtins\.eval"):
        _load(data)
    assert not marker.exists()


def test_private_names_under_record_prefixes_are_refused():
    # A record prefix turns classes into records; it must not expose functions such as torch.nn's helpers.
    data = pickle.dumps(_Call(torch.nn.modules.module._addindent, "x", 2))
    with pytest.raises(UnpicklingRefused, match=r"torch\.nn\.modules\.module\._addindent"):
        _load(data)


def test_tensors_parameters_and_containers_round_trip():
    value = {
        "t": torch.arange(6.0).reshape(2, 3)[:, 1:],  # a view: offset and strides survive
        "p": nn.Parameter(torch.full((2,), 3.0)),
        "size": torch.Size([4, 5]),
        "nested": [1, 2.5, "s", (None, True)],
    }
    loaded = _load(pickle.dumps(value, protocol=4))
    assert torch.equal(loaded["t"], value["t"]) and loaded["t"].stride() == value["t"].stride()
    assert isinstance(loaded["p"], nn.Parameter) and torch.equal(loaded["p"].data, value["p"].data)
    assert loaded["size"] == torch.Size([4, 5]) and loaded["nested"] == value["nested"]


def test_modules_become_records_with_their_state_dict():
    module = nn.Sequential(nn.Linear(3, 4), nn.Softplus(), nn.BatchNorm1d(4))
    record = _load(pickle.dumps(module, protocol=4))
    assert isinstance(record, ModuleRecord) and record.qualname == "torch.nn.modules.container.Sequential"
    assert record.children["1"].class_name == "Softplus"
    expected = module.state_dict()
    got = record_state_dict(record)
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_persistent_objects_become_records_without_running_their_source(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'a').write('ran')\n"

    # Stand-ins registered under the release's names, only so that pickle.dumps can name them.
    def _reconstruct_persistent_obj(meta):  # pragma: no cover - the restricted reader never calls it
        raise AssertionError("the pickled reconstructor was called")

    module = types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    layer = nn.Linear(2, 3)
    state = dict(layer.__dict__)
    state["_init_args"], state["_init_kwargs"] = (2,), {"out_features": 3, "lr_multiplier": 0.01}
    meta = {"type": "class", "version": 6, "module_src": source, "class_name": "FullyConnectedLayer", "state": state}
    data = pickle.dumps({"G_ema": _Call(_reconstruct_persistent_obj, meta)}, protocol=4)

    record = _load(data)["G_ema"]
    assert not marker.exists()
    assert record.class_name == "FullyConnectedLayer" and record.module == "<embedded>"
    assert record.init_args == (2,) and record.init_kwargs == {"out_features": 3, "lr_multiplier": 0.01}
    assert record.source_sha256 is not None and not hasattr(record, "module_src")
    assert torch.equal(record_state_dict(record)["weight"], layer.weight.detach())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_release_pickle(tmp_path / "nope.pkl")


def test_records_copy_like_dataclasses():
    import copy

    record = _load(pickle.dumps(nn.Sequential(nn.Linear(2, 2)), protocol=4))
    shallow, deep = copy.copy(record), copy.deepcopy(record)
    assert shallow.children["0"] is record.children["0"]
    assert deep.children["0"] is not record.children["0"]
    assert torch.equal(record_state_dict(deep)["0.weight"], record_state_dict(record)["0.weight"])


def test_release_reader_shares_the_mechanism_not_the_allow_list():
    import numpy as np

    tensor = pickle.dumps(torch.arange(3.0), protocol=4)
    with pytest.raises(
        UnpicklingRefused, match=r"x\.pkl: refuses global torch\._utils\._rebuild_tensor_v2; only NumPy"
    ):
        RestrictedUnpickler(io.BytesIO(tensor), source="x.pkl").load()
    reader = ReleaseUnpickler(io.BytesIO(tensor), source="x.pkl")
    assert reader.load().tolist() == [0.0, 1.0, 2.0]
    assert "torch._utils._rebuild_tensor_v2" in reader.requested
    array = pickle.dumps(np.arange(3), protocol=2)
    assert RestrictedUnpickler(io.BytesIO(array)).load().tolist() == [0, 1, 2]
    with pytest.raises(UnpicklingRefused, match=r"_reconstruct; a release checkpoint needs only tensors"):
        _load(array)
