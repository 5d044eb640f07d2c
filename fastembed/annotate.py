"""Cell-type annotation by k-nearest-neighbour label transfer from a labelled reference."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["annotate_celltypes", "annotation_table", "knn_cosine", "predicted_column"]

CONFIDENCE_COLUMN = "confidence"
"""Column of the vote share in annotation tables (the command line's and the demo's)."""


def predicted_column(label_key: str = "cell_type") -> str:
    """Name of the predicted-label column in annotation tables: ``predicted_<label_key>``."""
    return f"predicted_{label_key}"


def annotation_table(predicted: pd.Series, confidence, label_key: str = "cell_type") -> pd.DataFrame:
    """The annotation table that ``fastembed annotate`` and the demo write, one row per query cell.

    Parameters
    ----------
    predicted : pd.Series
        Labels from :func:`annotate_celltypes`, indexed by barcode.
    confidence : array-like
        The vote share of each label, in the same order.
    label_key : str
        The reference's label column, which names the predicted column.

    Returns
    -------
    pd.DataFrame
        Index ``barcode``; columns ``predicted_<label_key>`` and ``confidence``.
    """
    table = pd.DataFrame({predicted_column(label_key): predicted.to_numpy(),
                          CONFIDENCE_COLUMN: np.asarray(confidence, dtype=float)},
                         index=pd.Index(predicted.index, name="barcode"))
    return table


# Below this many query x reference pairs an exact search (one BLAS product per block) is faster than
# building an NN-descent index, and exact.
EXACT_SEARCH_PAIRS = 200_000_000


def _embedding(adata, key: str, which: str) -> np.ndarray:
    if key not in adata.obsm:
        have = ", ".join(map(repr, adata.obsm.keys())) or "none"
        raise KeyError(f"{which} AnnData has no obsm['{key}'] (obsm keys: {have}); encode it first or pass "
                       "embedding_key=")
    emb = np.asarray(adata.obsm[key], dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"{which} obsm['{key}'] must be 2-d (cells x dims), got shape {emb.shape}")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{which} obsm['{key}'] has NaN or infinite values in {int(bad.sum())} cells "
                         f"(first: {adata.obs_names[i]!r})")
    return emb


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(x, axis=1)
    ok = norms > 0
    out = np.zeros_like(x)
    out[ok] = x[ok] / norms[ok, None]
    return out, ok


def knn_cosine(reference: np.ndarray, query: np.ndarray, k: int, *, random_state: int | None = 0,
               n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest reference rows of each query row by cosine similarity.

    Parameters
    ----------
    reference : np.ndarray of float32, shape (n_ref, dim)
        Unit-length rows.
    query : np.ndarray of float32, shape (n_query, dim)
        Unit-length rows.
    k : int
        Neighbours per query row (<= n_ref).
    random_state, n_jobs
        Passed to pynndescent for large problems.

    Returns
    -------
    indices : np.ndarray of int64, shape (n_query, k)
        Reference rows, nearest first.
    similarity : np.ndarray of float32, shape (n_query, k)
        Cosine similarities, in [-1, 1].

    Notes
    -----
    Small problems (fewer than ``EXACT_SEARCH_PAIRS`` pairs) use an exact blocked search; larger ones use
    a pynndescent index with the cosine metric (approximate; ~98% recall of the exact neighbours in our tests).
    """
    n_ref, n_query = reference.shape[0], query.shape[0]
    if n_ref * n_query <= EXACT_SEARCH_PAIRS:
        idx = np.empty((n_query, k), dtype=np.int64)
        sim = np.empty((n_query, k), dtype=np.float32)
        block = max(1, 50_000_000 // max(n_ref, 1))
        for lo in range(0, n_query, block):
            s = query[lo:lo + block] @ reference.T
            part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n_ref else np.tile(np.arange(n_ref), (len(s), 1))
            ps = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-ps, axis=1, kind="stable")
            idx[lo:lo + block] = np.take_along_axis(part, order, axis=1)
            sim[lo:lo + block] = np.take_along_axis(ps, order, axis=1)
        return idx, sim
    from pynndescent import NNDescent

    # A denser graph and a wider search than pynndescent's defaults (15, 0.1): on scATAC embeddings the
    # defaults find only ~85% of the true 10 neighbours; these settings find ~98% for little extra time.
    index = NNDescent(reference, metric="cosine", n_neighbors=max(40, 3 * k), random_state=random_state,
                      n_jobs=n_jobs if n_jobs is not None else -1)
    idx, dist = index.query(query, k=k, epsilon=0.3)
    return idx.astype(np.int64), (1.0 - dist).astype(np.float32)


