"""Quality measures shared by the benchmarks: Leiden ARI at the number of labels, donor label transfer."""

from __future__ import annotations

import numpy as np


def leiden_at_n_clusters(
    embedding: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    leiden_seeds: tuple[int, ...] = (0, 1, 2),
    max_steps: int = 40,
) -> dict:
    """Leiden clusters on the 15-NN graph (scanpy defaults: euclidean) of ``embedding``, with the resolution
    bisected so the number of clusters equals the number of distinct ``labels``; ARI and AMI are averaged over
    ``leiden_seeds`` because one Leiden run moves ARI by about +-0.02 on granja2019."""
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    target = len(np.unique(labels))
    a = ad.AnnData(obs={"i": np.arange(len(labels))}, obsm={"e": np.asarray(embedding, dtype=np.float32)})
    sc.pp.neighbors(a, use_rep="e", n_neighbors=n_neighbors, random_state=seed)
    aris, amis, reached = [], [], []
    for leiden_seed in leiden_seeds:
        lo, hi, res = 0.01, 5.0, 1.0
        best = None
        for _ in range(max_steps):
            sc.tl.leiden(
                a,
                resolution=res,
                random_state=leiden_seed,
                flavor="igraph",
                n_iterations=2,
                directed=False,
                key_added="c",
            )
            n = a.obs["c"].nunique()
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, a.obs["c"].to_numpy().copy())
            if n == target:
                break
            lo, hi = (res, hi) if n < target else (lo, res)
            res = (lo + hi) / 2
        reached.append(best[0])
        aris.append(adjusted_rand_score(labels, best[1]))
        amis.append(adjusted_mutual_info_score(labels, best[1]))
    return {"ari": float(np.mean(aris)), "ami": float(np.mean(amis)), "n_clusters": reached}


def donor_transfer(
    embedding: np.ndarray,
    labels: np.ndarray,
    donor: np.ndarray,
    *,
    reference: str,
    query: str,
    k: int = 10,
    center: bool = True,
) -> dict:
    """Label transfer from the reference donor's cells to the query donor's with fastembed's annotate_celltypes
    (cosine k-NN, around the reference mean unless ``center=False``; similarity-weighted vote); accuracy and
    macro-F1 on the query cells."""
    import anndata as ad
    import pandas as pd
    from sklearn.metrics import f1_score

    from fastembed.annotate import annotate_celltypes

    emb = np.asarray(embedding, dtype=np.float32)
    ref = ad.AnnData(
        obs=pd.DataFrame({"cell_type": pd.Categorical(labels[donor == reference])}),
        obsm={"e": emb[donor == reference]},
    )
    qry = ad.AnnData(
        obs=pd.DataFrame(index=np.arange((donor == query).sum()).astype(str)), obsm={"e": emb[donor == query]}
    )
    predicted = annotate_celltypes(qry, ref, embedding_key="e", k=k, center=center).astype(str).to_numpy()
    truth = labels[donor == query]
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


def cv_transfer(
    embedding: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    k: int = 10,
    center: bool = True,
) -> dict:
    """k-NN label transfer by ``folds``-fold cross-validation, for a dataset without donors: each fold's cells are
    annotated from the other folds' cells with fastembed's annotate_celltypes (the same vote as
    :func:`donor_transfer`); accuracy and macro-F1 over all cells. Folds are stratified by label (``seed``)."""
    import anndata as ad
    import pandas as pd
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from fastembed.annotate import annotate_celltypes

    emb = np.asarray(embedding, dtype=np.float32)
    predicted = np.empty(labels.size, dtype=object)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(emb, labels):
        ref = ad.AnnData(
            obs=pd.DataFrame({"cell_type": pd.Categorical(labels[train])}), obsm={"e": emb[train]}
        )
        qry = ad.AnnData(obs=pd.DataFrame(index=np.arange(test.size).astype(str)), obsm={"e": emb[test]})
        predicted[test] = (
            annotate_celltypes(qry, ref, embedding_key="e", k=k, center=center).astype(str).to_numpy()
        )
    predicted = predicted.astype(str)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
    }
