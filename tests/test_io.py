"""Readers, peak coordinates, parquet round trip and the errors bad input must get."""

from __future__ import annotations

import gzip
import os
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
import scipy.sparse as sp

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.readers import peak_coordinates
from fastembed.tokens import read_tokens_parquet
from fastembed.universe import Universe, read_bed


@pytest.fixture(scope="module")
def granja(granja_dir):
    return fe.read_mtx(granja_dir / "matrix.mtx.gz", granja_dir / "barcodes.tsv", granja_dir / "peaks.bed")


@pytest.fixture(scope="module")
def small():
    """200 real cells x the first 2,000 peaks of the bundled demo (a slice of granja2019)."""
    demo = load_demo()[:200, :2000]
    return ad.AnnData(X=demo.X.copy(), obs=demo.obs[[]].copy(), var=demo.var[["chr", "start", "end"]].copy())


def _write_triple(adata, folder, *, orientation="peaks_x_cells", gz=True, extra_columns=True):
    folder.mkdir(parents=True, exist_ok=True)
    X = adata.X.T if orientation == "peaks_x_cells" else adata.X
    mtx = folder / "matrix.mtx"
    scipy.io.mmwrite(mtx, sp.coo_matrix(X))
    if gz:
        with open(mtx, "rb") as src, gzip.open(folder / "matrix.mtx.gz", "wb") as dst:
            dst.write(src.read())
        mtx.unlink()
        mtx = folder / "matrix.mtx.gz"
    bc = folder / "barcodes.tsv"
    bc.write_text("".join(f"{b}\tsample1\n" if extra_columns else f"{b}\n" for b in adata.obs_names))
    peaks = folder / "peaks.bed"
    var = adata.var
    peaks.write_text(
        "".join(
            f"{c}\t{s}\t{e}\tname{i}\t0\t+\n"
            for i, (c, s, e) in enumerate(zip(var["chr"], var["start"], var["end"], strict=True))
        )
    )
    return mtx, bc, peaks


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------
def test_read_mtx_real(granja, granja_dir):
    assert granja.shape == (14125, 10000)
    assert sp.isspmatrix_csr(granja.X) or isinstance(granja.X, sp.csr_array)
    assert granja.X.nnz == 2321215  # the data README
    assert list(granja.var.columns) == ["chr", "start", "end"]
    assert granja.var["start"].dtype == np.int64 and granja.var["end"].dtype == np.int64
    first = (granja_dir / "peaks.bed").read_text().split("\n", 1)[0].split("\t")
    assert granja.var_names[0] == f"{first[0]}:{first[1]}-{first[2]}"
    assert granja.obs_names[0] == (granja_dir / "barcodes.tsv").read_text().split("\n", 1)[0]


@pytest.mark.parametrize("orientation", ["peaks_x_cells", "cells_x_peaks"])
@pytest.mark.parametrize("gz", [True, False])
def test_read_mtx_orientations(small, tmp_path, orientation, gz):
    mtx, bc, peaks = _write_triple(small, tmp_path, orientation=orientation, gz=gz)
    got = fe.read_mtx(mtx, bc, peaks)
    assert got.shape == small.shape
    assert (got.X != small.X).nnz == 0
    assert list(got.obs_names) == list(small.obs_names)  # extra barcode columns ignored
    assert list(got.var_names) == list(small.var_names)  # extra BED columns ignored


def test_read_mtx_shape_fits_neither(small, tmp_path):
    mtx, bc, peaks = _write_triple(small, tmp_path)
    bc.write_text("".join(f"{b}\n" for b in small.obs_names[:-1]))
    with pytest.raises(ValueError, match=r"fits neither.*199 barcodes.*2000 peaks"):
        fe.read_mtx(mtx, bc, peaks)


def test_read_mtx_missing_and_wrong_files(small, tmp_path):
    mtx, bc, peaks = _write_triple(small, tmp_path)
    with pytest.raises(FileNotFoundError, match="barcodes file"):
        fe.read_mtx(mtx, tmp_path / "nope.tsv", peaks)
    with pytest.raises(ValueError, match="not a MatrixMarket"):
        fe.read_mtx(peaks, bc, peaks)


def test_read_10x_peaks_bed(small, tmp_path):
    _write_triple(small, tmp_path)
    got = fe.read_10x(tmp_path)
    assert (got.X != small.X).nnz == 0


