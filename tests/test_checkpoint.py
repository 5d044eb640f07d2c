"""The torch-free checkpoint reader/writer, against fixtures made once by real torch (tests/data/make_fixtures.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastembed.checkpoint import read_torch_state_dict, write_torch_state_dict

DATA = Path(__file__).parent / "data"
W = np.arange(20, dtype=np.float32).reshape(4, 5)


def test_reads_torch_made_state_dict():
    sd = read_torch_state_dict(DATA / "geniml_model" / "checkpoint.pt")
    assert list(sd) == ["projection.weight"]
    np.testing.assert_array_equal(sd["projection.weight"], np.arange(17 * 4, dtype=np.float32).reshape(17, 4) / 10)
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


@pytest.mark.parametrize(("name", "culprit"), [("malicious.pt", "os.system"), ("malicious_eval.pt", "builtins.eval")])
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


def test_truncated_storage_is_an_error(tmp_path):
    src = DATA / "geniml_model" / "checkpoint.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "t.pt", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, data[:8] if item.filename.endswith("data/0") else data)
    with pytest.raises(ValueError, match="shorter than"):
        read_torch_state_dict(tmp_path / "t.pt")


def test_write_read_round_trip(tmp_path):
    tensors = {"projection.weight": np.random.default_rng(0).standard_normal((11, 3)).astype(np.float32),
               "counts": np.arange(5, dtype=np.int64), "flags": np.array([True, False]),
               "big_endian": np.arange(4, dtype=">f4"), "fortran": np.asfortranarray(W)}
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
