"""Fuzzing the readers: every input gives a correct result or a ValueError/FileNotFoundError naming the file.

Never another exception type, a hang or a numba error. Each test is bounded (``max_examples``, a generous
``deadline`` that only catches hangs) and derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastembed.readers import peak_coordinates, read_10x, read_mtx  # noqa: E402
from fastembed.tokens import TokenizedCells, _universe_metadata, read_tokens_parquet  # noqa: E402
from fastembed.universe import MAX_COORD, Universe, read_bed  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=10_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_FEW = settings(FUZZ, max_examples=30)

DOCUMENTED = (ValueError, FileNotFoundError)


def _expect_named(err: BaseException, path: Path) -> None:
    """The one exception a reader may raise: documented type, short, naming the file."""
    assert isinstance(err, DOCUMENTED), f"{type(err).__name__}: {err}"
    assert "numba" not in type(err).__module__
    msg = str(err)
    assert str(path) in msg or path.name in msg, msg
    assert len(msg) < 500 + len(str(path)), msg


# --------------------------------------------------------------------------------------------------
# BED / universe parser against a small oracle of the documented format
# --------------------------------------------------------------------------------------------------
_CHROM = st.text(alphabet="chrXYM0123456789_.-", min_size=1, max_size=6)
_COORD = st.one_of(
    st.integers(0, 10_000).map(str),
    st.integers(-(2**64), 2**64).map(str),
    st.sampled_from(["", "abc", "1_000", "1.5", "+5", "1e3", "0x10", str(MAX_COORD), str(MAX_COORD + 1)]),
)
_LINE = st.one_of(
    st.tuples(
        _CHROM, _COORD, _COORD, st.sampled_from(["", "\tname", "\tname\t0\t+"]), st.sampled_from(["\t", " "])
    ).map(lambda t: t[4].join(t[:3]) + (t[3] if t[4] == "\t" else t[3].replace("\t", " "))),
    st.sampled_from(["", "# comment", "track name=x", "browser position chr1", "chr1", "chr1\t5"]),
)


def _oracle_bed(lines: list[str]):
    """(chroms, starts, ends) or None if the file must be refused, by the documented rules."""
    out = ([], [], [])
    for line in lines:
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            return None
        chrom, s, e = (p.strip() for p in parts[:3])
        if not chrom or not all(re.fullmatch(r"[0-9]+", v) for v in (s, e)):
            return None
        s, e = int(s), int(e)
        if s > e or e > MAX_COORD:
            return None
        for lst, v in zip(out, (chrom, s, e), strict=True):
            lst.append(v)
    return out


@FUZZ
@given(
    lines=st.lists(_LINE, max_size=8),
    bom=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n"]),
    gz=st.booleans(),
)
def test_bed_parser_matches_oracle(lines, bom, eol, gz):
    data = (b"\xef\xbb\xbf" if bom else b"") + eol.join(lines).encode() + (eol.encode() if lines else b"")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "u.bed"
        path.write_bytes(gzip.compress(data) if gz else data)
        expected = _oracle_bed(lines)
        try:
            chroms, starts, ends = read_bed(path, what="universe")
        except Exception as err:  # noqa: BLE001 - the property is about which exceptions escape
            _expect_named(err, path)
            assert expected is None, f"refused a valid file: {err}"
            return
        assert expected is not None, "accepted a file the format refuses"
        assert chroms.tolist() == expected[0]
        assert starts.tolist() == expected[1] and ends.tolist() == expected[2]
        assert starts.dtype == ends.dtype == np.int64


@FUZZ
@given(data=st.binary(max_size=300))
def test_universe_from_random_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "u.bed"
        path.write_bytes(data)
        try:
            uni = Universe.from_bed(path)
        except Exception as err:  # noqa: BLE001
            _expect_named(err, path)
            return
        assert len(uni) > 0 and (uni.starts <= uni.ends).all() and uni.ends.max() <= MAX_COORD


# --------------------------------------------------------------------------------------------------
# MatrixMarket and 10x readers
# --------------------------------------------------------------------------------------------------
def _write_mm(path: Path, dense: np.ndarray, *, transpose: bool, bom: bool, crlf: bool, gz: bool) -> None:
    m = dense.T if transpose else dense
    rows, cols = np.nonzero(m)
    eol = "\r\n" if crlf else "\n"
    lines = [
        "%%MatrixMarket matrix coordinate integer general",
        "% written by the fuzz test",
        f"{m.shape[0]} {m.shape[1]} {rows.size}",
    ]
    lines += [f"{r + 1} {c + 1} {m[r, c]}" for r, c in zip(rows, cols, strict=True)]
    data = (b"\xef\xbb\xbf" if bom else b"") + (eol.join(lines) + eol).encode()
    path.write_bytes(gzip.compress(data) if gz else data)


@st.composite
def _small_matrix(draw):
    n_cells = draw(st.integers(1, 6))
    n_peaks = draw(st.integers(1, 6).filter(lambda n: n != n_cells))  # square is ambiguous (warned)
    values = draw(st.lists(st.integers(0, 3), min_size=n_cells * n_peaks, max_size=n_cells * n_peaks))
    return np.array(values, dtype=np.int64).reshape(n_cells, n_peaks)


def _peaks_text(n: int) -> str:
    return "".join(f"chr1\t{100 * i}\t{100 * i + 50}\n" for i in range(n))


@FUZZ_FEW
@given(
    dense=_small_matrix(), transpose=st.booleans(), bom=st.booleans(), crlf=st.booleans(), gz=st.booleans()
)
def test_read_mtx_matches_dense_oracle(dense, transpose, bom, crlf, gz):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _write_mm(d / "m.mtx", dense, transpose=transpose, bom=bom, crlf=crlf, gz=gz)
        (d / "b.tsv").write_text("".join(f"cell{i}\textra\n" for i in range(dense.shape[0])))
        (d / "p.bed").write_text(_peaks_text(dense.shape[1]))
        a = read_mtx(d / "m.mtx", d / "b.tsv", d / "p.bed")
        np.testing.assert_array_equal(a.X.toarray(), dense)
        assert a.obs_names.tolist() == [f"cell{i}" for i in range(dense.shape[0])]
        assert a.var["start"].tolist() == [100 * i for i in range(dense.shape[1])]


def _mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for pos, kind, byte in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] = byte
        elif kind == 1:
            del b[i]
        else:
            b.insert(i, byte)
    return bytes(b)


_EDITS = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.integers(0, 255)), min_size=1, max_size=4
)


@settings(FUZZ, max_examples=200)
@given(edits=_EDITS, target=st.sampled_from(["m.mtx", "b.tsv", "p.bed"]))
def test_read_mtx_mutated_files(edits, target):
    dense = np.array([[1, 0, 2], [0, 3, 0]])
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _write_mm(d / "m.mtx", dense, transpose=True, bom=False, crlf=False, gz=False)
        (d / "b.tsv").write_text("AAA\nCCC\n")
        (d / "p.bed").write_text(_peaks_text(3))
        (d / target).write_bytes(_mutate((d / target).read_bytes(), edits))
        try:
            a = read_mtx(d / "m.mtx", d / "b.tsv", d / "p.bed")
        except Exception as err:  # noqa: BLE001
            _expect_named(err, d)  # the folder is in every message; which file depends on the damage
            assert any(n in str(err) for n in ("m.mtx", "b.tsv", "p.bed")), str(err)
            return
        assert a.n_obs == a.obs_names.size and a.n_vars == a.var.shape[0]
        assert sp.issparse(a.X) and np.isfinite(a.X.data).all()


@FUZZ
@given(edits=_EDITS, target=st.sampled_from(["matrix.mtx", "barcodes.tsv", "features.tsv"]))
def test_read_10x_mutated_files(edits, target):
    dense = np.array([[1, 0, 2], [0, 3, 0]])
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _write_mm(d / "matrix.mtx", dense, transpose=True, bom=False, crlf=False, gz=False)
        (d / "barcodes.tsv").write_text("AAA\nCCC\n")
        (d / "features.tsv").write_text(
            "chr1:0-50\tchr1:0-50\tPeaks\tchr1\t0\t50\n"
            "g1\tGENE\tGene Expression\tchr1\t0\t10\n"
            "chr1:100-150\tchr1:100-150\tPeaks\tchr1\t100\t150\n"
            "chr2:5-9\tchr2:5-9\tPeaks\n"
        )
        dense4 = np.array([[1, 5, 0, 2], [0, 0, 3, 0]])
        _write_mm(d / "matrix.mtx", dense4, transpose=True, bom=False, crlf=False, gz=False)
        (d / target).write_bytes(_mutate((d / target).read_bytes(), edits))
        try:
            a = read_10x(d)
        except Exception as err:  # noqa: BLE001
            _expect_named(err, d)
            assert any(n in str(err) for n in ("matrix.mtx", "barcodes.tsv", "features.tsv")), str(err)
            return
        assert a.n_obs == a.obs_names.size and (a.var["start"] <= a.var["end"]).all()


def test_read_10x_features_oracle(tmp_path):
    dense4 = np.array([[1, 5, 0, 2], [0, 0, 3, 0]])
    _write_mm(tmp_path / "matrix.mtx", dense4, transpose=True, bom=True, crlf=True, gz=False)
    (tmp_path / "barcodes.tsv").write_bytes(b"\xef\xbb\xbfAAA\r\nCCC\r\n")
    (tmp_path / "features.tsv").write_text(
        "chr1:0-50\tchr1:0-50\tPeaks\tchr1\t0\t50\n"
        "g1\tGENE\tGene Expression\tchr1\t0\t10\n"
        "chr1:100-150\tchr1:100-150\tPeaks\tchr1\t100\t150\n"
        "chr2:5-9\tchr2:5-9\tPeaks\n"
    )
    a = read_10x(tmp_path)
    assert a.obs_names.tolist() == ["AAA", "CCC"]
    assert a.var_names.tolist() == ["chr1:0-50", "chr1:100-150", "chr2:5-9"]
    np.testing.assert_array_equal(a.X.toarray(), dense4[:, [0, 2, 3]])


# --------------------------------------------------------------------------------------------------
# var-name parsing
# --------------------------------------------------------------------------------------------------
_VAR_NAME = st.one_of(
    st.tuples(_CHROM.filter(lambda c: ":" not in c), st.sampled_from([":", "-"]), _COORD, _COORD).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}-{t[3]}"
    ),
    # chr_start_end, the contig itself possibly holding underscores (hg19's chrUn_gl000220)
    st.tuples(_CHROM, _COORD, _COORD).map(lambda t: f"{t[0]}_{t[1]}_{t[2]}"),
    st.text(max_size=12),
)


def _oracle_var_name(name: str):
    name = name.removesuffix("\n")  # a regex '$' also matches before one final newline
    m = re.fullmatch(r"([^:\s]+?)[:\-]([0-9]+)-([0-9]+)", name)
    if m is not None:
        chrom, s, e = m[1], m[2], m[3]
    else:
        # chr_start_end, split from the right: the last two underscore-separated fields are the coordinates
        parts = name.rsplit("_", 2)
        if len(parts) != 3:
            return None
        chrom, s, e = parts
        if not re.fullmatch(r"[^:\s]+", chrom) or not all(re.fullmatch(r"[0-9]+", v) for v in (s, e)):
            return None
    s, e = int(s), int(e)
    return (chrom, s, e) if s <= e <= MAX_COORD else None


@FUZZ
@given(names=st.lists(_VAR_NAME, min_size=1, max_size=5, unique=True))
def test_var_name_parsing_matches_oracle(names):
    a = ad.AnnData(X=sp.csr_matrix((1, len(names)), dtype=np.float32))
    a.var_names = names
    expected = [_oracle_var_name(n) for n in names]
    try:
        chroms, starts, ends = peak_coordinates(a, name="'fuzz.h5ad'")
    except Exception as err:  # noqa: BLE001
        assert isinstance(err, ValueError) and "'fuzz.h5ad'" in str(err) and len(str(err)) < 500, repr(err)
        assert any(e is None for e in expected), f"refused valid names: {err}"
        return
    assert all(e is not None for e in expected), "accepted names the format refuses"
    assert list(zip(chroms.tolist(), starts.tolist(), ends.tolist(), strict=True)) == expected


@FUZZ
@given(
    chrom=_CHROM.filter(lambda c: ":" not in c),
    start=st.integers(0, 10**9),
    length=st.integers(0, 10**6),
    sep=st.sampled_from(["_", ":", "-"]),
)
def test_var_names_split_coordinates_from_the_right(chrom, start, length, sep):
    """Every var name written as chr_start_end, chr:start-end or chr-start-end parses back to its parts,
    whatever underscores or dashes the chromosome holds."""
    name = f"{chrom}_{start}_{start + length}" if sep == "_" else f"{chrom}{sep}{start}-{start + length}"
    a = ad.AnnData(X=sp.csr_matrix((1, 1), dtype=np.float32))
    a.var_names = [name]
    chroms, starts, ends = peak_coordinates(a, name="'fuzz.h5ad'")
    assert (chroms[0], int(starts[0]), int(ends[0])) == (chrom, start, start + length)
    assert _oracle_var_name(name) == (chrom, start, start + length)


@FUZZ_FEW
@given(
    starts=st.lists(
        st.one_of(st.integers(-5, 2**63 - 1), st.floats(), st.text(max_size=3)), min_size=1, max_size=4
    )
)
def test_var_columns_any_values(starts):
    n = len(starts)
    var = pd.DataFrame(
        {"chr": ["chr1"] * n, "start": pd.Series(starts, dtype=object), "end": [2**40] * n},
        index=[f"p{i}" for i in range(n)],
    )
    a = ad.AnnData(X=sp.csr_matrix((1, n), dtype=np.float32), var=var)
    try:
        _, s, e = peak_coordinates(a, name="'fuzz.h5ad'")
    except Exception as err:  # noqa: BLE001
        assert isinstance(err, ValueError) and "'fuzz.h5ad'" in str(err), repr(err)
        return
    for v, got in zip(starts, s.tolist(), strict=True):
        assert float(v) == got and 0 <= got <= 2**40


# --------------------------------------------------------------------------------------------------
# Token parquet reader
# --------------------------------------------------------------------------------------------------
_TOY = Universe.from_arrays(["chr1"] * 5, [0, 10, 20, 30, 40], [5, 15, 25, 35, 45], source="toy")


@st.composite
def _token_table(draw):
    n = draw(st.integers(0, 6))
    cell = st.one_of(
        st.none(), st.lists(st.one_of(st.integers(-2, _TOY.vocab_size + 2), st.none()), max_size=5)
    )
    tokens = draw(st.lists(cell, min_size=n, max_size=n))
    barcodes = draw(
        st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=4), st.none()), min_size=n, max_size=n))
    )
    ttype = draw(st.sampled_from(["int32", "int64", "uint32", "uint8"]))
    with_universe = draw(st.booleans())
    return tokens, barcodes, ttype, with_universe


def _oracle_tokens(tokens, barcodes, vocab):
    if any(c is None or any(t is None for t in c) for c in tokens):
        return None
    if barcodes is not None and any(b is None for b in barcodes):
        return None
    if any(not 0 <= t < vocab for c in tokens for t in c):
        return None
    return tokens


@FUZZ
@given(spec=_token_table(), pass_universe=st.booleans())
def test_tokens_parquet_matches_oracle(spec, pass_universe):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tokens, barcodes, ttype, with_universe = spec
    unsigned = ttype.startswith("u")
    if unsigned:  # a negative id cannot be stored in an unsigned column; use a huge one instead
        tokens = [
            None if c is None else [None if t is None else (t if t >= 0 else 2**8 - 1) for t in c]
            for c in tokens
        ]
    cols = {"tokens": pa.array(tokens, type=pa.list_(getattr(pa, ttype)()))}
    if barcodes is not None:
        cols["barcode"] = pa.array(barcodes, type=pa.string())
    table = pa.table(cols)
    if with_universe:
        table = table.replace_schema_metadata(_universe_metadata(_TOY))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.parquet"
        pq.write_table(table, path)
        expected = _oracle_tokens(tokens, barcodes, _TOY.vocab_size)
        if not with_universe and not pass_universe:
            expected = None
        try:
            tok = read_tokens_parquet(path, universe=_TOY if pass_universe else None)
        except Exception as err:  # noqa: BLE001
            _expect_named(err, path)
            assert expected is None, f"refused a valid file: {err}"
            return
        assert expected is not None, "accepted a file that should be refused"
        assert len(tok) == len(tokens)
        assert [tok[i].tolist() for i in range(len(tok))] == expected
        assert tok.indices.dtype == np.int32 and tok.indptr.dtype == np.int64
        if barcodes is not None:
            assert tok.barcodes.tolist() == barcodes


@pytest.fixture(scope="module")
def valid_parquet_bytes(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [np.sort(rng.choice(_TOY.n_regions, size=rng.integers(0, 4), replace=False)) for _ in range(12)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    tok = TokenizedCells(
        indptr,
        np.concatenate(rows).astype(np.int32),
        np.array([f"c{i}" for i in range(12)], dtype=object),
        _TOY,
    )
    return tok.to_parquet(tmp_path_factory.mktemp("pq") / "t.parquet").read_bytes()


@settings(FUZZ, max_examples=150)
@given(edits=_EDITS)
def test_tokens_parquet_mutated_bytes(valid_parquet_bytes, edits):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.parquet"
        path.write_bytes(_mutate(valid_parquet_bytes, edits))
        try:
            tok = read_tokens_parquet(path)
        except Exception as err:  # noqa: BLE001
            _expect_named(err, path)
            return
        # A damaged byte may still decode (e.g. inside a value): the result must be internally consistent.
        assert tok.indptr[0] == 0 and tok.indptr[-1] == tok.indices.size and (np.diff(tok.indptr) >= 0).all()
        if tok.indices.size:
            assert 0 <= tok.indices.min() and tok.indices.max() < tok.vocab_size
        assert tok.barcodes.size == len(tok)
