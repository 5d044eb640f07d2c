"""The cell-space projection a model learns from its training cells.

Mean-pooled region vectors share a large common component, and most of their remaining variance lies in a few
directions; the rest is mostly noise from rare regions. After training, :class:`~fastembed.ScEmbed` fits the
mean and the top principal axes of its training cells' mean-pooled vectors, keeps them with the model, and
``encode`` (``pooling="pca"``) centres every cell's mean vector and projects it onto those axes. The result is
expressed in the original coordinates (``(x - centre) @ axes.T @ axes``), so an embedding keeps its
``embedding_dim`` columns while its distances are those of the ``n_components``-dimensional projection.
New cells go through the same fitted projection: it is part of the model, not a post-processing step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_projection", "apply_projection"]


def fit_projection(cells: np.ndarray, n_components: int) -> np.ndarray:
    """Centre and principal axes of a set of cell vectors.

    Parameters
    ----------
    cells : float32 (n_cells, dim)
        Mean-pooled vectors of the training cells that hold at least one trained token.
    n_components : int
        Axes to keep; reduced to ``min(n_components, dim, n_cells - 1)`` (at least 1).

    Returns
    -------
    float32 (k + 1, dim)
        Row 0 is the mean cell vector; rows ``1..k`` are orthonormal axes by decreasing variance, each with
        its largest-magnitude coordinate positive so that the result does not depend on the eigen-solver's sign.
    """
    x = np.asarray(cells, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"fitting the cell projection needs at least 2 cells with trained tokens, got {x.shape[0]}"
        )
    dim = x.shape[1]
    k = max(1, min(int(n_components), dim, x.shape[0] - 1))
    centre = x.mean(axis=0)
    # The dim x dim scatter matrix rather than an SVD of the cells: its size does not grow with the cells.
    xc = x - centre
    _, vecs = np.linalg.eigh(xc.T @ xc)
    axes = vecs[:, ::-1][:, :k].T.copy()
    flip = np.sign(axes[np.arange(k), np.argmax(np.abs(axes), axis=1)])
    axes *= flip[:, None]
    return np.vstack([centre[None, :], axes]).astype(np.float32)


def apply_projection(block: np.ndarray, projection: np.ndarray, empty: np.ndarray) -> None:
    """Project mean-pooled cell vectors in place.

    Parameters
    ----------
    block : float32 (n_cells, dim)
        Mean-pooled cell vectors; overwritten with ``(x - centre) @ axes.T @ axes``.
    projection : float32 (k + 1, dim)
        From :func:`fit_projection`.
    empty : bool (n_cells,)
        Cells with no trained token: they stay zero (rather than becoming minus the projected centre).
    """
    centre, axes = projection[0], projection[1:]
    block -= centre
    block[...] = (block @ axes.T) @ axes
    block[empty] = 0.0
