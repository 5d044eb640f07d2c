"""The seed's downstream scanpy workflow, unchanged, on our embeddings of more than 4,096 real cells.

4,096 is where scanpy's neighbours switch to pynndescent (and where scanpy 1.11.5 with pynndescent 0.7.0 fails
with "'csr_array' object has no attribute 'getnnz'"), so a smaller test would not see that path.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.scembed import annotate_celltypes


@pytest.fixture(scope="module")
def embedded():
    adata = load_demo()
    assert adata.n_obs > 4096
    tokens = fe.tokenize_cells(adata, demo_peaks_path())
    model = fe.ScEmbed(embedding_dim=32, seed=0).train(tokens, epochs=8, progress=False)
    adata.obsm["scembed_X"] = model.encode(adata)
    return adata


def test_neighbors_leiden_umap_on_more_than_4096_cells(embedded, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    adata = embedded
    sc.pp.neighbors(adata, use_rep="scembed_X")
    assert adata.obsp["connectivities"].shape == (adata.n_obs, adata.n_obs)
    sc.tl.leiden(adata, resolution=0.5, flavor="igraph", n_iterations=2, directed=False)
    clusters = adata.obs["leiden"].to_numpy()
    # Clusters must follow the published cell types: a random partition of the same sizes scores ARI ~ 0.
    ari = adjusted_rand_score(adata.obs["cell_type"], clusters)
    shuffled = adjusted_rand_score(adata.obs["cell_type"], np.random.default_rng(0).permutation(clusters))
    assert ari > 0.2 > abs(shuffled) * 10
    sc.tl.umap(adata)
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2) and np.isfinite(adata.obsm["X_umap"]).all()
    monkeypatch.chdir(tmp_path)
    sc.pl.umap(adata, color="leiden", show=False, save="_leiden.png")
    assert (tmp_path / "figures" / "umap_leiden.png").stat().st_size > 0


def test_annotate_one_donor_from_the_other(embedded):
    adata = embedded
    reference = adata[adata.obs["donor"] == "D6T1"].copy()
    query = adata[adata.obs["donor"] == "D5T1"].copy()
    predicted = annotate_celltypes(
        query_adata=query, reference_adata=reference, embedding_key="scembed_X", k=10
    )
    truth = query.obs["cell_type"].astype(str).to_numpy()
    accuracy = float(np.mean(predicted.astype(str).to_numpy() == truth))
    # Chance is the share of the commonest reference label; the embedding must carry far more than that.
    chance = reference.obs["cell_type"].value_counts(normalize=True).iloc[0]
    assert accuracy > chance + 0.2
