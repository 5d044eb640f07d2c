"""The torch-free checkpoint reader/writer, against fixtures made once by real torch (tests/data/make_fixtures.py)."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastembed.checkpoint import (
    _op_global,
    _op_int,
    _op_str,
    _op_tuple,
    read_torch_state_dict,
    write_torch_state_dict,
)

DATA = Path(__file__).parents[1] / "data"
W = np.arange(20, dtype=np.float32).reshape(4, 5)


def test_reads_torch_made_state_dict():
    sd = read_torch_state_dict(DATA / "geniml_model" / "checkpoint.pt")
    assert list(sd) == ["projection.weight"]
    np.testing.assert_array_equal(
        sd["projection.weight"], np.arange(17 * 4, dtype=np.float32).reshape(17, 4) / 10
    )
    assert sd["projection.weight"].dtype == np.float32


def test_reads_dtypes_views_and_nesting():
    sd = read_torch_state_dict(DATA / "tensors.pt")
    for key in ("half", "double", "bfloat16"):
        assert sd[key].dtype == np.float32
        np.testing.assert_array_equal(sd[key], W)  # small integers are exact in every float format
    assert sd["long"].dtype == np.int64
    np.testing.assert_array_equal(sd["long"], W.astype(np.int64))
    np.testing.assert_array_equal(sd["transposed"], W.T)
    np.testing.assert_array_equal(sd["slice"], W[1:3, 2:])  # a storage offset and a non-contiguous stride
    np.testing.assert_array_equal(sd["nested.inner"], np.ones(3, dtype=np.float32))
    assert all(a.flags.c_contiguous for a in sd.values())


@pytest.mark.parametrize(
    ("name", "culprit"), [("malicious.pt", "os.system"), ("malicious_eval.pt", "builtins.eval")]
)
def test_malicious_checkpoint_is_refused_without_running(tmp_path, monkeypatch, name, culprit):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"refers to '{culprit}'.*refusing"):
        read_torch_state_dict(DATA / name)
    assert not (tmp_path / "PWNED").exists()


def test_legacy_pickle_format_is_refused():
    with pytest.raises(ValueError, match="not a zip-format PyTorch checkpoint"):
        read_torch_state_dict(DATA / "legacy_pickle.pt")


def test_other_zip_and_missing(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.pt", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        read_torch_state_dict(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        read_torch_state_dict(tmp_path / "missing.pt")
    os.mkfifo(tmp_path / "fifo.pt")  # reading it would block forever
    for special in (tmp_path, tmp_path / "fifo.pt"):
        with pytest.raises(ValueError, match="not a regular file"):
            read_torch_state_dict(special)


def test_truncated_storage_is_an_error(tmp_path):
    src = DATA / "geniml_model" / "checkpoint.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "t.pt", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[:8] if item.filename.endswith("data/0") else data)
    with pytest.raises(ValueError, match="shorter than"):
        read_torch_state_dict(tmp_path / "t.pt")


def test_write_read_round_trip(tmp_path):
    tensors = {
        "projection.weight": np.random.default_rng(0).standard_normal((11, 3)).astype(np.float32),
        "counts": np.arange(5, dtype=np.int64),
        "flags": np.array([True, False]),
        "big_endian": np.arange(4, dtype=">f4"),
        "fortran": np.asfortranarray(W),
    }
    path = write_torch_state_dict(tmp_path / "out.pt", tensors)
    back = read_torch_state_dict(path)
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)
    assert back["counts"].dtype == np.int64 and back["flags"].dtype == np.bool_
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_write_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="no torch storage type"):
        write_torch_state_dict(tmp_path / "x.pt", {"c": np.ones(2, dtype=np.complex64)})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Hostile files: crafted pickles, lying tensor geometry, damaged archives
# --------------------------------------------------------------------------------------------------
GOOD = [DATA / "geniml_model" / "checkpoint.pt", DATA / "tensors.pt"]


def _zip(path: Path, pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def _s(text: str) -> bytes:
    return _op_str(text)


def _tensor_pickle(
    *,
    kind="FloatStorage",
    key="0",
    numel=4,
    offset=0,
    size=(2, 2),
    stride=(2, 1),
    name="w",
    raw_size=None,
    raw_stride=None,
    raw_offset=None,
    raw_numel=None,
) -> bytes:
    """A state dict {name: tensor} with every geometry field under the caller's control."""

    def ints(values):
        return _op_tuple([_op_int(v) for v in values])

    pid = (
        _op_tuple(
            [
                _s("storage"),
                _op_global("torch", kind),
                _s(key),
                _s("cpu"),
                raw_numel if raw_numel is not None else _op_int(numel),
            ]
        )
        + b"Q"
    )
    args = _op_tuple(
        [
            pid,
            raw_offset if raw_offset is not None else _op_int(offset),
            raw_size if raw_size is not None else ints(size),
            raw_stride if raw_stride is not None else ints(stride),
            b"\x89",
            b"}",
        ]
    )
    return b"\x80\x02}" + _s(name) + _op_global("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."


def _snapshot(paths) -> dict:
    return {
        str(p): {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in read_torch_state_dict(p).items()}
        for p in paths
    }


@pytest.fixture(scope="module")
def fresh_snapshot() -> dict:
    """What a process that never saw a crafted file reads from the good checkpoints."""
    return _fresh_process_snapshot(GOOD)


def _fresh_process_snapshot(paths) -> dict:
    code = (
        "import pickle, sys; from fastembed.checkpoint import read_torch_state_dict as r; "
        "sys.stdout.buffer.write(pickle.dumps({p: {k: (v.dtype.str, v.shape, v.tobytes()) "
        "for k, v in r(p).items()} for p in sys.argv[1:]}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], capture_output=True, check=True, env=env
    )
    return pickle.loads(out.stdout)


FLOAT = _op_global("torch", "FloatStorage")
REBUILD = _op_global("torch._utils", "_rebuild_tensor_v2")
ODICT = _op_global("collections", "OrderedDict")
STATE = b"}" + _s("name") + _s("DoubleStorage") + b"s"  # a dict state for BUILD


@pytest.mark.parametrize(
    "target",
    [FLOAT, REBUILD, ODICT, ODICT + b")R"],
    ids=["storage-type", "rebuild", "odict-class", "odict-instance"],
)
@pytest.mark.parametrize("state", [STATE, b"N" + STATE + b"\x86"], ids=["dict-state", "slot-state"])
def test_crafted_checkpoint_cannot_alter_later_loads(tmp_path, fresh_snapshot, target, state):
    # BUILD on a global the unpickler hands out: with shared stand-ins, setting FloatStorage.name to
    # DoubleStorage made every later load in the process read float32 records as float64.
    crafted = _zip(tmp_path / "crafted.pt", b"\x80\x02}" + _s("x") + target + state + b"bs.")
    try:
        read_torch_state_dict(crafted)
    except ValueError as err:
        assert str(crafted) in str(err)
    assert _snapshot(GOOD) == fresh_snapshot


def test_stand_ins_are_made_per_load():
    from fastembed.checkpoint import _RestrictedUnpickler

    a, b = _RestrictedUnpickler(b"."), _RestrictedUnpickler(b".")
    for key in (
        ("torch", "FloatStorage"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("collections", "OrderedDict"),
    ):
        assert a.find_class(*key) is not b.find_class(*key)
        with pytest.raises(ValueError):
            a.find_class(*key).name = "DoubleStorage"


F4 = np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("kwargs", "storages", "pattern"),
    [
        ({"size": (4096, 4096), "stride": (0, 0)}, {"0": F4}, "more elements than its storage"),
        ({"size": (2**20, 2**20), "stride": (1, 1)}, {"0": F4}, "runs past its storage"),
        ({"size": (5,), "stride": (1,)}, {"0": F4}, "runs past its storage"),
        ({"offset": 4, "size": (1,), "stride": (1,)}, {"0": F4}, "runs past its storage"),
        ({"offset": -1}, {"0": F4}, "storage offset -1 is out of range"),
        ({"stride": (-2, 1)}, {"0": F4}, "stride -2 is out of range"),
        ({"size": (-1, 2)}, {"0": F4}, "size -1 is out of range"),
        ({"size": (2**70, 0), "stride": (1, 1)}, {"0": F4}, "size 1180591620717411303424 is out of range"),
        ({"stride": (1,)}, {"0": F4}, r"size \(2, 2\) and stride \(1,\) differ"),
        ({"size": (1,) * 40, "stride": (1,) * 40}, {"0": F4}, "40 dimensions"),
        ({"raw_size": _op_tuple([_s("2"), _op_int(2)])}, {"0": F4}, "size is str '2', not an integer"),
        ({"raw_size": _op_tuple([b"G" + struct.pack(">d", 2.0), _op_int(2)])}, {"0": F4}, "size is float"),
        ({"raw_offset": b"\x88"}, {"0": F4}, "storage offset is bool"),
        ({"raw_size": _op_int(4)}, {"0": F4}, "size is int, not a tuple"),
        ({"numel": 2**40}, {"0": F4}, "is shorter than its 1099511627776 elements"),
        ({"raw_numel": b"N"}, {"0": F4}, "element count is NoneType"),
        ({"key": "7"}, {"0": F4}, "storage record 'archive/data/7' is missing"),
        ({"kind": "ComplexFloatStorage"}, {"0": F4}, "dtype torch.ComplexFloatStorage, which is not read"),
        ({}, {"0": F4[:8]}, "shorter than its 4 elements"),
    ],
)
def test_lying_tensor_geometry_is_refused_before_allocating(tmp_path, kwargs, storages, pattern):
    path = _zip(tmp_path / "lie.pt", _tensor_pickle(**kwargs), storages)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=pattern) as info:
            read_torch_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert str(path) in msg and "tensor 'w'" in msg and len(msg) < 500
    assert peak < 1 << 20


