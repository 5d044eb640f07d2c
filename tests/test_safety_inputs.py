"""Odd but real inputs (issue 10): each gets a correct result or one clear ValueError naming what is wrong."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fastembed.io import read_10x, read_mtx, tokenize_cells
from fastembed.readers import peak_coordinates
from fastembed.universe import Universe, read_bed

BOM = b"\xef\xbb\xbf"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------
# Text readers: byte-order mark, CRLF, coordinates
# --------------------------------------------------------------------------------------------------
def test_universe_bom_keeps_first_chromosome(tmp_path):
    plain = _write(tmp_path / "u.bed", b"chr1\t0\t100\nchr1\t200\t300\n")
    bom = _write(tmp_path / "u_bom.bed", BOM + b"chr1\t0\t100\r\nchr1\t200\t300\r\n")
    u = Universe.from_bed(bom)
    assert u.chrom_names == ["chr1"]
    assert u.checksum == Universe.from_bed(plain).checksum


def test_universe_bom_gzipped_and_comment_first(tmp_path):
    p = _write(tmp_path / "u.bed.gz", gzip.compress(BOM + b"# header\r\nchr2\t5\t9\r\n"))
    chroms, starts, ends = read_bed(p)
    assert chroms.tolist() == ["chr2"] and starts.tolist() == [5] and ends.tolist() == [9]


def test_bom_in_peaks_and_barcodes_tokenizes_all_cells(tmp_path):
    (tmp_path / "m.mtx").write_bytes(
        BOM + b"%%MatrixMarket matrix coordinate integer general\r\n2 3 2\r\n1 1 1\r\n2 2 3\r\n"
    )
    _write(tmp_path / "b.tsv", BOM + b"AAA\r\nCCC\r\n")
    _write(tmp_path / "p.bed", BOM + b"chr1\t0\t10\r\nchr1\t20\t30\r\nchr1\t40\t50\r\n")
    a = read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")
    assert a.obs_names.tolist() == ["AAA", "CCC"]
    assert a.var["chr"].tolist() == ["chr1"] * 3
    uni = Universe.from_arrays(["chr1", "chr1"], [0, 20], [10, 30])
    tok = tokenize_cells(a, uni)
    assert tok.indices.tolist() == [0, 1]


@pytest.mark.parametrize(
    "line, pattern",
    [
        (b"chr1\t99999999999999999999\t99999999999999999999", r"line 2: field 2 \(start\) .*beyond"),
        (b"chr1\t0\t9223372036854775808", r"line 2: field 3 \(end\) .*beyond"),
        (b"chr1\t-5\t10", r"line 2: field 2 \(start\) is negative"),
        (b"chr1\t50\t10", r"line 2: start 50 > end 10"),
        (b"chr1\t1_000\t2000", r"line 2: field 2 \(start\) must be an integer"),
        (b"chr1\t\xd9\xa1\t5", r"line 2: field 2 \(start\) must be an integer"),
    ],
)
def test_bed_bad_coordinates_name_file_and_line(tmp_path, line, pattern):
    p = _write(tmp_path / "u.bed", b"chr1\t0\t10\n" + line + b"\n")
    with pytest.raises(ValueError, match=pattern) as info:
        Universe.from_bed(p)
    assert str(p) in str(info.value) and len(str(info.value)) < 500


def test_bed_not_utf8_is_value_error(tmp_path):
    p = _write(tmp_path / "u.bed", "chr1\t0\t10\n".encode("utf-16"))
    with pytest.raises(ValueError, match="not a text BED file"):
        Universe.from_bed(p)


def test_barcodes_not_utf8_is_value_error(tmp_path):
    (tmp_path / "m.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n1 1 1\n1 1 1\n")
    _write(tmp_path / "b.tsv", b"\xff\xfeA\n")
    _write(tmp_path / "p.bed", b"chr1\t0\t10\n")
    with pytest.raises(ValueError, match=r"barcodes file .*b.tsv' is not UTF-8"):
        read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")


@pytest.mark.parametrize(
    "size_line, pattern",
    [
        ("2", "size line must hold 3"),
        ("2 x 1", "size line must hold 3"),
        ("2 2 99999999999", "entries cannot fit"),
    ],
)
def test_mtx_bad_size_line_names_file(tmp_path, size_line, pattern):
    (tmp_path / "m.mtx").write_text(f"%%MatrixMarket matrix coordinate integer general\n{size_line}\n1 1 1\n")
    _write(tmp_path / "b.tsv", b"A\nB\n")
    _write(tmp_path / "p.bed", b"chr1\t0\t10\nchr1\t20\t30\n")
    with pytest.raises(ValueError, match=pattern) as info:
        read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")
    assert "m.mtx" in str(info.value)


def test_mtx_nan_values_name_file(tmp_path):
    (tmp_path / "m.mtx").write_text("%%MatrixMarket matrix coordinate real general\n1 2 1\n1 1 nan\n")
    _write(tmp_path / "b.tsv", b"A\n")
    _write(tmp_path / "p.bed", b"chr1\t0\t10\nchr1\t20\t30\n")
    with pytest.raises(ValueError, match=r"m.mtx.*NaN or infinite"):
        read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")


def test_features_huge_coordinate_names_line(tmp_path):
    (tmp_path / "matrix.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n1 1 1\n1 1 1\n")
    _write(tmp_path / "barcodes.tsv", b"A\n")
    _write(tmp_path / "features.tsv", b"p1\tp1\tPeaks\tchr1\t0\t99999999999999999999999\n")
    with pytest.raises(ValueError, match=r"features.tsv' line 1: end .*beyond"):
        read_10x(tmp_path)


def test_var_names_beyond_int64_name_the_peak():
    a = ad.AnnData(X=sp.csr_matrix(np.ones((1, 2))))
    a.var_names = ["chr1:1-5", "chr1:1-99999999999999999999"]
    with pytest.raises(ValueError, match=r"var_name 1 .*beyond"):
        peak_coordinates(a)


def test_var_column_beyond_range_names_column():
    var = pd.DataFrame({"chr": ["chr1"], "start": [0], "end": [2**63 - 1]}, index=["a"])
    a = ad.AnnData(X=sp.csr_matrix(np.ones((1, 1))), var=var)
    with pytest.raises(ValueError, match=r"peak 0 .*invalid coordinates.*2\*\*62"):
        peak_coordinates(a)


# --------------------------------------------------------------------------------------------------
# AnnData matrix: NaN/inf, X None, layer=
# --------------------------------------------------------------------------------------------------
def _toy_adata(X=None, n_cells=6):
    var = pd.DataFrame(
        {"chr": ["chr1"] * 4, "start": [0, 100, 200, 300], "end": [50, 150, 250, 350]},
        index=[f"p{i}" for i in range(4)],
    )
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    if X is None:
        rng = np.random.default_rng(0)
        X = sp.csr_matrix((rng.random((n_cells, 4)) < 0.7).astype(np.float32))
    return ad.AnnData(X=X, obs=obs, var=var)


TOY_UNIVERSE = Universe.from_arrays(["chr1"] * 4, [0, 100, 200, 300], [50, 150, 250, 350], source="toy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dense", [False, True])
def test_nan_or_inf_in_x_names_input_and_field(bad, dense):
    X = np.ones((6, 4), dtype=np.float32)
    X[4, 2] = bad
    a = _toy_adata(X if dense else sp.csr_matrix(X))
    with pytest.raises(ValueError, match=r"the AnnData: X holds .*cell 4"):
        tokenize_cells(a, TOY_UNIVERSE)


def test_x_none_offers_layer():
    a = _toy_adata()
    a.layers["counts"] = a.X.copy()
    ref = tokenize_cells(a, TOY_UNIVERSE)
    a.X = None
    with pytest.raises(ValueError, match=r"X is None.*layer=.*'counts'"):
        tokenize_cells(a, TOY_UNIVERSE)
    tok = tokenize_cells(a, TOY_UNIVERSE, layer="counts")
    np.testing.assert_array_equal(tok.indices, ref.indices)
    with pytest.raises(ValueError, match=r"no layer 'raw'.*'counts'"):
        tokenize_cells(a, TOY_UNIVERSE, layer="raw")


def test_nan_in_layer_names_the_layer():
    a = _toy_adata()
    bad = a.X.toarray()
    bad[0, 0] = np.nan
    a.layers["counts"] = sp.csr_matrix(bad)
    with pytest.raises(ValueError, match=r"layers\['counts'\] holds nan"):
        tokenize_cells(a, TOY_UNIVERSE, layer="counts")


def test_x_none_in_h5ad_file_offers_layer(tmp_path):
    a = _toy_adata()
    a.layers["counts"] = a.X.copy()
    a.X = None
    a.write_h5ad(tmp_path / "a.h5ad")
    with pytest.raises(ValueError, match=r"a.h5ad' has no X matrix.*layer="):
        tokenize_cells(tmp_path / "a.h5ad", TOY_UNIVERSE)
    assert len(tokenize_cells(tmp_path / "a.h5ad", TOY_UNIVERSE, layer="counts")) == 6


# --------------------------------------------------------------------------------------------------
# ScEmbed parameters, training data with nothing to learn, threads
# --------------------------------------------------------------------------------------------------
def _toy_tokens(n_cells=40, seed=0):
    from fastembed.tokens import TokenizedCells

    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(4, size=rng.integers(2, 5), replace=False)) for _ in range(n_cells)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    barcodes = np.array([f"c{i}" for i in range(n_cells)], dtype=object)
    return TokenizedCells(indptr, indices, barcodes, TOY_UNIVERSE)


@pytest.fixture(scope="module")
def toy_model():
    from fastembed.scembed import ScEmbed

    return ScEmbed(embedding_dim=4, seed=0, threads=1).train(_toy_tokens(), epochs=2, progress=False)


@pytest.mark.parametrize(
    "param", ["embedding_dim", "window_size", "negative_samples", "min_count", "seed", "threads"]
)
@pytest.mark.parametrize("value", ["abc", "5", np.nan, 2.5, 4.0, True, [3]])
def test_scembed_wrong_typed_params_name_the_parameter(param, value):
    from fastembed.scembed import ScEmbed

    with pytest.raises(ValueError, match=rf"^{param} must be"):
        ScEmbed(**{param: value})


@pytest.mark.parametrize("param", ["embedding_dim", "window_size", "negative_samples", "min_count"])
def test_scembed_none_for_required_int_names_parameter(param):
    from fastembed.scembed import ScEmbed

    with pytest.raises(ValueError, match=rf"^{param} must be"):
        ScEmbed(**{param: None})


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"epochs": "abc"}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"batch_size": np.nan}, "batch_size"),
        ({"batch_size": "8"}, "batch_size"),
        ({"learning_rate": "abc"}, "learning_rate"),
        ({"learning_rate": None}, "learning_rate"),
        ({"learning_rate": np.nan}, "learning_rate"),
        ({"learning_rate": True}, "learning_rate"),
        ({"min_learning_rate": "x"}, "min_learning_rate"),
    ],
)
def test_train_wrong_typed_params_name_the_parameter(kwargs, param):
    from fastembed.scembed import ScEmbed

    m = ScEmbed(embedding_dim=4)
    with pytest.raises(ValueError, match=rf"^{param} must be"):
        m.train(_toy_tokens(), progress=False, **kwargs)
    assert m.universe is None  # nothing half-trained


def test_no_cell_with_two_trained_tokens_is_refused():
    from fastembed.scembed import ScEmbed
    from fastembed.tokens import TokenizedCells

    one_each = TokenizedCells(
        np.arange(5, dtype=np.int64),
        np.array([0, 1, 2, 3], dtype=np.int32),
        np.array(list("abcd"), dtype=object),
        TOY_UNIVERSE,
    )
    with pytest.raises(ValueError, match=r"no cell holds 2 trained tokens \(4 cells, 4 tokens"):
        ScEmbed(embedding_dim=4, threads=1).train(one_each, epochs=1, progress=False)
    # Pairs exist, but only of tokens below min_count: still nothing to learn.
    pairs_of_rare = TokenizedCells(
        np.array([0, 2, 4, 5, 6, 7], dtype=np.int64),
        np.array([0, 1, 2, 3, 3, 3, 3], dtype=np.int32)[:7],
        np.array(list("abcde"), dtype=object),
        TOY_UNIVERSE,
    )
    with pytest.raises(ValueError, match=r"no cell holds 2 trained tokens"):
        ScEmbed(embedding_dim=4, threads=1, min_count=3).train(pairs_of_rare, epochs=1, progress=False)


def test_threads_none_follows_numba_current_setting(monkeypatch):
    import numba

    import fastembed.sgns as sgns
    from fastembed.scembed import ScEmbed

    def parallel_not_expected(*args, **kwargs):
        raise AssertionError("threads=None ran the parallel kernel while numba was set to 1 thread")

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        monkeypatch.setattr(sgns, "_blocks_parallel", parallel_not_expected)
        a = ScEmbed(embedding_dim=4, seed=7).train(_toy_tokens(), epochs=2, progress=False)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(old)
    b = ScEmbed(embedding_dim=4, seed=7, threads=1).train(_toy_tokens(), epochs=2, progress=False)
    np.testing.assert_array_equal(a.region_vectors, b.region_vectors)


def test_resolve_threads_is_numba_current_setting():
    import numba

    from fastembed._threads import resolve_threads

    assert resolve_threads(None) == numba.get_num_threads()
    assert resolve_threads(1) == 1


# --------------------------------------------------------------------------------------------------
# encode: output suffix, ids outside the vocabulary, layer=
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.h5ad", "x.zarr.h5ad", "x", "x.npy"])
def test_encode_out_must_be_zarr(toy_model, tmp_path, name):
    with pytest.raises(ValueError, match=r"must end in \.zarr.*write_h5ad"):
        toy_model.encode(_toy_tokens(), out=tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_encode_ids_outside_vocab_are_refused_before_the_kernel(toy_model):
    tok = _toy_tokens()
    tok.indices[3] = toy_model.vocab_size + 1000
    with pytest.raises(ValueError, match=rf"token id {toy_model.vocab_size + 1000} is outside .*\[0, 11\)"):
        toy_model.encode(tok)
    tok.indices[3] = -1
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        toy_model.encode(tok)


def test_encode_int64_ids_do_not_wrap_into_range(toy_model):
    tok = _toy_tokens()
    tok.indices = tok.indices.astype(np.int64)
    tok.indices[0] = 2**32 + 1  # wraps to 1 if narrowed to int32 before the check
    with pytest.raises(ValueError, match=r"outside the model's vocabulary"):
        toy_model.encode(tok)


def test_encode_broken_indptr_is_refused(toy_model):
    tok = _toy_tokens()
    tok.indptr[-1] += 50
    with pytest.raises(ValueError, match=r"indptr must"):
        toy_model.encode(tok)


def test_encode_layer(toy_model):
    a = _toy_adata()
    ref = toy_model.encode(a)
    a.layers["counts"] = a.X.copy()
    a.X = None
    with pytest.raises(ValueError, match=r"X is None.*layer="):
        toy_model.encode(a)
    np.testing.assert_array_equal(toy_model.encode(a, layer="counts"), ref)
    with pytest.raises(TypeError):
        toy_model.encode(a, "mean", None, 100, False, "counts")  # layer is keyword-only


# --------------------------------------------------------------------------------------------------
# Token parquet files: nulls, types, universe mismatch, folders of parts, row groups
# --------------------------------------------------------------------------------------------------
def _write_table(path, table, universe=TOY_UNIVERSE):
    import pyarrow.parquet as pq

    from fastembed.tokens import _universe_metadata

    if universe is not None:
        table = table.replace_schema_metadata(_universe_metadata(universe))
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    "tokens, barcodes, pattern",
    [
        ([[0, 1], None, [2]], ["a", "b", "c"], r"column 'tokens' is null for cell 1"),
        ([[0, 1], [2, None], [2]], ["a", "b", "c"], r"column 'tokens' holds a null token id in cell 1"),
        ([[0, 1], [2], [3]], ["a", None, "c"], r"column 'barcode' is null for cell 1"),
    ],
)
def test_parquet_nulls_name_file_and_column(tmp_path, tokens, barcodes, pattern):
    import pyarrow as pa

    from fastembed.tokens import read_tokens_parquet

    t = pa.table({"tokens": pa.array(tokens, type=pa.list_(pa.int32())), "barcode": pa.array(barcodes)})
    p = _write_table(tmp_path / "t.parquet", t)
    with pytest.raises(ValueError, match=pattern) as info:
        read_tokens_parquet(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize(
    "column, array, pattern",
    [
        ("tokens", [["0", "1"]], r"column 'tokens' must be list<int32>, got list<.*string>"),
        ("tokens", [[0.5]], r"column 'tokens' must be list<int32>"),
        ("tokens", [1], r"column 'tokens' must be list<int32>, got int64"),
        ("barcode", [7], r"column 'barcode' must be string, got int64"),
    ],
)
def test_parquet_wrong_column_types(tmp_path, column, array, pattern):
    import pyarrow as pa

    from fastembed.tokens import read_tokens_parquet

    cols = {"tokens": pa.array([[0, 1]], type=pa.list_(pa.int32())), "barcode": pa.array(["a"])}
    cols[column] = pa.array(array)
    p = _write_table(tmp_path / "t.parquet", pa.table(cols))
    with pytest.raises(ValueError, match=pattern) as info:
        read_tokens_parquet(p)
    assert str(p) in str(info.value)


def test_parquet_uint32_ids_beyond_int32_are_reported_as_is(tmp_path):
    import pyarrow as pa

    from fastembed.tokens import read_tokens_parquet

    t = pa.table({"tokens": pa.array([[0, 2**32 - 1]], type=pa.list_(pa.uint32()))})
    p = _write_table(tmp_path / "t.parquet", t)
    with pytest.raises(ValueError, match=rf"found {2**32 - 1}"):
        read_tokens_parquet(p)


def test_universe_argument_disagreeing_with_stored_is_refused(tmp_path):
    from fastembed.region2vec import Region2VecDataset
    from fastembed.tokens import read_tokens_parquet

    p = _toy_tokens().to_parquet(tmp_path / "t.parquet")
    other = tmp_path / "other.bed"
    other.write_text("chr1\t0\t50\nchr1\t100\t150\nchr1\t200\t250\nchr2\t300\t350\n")
    with pytest.raises(
        ValueError, match=r"t.parquet' was tokenized with another universe .*other.bed"
    ) as info:
        read_tokens_parquet(p, universe=other)
    assert TOY_UNIVERSE.checksum[:12] in str(info.value)
    with pytest.raises(ValueError, match=r"another universe"):
        Region2VecDataset(p, universe=other)
    # The same regions, written differently (CRLF, extra column), are the same universe.
    same = tmp_path / "same.bed"
    same.write_bytes(b"chr1\t0\t50\tx\r\nchr1\t100\t150\tx\r\nchr1\t200\t250\tx\r\nchr1\t300\t350\tx\r\n")
    assert read_tokens_parquet(p, universe=same).universe.checksum == TOY_UNIVERSE.checksum


def test_folder_of_parts_is_read_in_sorted_order(tmp_path):
    from fastembed.region2vec import Region2VecDataset
    from fastembed.tokens import TokenizedCells

    tok = _toy_tokens(30)
    folder = tmp_path / "parts.parquet"
    folder.mkdir()
    cuts = [0, 7, 7, 20, 30]  # includes an empty part
    for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        ip = tok.indptr[lo : hi + 1]
        part = TokenizedCells(ip - ip[0], tok.indices[ip[0] : ip[-1]], tok.barcodes[lo:hi], TOY_UNIVERSE)
        part.to_parquet(folder / f"part-{k:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000.parquet.crc").write_text("junk")
    ds = Region2VecDataset(folder)
    np.testing.assert_array_equal(ds.indptr, tok.indptr)
    np.testing.assert_array_equal(ds.indices, tok.indices)
    assert ds.barcodes.tolist() == tok.barcodes.tolist()


def test_folder_of_parts_with_two_universes_is_refused(tmp_path):
    from fastembed.region2vec import Region2VecDataset
    from fastembed.tokens import TokenizedCells

    _toy_tokens(5).to_parquet(tmp_path / "a.parquet")
    other = Universe.from_arrays(["chr2"] * 4, [0, 100, 200, 300], [50, 150, 250, 350])
    t = _toy_tokens(5)
    TokenizedCells(t.indptr, t.indices, t.barcodes, other).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(
        ValueError, match=r"part 'b.parquet' was tokenized with another universe .*'a.parquet'"
    ):
        Region2VecDataset(tmp_path)


def _write_parts(folder, names_per_part, barcode=True):
    """One toy token file per entry of ``names_per_part`` (its cells' names) in ``folder``."""
    import pyarrow as pa

    from fastembed.tokens import TokenizedCells

    folder.mkdir()
    for k, names in enumerate(names_per_part):
        t = _toy_tokens(len(names), seed=k)
        path = folder / f"part-{k:05d}.parquet"
        if barcode:
            TokenizedCells(t.indptr, t.indices, np.array(names, dtype=object), TOY_UNIVERSE).to_parquet(path)
        else:  # as gtars writes them: no barcode column
            tokens = [t[i].tolist() for i in range(len(t))]
            _write_table(path, pa.table({"tokens": pa.array(tokens, type=pa.list_(pa.int32()))}))
    return folder


def test_folder_of_parts_warns_on_a_cell_name_in_two_parts(tmp_path):
    """tokenize_cells warns on repeated names within one input; a name repeated across parts (each tokenized on
    its own) is warned about when the folder is read, naming the folder, a name and the two parts."""
    from fastembed.region2vec import Region2VecDataset
    from fastembed.tokens import read_tokens_parquet

    folder = _write_parts(tmp_path / "parts", [["a", "b", "c"], ["d", "e"], ["f", "b", "e", "g"]])
    pattern = (
        r"token folder '.*parts': 2 cell names appear in more than one part \(first: 'b', in "
        r"'part-00000.parquet' and 'part-00002.parquet'\); each cell keeps its row"
    )
    for read in (read_tokens_parquet, Region2VecDataset):
        with pytest.warns(UserWarning, match=pattern) as record:
            tok = read(folder)
        assert len(record) == 1
        if read is read_tokens_parquet:
            assert record[0].filename == __file__  # the warning points at the caller's line
        assert tok.barcodes.tolist() == ["a", "b", "c", "d", "e", "f", "b", "e", "g"]  # every cell kept


def test_folder_of_parts_with_distinct_names_does_not_warn(tmp_path):
    """Names repeated within one part are tokenize's to report (reading one file does not warn either); parts
    without a barcode column are numbered through the folder, so they do not collide."""
    import warnings

    from fastembed.tokens import read_tokens_parquet

    within = _write_parts(tmp_path / "within", [["a", "a", "b"], ["c", "d"]])
    unnamed = _write_parts(tmp_path / "unnamed", [["x"] * 3, ["x"] * 2, ["x"] * 4], barcode=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_tokens_parquet(within).barcodes.tolist() == ["a", "a", "b", "c", "d"]
        assert read_tokens_parquet(unnamed).barcodes.tolist() == [str(i) for i in range(9)]


def test_empty_folder_is_refused(tmp_path):
    from fastembed.region2vec import Region2VecDataset

    with pytest.raises(ValueError, match=r"holds no .parquet files"):
        Region2VecDataset(tmp_path)


def test_row_groups_split_by_token_count(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import fastembed.settings as tunables
    import fastembed.tokens as ftok

    tok = _toy_tokens(50)
    monkeypatch.setattr(tunables, "ROW_GROUP_TOKENS", 10)
    p = tok.to_parquet(tmp_path / "t.parquet")
    meta = pq.ParquetFile(p).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 50 and meta.num_row_groups > 5
    lo = 0
    for n in sizes:  # every group holds at most 10 tokens, and stopping one cell later would exceed that
        assert tok.indptr[lo + n] - tok.indptr[lo] <= 10
        if lo + n < 50:
            assert tok.indptr[lo + n + 1] - tok.indptr[lo] > 10
        lo += n
    back = ftok.read_tokens_parquet(p)
    np.testing.assert_array_equal(back.indptr, tok.indptr)
    np.testing.assert_array_equal(back.indices, tok.indices)


def test_row_group_bounds_edge_cases():
    from fastembed.tokens import _row_group_bounds

    assert _row_group_bounds(np.array([0]), 4, 10) == [0, 0]
    # A cell bigger than the cap gets a group of its own.
    assert _row_group_bounds(np.array([0, 3, 30, 31, 32]), 4, 10) == [0, 1, 2, 4]
    assert _row_group_bounds(np.array([0, 1, 2, 3, 4, 5]), 2, 100) == [0, 2, 4, 5]


def test_default_token_cap_is_well_below_int32():
    import fastembed.settings as tunables

    assert tunables.ROW_GROUP_TOKENS <= 2**28


# --------------------------------------------------------------------------------------------------
# MatrixMarket bytes that crash scipy's reader (found by tests/test_fuzz_readers.py)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"1 1 1\x002 2 3\n1 2 2\n",  # a NUL byte: segmentation fault in scipy 1.17
        b"1 1 1\n2 2 3\n1 2 2 ",  # trailing space, no final newline: C++ terminate (abort)
        b"1 1 1\n2 2 3\n1 2 2x",
    ],
)
def test_mtx_bytes_that_crash_scipy_give_value_error(tmp_path, body):
    (tmp_path / "m.mtx").write_bytes(b"%%MatrixMarket matrix coordinate integer general\n3 2 3\n" + body)
    _write(tmp_path / "b.tsv", b"A\nB\n")
    _write(tmp_path / "p.bed", b"chr1\t0\t10\nchr1\t20\t30\nchr1\t40\t50\n")
    try:
        a = read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")
    except ValueError as err:
        assert "m.mtx" in str(err)
    else:
        assert a.shape == (2, 3)


def test_mtx_without_final_newline_still_reads(tmp_path):
    (tmp_path / "m.mtx").write_bytes(b"%%MatrixMarket matrix coordinate integer general\n3 2 2\n1 1 1\n3 2 4")
    _write(tmp_path / "b.tsv", b"A\nB\n")
    _write(tmp_path / "p.bed", b"chr1\t0\t10\nchr1\t20\t30\nchr1\t40\t50\n")
    a = read_mtx(tmp_path / "m.mtx", tmp_path / "b.tsv", tmp_path / "p.bed")
    np.testing.assert_array_equal(a.X.toarray(), [[1, 0, 0], [0, 0, 4]])


def test_min_learning_rate_above_learning_rate_names_parameter():
    from fastembed.scembed import ScEmbed

    with pytest.raises(ValueError, match=r"^min_learning_rate must be at most learning_rate"):
        ScEmbed(embedding_dim=4).train(
            _toy_tokens(), learning_rate=0.01, min_learning_rate=0.1, progress=False
        )


def test_hand_built_csr_with_column_ids_out_of_range_is_refused():
    # scipy does not bounds-check csr_matrix((data, indices, indptr)); the tokenizer kernel would read past
    # its peak table.
    X = sp.csr_matrix(
        (np.ones(2, dtype=np.float32), np.array([0, 9]), np.array([0, 1, 2, 2, 2, 2, 2])), shape=(6, 4)
    )
    a = _toy_adata(X)
    with pytest.raises(ValueError, match=r"the AnnData: X is a malformed sparse matrix"):
        tokenize_cells(a, TOY_UNIVERSE)


def test_parquet_universe_metadata_bomb_is_refused(tmp_path, monkeypatch):
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    import fastembed.tokens as ftok

    bomb = base64.b64encode(gzip.compress(b"chr1\t0\t1\n" * 10_000_000, compresslevel=9))
    assert len(bomb) < 300_000
    t = pa.table({"tokens": pa.array([[0]], type=pa.list_(pa.int32()))})
    t = t.replace_schema_metadata({ftok.META_UNIVERSE: bomb})
    pq.write_table(t, tmp_path / "t.parquet")
    with pytest.raises(
        ValueError, match=r"t.parquet': universe in the metadata is corrupt \(inflates beyond"
    ):
        ftok.read_tokens_parquet(tmp_path / "t.parquet")
