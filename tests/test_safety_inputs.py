"""Odd but real inputs (issue 10): each gets a correct result or one clear ValueError naming what is wrong."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fastembed.io import peak_coordinates, read_10x, read_mtx, tokenize_cells
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
    [("2", "size line must hold 3"), ("2 x 1", "size line must hold 3"), ("2 2 99999999999", "entries cannot fit")],
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