def test_good_geometry_of_a_crafted_file_loads(tmp_path):
    path = _zip(tmp_path / "ok.pt", _tensor_pickle(offset=1, size=(3,), stride=(1,)), {"0": F4})
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], [1, 2, 3])
    path = _zip(tmp_path / "empty.pt", _tensor_pickle(size=(0, 7), stride=(7, 1)), {"0": F4})
    assert read_torch_state_dict(path)["w"].shape == (0, 7)


@pytest.mark.parametrize(
    ("pkl", "pattern"),
    [
        (b"\x80\x02]r" + struct.pack("<I", 2**28) + b".", "memo entry 268435456"),  # the memo would be 4 GiB
        (
            b"\x80\x04\x8e" + struct.pack("<Q", 2**30) + b"abc.",
            "damaged",
        ),  # BINBYTES8 preallocates its length
        (b"\x80\x02C\x03abc.", "opcode SHORT_BINBYTES"),
        (
            b"\x80\x02" + b"}" + _s("a") + b"}" * 5000 + (_s("a") + b"}" + b"s") * 0 + b".",
            "would need .* more bytes of memory",
        ),
        (b"\x80\x02]\x94" + b"h\x00" * 3 + b".", "list, not a dict"),
        (b"\x80\x02" + ODICT + b"(" + _op_int(1) + b"tR.", "called with arguments"),
        (b"(ios\nsystem\n" + _s("true") + b"o.", "opcode INST"),
    ],
    ids=["memo", "binbytes8", "bytes", "many-dicts", "not-dict", "odict-args", "inst"],
)
def test_pickle_stream_is_checked_before_unpickling(tmp_path, pkl, pattern):
    path = _zip(tmp_path / "p.pt", pkl)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=pattern):
            read_torch_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_deep_and_cyclic_dicts(tmp_path):
    deep = b"\x80\x02" + b"}" + (_s("a") + b"}") * 100 + b"s" * 100 + b"."
    with pytest.raises(ValueError, match="nest more than"):
        read_torch_state_dict(_zip(tmp_path / "deep.pt", deep))
    cyclic = b"\x80\x02}q\x00" + _s("a") + b"h\x00s."
    with pytest.raises(ValueError, match="appears twice"):
        read_torch_state_dict(_zip(tmp_path / "cyclic.pt", cyclic))


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :]


