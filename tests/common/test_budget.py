"""The memory budget: blocks cut by nonzeros, not cells, with the same results as one block (fastembed.budget)."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

import fastembed as fe
from fastembed import settings
from fastembed.annotate import annotate_celltypes
from fastembed.common import budget
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.tokenize import PeakMapper
from fastembed.tokens import read_tokens_parquet, write_tokens_parquet

SPARSE, DENSE = 10, 10_000


@pytest.fixture(scope="module")
def mixed():
    """Real demo cells cut to their first 10 peaks, then cells open at all 10,000 demo peaks (the densest a
    cell of this matrix can be), then sparse ones again: blocks must shrink and grow with the density."""
    demo = load_demo()
    X = demo.X.tocsr()
    rows = []
    for i in range(600):
        cols = X.indices[X.indptr[i] : X.indptr[i + 1]]
        rows.append(cols[:SPARSE] if i < 300 or i >= 340 else np.arange(demo.n_vars))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int32)
    matrix = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(600, demo.n_vars)
    )
    cells = ad.AnnData(X=matrix, obs=demo.obs.iloc[:600].copy(), var=demo.var.copy())
    lengths = np.diff(indptr)
    assert set(lengths[:300]) == {SPARSE} and set(lengths[300:340]) == {DENSE}
    return cells


@pytest.fixture(scope="module")
def model():
    demo = load_demo()[:1500].copy()
    m = fe.ScEmbed(embedding_dim=16, seed=0, threads=1)
    m.train(fe.tokenize_cells(demo, demo_peaks_path()), epochs=1)
    return m


def _spy(monkeypatch):
    seen = []
    original = PeakMapper.tokens

    def tokens(self, X, lo, hi, field="X"):
        seen.append((lo, hi))
        return original(self, X, lo, hi, field)

    monkeypatch.setattr(PeakMapper, "tokens", tokens)
    return seen


def test_parse_memory():
    assert budget.parse_memory("1GB") == 10**9
    assert budget.parse_memory("512 MB") == 512 * 10**6
    assert budget.parse_memory("2GiB") == 2 << 30
    assert budget.parse_memory(4096) == 4096
    assert budget.parse_memory("1.5kb") == 1500
    for bad in ("lots", "-1GB", "0", True, "1 parsec", None):
        with pytest.raises(ValueError, match="memory"):
            budget.parse_memory(bad)


def test_cut_by_nonzeros_not_cells():
    indptr = np.concatenate([[0], np.cumsum([SPARSE] * 1000 + [DENSE] * 1000)]).astype(np.int64)
    spans = budget.cell_blocks(indptr, 2000, budget=1_000_000, per_nnz=10, per_cell=0)
    assert spans[0][0] == 0 and spans[-1][1] == 2000
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    sizes = {lo: hi - lo for lo, hi in spans}
    # The 1,000 sparse cells take a tenth of the budget, 9 dense cells the rest; then 10 dense cells a block.
    assert sizes[0] == 1009
    assert [hi - lo for lo, hi in spans[1:]] == [10] * 99 + [1]
    for lo, hi in spans:
        assert (indptr[hi] - indptr[lo]) * 10 <= 1_000_000


def test_blocks_follow_the_budget_and_tokens_are_bit_identical(mixed, monkeypatch):
    whole = fe.tokenize_cells(mixed, demo_peaks_path(), memory="100GB")
    seen = _spy(monkeypatch)
    small = fe.tokenize_cells(mixed, demo_peaks_path(), memory="4MB")
    sizes = [hi - lo for lo, hi in seen]
    dense = [hi - lo for lo, hi in seen if 300 <= lo and hi <= 340]
    assert sum(sizes) == mixed.n_obs and len(seen) > 3
    # A block holds a dozen dense cells, or all 300 sparse ones before them (and the 260 after them).
    assert dense and max(dense) <= 20
    assert seen[0][1] >= 300 and sizes[-1] >= 260
    np.testing.assert_array_equal(small.indptr, whole.indptr)
    np.testing.assert_array_equal(small.indices, whole.indices)
    assert small.stats == whole.stats


def test_batch_cells_stays_an_upper_bound(mixed, monkeypatch):
    seen = _spy(monkeypatch)
    fe.tokenize_cells(mixed, demo_peaks_path(), memory="100GB", batch_cells=64)
    assert max(hi - lo for lo, hi in seen) == 64


def test_on_disk_and_streamed_parquet_match_the_in_memory_file(mixed, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "ROW_GROUP_CELLS", 50)  # row groups that straddle the budget's blocks
    monkeypatch.setattr(settings, "MEMORY_BUDGET", 4 << 20)  # and are cut by tokens too (dense cells)
    path = tmp_path / "cells.h5ad"
    mixed.write_h5ad(path)
    whole = fe.tokenize_cells(mixed, demo_peaks_path())
    want = write_tokens_parquet(
        tmp_path / "want.parquet", whole.indptr, whole.indices, whole.barcodes, whole.universe
    )
    got = fe.tokenize_cells(path, demo_peaks_path(), tmp_path / "got.parquet")
    back = read_tokens_parquet(got)
    np.testing.assert_array_equal(back.indptr, whole.indptr)
    np.testing.assert_array_equal(back.indices, whole.indices)
    np.testing.assert_array_equal(back.barcodes, whole.barcodes)
    assert back.stats == whole.stats
    a, b = pq.ParquetFile(want).metadata, pq.ParquetFile(got).metadata
    assert [a.row_group(g).num_rows for g in range(a.num_row_groups)] == [
        b.row_group(g).num_rows for g in range(b.num_row_groups)
    ]
    assert a.num_row_groups > mixed.n_obs // 50  # some row groups were cut by tokens


def test_encode_is_bit_identical_under_any_budget(mixed, model, tmp_path):
    path = tmp_path / "cells.h5ad"
    mixed.write_h5ad(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peaks outside the trained tokens
        # Mean pooling is per cell: any blocks give the same bits.
        whole = model.encode(mixed, memory="100GB", pooling="mean")
        small = model.encode(path, memory="4MB", pooling="mean")
        # The PCA projection is a matrix product whose BLAS kernel follows the block's shape: the same bits
        # for the same blocks (on disk or in memory), float32 rounding across budgets.
        pca_whole = model.encode(mixed, memory="100GB")
        pca_memory = model.encode(mixed, memory="4MB")
        stored = model.encode(path, out=tmp_path / "e.zarr", memory="4MB")
    np.testing.assert_array_equal(small, whole)
    np.testing.assert_array_equal(stored[:], pca_memory)
    np.testing.assert_allclose(pca_memory, pca_whole, rtol=0, atol=1e-6)
    # The chunk is the largest halving of batch_cells whose every chunk fits 4 MB: the dense cells decide it.
    assert stored.chunks[0] < 64


def test_too_small_a_budget_is_a_clear_error_and_writes_nothing(mixed, model, tmp_path):
    # One dense cell needs ~300 kB: refused before anything is read or written, naming the cell.
    with pytest.raises(ValueError, match="too small for one cell .*cell 300 holds 10000 nonzeros"):
        fe.tokenize_cells(mixed, demo_peaks_path(), tmp_path / "t.parquet", memory="100kB")
    with pytest.raises(ValueError, match="too small for one cell"):
        model.encode(mixed, out=tmp_path / "e.zarr", memory="100kB")
    assert not any(tmp_path.iterdir())


def test_annotate_blocks_follow_the_budget(model):
    demo = load_demo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = model.encode(demo)
    ref = ad.AnnData(obs=demo.obs.iloc[:2500].copy())
    ref.obsm["scembed_X"] = emb[:2500]
    query = ad.AnnData(obs=demo.obs.iloc[2500:].copy())
    query.obsm["scembed_X"] = emb[2500:]
    per_cell = 16 * (8 + 4 + 4) + 10 * 24 + 16
    spans = budget.query_blocks(2500, 16, 10, 1024 * per_cell, None, "q")
    assert [hi - lo for lo, hi in spans] == [1024, 1024, 452]
    whole = annotate_celltypes(query.copy(), ref, memory="10GB")
    small = annotate_celltypes(query.copy(), ref, memory=1024 * per_cell)
    assert (whole == small).all()
    with pytest.raises(ValueError, match="too small for 1024 cells"):
        annotate_celltypes(query.copy(), ref, memory=1000 * per_cell)


def test_fragment_limits_follow_the_budget():
    block, pairs = budget.fragment_limits(64 << 20, settings.FRAGMENT_BLOCK_BYTES)
    assert block == 4 << 20 and pairs * budget.PAIR_BYTES + 8 * block <= 64 << 20
    assert budget.fragment_limits(1 << 40, settings.FRAGMENT_BLOCK_BYTES) == (
        settings.FRAGMENT_BLOCK_BYTES,
        settings.FOLD_PAIRS,
    )


def test_cli_memory_flag():
    from fastembed.cli import _memory_arg

    assert _memory_arg("512MB") == 512 * 10**6
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="--memory"):
        _memory_arg("a lot")


def test_training_more_than_the_machine_has_is_refused_before_reading(tmp_path, monkeypatch):
    from fastembed.model import trainmem

    demo = load_demo()[:300].copy()
    path = fe.tokenize_cells(demo, demo_peaks_path(), tmp_path / "t.parquet")
    n_tokens = read_tokens_parquet(path).n_tokens
    assert trainmem.parquet_counts(path) == (300, n_tokens)
    monkeypatch.setattr(trainmem, "available_memory", lambda: 1 << 20)
    read = []
    from fastembed.model import training

    monkeypatch.setattr(training, "as_dataset", lambda data: read.append(data))
    with pytest.raises(MemoryError, match=r"sample_cells=\d+"):
        fe.ScEmbed(embedding_dim=8).train(path, epochs=1)
    assert not read  # refused from the footer, before the tokens were read


def test_training_more_than_the_budget_warns(monkeypatch):
    demo = load_demo()[:300].copy()
    tok = fe.tokenize_cells(demo, demo_peaks_path())
    monkeypatch.setattr(settings, "MEMORY_BUDGET", 1 << 16)
    with pytest.warns(UserWarning, match="more than the memory budget .*sample_cells="):
        fe.ScEmbed(embedding_dim=8, threads=1).train(tok, epochs=1)
