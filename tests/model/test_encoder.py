"""The encoder (fastembed.model.encoder): its pooling against the slow reference in tests/naive.py, and its one
streaming path giving the same rows in memory and in a zarr store, whatever the block size."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from conftest import demo_cells
from naive import pool_reference

import fastembed as fe
from fastembed.datasets import demo_peaks_path
from fastembed.model.encoder import CellEncoder, encode_cells


@pytest.fixture(scope="module")
def tokens():
    return fe.tokenize_cells(demo_cells(300, 1), demo_peaks_path())


@pytest.fixture(scope="module")
def model(tokens):
    m = fe.ScEmbed(embedding_dim=12, seed=5, threads=1, min_count=2)
    return m.train(tokens, epochs=2, progress=False)


def test_mean_pooling_matches_the_reference(model, tokens):
    enc = model._encoder("mean")
    assert isinstance(enc, CellEncoder) and enc.pooling == "mean" and enc.embedding_dim == 12
    out = np.empty((len(tokens), 12), dtype=np.float32)
    n_empty = enc.pool(tokens.indptr, tokens.indices, out, "the tokens")
    want, empty = pool_reference(
        tokens.indptr, tokens.indices, model.region_vectors, model.pooling_weights("mean")
    )
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert n_empty == int(empty.sum())


@pytest.mark.parametrize("batch_cells", [64, 1000])
def test_one_path_same_rows_in_memory_and_in_zarr(model, tokens, tmp_path, batch_cells):
    enc = model._encoder()  # the model's default pooling: pca
    assert enc.pooling == "pca"
    in_memory = encode_cells(enc, tokens, batch_cells=batch_cells, progress=False)
    whole = encode_cells(enc, tokens, batch_cells=len(tokens), progress=False)
    # Blocks cut anywhere give the same rows (up to the float rounding of the vectorised projection).
    np.testing.assert_allclose(in_memory, whole, rtol=1e-5, atol=1e-6)
    store = encode_cells(
        enc, tokens, out=tmp_path / "e.zarr", batch_cells=batch_cells, progress=False, config={"k": 1}
    )
    np.testing.assert_array_equal(store[:], in_memory)
    group = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")
    assert group["obsm"][fe.settings.EMBEDDING_KEY].chunks[0] == min(batch_cells, len(tokens))
    np.testing.assert_array_equal(model.encode(tokens, batch_cells=batch_cells, progress=False), in_memory)