def annotate_celltypes(query_adata, reference_adata, embedding_key: str = "scembed_X", k: int = 10, *,
                       label_key: str = "cell_type", confidence_key: str | None = None,
                       min_confidence: float | None = None, unknown_label: str = "unknown",
                       center: bool = True, random_state: int | None = 0,
                       n_jobs: int | None = None) -> pd.Series:
    """Transfer cell-type labels from a labelled reference to query cells by k-NN on their embeddings.

    Each query cell takes the label with the largest summed cosine similarity among its ``k`` nearest
    reference cells (similarities below 1e-6 count as 1e-6, so every neighbour votes). A tie goes to the
    label of the nearest tied neighbour. By default the cosine is taken around the reference's mean embedding
    (``center``).

    Parameters
    ----------
    query_adata, reference_adata : anndata.AnnData
        Both with embeddings of the same dimension in ``obsm[embedding_key]``; the reference with labels in
        ``obs[label_key]``. Reference cells with a missing label or an all-zero embedding are left out (warning).
    embedding_key : str
        The ``obsm`` key (default ``"scembed_X"``).
    k : int
        Neighbours per query cell, 1 <= k <= number of usable reference cells.
    label_key : str
        Reference ``obs`` column with the labels.
    confidence_key : str, optional
        If given (e.g. ``"cell_type_confidence"``), the winning label's vote share (float in [0, 1]) is
        written to ``query_adata.obs[confidence_key]``.
    min_confidence : float, optional
        Query cells whose vote share is below this get ``unknown_label``.
    unknown_label : str
        Label for cells below ``min_confidence`` and for query cells whose embedding is all zeros.
    center : bool
        Subtract the mean embedding of the usable reference cells from query and reference before the cosine
        k-NN (default True). Mean-pooled region vectors share a large common component, which makes raw cosine
        similarities of all cells close to each other; measured around the reference centroid, the cosine
        compares what differs between cells. On granja2019 (bench/quality.py) this raises donor-transfer
        accuracy of fastembed embeddings by about 0.02 and macro-F1 by about 0.04. The same mean is used for
        the query, so query cells are placed in the reference's frame. False gives plain cosine.
    random_state, n_jobs
        For the pynndescent index (large references only).

    Returns
    -------
    pandas.Series
        Categorical labels indexed by ``query_adata.obs_names``, named ``label_key``; categories are the
        reference's labels (plus ``unknown_label`` when used).
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence!r}")
    if query_adata.n_obs == 0:
        raise ValueError("the query AnnData has no cells")
    if reference_adata.n_obs == 0:
        raise ValueError("the reference AnnData has no cells")
    if label_key not in reference_adata.obs:
        have = ", ".join(map(repr, reference_adata.obs.columns)) or "none"
        raise KeyError(f"reference AnnData has no obs['{label_key}'] (obs columns: {have}); pass label_key=")
    q = _embedding(query_adata, embedding_key, "query")
    r = _embedding(reference_adata, embedding_key, "reference")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"embedding dimensions differ: query obsm['{embedding_key}'] has {q.shape[1]}, reference "
                         f"has {r.shape[1]}; both must come from the same model")

    labels = reference_adata.obs[label_key]
    keep = r.any(axis=1) & labels.notna().to_numpy()
    if not keep.all():
        warnings.warn(f"{int((~keep).sum())} reference cells have no label or an all-zero embedding; left out",
                      stacklevel=2)
    r = r[keep]
    q_ok = q.any(axis=1)  # decided before centring: an all-zero query embedding carries no information
    if center and r.shape[0]:
        mean = r.mean(axis=0, dtype=np.float64).astype(np.float32)
        r = r - mean
        q = q - mean
    r, _ = _unit_rows(r)
    q, q_centred_ok = _unit_rows(q)
    q_ok &= q_centred_ok
    categories = list(labels.cat.categories) if isinstance(labels.dtype, pd.CategoricalDtype) else \
        sorted(pd.unique(labels[keep].astype(str)))
    codes = pd.Categorical(labels[keep].astype(str) if not isinstance(labels.dtype, pd.CategoricalDtype)
                           else labels[keep], categories=categories).codes
    if k > r.shape[0]:
        raise ValueError(f"k={k} is larger than the {r.shape[0]} usable reference cells")

    idx, sim = knn_cosine(r, q, int(k), random_state=random_state, n_jobs=n_jobs)
    weights = np.maximum(sim, 1e-6).astype(np.float64)
    n_q, n_labels = q.shape[0], len(categories)
    neighbour_labels = codes[idx]
    scores = np.zeros((n_q, n_labels))
    rows = np.repeat(np.arange(n_q), idx.shape[1])
    np.add.at(scores, (rows, neighbour_labels.ravel()), weights.ravel())
    best_rank = np.full((n_q, n_labels), idx.shape[1], dtype=np.int64)
    ranks = np.tile(np.arange(idx.shape[1]), n_q)
    np.minimum.at(best_rank, (rows, neighbour_labels.ravel()), ranks)
    top = scores.max(axis=1, keepdims=True)
    tied = scores >= top * (1 - 1e-9)
    winner = np.argmin(np.where(tied, best_rank, np.iinfo(np.int64).max), axis=1)
    # float32 first, so the threshold below agrees with the confidence the caller reads back
    confidence = (scores[np.arange(n_q), winner] / scores.sum(axis=1)).astype(np.float32)

    predicted = np.asarray(categories, dtype=object)[winner]
    unknown = ~q_ok
    if unknown.any():
        warnings.warn(f"{int(unknown.sum())} query cells have an all-zero embedding (no trained token); "
                      f"labelled {unknown_label!r}", stacklevel=2)
        confidence[unknown] = 0.0
    if min_confidence is not None:
        unknown |= confidence < min_confidence
    if unknown.any():
        predicted[unknown] = unknown_label
        if unknown_label not in categories:
            categories = [*categories, unknown_label]
    if confidence_key is not None:
        query_adata.obs[confidence_key] = confidence
    return pd.Series(pd.Categorical(predicted, categories=categories), index=query_adata.obs_names.copy(),
                     name=label_key)
