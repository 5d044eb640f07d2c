"""Fuzzing the model files fastembed reads from strangers: checkpoint.pt, config.yaml, region_vectors.npy.

The property, for every mutation: the load either gives a documented exception (``ValueError`` or
``FileNotFoundError``, one line under 500 characters naming the file) or succeeds with a well-formed result
(identical to the original where nothing that is read changed); it never raises another exception type, never
hangs (hypothesis' deadline) and never allocates more than a small multiple of the file size (tracemalloc).

Examples are derandomized so CI runs the same cases every time; each test takes a few seconds.
"""

from __future__ import annotations

import pickletools
import re
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastembed.checkpoint import MEMORY_FACTOR, _op_int, read_torch_state_dict
from fastembed.modelfolder import ModelFolder, read_model_folder, write_model_folder
from fastembed.scembed import ScEmbed
from fastembed.universe import Universe

DATA = Path(__file__).parents[1] / "data"
CHECKPOINTS = {"geniml": DATA / "geniml_model" / "checkpoint.pt", "tensors": DATA / "tensors.pt"}
REFERENCE = {name: read_torch_state_dict(path) for name, path in CHECKPOINTS.items()}
EXPECTED = np.arange(17 * 4, dtype=np.float32).reshape(17, 4) / 10
SLACK = 128 << 10  # zipfile, pickle and numpy bookkeeping of a load, whatever the file claims

FUZZ = settings(
    max_examples=150,
    deadline=3000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _measured(load, path: Path):
    """(result or the documented exception, peak bytes traced) of ``load(path)``."""
    tracemalloc.start()
    try:
        try:
            result = load(path)
        except (ValueError, FileNotFoundError) as err:
            result = err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def _assert_documented(err: Exception, *paths: Path) -> None:
    msg = str(err)
    # pytest --hypothesis-show-statistics lists the reasons reached
    event("refused: " + re.sub(r"'/[^']*'", "<path>", msg)[:50])
    assert any(f"'{p}'" in msg for p in paths), msg
    assert len(msg) < 500 and "\n" not in msg, msg


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------------
# Opcodes worth splicing into a pickle: stack and memo traffic, calls, containers, and STOP.
PICKLE_BYTES = list(b"bRhqrj\x8a}()t.0Q\x85\x86\x87]ea\x94s u") + [0, 1, 0xFF, 0x7F]

_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
)
# Integers of the pickle (sizes, strides, offsets, element counts) replaced by others, re-encoded as opcodes
# so that the stream stays parseable and the tensor checks are what is tested.
_INTS = st.one_of(
    st.integers(-2, 80), st.integers(-(1 << 70), 1 << 70), st.sampled_from([2**31, 2**32, 2**63])
)
_int_edit = st.tuples(st.just("int"), st.integers(0, 1 << 20), _INTS)
_pickle_edit = st.one_of(
    _edit, st.tuples(st.just("opcode"), st.integers(0, 1 << 20), st.sampled_from(PICKLE_BYTES)), _int_edit
)
EDITS = st.lists(_edit, min_size=1, max_size=4)
# half the cases edit only integers, which keeps the stream parseable and reaches the tensor checks
PICKLE_EDITS = st.one_of(
    st.lists(_pickle_edit, min_size=1, max_size=4), st.lists(_int_edit, min_size=1, max_size=3)
)


