"""On-disk AnnData (.h5ad, .zarr) read lazily in blocks of cells: bit-identical to the in-memory path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastembed as fe
from fastembed import readers
from fastembed.datasets import demo_peaks_path, load_demo


@pytest.fixture(scope="module")
def demo_subset():
    # 1,001 cells: not a multiple of the block sizes used below.
    return load_demo()[:1001].copy()


def _write(adata, folder, fmt, layout):
    a = adata.copy()
    if layout == "csc":
        a.X = sp.csc_matrix(a.X)
    elif layout == "dense":
        a.X = a.X.toarray()
    path = folder / f"cells.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr format-version notices
        a.write_h5ad(path) if fmt == "h5ad" else a.write_zarr(path)
    return path


class _SpyX:
    """Wraps an on-disk X and records the row blocks read from it."""

    def __init__(self, X):
        self.X, self.blocks = X, []
        self.shape = X.shape

    def __getitem__(self, key):
        self.blocks.append((key.start, key.stop))
        return self.X[key]


@pytest.mark.parametrize("fmt,layout", [("h5ad", "csr"), ("zarr", "csr"), ("h5ad", "dense"), ("zarr", "csc")])
def test_lazy_tokenize_is_bit_identical(demo_subset, tmp_path, fmt, layout):
    path = _write(demo_subset, tmp_path, fmt, layout)
    mem = fe.tokenize_cells(demo_subset, demo_peaks_path())
    lazy = fe.tokenize_cells(path, demo_peaks_path(), batch_cells=250)
    np.testing.assert_array_equal(lazy.indptr, mem.indptr)
    np.testing.assert_array_equal(lazy.indices, mem.indices)
    assert list(lazy.barcodes) == list(demo_subset.obs_names)
    assert lazy.stats == mem.stats


@pytest.fixture
def spies(monkeypatch):
    """The X of every LazyAnnData opened from here on, wrapped to record the row blocks read."""
    found = []
    real = readers.LazyAnnData.__init__

    def init(self, p):
        real(self, p)
        self.X = _SpyX(self.X)
        found.append(self.X)

    monkeypatch.setattr(readers.LazyAnnData, "__init__", init)
    return found


def test_lazy_reads_blocks_not_the_whole_matrix(demo_subset, tmp_path, spies):
    path = _write(demo_subset, tmp_path, "zarr", "csr")
    fe.tokenize_cells(path, demo_peaks_path(), batch_cells=300)
    assert spies[0].blocks == [(0, 300), (300, 600), (600, 900), (900, 1001)]


def test_old_chunk_cells_keyword_still_works_with_a_warning(demo_subset, tmp_path, spies):
    """Version 0.2 called batch_cells chunk_cells: it still sets the block size, and says the new name."""
    path = _write(demo_subset, tmp_path, "zarr", "csr")
    with pytest.warns(FutureWarning, match="batch_cells"):
        fe.tokenize_cells(path, demo_peaks_path(), chunk_cells=400)
    assert spies[0].blocks == [(0, 400), (400, 800), (800, 1001)]
    with pytest.raises(ValueError, match="batch_cells must be an integer >= 1"):
        fe.tokenize_cells(demo_subset, demo_peaks_path(), batch_cells=0)


def test_lazy_encode_matches_memory(demo_subset, tmp_path):
    path = _write(demo_subset, tmp_path, "h5ad", "csr")
    tok = fe.tokenize_cells(demo_subset, demo_peaks_path())
    model = fe.ScEmbed(embedding_dim=8, seed=0, threads=1).train(tok, epochs=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = model.encode(demo_subset, batch_cells=128)
        b = model.encode(path, batch_cells=128)
    np.testing.assert_array_equal(a, b)


def test_lazy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fe.tokenize_cells(tmp_path / "nope.zarr", demo_peaks_path())
    (tmp_path / "x.h5ad").write_text("hello")
    with pytest.raises(ValueError, match=r"x.h5ad' cannot be read"):
        fe.tokenize_cells(tmp_path / "x.h5ad", demo_peaks_path())


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_lazy_encode_to_zarr_reads_names_by_block(demo_subset, tmp_path, monkeypatch, fmt):
    import zarr

    path = _write(demo_subset, tmp_path, fmt, "csr")
    tok = fe.tokenize_cells(demo_subset, demo_peaks_path())
    model = fe.ScEmbed(embedding_dim=8, seed=0, threads=1).train(tok, epochs=1, progress=False)
    monkeypatch.setattr(
        readers.LazyAnnData, "obs_names", property(lambda self: pytest.fail("all names read at once"))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.encode(path, out=tmp_path / "e.zarr", batch_cells=300)
        want = model.encode(demo_subset, batch_cells=300)
    np.testing.assert_array_equal(out[:], want)
    obs = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")["obs"]
    names = obs[obs.attrs["_index"]]
    assert names.chunks == (300,) and list(names[:]) == list(demo_subset.obs_names)


def _write_chunked(adata, path, chunk_entries):
    """A zarr AnnData store whose X/data and X/indices are cut into chunks of ``chunk_entries`` entries."""
    import zarr

    path = _write(adata, path.parent, "zarr", "csr")
    for name in ("data", "indices"):
        old = zarr.open_array(str(path / "X" / name), mode="r")
        values, fmt = old[:], old.metadata.zarr_format
        new = zarr.open_array(
            str(path / "X" / name),
            mode="w",
            shape=values.shape,
            dtype=values.dtype,
            chunks=(chunk_entries,),
            zarr_format=fmt,
        )
        new[:] = values
    zarr.consolidate_metadata(str(path))  # anndata's reader trusts the root's consolidated metadata
    return path


@pytest.mark.parametrize("array", ["data", "indices"])
def test_zarr_store_with_a_lost_chunk_is_an_error_not_lost_regions(demo_subset, tmp_path, array):
    # Regression: a store whose chunk files vanished read as zeros (zarr's fill value) and a run finished with
    # cells missing regions and no error.
    path = _write_chunked(demo_subset, tmp_path / "cells.zarr", 4096)
    whole = fe.tokenize_cells(path, demo_peaks_path(), batch_cells=250)  # every chunk present: reads
    assert whole.indices.size > 0
    folder = path / "X" / array
    chunks = sorted(
        (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "zarr"))),
        key=lambda p: int(p.name),
    )
    assert len(chunks) > 2
    chunks[1].unlink()
    with pytest.raises(
        ValueError, match=rf"cells\.zarr'.*1 of {len(chunks)} chunks of X/{array} are missing"
    ):
        fe.tokenize_cells(path, demo_peaks_path(), batch_cells=250)