def test_damaged_archive_is_one_value_error_naming_the_file(tmp_path):
    good = (DATA / "geniml_model" / "checkpoint.pt").read_bytes()
    pkl_at = good.index(b"\x80\x02c")  # the first byte of data.pkl inside the archive
    cases = {
        "crc": _flip(good, pkl_at + 40),
        "storage-crc": _flip(good, good.index(struct.pack("<f", 6.7)) + 1),
        "truncated": good[: len(good) // 2],
        "no-directory": good[: good.rindex(b"PK\x01\x02")],
        "empty": b"",
        "garbage": b"PK\x03\x04" + bytes(range(256)) * 3,
        "text": b"just some text\n",
        "method": _method(good, 99),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(ValueError) as info:
            read_torch_state_dict(path)
        msg = str(info.value)
        assert msg.startswith(f"'{path}' is not a valid checkpoint: "), (name, msg)
        assert len(msg) < 500 and "\n" not in msg, (name, msg)


def _method(data: bytes, method: int) -> bytes:
    """The archive with the compression method of its first central-directory entry changed."""
    at = data.index(b"PK\x01\x02") + 10
    return data[:at] + struct.pack("<H", method) + data[at + 2 :]


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    from fastembed.cli import main

    model = tmp_path / "model"
    shutil.copytree(DATA / "geniml_model", model)
    data = (model / "checkpoint.pt").read_bytes()
    (model / "checkpoint.pt").write_bytes(_flip(data, data.index(b"\x80\x02c") + 40))
    (tmp_path / "cells.h5ad").write_bytes(b"")
    code = main(
        ["encode", str(tmp_path / "cells.h5ad"), "--model", str(model), "--output", str(tmp_path / "e.zarr")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "checkpoint.pt' is not a valid checkpoint" in err


def test_pickle_of_many_objects_is_charged_to_the_memory_budget(tmp_path):
    # 200,000 empty dicts deflate to a few hundred bytes; unpickled they would take ~16 MB
    path = tmp_path / "many.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}" + b"}" * 200_000 + b".")
    with pytest.raises(ValueError, match="member 'archive/data.pkl' claims 200004 bytes"):
        read_torch_state_dict(path)
    # uncompressed the file is as large as the pickle, but still too small for the objects it would make
    path.unlink()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02]" + b"}" * 200_000 + b".")
    with pytest.raises(ValueError, match="unpickling data.pkl would need"):
        read_torch_state_dict(path)


def test_empty_tensor_with_absurd_dimensions(tmp_path):
    path = _zip(tmp_path / "e.pt", _tensor_pickle(size=(0, 2**40, 2**40), stride=(1, 1, 1)), {"0": F4})
    with pytest.raises(ValueError, match="tensor 'w' has size .* beyond any array"):
        read_torch_state_dict(path)