def test_read_10x_features_multiome(small, tmp_path):
    """A multiome features.tsv.gz lists genes too: only the Peaks rows are kept."""
    n_genes = 5
    X = sp.vstack([sp.random(n_genes, small.n_obs, density=0.3, format="csr", random_state=0), small.X.T])
    scipy.io.mmwrite(tmp_path / "matrix.mtx", sp.coo_matrix(X))
    (tmp_path / "barcodes.tsv").write_text("".join(f"{b}\n" for b in small.obs_names))
    lines = [f"ENSG{i}\tGENE{i}\tGene Expression\tchr1\t{i}\t{i + 10}\n" for i in range(n_genes)]
    lines += [
        f"{c}:{s}-{e}\t{c}:{s}-{e}\tPeaks\t{c}\t{s}\t{e}\n"
        for c, s, e in zip(small.var["chr"], small.var["start"], small.var["end"], strict=True)
    ]
    with gzip.open(tmp_path / "features.tsv.gz", "wt") as fh:
        fh.writelines(lines)
    got = fe.read_10x(tmp_path)
    assert got.shape == small.shape
    assert (got.X != small.X).nnz == 0
    assert list(got.var_names) == list(small.var_names)


def test_read_10x_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lacks matrix.mtx\[.gz\], barcodes.tsv"):
        fe.read_10x(tmp_path)


# ------------------------------------------------------------------------------------------------
# Peak coordinates
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["{c}:{s}-{e}", "{c}-{s}-{e}", "{c}_{s}_{e}"])
def test_var_names_as_coordinates(small, fmt):
    a = ad.AnnData(X=small.X, obs=small.obs.copy())
    a.var_names = [
        fmt.format(c=c, s=s, e=e)
        for c, s, e in zip(small.var["chr"], small.var["start"], small.var["end"], strict=True)
    ]
    chroms, starts, ends = peak_coordinates(a)
    np.testing.assert_array_equal(chroms, small.var["chr"].to_numpy())
    np.testing.assert_array_equal(starts, small.var["start"].to_numpy())
    np.testing.assert_array_equal(ends, small.var["end"].to_numpy())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # hg19 contigs with underscores: the last two underscore-separated fields are the coordinates
        ("chrUn_gl000220_100_200", ("chrUn_gl000220", 100, 200)),
        ("chr1_gl000191_random_5_10", ("chr1_gl000191_random", 5, 10)),
        ("chr1_0_0", ("chr1", 0, 0)),
        ("chrUn_gl000220:100-200", ("chrUn_gl000220", 100, 200)),
        ("chr1_gl000191_random-5-10", ("chr1_gl000191_random", 5, 10)),
        ("chr1-100-200", ("chr1", 100, 200)),
    ],
)
def test_var_names_with_underscores(small, name, expected):
    # a real demo peak's name first, so the parsed name sits among ordinary ones
    c, s, e = small.var["chr"].iloc[0], int(small.var["start"].iloc[0]), int(small.var["end"].iloc[0])
    a = ad.AnnData(X=small.X[:, :2], obs=small.obs.copy())
    a.var_names = [f"{c}:{s}-{e}", name]
    chroms, starts, ends = peak_coordinates(a)
    assert list(zip(chroms.tolist(), starts.tolist(), ends.tolist(), strict=True)) == [(c, s, e), expected]


@pytest.mark.parametrize(
    "name", ["GeneA", "chr1_100-200", "chr1:100_200", "chr1_100", "chr1_100_2x0", "chr1__200", "_100_200"]
)
def test_var_without_coordinates(name):
    a = ad.AnnData(X=sp.csr_matrix(np.ones((2, 2))), var=pd.DataFrame(index=["chr1_1_5", name]))
    with pytest.raises(ValueError) as err:
        peak_coordinates(a)
    msg = str(err.value)
    assert "no 'chr'/'start'/'end' columns and var_names do not look like" in msg
    assert "'chr1:100-200'" in msg and "'chr1-100-200'" in msg and "'chr1_100_200'" in msg
    assert f"var_name 1 is {name!r}" in msg


def test_var_non_integer_start():
    var = pd.DataFrame({"chr": ["chr1", "chr1"], "start": [1.0, np.nan], "end": [5, 9]}, index=["a", "b"])
    a = ad.AnnData(X=sp.csr_matrix(np.ones((1, 2))), var=var)
    with pytest.raises(ValueError, match=r"var column 'start' must hold integers; peak 1"):
        peak_coordinates(a)


