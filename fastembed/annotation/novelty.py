"""How far a query cell lies from the reference, as a calibrated tail probability (novel cell types come out).

The vote share of k-NN label transfer says how much the neighbours agree, not whether they are near: a cell of
a type the reference lacks still has k nearest reference cells, and they may agree perfectly. The novelty
score compares distances instead. For every reference cell, the mean cosine distance to its ``k`` nearest
*other* reference cells (leave-one-out) is computed once, when the reference is fitted or built. A query cell's
mean distance to its ``k`` nearest reference cells is then ranked among those leave-one-out distances of the
reference cells of its predicted type::

    p = (1 + #{reference cells of the type with distance >= d}) / (1 + cells of the type)
    novelty = 1 - p

``p`` is the conformal tail probability: if the query cell were drawn like the reference cells of that type,
``p <= a`` would happen with probability at most ``a`` (up to ties), so a threshold on novelty is a false
"unknown" rate on cells of known types measured in the reference's own geometry. Cells whose ``p`` is below
``1 - max_novelty`` are called unknown.

Distances are taken in the frame the labels are voted in (centred on the reference mean when ``center``, unit
rows), with the same exact or approximate search as the vote.
"""

from __future__ import annotations

import numpy as np

from fastembed import settings
from fastembed.annotation.annotate import FittedReference, _exact_knn, _index_query, _query_rows, _vote
from fastembed.common.errors import HintedValueError, Keyword

__all__ = ["DEFAULT_MAX_NOVELTY", "leave_one_out_distances", "predict_with_distance", "tail_probability"]

DEFAULT_MAX_NOVELTY = 0.98
"""Default novelty above which a reference folder calls a cell unknown (tail probability below 0.02).

Chosen on data with ``bench/reference_mapping.py``: the lowest threshold of the grid 0.8 ... 0.999 whose cost on
the known types stays within 0.01 of accuracy in granja2019 leave-one-type-out donor transfer (checked on
forebrain, 5-fold: 0.002); see bench/RESULTS-archive.md, "Reference mapping". A novel type that sits between reference
types is rarely caught at this threshold; pass a lower ``max_novelty`` to catch more at the known types' cost."""


def _search(fitted: FittedReference, unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if fitted.index is None:
        return _exact_knn(fitted.unit, unit, k)
    return _index_query(fitted.index, unit, k)


def leave_one_out_distances(fitted: FittedReference, k: int | None = None) -> np.ndarray:
    """Each reference cell's mean cosine distance to its ``k`` nearest other reference cells.

    Parameters
    ----------
    fitted : FittedReference
        The fitted reference (its ``unit`` rows, and its pynndescent index when it has one: the same search as
        the query cells get).
    k : int, optional
        Neighbours (default ``fitted.k``); must be below the number of reference cells.

    Returns
    -------
    np.ndarray of float32, shape (n_ref,)
        Mean of ``1 - cosine`` over the ``k`` neighbours, in [0, 2].
    """
    k = fitted.k if k is None else int(k)
    n = fitted.unit.shape[0]
    if k >= n:
        given = Keyword("k", k)
        raise HintedValueError(
            f"novelty needs k < the {n} usable cells of {fitted.name} (each cell's neighbours leave it out), "
            f"got {given}",
            keywords=(given,),
        )
    out = np.empty(n, dtype=np.float32)
    step = settings.QUERY_BATCH
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        idx, sim = _search(fitted, fitted.unit[lo:hi], k + 1)
        own = idx == np.arange(lo, hi)[:, None]
        # A cell is normally its own first neighbour; with exact duplicates (or a missed self in approximate
        # search) it may not be listed, and then the farthest of the k + 1 is the one left out.
        drop = np.where(own.any(axis=1), np.argmax(own, axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(hi - lo), drop] = False
        d = (1.0 - sim[keep].reshape(hi - lo, k).astype(np.float64)).mean(axis=1)
        out[lo:hi] = np.clip(d, 0.0, 2.0)
    return out


def predict_with_distance(
    fitted: FittedReference, query: np.ndarray, start: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fastembed.annotate.predict` that also returns each cell's mean distance to its neighbours.

    Parameters
    ----------
    fitted : FittedReference
    query : np.ndarray of float32, shape (n, dim)
        Raw (uncentred) finite embeddings of query rows ``start .. start + n - 1``.
    start : int
        Absolute row of the block's first cell (pieces are cut at multiples of ``settings.QUERY_BATCH``, as
        in :func:`~fastembed.annotate.predict`, so results do not depend on the blocks).

    Returns
    -------
    winner : np.ndarray of int64, shape (n,)
    vote_share : np.ndarray of float32, shape (n,)
    ok : np.ndarray of bool, shape (n,)
        As :func:`~fastembed.annotate.predict`.
    distance : np.ndarray of float32, shape (n,)
        Mean ``1 - cosine`` to the ``fitted.k`` neighbours (2.0 where not ``ok``).
    """
    q, ok = _query_rows(query, fitted)
    n = q.shape[0]
    winner = np.zeros(n, dtype=np.int64)
    share = np.zeros(n, dtype=np.float32)
    distance = np.full(n, 2.0, dtype=np.float32)
    step = settings.QUERY_BATCH
    cuts = [0, *range(-start % step or step, n, step), n]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi <= lo:
            continue
        idx, sim = _search(fitted, q[lo:hi], fitted.k)
        winner[lo:hi], share[lo:hi] = _vote(idx, sim, fitted.codes, len(fitted.categories))
        distance[lo:hi] = np.clip((1.0 - sim.astype(np.float64)).mean(axis=1), 0.0, 2.0)
    share[~ok] = 0.0
    distance[~ok] = 2.0
    return winner, share, ok, distance


def tail_probability(
    distance: np.ndarray, winner: np.ndarray, reference_distance: np.ndarray, codes: np.ndarray, n_labels: int
) -> np.ndarray:
    """Conformal tail probability of each query distance among the reference cells of its predicted label.

    Parameters
    ----------
    distance : np.ndarray of float, shape (n,)
        Query cells' mean distance to their neighbours (:func:`predict_with_distance`).
    winner : np.ndarray of int, shape (n,)
        Predicted label codes.
    reference_distance : np.ndarray of float, shape (n_ref,)
        :func:`leave_one_out_distances`.
    codes : np.ndarray of int, shape (n_ref,)
        Reference label codes.
    n_labels : int

    Returns
    -------
    np.ndarray of float32, shape (n,)
        ``(1 + #{reference cells of the label with distance >= d}) / (1 + #cells of the label)``, in (0, 1].
    """
    distance = np.asarray(distance, dtype=np.float64)
    p = np.ones(distance.shape[0], dtype=np.float64)
    ref = np.asarray(reference_distance, dtype=np.float64)
    for c in range(n_labels):
        rows = np.flatnonzero(winner == c)
        if rows.size == 0:
            continue
        null = np.sort(ref[codes == c])
        at_least = null.size - np.searchsorted(null, distance[rows], side="left")
        p[rows] = (1.0 + at_least) / (1.0 + null.size)
    return p.astype(np.float32)