def _apply(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, pos, *arg in edits:
        pos = pos % (len(buf) + 1)
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= 1 << arg[0]
        elif kind == "set" and pos < len(buf):
            buf[pos] = arg[0]
        elif kind == "insert":
            buf[pos:pos] = arg[0]
        elif kind == "opcode":
            buf[pos:pos] = bytes([arg[0]])
        elif kind == "int":
            _replace_int(buf, pos, arg[0])
        elif kind == "delete":
            del buf[pos : pos + arg[0]]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


def _replace_int(buf: bytearray, which: int, value: int) -> None:
    """Replace the ``which``-th integer opcode of the pickle in ``buf`` (modulo their count) by ``value``."""
    try:
        ops = list(pickletools.genops(bytes(buf)))
    except Exception:  # an earlier edit broke the stream; leave it broken
        return
    spans = [
        (pos, ops[i + 1][2])
        for i, (op, _, pos) in enumerate(ops[:-1])
        if op.name in ("BININT1", "BININT2", "BININT", "LONG1")
    ]
    if spans:
        lo, hi = spans[which % len(spans)]
        buf[lo:hi] = _op_int(value)


def _with_pickle(src: Path, edits) -> bytes:
    """The archive re-zipped with its data.pkl mutated, so every CRC is valid and the pickle itself is tested."""
    out = Path(str(src) + ".tmp")
    with zipfile.ZipFile(src) as zin:
        members = [(info.filename, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(out, "w") as zout:
        for name, data in members:
            zout.writestr(name, _apply(data, edits) if name.endswith("/data.pkl") else data)
    data = out.read_bytes()
    out.unlink()
    return data


# --------------------------------------------------------------------------------------------------
# checkpoint.pt
# --------------------------------------------------------------------------------------------------
@FUZZ
@given(which=st.sampled_from(sorted(CHECKPOINTS)), edits=EDITS)
def test_byte_mutations_of_a_checkpoint(tmp_path, which, edits):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_apply(CHECKPOINTS[which].read_bytes(), edits))
    result, peak = _measured(read_torch_state_dict, path)
    if isinstance(result, Exception):
        _assert_documented(result, path)
    else:  # the CRCs guard every record that is read, so a load that succeeds is the original
        event("loaded")
        assert _same(result, REFERENCE[which])
    assert peak <= MEMORY_FACTOR * path.stat().st_size + SLACK


STORAGE_VALUES = {
    name: np.unique(np.concatenate([a.ravel().astype(np.float64) for a in ref.values()]))
    for name, ref in REFERENCE.items()
}


@FUZZ
@given(which=st.sampled_from(sorted(CHECKPOINTS)), edits=PICKLE_EDITS)
def test_mutations_inside_the_pickle_of_a_checkpoint(tmp_path, which, edits):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_with_pickle(CHECKPOINTS[which], edits))
    result, peak = _measured(read_torch_state_dict, path)
    if isinstance(result, Exception):
        _assert_documented(result, path)
    else:
        event("loaded")
        # A changed pickle may rename a key or view less of a storage, but every array is a well-formed,
        # bounded copy of storage data.
        assert result and all(isinstance(k, str) for k in result)
        total = 0
        for a in result.values():
            assert isinstance(a, np.ndarray) and a.flags.c_contiguous and a.ndim <= 32
            assert a.dtype in (np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)
            total += a.nbytes
            if which == "geniml" and a.dtype == np.float32:
                assert np.isin(a, STORAGE_VALUES[which]).all()
        assert total <= MEMORY_FACTOR * path.stat().st_size
    assert peak <= MEMORY_FACTOR * path.stat().st_size + SLACK


# --------------------------------------------------------------------------------------------------
# config.yaml
# --------------------------------------------------------------------------------------------------
KEYS = [
    "embedding_dim",
    "embedding_size",
    "vocab_size",
    "window_size",
    "negative_samples",
    "min_count",
    "seed",
    "training",
    "format",
    "universe_sha256",
    "pooling_method",
]
VALUES = st.one_of(
    st.sampled_from([4, 17, 19, 5, 1]),  # the right values, so that some configs load
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-3, 3),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
CONFIGS = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), VALUES, max_size=6).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True)
    ),
    st.text(max_size=200),
    st.tuples(
        st.sampled_from(["vocab_size: 17\nembedding_dim: 4\n", "vocab_size: 19\nembedding_dim: 5\n"]), EDITS
    ).map(lambda t: _apply(t[0].encode(), t[1]).decode("utf-8", "replace")),
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A geniml folder (the torch-made fixture) and a fastembed folder, both valid."""
    root = tmp_path_factory.mktemp("fuzz_models")
    shutil.copytree(DATA / "geniml_model", root / "geniml")
    rng = np.random.default_rng(0)
    uni = Universe.from_arrays(["chr2"] * 12, np.arange(12) * 1000, np.arange(12) * 1000 + 500)
    write_model_folder(
        root / "fastembed",
        ModelFolder(
            config={"window_size": 5},
            universe=uni,
            region_vectors=rng.standard_normal((19, 5)).astype(np.float32),
            token_counts=rng.integers(0, 9, 19),
            output_vectors=rng.random((19, 5), np.float32),
        ),
    )
    return {"geniml": root / "geniml", "fastembed": root / "fastembed"}


@settings(FUZZ, max_examples=100)
@given(which=st.sampled_from(["geniml", "fastembed"]), text=CONFIGS)
def test_generated_config_yaml(tmp_path, folders, which, text):
    d = tmp_path / which
    if not d.exists():
        shutil.copytree(folders[which], d)
    original = read_model_folder(folders[which])
    config = d / "config.yaml"
    config.write_text(text, encoding="utf-8")
    result, _ = _measured(ScEmbed.from_pretrained, d)
    if isinstance(result, Exception):
        _assert_documented(result, config)
    else:
        event("loaded")
        np.testing.assert_array_equal(result.region_vectors, original.region_vectors)
        assert result.embedding_dim == original.region_vectors.shape[1]


# --------------------------------------------------------------------------------------------------
# region_vectors.npy
# --------------------------------------------------------------------------------------------------
@FUZZ
@given(edits=EDITS)
def test_byte_mutations_of_region_vectors(tmp_path, folders, edits):
    d = tmp_path / "m"
    if not d.exists():
        shutil.copytree(folders["fastembed"], d)
    npy = d / "region_vectors.npy"
    npy.write_bytes(_apply((folders["fastembed"] / "region_vectors.npy").read_bytes(), edits))
    result, peak = _measured(read_model_folder, d)
    if isinstance(result, Exception):
        _assert_documented(result, npy)
    else:  # no checksum guards the numbers themselves, but a loaded model is always usable
        event("loaded")
        assert result.region_vectors.dtype == np.float32 and result.region_vectors.shape == (19, 5)
        assert np.isfinite(result.region_vectors).all()
    assert peak <= MEMORY_FACTOR * npy.stat().st_size + SLACK