@pytest.mark.parametrize("missing", [np.nan, None, "", "  "])
def test_var_missing_chromosome_names_the_peak(missing):
    var = pd.DataFrame(
        {"chr": ["chr1", missing, "chr2"], "start": [1, 5, 9], "end": [5, 9, 12]}, index=list("abc")
    )
    a = ad.AnnData(X=sp.csr_matrix(np.ones((1, 3))), var=var)
    with pytest.raises(
        ValueError, match=r"var\['chr'\] has no chromosome name for 1 peaks \(first: peak 1, 'b'\)"
    ):
        peak_coordinates(a)


# ------------------------------------------------------------------------------------------------
# BED files
# ------------------------------------------------------------------------------------------------
def test_bed_header_lines_skipped_and_gzip(tmp_path):
    p = tmp_path / "u.bed.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("track name=x\nbrowser position chr1\n# comment\n\nchr1\t10\t20\tname\nchr2 5 9\n")
    chroms, starts, ends = read_bed(p)
    assert chroms.tolist() == ["chr1", "chr2"] and starts.tolist() == [10, 5] and ends.tolist() == [20, 9]


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("chr1\t10\n", r"line 2: expected at least 3 fields"),
        ("chr1\tten\t20\n", r"line 2: field 2 \(start\) must be an integer, got 'ten'"),
        ("chr1\t10\t2x\n", r"line 2: field 3 \(end\) must be an integer"),
        ("chr1\t30\t20\n", r"line 2: start 30 > end 20"),
        ("chr1\t-5\t20\n", r"line 2: field 2 \(start\) is negative"),
    ],
)
def test_bed_malformed_lines(tmp_path, line, pattern):
    p = tmp_path / "bad.bed"
    p.write_text("chr1\t0\t5\n" + line)
    with pytest.raises(ValueError, match=pattern) as err:
        Universe.from_bed(p)
    assert str(p) in str(err.value)


def test_bed_binary_file(tmp_path):
    p = tmp_path / "x.bed"
    p.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ValueError, match="not a text BED file"):
        read_bed(p)


def test_unsorted_universe_keeps_file_order(small, tmp_path):
    """Token ids follow file order even when the file is not sorted; overlaps are the same."""
    var = small.var
    bed_rows = [f"{c}\t{s}\t{e}\n" for c, s, e in zip(var["chr"], var["start"], var["end"], strict=True)]
    perm = np.random.default_rng(1).permutation(len(bed_rows))
    (tmp_path / "shuffled.bed").write_text("".join(bed_rows[i] for i in perm))
    tok = fe.tokenize_cells(small, tmp_path / "shuffled.bed")
    inverse = np.argsort(perm)  # peak j is line inverse[j] of the shuffled file
    X = small.X.tocsr()
    for i in range(0, small.n_obs, 17):
        np.testing.assert_array_equal(tok[i], np.sort(inverse[X.getrow(i).indices]))


def test_duplicate_universe_regions_warn(tmp_path):
    p = tmp_path / "dup.bed"
    p.write_text("chr1\t0\t10\nchr1\t20\t30\nchr1\t0\t10\n")
    with pytest.warns(UserWarning, match="1 regions are exact duplicates"):
        uni = Universe.from_bed(p)
    a = ad.AnnData(
        X=sp.csr_matrix(np.ones((1, 1))), var=pd.DataFrame({"chr": ["chr1"], "start": [5], "end": [6]})
    )
    assert fe.tokenize_cells(a, uni)[0].tolist() == [0, 2]


def test_empty_universe(tmp_path):
    p = tmp_path / "empty.bed"
    p.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no regions"):
        Universe.from_bed(p)


# ------------------------------------------------------------------------------------------------
# tokenize_cells input checks
# ------------------------------------------------------------------------------------------------
def _toy(chroms=("chr1", "chr1"), dense=((1, 0), (0, 0))):
    var = pd.DataFrame({"chr": list(chroms), "start": [100, 500], "end": [200, 600]})
    var.index = [f"p{i}" for i in range(len(chroms))]
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(dense))])
    return ad.AnnData(X=sp.csr_matrix(np.array(dense, dtype=np.float32)), var=var, obs=obs)


@pytest.fixture
def toy_universe(tmp_path):
    p = tmp_path / "u.bed"
    p.write_text("chr1\t150\t160\nchr1\t550\t700\nchr2\t0\t100\n")
    return p


def test_zero_cells(toy_universe):
    with pytest.raises(ValueError, match="zero cells"):
        fe.tokenize_cells(_toy()[:0], toy_universe)


