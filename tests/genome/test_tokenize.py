"""Tokenizer against a brute-force overlap oracle: real data, then hypothesis property tests."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import cell_tokens_bruteforce, overlaps_bruteforce

import fastembed as fe
from fastembed import tokenize as tk
from fastembed.datasets import load_demo
from fastembed.universe import Universe, read_bed


def _assert_cells_equal(tok, expected):
    assert len(tok) == len(expected)
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(tok[i], want, err_msg=f"cell {i}")


# ------------------------------------------------------------------------------------------------
# Real data shipped with the package: demo cells against a universe made from their peaks
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_slice():
    """300 random cells of the bundled demo (real granja2019 cells and peaks; no shared data needed)."""
    full = load_demo()
    rows = np.sort(np.random.default_rng(0).choice(full.n_obs, 300, replace=False))
    return full[rows].copy()


def _tokenize_against_bruteforce(adata, universe_path, min_overlap=1):
    """Tokenize ``adata`` against the BED at ``universe_path`` and check every cell against brute-force overlap;
    returns (tokens, per-peak brute-force hits)."""
    u_chroms, u_starts, u_ends = read_bed(universe_path)
    hits = overlaps_bruteforce(
        adata.var["chr"].to_numpy(),
        adata.var["start"].to_numpy(),
        adata.var["end"].to_numpy(),
        u_chroms,
        u_starts,
        u_ends,
        min_overlap=min_overlap,
    )
    expected = cell_tokens_bruteforce(adata.X.tocsr(), hits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cells whose peaks all fall between the universe's regions
        tok = fe.tokenize_cells(adata, universe_path, min_overlap=min_overlap)
    _assert_cells_equal(tok, expected)
    assert tok.indices.dtype == np.int32 and tok.indptr.dtype == np.int64
    assert tok.vocab_size == u_starts.size + 7
    assert tok.stats["n_peaks_unmapped"] == sum(h.size == 0 for h in hits)
    return tok, hits


@pytest.mark.parametrize("min_overlap", [1, 250])
def test_demo_matches_bruteforce(demo_slice, demo_other_universe, min_overlap):
    tok, hits = _tokenize_against_bruteforce(demo_slice, demo_other_universe, min_overlap)
    # A peak may map to several tokens (both halves of its split region, or a neighbour's extended half).
    assert max(h.size for h in hits) >= 2
    if min_overlap > 1:
        assert tok.n_tokens < fe.tokenize_cells(demo_slice, demo_other_universe).n_tokens


# ------------------------------------------------------------------------------------------------
# Real data: granja2019 peaks against the Buenrostro 2018 universe (full size, shared data)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def granja_slice(granja_dir):
    full = fe.read_mtx(granja_dir / "matrix.mtx.gz", granja_dir / "barcodes.tsv", granja_dir / "peaks.bed")
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(full.n_obs, 300, replace=False))
    return full[rows].copy()


def test_real_data_matches_bruteforce(granja_slice, buenrostro_universe):
    tok, hits = _tokenize_against_bruteforce(granja_slice, buenrostro_universe)
    # The data README: about 30% of granja's peaks hit a Buenrostro region.
    mapped = np.mean([h.size > 0 for h in hits])
    assert 0.25 < mapped < 0.35
    # Some 501-bp peaks straddle two adjacent universe regions: a peak can map to several tokens.
    assert max(h.size for h in hits) >= 2


def test_identity_universe_gives_column_indices(demo_slice, tmp_path):
    """Tokenizing against the matrix's own peaks gives each cell's nonzero columns in peak order."""
    adata = demo_slice
    bed = tmp_path / "own.bed"
    adata.var[["chr", "start", "end"]].to_csv(bed, sep="\t", header=False, index=False)
    tok = fe.tokenize_cells(adata, bed)
    X = adata.X.tocsr()
    X.sort_indices()
    for i in range(0, adata.n_obs, 37):
        np.testing.assert_array_equal(tok[i], np.sort(X.getrow(i).indices))


def test_repeated_cell_names_warn_and_keep_their_rows(demo_slice):
    from fastembed.datasets import demo_peaks_path

    a = demo_slice[:20].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unique names: no warning
        fe.tokenize_cells(a, demo_peaks_path())
    names = list(a.obs_names)
    names[5] = names[2]
    names[9] = names[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.obs_names = names
    with pytest.warns(
        UserWarning, match=rf"2 cell names of the AnnData repeat an earlier one \(first: '{names[2]}'\)"
    ):
        tok = fe.tokenize_cells(a, demo_peaks_path())
    assert len(tok.barcodes) == 20 and list(tok.barcodes) == names


def test_min_overlap_real(granja_slice, buenrostro_universe):
    tok, _ = _tokenize_against_bruteforce(granja_slice, buenrostro_universe, min_overlap=250)
    assert tok.n_tokens < fe.tokenize_cells(granja_slice, buenrostro_universe).n_tokens


# ------------------------------------------------------------------------------------------------
# Property tests
# ------------------------------------------------------------------------------------------------
CHROMS = ["chr1", "chr2", "chrX", "chrUn"]


@st.composite
def intervals(draw, chroms, n_min, n_max, span=200, max_len=60):
    n = draw(st.integers(n_min, n_max))
    out = []
    for _ in range(n):
        c = draw(st.sampled_from(chroms))
        s = draw(st.integers(0, span))
        length = draw(st.integers(0, max_len))
        out.append((c, s, s + length))
    return out


@st.composite
def tokenize_case(draw):
    universe = draw(intervals(CHROMS[:3], 1, 25))
    # Reuse universe ends/starts as query boundaries now and then, so touching ends are common.
    peaks = draw(intervals(CHROMS, 1, 20))
    bounds = [b for (_, s, e) in universe for b in (s, e)]
    touched = []
    for c, s, e in peaks:
        if bounds and draw(st.booleans()):
            b = draw(st.sampled_from(bounds))
            s, e = (b, b + (e - s)) if draw(st.booleans()) else (max(0, b - (e - s)), b)
        touched.append((c, s, e))
    n_cells = draw(st.integers(1, 6))
    dense = draw(
        st.lists(
            st.lists(st.integers(0, 2), min_size=len(touched), max_size=len(touched)),
            min_size=n_cells,
            max_size=n_cells,
        )
    )
    min_overlap = draw(st.integers(1, 8))
    return universe, touched, np.array(dense), min_overlap


def _adata(peaks, dense):
    var = pd.DataFrame(
        {"chr": [p[0] for p in peaks], "start": [p[1] for p in peaks], "end": [p[2] for p in peaks]}
    )
    var.index = [f"p{i}" for i in range(len(peaks))]
    return ad.AnnData(
        X=sp.csr_matrix(dense), var=var, obs=pd.DataFrame(index=[f"c{i}" for i in range(len(dense))])
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokenize_case())
def test_property_matches_bruteforce(case):
    universe, peaks, dense, min_overlap = case
    uni = Universe.from_arrays(
        [u[0] for u in universe], [u[1] for u in universe], [u[2] for u in universe], source="hypothesis"
    )
    adata = _adata(peaks, dense)
    known = {u[0] for u in universe}
    if not any(p[0] in known for p in peaks):
        with pytest.raises(ValueError, match="name chromosomes differently"):
            fe.tokenize_cells(adata, uni, min_overlap=min_overlap)
        return
    hits = overlaps_bruteforce(
        [p[0] for p in peaks],
        [p[1] for p in peaks],
        [p[2] for p in peaks],
        uni.chroms,
        uni.starts,
        uni.ends,
        min_overlap,
    )
    want = cell_tokens_bruteforce(adata.X.tocsr(), hits)
    # Nothing to train on is an error at tokenize, where its cause is known.
    if all(h.size == 0 for h in hits) or all(len(c) == 0 for c in want):
        with pytest.raises(ValueError, match="overlaps a region|no cell"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fe.tokenize_cells(adata, uni, min_overlap=min_overlap)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = fe.tokenize_cells(adata, uni, min_overlap=min_overlap)
    _assert_cells_equal(tok, want)
    assert tok.stats["n_peaks_unmapped"] == sum(h.size == 0 for h in hits)


@settings(max_examples=200, deadline=None)
@given(
    intervals(["chr1"], 1, 40, span=100, max_len=100),
    intervals(["chr1"], 1, 15, span=120, max_len=40),
    st.integers(1, 10),
)
def test_property_map_peaks_nested(universe, peaks, min_overlap):
    """Nested and overlapping universe regions (long ones hide short ones): every hit is found."""
    uni = Universe.from_arrays([u[0] for u in universe], [u[1] for u in universe], [u[2] for u in universe])
    codes = np.zeros(len(peaks), dtype=np.int32)
    offsets, tokens = tk.map_peaks(
        codes, np.array([p[1] for p in peaks]), np.array([p[2] for p in peaks]), uni.sorted_index, min_overlap
    )
    hits = overlaps_bruteforce(
        [p[0] for p in peaks],
        [p[1] for p in peaks],
        [p[2] for p in peaks],
        uni.chroms,
        uni.starts,
        uni.ends,
        min_overlap,
    )
    for i, want in enumerate(hits):
        np.testing.assert_array_equal(tokens[offsets[i] : offsets[i + 1]], want)


@pytest.mark.kernel
def test_touching_intervals_do_not_overlap():
    """Half-open: [0,10) and [10,20) share no base."""
    uni = Universe.from_arrays(["chr1", "chr1"], [0, 10], [10, 20])
    off, tok = tk.map_peaks(
        np.zeros(3, np.int32), np.array([10, 9, 5]), np.array([15, 10, 11]), uni.sorted_index, 1
    )
    assert [tok[off[i] : off[i + 1]].tolist() for i in range(3)] == [[1], [0], [0, 1]]


@pytest.mark.kernel
def test_cells_to_tokens_unsorted_columns_and_explicit_zeros():
    # Peak 0 -> tokens [2], peak 1 -> [0, 1], peak 2 -> [1]; cell 0 lists columns out of order.
    peak_offsets = np.array([0, 1, 3, 4], dtype=np.int64)
    peak_tokens = np.array([2, 0, 1, 1], dtype=np.int32)
    indptr = np.array([0, 3, 5, 5], dtype=np.int64)
    indices = np.array([2, 0, 1, 0, 2], dtype=np.int32)
    data = np.array([1, 1, 1, 0, 1], dtype=np.float32)  # cell 1's column 0 is an explicit zero
    ip, ix = tk.cells_to_tokens(indptr, indices, data, peak_offsets, peak_tokens)
    assert ip.tolist() == [0, 3, 4, 4]
    assert ix.tolist() == [0, 1, 2, 1]


def test_counts_per_block_match_numpy_masks(demo_slice, demo_other_universe):
    """The nonzero and in-universe entry counts, taken in the kernel pass block by block, equal whole-matrix
    numpy masks (explicit zeros and peaks that map nowhere included)."""
    adata = demo_slice.copy()
    X = adata.X.tocsr().astype(np.float32)
    X.data[::7] = 0  # explicit zeros: stored, but not regions of the cell
    adata.X = X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = fe.tokenize_cells(adata, demo_other_universe, batch_cells=37)
    mapper = tk.PeakMapper(adata, Universe.from_bed(demo_other_universe))
    mapped = np.diff(mapper.peak_offsets) > 0
    nonzero = X.data != 0
    assert tok.stats["n_counts"] == int(np.count_nonzero(nonzero))
    assert tok.stats["n_counts_in_universe"] == int(np.count_nonzero(nonzero & mapped[X.indices]))
    assert 0 < tok.stats["n_counts_in_universe"] < tok.stats["n_counts"]
