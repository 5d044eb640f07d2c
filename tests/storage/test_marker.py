"""fastembed.storage.marker: the uns mark and the uns-safe settings it carries."""

from __future__ import annotations

import anndata as ad
import numpy as np

from fastembed.storage.marker import UNS_KEY, mark, uns_safe


def test_uns_safe_drops_nones_at_every_depth_and_keeps_the_rest():
    value = {"a": 1, "b": None, "c": {"d": None, "e": "x", "f": {"g": None}}, "h": [None, 2]}
    assert uns_safe(value) == {"a": 1, "c": {"e": "x", "f": {}}, "h": [None, 2]}
    assert uns_safe(3) == 3 and uns_safe(None) is None


def test_an_uns_safe_config_round_trips_through_h5ad(tmp_path):
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    mark(adata, "scembed_X", config=uns_safe({"epochs": 3, "seed": None, "init": {"path": None, "k": 2}}))
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns[UNS_KEY]
    assert back["embedding_key"] == "scembed_X"
    assert back["config"]["epochs"] == 3 and "seed" not in back["config"] and back["config"]["init"]["k"] == 2