def test_cell_with_no_peaks_keeps_its_row(toy_universe):
    with pytest.warns(UserWarning, match="1 of 2 cells .* have no token"):
        tok = fe.tokenize_cells(_toy(), toy_universe)
    assert len(tok) == 2 and tok[0].tolist() == [0] and tok[1].tolist() == []
    assert tok.barcodes.tolist() == ["c0", "c1"]
    assert tok.stats["n_empty_cells"] == 1


def test_chromosome_naming_mismatch(toy_universe):
    with pytest.raises(ValueError, match=r"'1'.*'chr1'.*name chromosomes differently"):
        fe.tokenize_cells(_toy(chroms=("1", "1")), toy_universe)


def test_some_chromosomes_missing_warns(toy_universe):
    with pytest.warns(UserWarning, match=r"1 of 2 peaks .* absent from universe .*'chrM'"):
        tok = fe.tokenize_cells(_toy(chroms=("chr1", "chrM"), dense=((1, 1),)), toy_universe)
    assert tok.stats["n_peaks_unknown_chrom"] == 1 and tok[0].tolist() == [0]


def test_missing_universe_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="universe file"):
        fe.tokenize_cells(_toy(), tmp_path / "missing.bed")


def test_output_folder_missing(toy_universe, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        fe.tokenize_cells(_toy(dense=((1, 0),)), toy_universe, tmp_path / "no" / "such" / "t.parquet")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_output_folder_not_writable(toy_universe, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            fe.tokenize_cells(_toy(dense=((1, 0),)), toy_universe, ro / "t.parquet")
    finally:
        ro.chmod(0o755)


def test_no_partial_parquet_after_error(small, tmp_path, monkeypatch):
    uni = Universe.from_arrays(small.var["chr"], small.var["start"], small.var["end"])
    out = tmp_path / "tokens.parquet"
    calls = {"n": 0}
    real = pq.ParquetWriter.write_table

    def failing(self, table, *args, **kwargs):
        calls["n"] += 1
        real(self, table, *args, **kwargs)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    with pytest.raises(OSError, match="simulated"):
        fe.tokenize_cells(small, uni, out)
    assert calls["n"] == 1
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Parquet round trip and the dataset
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("universe", "n_regions"),
    [("demo_peaks", 10_000), ("demo_other_universe", 10_000), ("buenrostro", 126_536)],
)
def test_parquet_round_trip(small, tmp_path, request, universe, n_regions):
    if universe == "demo_peaks":
        universe = demo_peaks_path()
    elif universe == "buenrostro":
        universe = request.getfixturevalue("buenrostro_universe")  # full size: needs the shared data
    else:
        universe = request.getfixturevalue(universe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = fe.tokenize_cells(small, universe)
        path = fe.tokenize_cells(small, universe, tmp_path / "t.parquet")
    ds = fe.Region2VecDataset(path)
    np.testing.assert_array_equal(ds.indptr, tok.indptr)
    np.testing.assert_array_equal(ds.indices, tok.indices)
    assert ds.indptr.dtype == np.int64 and ds.indices.dtype == np.int32
    assert ds.barcodes.tolist() == list(small.obs_names)
    assert ds.universe.checksum == Universe.from_bed(universe).checksum
    assert ds.vocab_size == len(ds.universe) + 7 == n_regions + 7
    assert len(ds) == small.n_obs and ds.n_tokens == tok.n_tokens
    np.testing.assert_array_equal(ds[5], tok[5])
    # gtars layout: tokens list<int32> and barcode string
    schema = pq.read_schema(path)
    assert schema.field("tokens").type == pa.list_(pa.int32())
    assert schema.field("barcode").type == pa.string()


def test_parquet_many_row_groups(small, tmp_path, monkeypatch):
    import fastembed.settings as tunables

    monkeypatch.setattr(tunables, "ROW_GROUP_CELLS", 7)
    uni = Universe.from_arrays(small.var["chr"], small.var["start"], small.var["end"])
    tok = fe.tokenize_cells(small, uni)
    ds = fe.Region2VecDataset(tok.to_parquet(tmp_path / "t.parquet"))
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == -(-small.n_obs // 7)
    np.testing.assert_array_equal(ds.indptr, tok.indptr)
    np.testing.assert_array_equal(ds.indices, tok.indices)


def test_gtars_parquet_needs_universe(tmp_path, toy_universe):
    path = tmp_path / "gtars.parquet"
    pq.write_table(pa.table({"tokens": pa.array([[0, 1], [], [2]], type=pa.list_(pa.int32()))}), path)
    with pytest.raises(ValueError, match="does not carry its universe"):
        fe.Region2VecDataset(path)
    ds = fe.Region2VecDataset(path, universe=toy_universe)
    assert ds.indptr.tolist() == [0, 2, 2, 3] and ds.barcodes.tolist() == ["0", "1", "2"]


def test_parquet_bad_files(tmp_path, toy_universe):
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="is not a parquet file"):
        read_tokens_parquet(tmp_path / "x.parquet")
    pq.write_table(pa.table({"ids": [1, 2]}), tmp_path / "y.parquet")
    with pytest.raises(ValueError, match="has no 'tokens' column"):
        read_tokens_parquet(tmp_path / "y.parquet")
    pq.write_table(
        pa.table({"tokens": pa.array([[0, 99]], type=pa.list_(pa.int32()))}), tmp_path / "z.parquet"
    )
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 10\).*found 99"):
        read_tokens_parquet(tmp_path / "z.parquet", universe=toy_universe)
    with pytest.raises(FileNotFoundError):
        read_tokens_parquet(tmp_path / "missing.parquet")


def test_h5ad_path_backed_matches_memory(small, tmp_path):
    uni = Universe.from_arrays(small.var["chr"], small.var["start"], small.var["end"])
    small.write_h5ad(tmp_path / "s.h5ad")
    a = fe.tokenize_cells(small, uni)
    b = fe.tokenize_cells(tmp_path / "s.h5ad", uni, batch_cells=33)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_h5ad_wrong_file(tmp_path, toy_universe):
    (tmp_path / "x.h5ad").write_text("hello")
    with pytest.raises(ValueError, match=r"cannot be read as .h5ad"):
        fe.tokenize_cells(tmp_path / "x.h5ad", toy_universe)


# --------------------------------------------------------------------------------------------------
# File suffixes: matched without regard to case, for reading and writing
# --------------------------------------------------------------------------------------------------
def test_has_suffix_ignores_case(tmp_path):
    from fastembed._suffix import has_suffix

    assert has_suffix("DATA.H5AD", ".h5ad") and has_suffix(tmp_path / "cells.Parquet", ".parquet")
    assert has_suffix("fragments.TSV.GZ", ".tsv", ".tsv.gz") and has_suffix("m.MTX.gz", ".mtx.gz")
    assert not has_suffix("cells.h5ad.bak", ".h5ad") and not has_suffix("parquet", ".parquet")


def test_upper_case_suffixes_read_and_write_as_lower_case(tmp_path):
    """DATA.H5AD, CELLS.ZARR or T.PARQUET are the files their lower-case names are, through the Python API."""
    import shutil

    from conftest import demo_cells

    cells = demo_cells(200, 7)
    cells.write_h5ad(tmp_path / "CELLS.H5AD")
    cells.write_zarr(tmp_path / "CELLS.ZARR")
    want = fe.tokenize_cells(cells, demo_peaks_path())
    for name in ("CELLS.H5AD", "CELLS.ZARR"):
        got = fe.tokenize_cells(tmp_path / name, demo_peaks_path(), batch_cells=64)
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
    assert fe.io.LazyAnnData(tmp_path / "CELLS.ZARR").shape == cells.shape
    out = fe.tokenize_cells(tmp_path / "CELLS.ZARR", demo_peaks_path(), output=tmp_path / "T.PARQUET")
    parts = tmp_path / "parts"
    parts.mkdir()
    shutil.copy(out, parts / "PART-0.PARQUET")
    np.testing.assert_array_equal(read_tokens_parquet(parts).indices, want.indices)

    model = fe.ScEmbed(8, seed=0, threads=1, n_components=None).train(want, epochs=1, progress=False)
    emb = model.encode(cells, progress=False)
    for src in (tmp_path / "T.PARQUET", str(tmp_path / "T.PARQUET"), parts, tmp_path / "CELLS.ZARR"):
        np.testing.assert_array_equal(model.encode(src, progress=False), emb, err_msg=str(src))
    model.encode(tmp_path / "CELLS.H5AD", out=tmp_path / "E.ZARR", progress=False)
    np.testing.assert_array_equal(ad.read_zarr(tmp_path / "E.ZARR").obsm["scembed_X"], emb)

    # annotate reads only obs and the embedding of a path; the zarr store is opened as zarr
    ref = cells.copy()
    ref.obsm["scembed_X"] = emb
    labels = fe.annotate_celltypes(tmp_path / "E.ZARR", ref, k=3)
    assert labels.equals(fe.annotate_celltypes(ad.read_zarr(tmp_path / "E.ZARR"), ref, k=3))
