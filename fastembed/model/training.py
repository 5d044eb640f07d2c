"""The training driver: from tokenized cells to a model's trained arrays, checked before anything is allocated.

:class:`fastembed.ScEmbed` holds the settings and the results; this module does the run: it checks the arguments
(:func:`check_train_args`, which the command line calls too, before the tokens are read), checks the memory, picks
the epochs, runs :func:`fastembed.kernels.sgns.train_sgns`, fits the cell projection and records what happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fastembed import settings
from fastembed.common.errors import HintedValueError, Keyword
from fastembed.common.validate import check_positive_float, check_positive_int
from fastembed.genome.tokens import TokenizedCells, footer_regions
from fastembed.genome.universe import Universe
from fastembed.kernels.pooling import pooled_vectors, region_context, weighted_mean_pool
from fastembed.kernels.projection import (
    AXIS_POWER,
    CELL_NORM,
    CONTEXT_ALONE,
    CONTEXT_MAX_CELLS,
    HIGH_COVERAGE_COMPONENTS,
    POOL_BOTH,
    auto_axis_power,
    auto_components,
    auto_context,
    auto_rare_components,
    fit_projection,
)
from fastembed.model.trainmem import check_training_memory, parquet_counts
from fastembed.region2vec import Region2VecDataset

__all__ = ["check_train_args", "as_dataset", "load_training_data", "TrainedModel", "train_vectors"]


def check_train_args(
    epochs,
    batch_size=settings.TRAIN_DEFAULTS.batch_size,
    learning_rate=settings.TRAIN_DEFAULTS.learning_rate,
    min_learning_rate=settings.TRAIN_DEFAULTS.min_learning_rate,
) -> tuple:
    """:meth:`fastembed.ScEmbed.train`'s numeric arguments, checked.

    Returns
    -------
    tuple
        ``(epochs or None, batch_size, learning_rate, min_learning_rate)`` as int, int, float, float.

    Raises
    ------
    ValueError
        Naming the first bad argument first (``batch_size must be an integer >= 1, got 0``).
    """
    epochs = None if epochs is None else check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    min_learning_rate = check_positive_float("min_learning_rate", min_learning_rate, allow_zero=True)
    if min_learning_rate > learning_rate:
        raise ValueError(
            f"min_learning_rate must be at most learning_rate={learning_rate}, got {min_learning_rate}"
        )
    return epochs, batch_size, learning_rate, min_learning_rate


def as_dataset(data) -> Region2VecDataset:
    """``data`` as a :class:`~fastembed.region2vec.Region2VecDataset` (a token parquet path or TokenizedCells
    is wrapped; a dataset comes back as it is); anything else is a TypeError."""
    if isinstance(data, Region2VecDataset):
        return data
    if isinstance(data, TokenizedCells | str | os.PathLike):
        return Region2VecDataset(data)
    raise TypeError(
        f"expected a Region2VecDataset, TokenizedCells or token parquet path, got {type(data).__name__}"
    )


def load_training_data(dataset, embedding_dim: int, universe: Universe | None = None) -> Region2VecDataset:
    """The dataset to train on, with what training will need in memory checked first.

    A parquet file's footer says how many cells and tokens it holds, so a file too large for this machine is
    refused before its tokens are read (:func:`fastembed.model.trainmem.check_training_memory`). ``universe``
    (the model's, when it has one) must be the dataset's: the token ids index it.
    """
    footer = parquet_counts(dataset)
    if footer is not None:
        check_training_memory(*footer, footer_regions(dataset), embedding_dim, f"'{dataset}'")
    ds = as_dataset(dataset)
    if footer is None:
        check_training_memory(len(ds), ds.n_tokens, ds.vocab_size, embedding_dim, ds.source)
    if universe is not None and not ds.universe.same_as(universe):
        raise ValueError(
            f"the dataset ({ds.source}) was tokenized with another universe ({len(ds.universe)} regions) "
            f"than this model's ({len(universe)} regions, '{universe.source}'); a model keeps its "
            "universe when trained again: tokenize the cells with the model's universe.bed, or train a new "
            "ScEmbed() for the other universe"
        )
    return ds


@dataclass
class TrainedModel:
    """What one training run produced (:func:`train_vectors`).

    Attributes
    ----------
    region_vectors, output_vectors : np.ndarray of float32, shape (vocab_size, embedding_dim)
    token_counts : np.ndarray of int64, shape (vocab_size,)
        Cells holding each token.
    projection : np.ndarray of float32, optional
        The cell projection fitted on the training cells (None with ``n_components=None``).
    cell_norm : str, optional
        :data:`fastembed.kernels.projection.CELL_NORM` when the projected cells are scaled to unit length
        (``n_components="auto"`` at high coverage), else None.
    pool_vectors : str, optional
        :data:`fastembed.kernels.projection.POOL_BOTH` when cells pool input and output vectors side by side
        (``n_components="auto"`` at high coverage; the projection is then ``2 x embedding_dim`` wide), else None.
    region_context : np.ndarray of float32, shape (vocab_size, width), optional
        Each token's cell context (``n_components="auto"`` with fewer than ``CONTEXT_MAX_CELLS`` training cells),
        else None; ``width`` is that of the pooled vectors.
    pool_context : str, optional
        How tokens pool ``region_context`` (:func:`fastembed.kernels.projection.auto_context`):
        ``CONTEXT_CELLS`` (added to the vectors) or ``CONTEXT_ALONE`` (instead of them); None without one.
    info : dict
        The run's parameters and measured statistics (:attr:`fastembed.ScEmbed.training_info`).
    epochs_done, epochs : int
        Epochs completed and asked for (fewer when interrupted).
    """

    region_vectors: np.ndarray
    output_vectors: np.ndarray
    token_counts: np.ndarray
    projection: np.ndarray | None
    cell_norm: str | None
    pool_vectors: str | None
    region_context: np.ndarray | None
    pool_context: str | None
    info: dict
    epochs_done: int
    epochs: int


def _cells_per_token(indices: np.ndarray, weights: np.ndarray, n_cells: int) -> float:
    """Mean number of training cells holding a pooled token (weight > 0), over the pooled tokens held: pooled
    token occurrences over distinct pooled tokens (``auto_context``'s measure of how rare the regions are).
    Called below ``CONTEXT_MAX_CELLS`` cells only, where one count over the tokens is cheap."""
    held = np.bincount(indices, minlength=weights.size)[: weights.size] * (weights > 0)
    distinct = int(np.count_nonzero(held))
    return float(held.sum()) / distinct if distinct else float(n_cells)


def train_vectors(
    ds: Region2VecDataset,
    *,
    embedding_dim: int,
    window_size: int,
    negative_samples: int,
    min_count: int,
    sample,
    n_components: int | str | None,
    seed: int | None,
    threads: int | None,
    epochs: int | None,
    batch_size: int,
    learning_rate: float,
    min_learning_rate: float,
    init: str,
    progress: bool,
) -> TrainedModel:
    """Train region vectors on ``ds`` (arguments checked by :class:`fastembed.ScEmbed` and
    :func:`check_train_args`), then fit the cell projection on the training cells' mean vectors.

    ``epochs=None``: from the data (:func:`fastembed.kernels.sgns.auto_epochs`). A ``ValueError`` of the
    trainer names ``ds`` (the data is at fault: the parameters were checked); a
    :class:`~fastembed.kernels.sgns.DivergedError` (the learning rate's fault) carries the ``learning_rate``
    keyword for the command line.
    """
    from fastembed.kernels.sgns import DivergedError, auto_epochs, train_sgns

    if epochs is None:
        epochs = auto_epochs(
            ds.indptr, ds.indices, ds.vocab_size, window_size=window_size, min_count=min_count
        )
    try:
        result = train_sgns(
            ds.indptr,
            ds.indices,
            ds.vocab_size,
            embedding_dim=embedding_dim,
            window_size=window_size,
            negative_samples=negative_samples,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            min_learning_rate=min_learning_rate,
            min_count=min_count,
            sample=sample,
            seed=seed,
            threads=threads,
            progress=progress,
            init=init,
        )
    except DivergedError as err:
        err.keywords = (Keyword("learning_rate", float(f"{learning_rate:g}")),)
        raise
    except ValueError as err:  # the parameters were checked, so the data is at fault: name it
        raise HintedValueError(
            f"dataset {ds.source}: {err}", keywords=(Keyword("min_count", min_count),)
        ) from None
    projection = cell_norm = pool_vectors = context = context_mode = None
    power = AXIS_POWER
    if n_components is not None:
        weights = (result.counts >= min_count).astype(np.float32)
        weights[len(ds.universe) :] = 0  # special tokens are never pooled
        cells, empty = weighted_mean_pool(ds.indptr, ds.indices, result.w_in, weights)
        k = n_components
        if k == "auto":  # from the training cells' coverage: trained tokens per cell that has one
            held = int(np.count_nonzero(~empty))
            k = auto_components(int(np.count_nonzero(weights[ds.indices])), held)
            if k == HIGH_COVERAGE_COMPONENTS:
                cell_norm, pool_vectors = CELL_NORM, POOL_BOTH
                both = pooled_vectors(result.w_in, result.w_out, pool_vectors)
                cells, empty = weighted_mean_pool(ds.indptr, ds.indices, both, weights)
            if held < CONTEXT_MAX_CELLS:  # the count is only needed (and cheap) there
                per_token = _cells_per_token(ds.indices, weights, held)
                context_mode = auto_context(held, per_token)
            if context_mode is not None:  # small training sets: each token also pools its cells' mean
                context = region_context(ds.indptr, ds.indices, cells, empty, weights)
                # Pooling is linear: the cells of vectors + context are the cells plus their pooled context.
                pooled_context = weighted_mean_pool(ds.indptr, ds.indices, context, weights)[0]
                cells = pooled_context if context_mode == CONTEXT_ALONE else cells + pooled_context
            power = auto_axis_power(k, context_mode)
            if context_mode is not None:
                k = auto_rare_components(k, context_mode, per_token)
        projection = fit_projection(cells[~empty], k, power=power)
    info = {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "min_learning_rate": float(min_learning_rate),
        "init": init,
        "n_cells": len(ds),
        "n_tokens": ds.n_tokens,
        "words_processed": int(result.words_processed),
        "seconds": float(result.seconds),
        "n_trained_tokens": int(np.count_nonzero(result.trained)),
        "sample_threshold": float(result.sample),
        "kept_share": float(result.kept_share),
        "n_components": None if projection is None else int(projection.shape[0] - 1),
        "pool_context": context_mode,
        "axis_power": None if projection is None else float(power),
        **ds.sample_info,  # what share of the data a sampled dataset (sample_cells=) trained on
    }
    if result.epochs_done < epochs:
        info.update(epochs_completed=int(result.epochs_done), partial=True)
    return TrainedModel(
        result.w_in,
        result.w_out,
        result.counts,
        projection,
        cell_norm,
        pool_vectors,
        context,
        context_mode,
        info,
        int(result.epochs_done),
        int(epochs),
    )
