"""The converters' restricted unpickler: NumPy arrays and plain containers in, every other global refused."""

import os
import pickle

import numpy as np
import pytest

from invertavatar_core.io.restricted_unpickle import (
    RestrictedUnpickler,
    UnpicklingRefused,
    read_npy_restricted,
    restricted_loads,
)


class _Canary:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code from the pickle ran."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Shell:
    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def _model() -> dict:
    return {
        "meanshape": np.arange(12, dtype=np.float32),
        "tri": np.arange(6, dtype=np.int32).reshape(2, 3),
        "ver_inds": np.array([3, 5, 9]),
        "scale": np.float64(0.1),
        "point_buf": [[0, 1], [2], [3, 4, 5]],
        "names": ("a", "b"),
        "tags": {"x", "y"},
        "blob": b"\x00\xff",
        "z": complex(1, 2),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_and_containers_round_trip(protocol):
    model = _model()
    loaded = restricted_loads(pickle.dumps(model, protocol=protocol))
    assert set(loaded) == set(model)
    for key in ("meanshape", "tri", "ver_inds"):
        np.testing.assert_array_equal(loaded[key], model[key])
        assert loaded[key].dtype == model[key].dtype
    assert loaded["scale"] == np.float64(0.1) and loaded["point_buf"] == [[0, 1], [2], [3, 4, 5]]
    assert loaded["tags"] == {"x", "y"} and loaded["blob"] == b"\x00\xff" and loaded["z"] == 1 + 2j


def test_numpy_2_module_names_are_read():
    data = pickle.dumps(np.arange(5, dtype=np.int16), protocol=2)
    assert b"numpy.core.multiarray" in data
    renamed = data.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    np.testing.assert_array_equal(restricted_loads(renamed), np.arange(5, dtype=np.int16))


@pytest.mark.parametrize("payload", [_Canary, _Shell])
def test_any_other_global_is_refused_and_never_called(tmp_path, payload):
    canary = tmp_path / "canary"
    data = pickle.dumps({"meanshape": np.zeros(3), "evil": payload(canary)})
    with pytest.raises(
        UnpicklingRefused, match=r"evil\.pkl: refuses global (io\.open|posix\.system); only NumPy arrays"
    ):
        restricted_loads(data, source="evil.pkl")
    assert not canary.exists()
    # The control: the same bytes through a plain unpickler do run the payload.
    ran = pickle.loads(data)["evil"]
    if hasattr(ran, "close"):
        ran.close()
    assert canary.exists()


def test_npy_object_array_goes_through_the_restricted_unpickler(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, _model(), allow_pickle=True)
    loaded = read_npy_restricted(good)
    np.testing.assert_array_equal(loaded["tri"], _model()["tri"])
    plain = tmp_path / "plain.npy"
    np.save(plain, np.eye(3))
    np.testing.assert_array_equal(read_npy_restricted(plain), np.eye(3))

    canary = tmp_path / "canary"
    evil = tmp_path / "evil.npy"
    np.save(evil, {"meanshape": np.zeros(3), "evil": _Canary(canary)}, allow_pickle=True)
    with pytest.raises(UnpicklingRefused) as info:
        read_npy_restricted(evil)
    assert str(evil) in str(info.value) and "io.open" in str(info.value)
    assert not canary.exists()
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy"):
        read_npy_restricted(tmp_path / "junk.npy")


def test_subclass_extends_the_allow_list():
    class WithOrderedDict(RestrictedUnpickler):
        allowed = {**RestrictedUnpickler.allowed, ("collections", "OrderedDict"): __import__("collections").OrderedDict}

    import collections
    import io

    data = pickle.dumps(collections.OrderedDict(a=np.ones(2)))
    with pytest.raises(UnpicklingRefused, match="collections.OrderedDict"):
        restricted_loads(data)
    loaded = WithOrderedDict(io.BytesIO(data)).load()
    assert list(loaded) == ["a"] and loaded["a"].tolist() == [1.0, 1.0]
