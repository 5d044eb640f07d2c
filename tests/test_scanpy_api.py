"""The scanpy-style API (fe.pp, fe.tl): in-memory, re-runnable, results in obsm/uns; the data-derived universe and
the warning when a given universe covers little of the data."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import demo_cells
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import merge_overlapping_bruteforce

import fastembed as fe
from fastembed.datasets import demo_peaks_path
from fastembed.genome.datauniverse import LOW_FRACTION_COUNTS, LOW_FRACTION_PEAKS, check_universe_fit


@pytest.fixture(scope="module")
def cells():
    return demo_cells(300, 7)


def _peaks_adata(chroms, starts, ends, n_cells=3):
    var = pd.DataFrame({"chr": chroms, "start": starts, "end": ends})
    var.index = [f"{c}:{s}-{e}#{i}" for i, (c, s, e) in enumerate(zip(chroms, starts, ends, strict=True))]
    X = sp.csr_matrix(np.ones((n_cells, len(starts)), dtype=np.float32))
    return ad.AnnData(X=X, var=var)


# -- fe.tl.scembed -----------------------------------------------------------------------------------------
def test_scembed_twice_gives_the_same_result_and_writes_no_file(cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = cells.copy()
    kw = dict(embedding_dim=8, epochs=2, threads=1, progress=False)
    model = fe.tl.scembed(a, **kw)
    first = a.obsm["scembed_X"].copy()
    assert isinstance(model, fe.ScEmbed)
    assert first.shape == (a.n_obs, 8) and first.dtype == np.float32
    fe.tl.scembed(a, **kw)  # a notebook cell run again: no error, same vectors
    np.testing.assert_array_equal(a.obsm["scembed_X"], first)
    assert list(tmp_path.iterdir()) == []
    uns = a.uns["scembed"]
    assert uns["universe"]["from_data"] is True and uns["universe"]["n_regions"] == a.n_vars
    assert uns["tokenize"]["n_cells"] == a.n_obs and uns["tokenize"]["fraction_peaks_in_universe"] == 1.0
    assert uns["params"]["seed"] == 0 and uns["params"]["embedding_dim"] == 8
    assert uns["training"]["epochs"] == 2
    a.write_h5ad(tmp_path / "a.h5ad")  # everything recorded can be stored
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["scembed"]["tokenize"]["n_tokens"] == uns["tokenize"]["n_tokens"]


def test_scembed_with_a_model_only_encodes(cells):
    a, b = cells[:150].copy(), cells[150:].copy()
    model = fe.tl.scembed(a, embedding_dim=8, epochs=1, threads=1, progress=False)
    vectors = model.region_vectors.copy()
    assert fe.tl.scembed(b, model=model, progress=False) is model
    np.testing.assert_array_equal(model.region_vectors, vectors)
    np.testing.assert_array_equal(b.obsm["scembed_X"], model.encode(b, progress=False))
    assert "training" not in b.uns["scembed"] and b.uns["scembed"]["params"]["trained"] is False
    with pytest.raises(ValueError, match="universe= or model="):
        fe.tl.scembed(b, demo_peaks_path(), model=model)


def test_scembed_save_is_asked_for_and_reruns_with_overwrite(cells, tmp_path):
    a = cells.copy()
    kw = dict(embedding_dim=8, epochs=1, threads=1, progress=False, save=tmp_path / "m", overwrite=True)
    fe.tl.scembed(a, **kw)
    fe.tl.scembed(a, **kw)
    back = fe.ScEmbed.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(back.encode(a, progress=False), a.obsm["scembed_X"])


def test_scembed_needs_an_in_memory_anndata(tmp_path, cells):
    cells.write_h5ad(tmp_path / "c.h5ad")
    with pytest.raises(TypeError, match="in memory.*read it first"):
        fe.tl.scembed(str(tmp_path / "c.h5ad"))


def test_pp_tokenize_records_stats(cells):
    a = cells.copy()
    tok = fe.pp.tokenize(a, demo_peaks_path())
    assert len(tok) == a.n_obs
    assert a.uns["scembed"]["tokenize"]["n_tokens"] == tok.n_tokens
    assert a.uns["scembed"]["universe"]["from_data"] is False


# -- the data-derived universe ---------------------------------------------------------------------------
def test_universe_from_peaks_sorts_and_merges():
    a = _peaks_adata(
        ["chr10", "chr2", "chr2", "chr2", "chr2", "chrX", "chr2"],
        [5, 300, 100, 150, 400, 0, 100],
        [9, 400, 200, 250, 500, 10, 200],
    )
    u = fe.pp.universe_from_peaks(a)
    got = list(zip(u.chroms.tolist(), u.starts.tolist(), u.ends.tolist(), strict=True))
    # chr2 before chr10 before chrX; [100,200) [150,250) and the duplicate merge; [300,400) and [400,500) are
    # book-ended (no shared base) and stay apart.
    assert got == [
        ("chr2", 100, 250),
        ("chr2", 300, 400),
        ("chr2", 400, 500),
        ("chr10", 5, 9),
        ("chrX", 0, 10),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), min_size=1, max_size=12))
def test_universe_from_peaks_matches_bruteforce_merge(peaks):
    starts = [s for s, _ in peaks]
    ends = [s + w for s, w in peaks]
    u = fe.pp.universe_from_peaks(_peaks_adata(["chr1"] * len(peaks), starts, ends, n_cells=1))
    want = merge_overlapping_bruteforce(zip(starts, ends, strict=True))
    assert list(zip(u.starts.tolist(), u.ends.tolist(), strict=True)) == want
    # every peak maps to exactly one region of the merged universe
    tok = fe.tokenize_cells(_peaks_adata(["chr1"] * len(peaks), starts, ends, n_cells=1), u)
    assert tok.n_tokens == len(want)


def test_default_universe_keeps_every_demo_peak(cells):
    u = fe.pp.universe_from_peaks(cells)
    assert len(u) == cells.n_vars  # the demo's peaks do not overlap: one token per peak


# -- the low-coverage warning ----------------------------------------------------------------------------
def _stats(f_peaks, f_counts):
    return {
        "n_peaks": 1000,
        "n_peaks_unmapped": round(1000 * (1 - f_peaks)),
        "fraction_peaks_in_universe": f_peaks,
        "n_counts": 10000,
        "n_counts_in_universe": round(10000 * f_counts),
        "fraction_counts_in_universe": f_counts,
    }


@pytest.mark.parametrize(
    ("f_peaks", "f_counts", "warns"),
    [
        (LOW_FRACTION_PEAKS, LOW_FRACTION_COUNTS, False),  # at both thresholds: fine
        (1.0, 1.0, False),
        (LOW_FRACTION_PEAKS - 0.001, 1.0, True),
        (1.0, LOW_FRACTION_COUNTS - 0.001, True),
        (0.301, 0.792, True),  # granja2019 against the Buenrostro universe
    ],
)
def test_low_coverage_thresholds(f_peaks, f_counts, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_universe_fit(_stats(f_peaks, f_counts), "the data", "u.bed") is warns
    assert len(caught) == int(warns)
    if warns:
        text = str(caught[0].message)
        assert "of 1000 peaks" in text and "of 10000 counts" in text and "own peaks" in text


def test_tokenize_cells_warns_on_a_universe_that_misses_most_peaks(cells, demo_other_universe):
    # demo_other_universe covers every other demo peak: about half the peaks, below the threshold of counts.
    with pytest.warns(UserWarning, match=r"covers little of .*peaks .*counts .*own peaks") as rec:
        tok = fe.tokenize_cells(cells, demo_other_universe)
    assert any(str(tok.stats["n_peaks"]) in str(w.message) for w in rec)


def test_tokenize_cells_is_quiet_on_the_data_own_peaks(cells):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fe.tokenize_cells(cells, demo_peaks_path())
