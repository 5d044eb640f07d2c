"""The cell-space projection a model learns from its training cells.

Mean-pooled region vectors share a large common component, and most of their remaining variance lies in a few
directions; the rest is mostly noise from rare regions. After training, :class:`~fastembed.ScEmbed` fits the
mean and the top principal axes of its training cells' mean-pooled vectors, keeps them with the model, and
``encode`` (``pooling="pca"``) centres every cell's mean vector and projects it onto those axes (by default 20,
or 30 for cells of high coverage: :func:`auto_components`). The axes are
weighted so that their spreads go as the square root of their singular values (:data:`AXIS_POWER`), as SnapATAC2
weights its spectral components: plain principal-component scores let the first few axes decide every distance.
The result is expressed in the original coordinates (``(x - centre) @ axes.T @ axes``), so an embedding keeps its
``embedding_dim`` columns while its distances are those of the weighted ``n_components``-dimensional scores.
New cells go through the same fitted projection: it is part of the model, not a post-processing step.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fit_projection",
    "apply_projection",
    "project_scores",
    "auto_components",
    "unit_rows",
    "POOL_BOTH",
    "CONTEXT_CELLS",
    "CONTEXT_ALONE",
    "CONTEXT_MAX_CELLS",
    "CONTEXT_ALONE_CELLS_PER_TOKEN",
    "CONTEXT_MODES",
    "auto_context",
    "auto_axis_power",
    "auto_rare_components",
    "RARE_HIGH_COVERAGE_POWER",
    "RARE_MIN_COMPONENTS",
]


AXIS_POWER = 0.5
"""How the kept axes are weighted: cell coordinate ``j`` of the projection is its principal-component score scaled
by ``(s_1 / s_j) ** (1 - AXIS_POWER)`` (``s_j``: the axis' singular value over the training cells), so that the
axes' spreads go as ``s_j ** AXIS_POWER`` instead of ``s_j``. 1 is plain PCA; 0.5 flattens the spectrum the way
SnapATAC2 weights its eigenvectors by the square root of their eigenvalues. The mean-pooled SGNS vectors'
spectrum is steep: the first few axes dominate every distance, and the cell-type structure carried by the later
ones is drowned (bench/snapatac2_ablation.py)."""


LOW_COVERAGE_COMPONENTS = 20
"""Axes kept by ``n_components="auto"`` for training cells with fewer than :data:`HIGH_COVERAGE_TOKENS` trained
tokens on average (10x-like data: granja2019's ~164, forebrain's ~370)."""
HIGH_COVERAGE_COMPONENTS = 30
"""Axes kept by ``n_components="auto"`` from :data:`HIGH_COVERAGE_TOKENS` trained tokens per cell on (plate-based or
sorted cells, pooled cells). A cell's mean-pooled vector averages its tokens' vectors, so its noise shrinks as
its tokens grow and more axes carry cell-type signal above it: on granja2019's cells merged 12 and 24 at a time
(~1,200 and ~1,800 peaks per cell) 30 axes gave +0.03 and +0.02 10-NN accuracy over 20, while on granja
subsamples and forebrain (~164 and ~370 peaks) they cost 0.01-0.02 (bench/snapatac2_ablation.py)."""
HIGH_COVERAGE_TOKENS = 600
"""Mean trained tokens per training cell from which ``n_components="auto"`` keeps :data:`HIGH_COVERAGE_COMPONENTS`
axes; the measured datasets leave it anywhere between ~370 (forebrain) and ~1,200 (granja's cells merged 12 at a
time), and 600 is near their geometric middle (~670)."""
POOL_BOTH = "input+output"
"""The one alternative a model can record for what a cell pools (``pool_vectors`` in its folder's config): each
token's input vector and output (context) vector side by side, ``2 x embedding_dim`` wide, before the projection
(none recorded: the input vectors alone). ``n_components="auto"`` turns it on with the 30 axes of high coverage:
on granja2019's cells merged 12 and 24 at a time it gave +0.029 ± 0.008 and +0.039 ± 0.011 Leiden ARI (10 draws,
2 training seeds each) with 10-NN accuracy level or up, and level results at low coverage
(bench/snapatac2_ablation.py, ``fe-wcat-*``). The output vectors are trained on the same co-occurrences as the
input vectors, from the other side of each pair; at high coverage each cell averages enough tokens for both to
add signal."""
CELL_NORM = "l2"
"""The one cell normalisation a model can record (``cell_norm`` in its folder's config): projected cells scaled
to unit length (:func:`unit_rows`). ``n_components="auto"`` turns it on together with the 30 axes of high
coverage: with 30 weighted axes, unit-length cells gave scanpy's (euclidean) Leiden graph +0.03 ARI on granja's
merged cells (+0.033 and +0.029 over 5 draws) and left the cosine k-NN as it was; with 20 axes at low coverage it
changed nothing measurable (bench/snapatac2_ablation.py)."""
CONTEXT_CELLS = "cells"
"""The one cell context a model can record (``pool_context`` in its folder's config): every token pooled as its
vector plus the mean of the pooled vectors of the training cells that hold it
(:func:`fastembed.kernels.pooling.region_context`, stored as ``region_context.npy``). ``n_components="auto"`` turns
it on for training sets of fewer than :data:`CONTEXT_MAX_CELLS` cells. With a few hundred cells each region is
seen in a handful of them and its trained vector is noisy; its context is one more average over the cells, and
the cells it gives place the query cells with the fewest regions better (bench/small_data_probe.py)."""
CONTEXT_ALONE = "cells-alone"
"""The other cell context a model can record: every token pooled as its cell context alone, without its own
vector. ``n_components="auto"`` chooses it over :data:`CONTEXT_CELLS` when the training cells' regions are rare,
fewer than :data:`CONTEXT_ALONE_CELLS_PER_TOKEN` training cells per trained region on average."""
CONTEXT_MODES = (CONTEXT_CELLS, CONTEXT_ALONE)
"""The values ``pool_context`` may take in a model folder's config (or null: no context)."""
CONTEXT_MAX_CELLS = 2000
"""Training cells (with a trained token) below which ``n_components="auto"`` pools the cell context
(:data:`CONTEXT_CELLS`). Measured with 10 draws each (bench/small_data_probe.py): granja2019's 400- and
1,000-cell draws gained 10-NN accuracy and Leiden ARI, forebrain's 1,043 cells were level, and all of granja2019
(14,125 cells) gained nothing (Leiden ARI -0.013 ± 0.013, accuracy +0.002 ± 0.001, 3 seeds), and the context is
one more vocabulary-sized matrix to hold at encode, so large training sets keep the vectors alone; 2,000 lies
between the sizes measured to gain and to gain nothing, nearer the ones that gain."""
CONTEXT_ALONE_CELLS_PER_TOKEN = 20.0
"""Mean training cells per trained region below which a small training set's tokens pool their cell context
alone (:data:`CONTEXT_ALONE`). A dataset's own peak calling gives a large universe in which each region is seen
in a handful of cells; each region's trained vector then carries more noise than its context does, and even a
quarter of it in what a token pools undoes most of the context's gain. Measured with bench/small_data_probe.py's
variants on real cells over universes made finer (``+splitK``: each peak cut in K, each read moved to one piece):
below 20 the context alone gained 10-NN accuracy (+0.07 on granja's merged cells cut in 8, +0.05 cut in 4,
+0.02 on forebrain cut in 4, +0.017 on granja's 1,000-cell draws) with Leiden ARI within -0.012 and +0.04; at
25 (forebrain cut in 2) and 50 (forebrain) it cost 0.05-0.09 ARI, so the vector is kept there."""


RARE_HIGH_COVERAGE_POWER = 1.0
"""The axis power (:data:`AXIS_POWER`) of ``n_components="auto"`` when the training cells are of high coverage
(:data:`HIGH_COVERAGE_COMPONENTS` axes) and their regions rare (:data:`CONTEXT_ALONE`): plain principal-component
scores. There the cell types sit in a few strong axes (SnapATAC2 keeps 6-7 eigenvectors of granja's merged cells
over a universe cut in 4 or 8, where its weighting drops those below the noise) and the square-root weighting
lifts the noisy later axes to them: plain scores gained 10-NN accuracy +0.038 and +0.016 and Leiden ARI +0.019
and +0.029 on those two sets, and cost the low-coverage sets with rare regions (forebrain cut in 4: -0.093 ARI;
granja's 400-cell draws: -0.029 accuracy), which keep :data:`AXIS_POWER`."""


RARE_MIN_COMPONENTS = 10
"""The fewest axes :func:`auto_rare_components` keeps for high-coverage cells over rare regions."""


def auto_rare_components(n_components: int, context: str | None, cells_per_token: float) -> int:
    """The axes ``n_components="auto"`` keeps once the context is chosen: for high-coverage cells
    (:data:`HIGH_COVERAGE_COMPONENTS`) that pool their context alone (:data:`CONTEXT_ALONE`), one axis per
    training cell holding a region on average, rounded, between :data:`RARE_MIN_COMPONENTS` and
    :data:`HIGH_COVERAGE_COMPONENTS`; else ``n_components`` as it is.

    Each token's context is a mean over the few cells that hold it, so the rarer the regions, the fewer axes of
    the pooled contexts rise above their noise (SnapATAC2's spectral embedding, which drops the eigenvectors below
    its noise floor, keeps 6-7 on granja's merged cells over a universe cut in 4 or 8). Measured with
    bench/small_data_probe.py on granja's merged cells and forebrain's cells merged 3 at a time, their universes
    cut in 3 to 12 (5.8 to 18.5 cells per region, 3 draws each): against 30 axes, 10 to 13 axes at 5.8 to 12.7
    cells per region gained Leiden ARI +0.02 to +0.08 and 10-NN accuracy up to +0.06; at 15 to 18.5 cells per
    region (15 to 19 axes) the changes were within about 0.015 either way.

    Parameters
    ----------
    n_components : int
        The axes :func:`auto_components` chose.
    context : str or None
        The context :func:`auto_context` chose.
    cells_per_token : float
        Mean training cells per pooled token (as :func:`auto_context` reads it).

    Returns
    -------
    int
        The number of axes to fit: in ``[RARE_MIN_COMPONENTS, HIGH_COVERAGE_COMPONENTS]`` for high-coverage cells
        with the context alone, else ``n_components``.
    """
    if n_components != HIGH_COVERAGE_COMPONENTS or context != CONTEXT_ALONE:
        return n_components
    per_region = int(np.floor(float(cells_per_token) + 0.5))
    return int(min(HIGH_COVERAGE_COMPONENTS, max(RARE_MIN_COMPONENTS, per_region)))


def auto_axis_power(n_components: int, context: str | None) -> float:
    """The axis power ``n_components="auto"`` fits the projection with.

    Parameters
    ----------
    n_components : int
        The axes :func:`auto_components` chose.
    context : str or None
        The context :func:`auto_context` chose.

    Returns
    -------
    float
        :data:`RARE_HIGH_COVERAGE_POWER` with :data:`HIGH_COVERAGE_COMPONENTS` axes and :data:`CONTEXT_ALONE`,
        else :data:`AXIS_POWER`.
    """
    if n_components == HIGH_COVERAGE_COMPONENTS and context == CONTEXT_ALONE:
        return RARE_HIGH_COVERAGE_POWER
    return AXIS_POWER


def auto_context(n_cells: int, cells_per_token: float) -> str | None:
    """The cell context ``n_components="auto"`` records for a training set.

    Parameters
    ----------
    n_cells : int
        Training cells holding at least one trained token.
    cells_per_token : float
        Mean number of those cells holding a trained token, over the trained tokens they hold.

    Returns
    -------
    str or None
        None from :data:`CONTEXT_MAX_CELLS` cells on; else :data:`CONTEXT_ALONE` below
        :data:`CONTEXT_ALONE_CELLS_PER_TOKEN` cells per token, and :data:`CONTEXT_CELLS` otherwise.
    """
    if n_cells >= CONTEXT_MAX_CELLS:
        return None
    return CONTEXT_ALONE if cells_per_token < CONTEXT_ALONE_CELLS_PER_TOKEN else CONTEXT_CELLS


def auto_components(trained_tokens: int, n_cells: int) -> int:
    """The number of projection axes ``n_components="auto"`` keeps, from the training cells' coverage.

    Parameters
    ----------
    trained_tokens : int
        Trained tokens over all training cells (a token held by a cell counts once per cell).
    n_cells : int
        Training cells holding at least one trained token.

    Returns
    -------
    int
        :data:`HIGH_COVERAGE_COMPONENTS` when ``trained_tokens / n_cells >= HIGH_COVERAGE_TOKENS``, else
        :data:`LOW_COVERAGE_COMPONENTS` (also for no cells).
    """
    if n_cells > 0 and trained_tokens >= HIGH_COVERAGE_TOKENS * n_cells:
        return HIGH_COVERAGE_COMPONENTS
    return LOW_COVERAGE_COMPONENTS


def fit_projection(cells: np.ndarray, n_components: int, *, power: float = AXIS_POWER) -> np.ndarray:
    """Centre and (weighted) principal axes of a set of cell vectors.

    Parameters
    ----------
    cells : float32 (n_cells, dim)
        Mean-pooled vectors of the training cells that hold at least one trained token.
    n_components : int
        Axes to keep; reduced to ``min(n_components, dim, n_cells - 1)`` (at least 1).
    power : float in [0, 1]
        Axis weighting (:data:`AXIS_POWER`): 1 keeps the principal-component scores as they are.

    Returns
    -------
    float32 (k + 1, dim)
        Row 0 is the mean cell vector; rows ``1..k`` are mutually orthogonal axes by decreasing variance, each with
        its largest-magnitude coordinate positive so that the result does not depend on the eigen-solver's sign.
        Row ``j`` has length ``sqrt(w_j)`` with ``w_j = (s_1 / s_j) ** (1 - power)`` (1 for the first axis and
        for every axis when ``power`` is 1, the orthonormal axes of plain PCA): :func:`apply_projection` then
        gives coordinate ``j`` the weight ``w_j``. Axes with a negligible variance keep weight 1.
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
    if not 0.0 <= float(power) <= 1.0:
        raise ValueError(f"power must be in [0, 1], got {power!r}")
    xc = x - centre
    lam, vecs = np.linalg.eigh(xc.T @ xc)
    lam, axes = lam[::-1][:k], vecs[:, ::-1][:, :k].T.copy()
    flip = np.sign(axes[np.arange(k), np.argmax(np.abs(axes), axis=1)])
    axes *= flip[:, None]
    # Singular values are sqrt(lam); w_j = (s_1 / s_j)^(1 - power) = (lam_1 / lam_j)^((1 - power) / 2). An axis
    # with (numerically) no variance has no scores to weight: 1 keeps it from blowing up rounding noise.
    weight = np.ones(k)
    real = lam > max(lam[0], 0.0) * 1e-10
    weight[real] = (lam[0] / lam[real]) ** ((1.0 - float(power)) / 2.0)
    axes *= np.sqrt(weight)[:, None]
    return np.vstack([centre[None, :], axes]).astype(np.float32)


def project_scores(wide: np.ndarray, projection: np.ndarray, empty: np.ndarray, out: np.ndarray) -> None:
    """Project pooled cell vectors wider than the output onto the axes, as coordinates in the axes' own basis.

    :func:`apply_projection` writes a projected cell back into the pooled space; when cells pool input and output
    vectors side by side (:data:`POOL_BOTH`) that space is twice the embedding dimension, so instead coordinate
    ``j < k`` of ``out`` is the weighted score ``w_j t_j`` (``t_j`` the cell's score on axis ``j``) and the other
    columns are 0: the same lengths, distances and inner products as :func:`apply_projection` gives, in
    ``embedding_dim`` columns.

    Parameters
    ----------
    wide : float32 (n_cells, pooled_dim)
        Mean-pooled cell vectors (read only).
    projection : float32 (k + 1, pooled_dim)
        From :func:`fit_projection`; ``k <= out.shape[1]``.
    empty : bool (n_cells,)
        Cells with no trained token: their rows of ``out`` are 0.
    out : float32 (n_cells, dim)
        Written.
    """
    centre, axes = projection[0], projection[1:]
    k = axes.shape[0]
    if k > out.shape[1]:
        raise ValueError(f"{k} projection axes do not fit {out.shape[1]} output columns")
    # Row j of the axes has squared length w_j, so (x - c) . a_j = sqrt(w_j) t_j, and times |a_j| is w_j t_j.
    lengths = np.sqrt(np.einsum("ij,ij->i", axes, axes, dtype=np.float64)).astype(np.float32)
    out[:, :k] = ((wide - centre) @ axes.T) * lengths
    out[:, k:] = 0.0
    out[empty] = 0.0


def unit_rows(block: np.ndarray, empty: np.ndarray) -> None:
    """Scale each cell vector to unit length in place (cosine geometry for euclidean consumers such as scanpy's
    neighbours graph).

    Parameters
    ----------
    block : float32 (n_cells, dim)
        Projected cell vectors; each row with a positive length is divided by it.
    empty : bool (n_cells,)
        Cells with no trained token: they stay zero.
    """
    empty = np.asarray(empty, dtype=bool)
    norm = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
    scale = ~empty & (norm > 0.0)
    block[scale] /= norm[scale, None].astype(np.float32)
    block[empty] = 0.0


def apply_projection(block: np.ndarray, projection: np.ndarray, empty: np.ndarray) -> None:
    """Project mean-pooled cell vectors in place.

    Parameters
    ----------
    block : float32 (n_cells, dim)
        Mean-pooled cell vectors; overwritten with ``(x - centre) @ axes.T @ axes``: in the orthonormal basis of the
        axes' directions, coordinate ``j`` is the cell's score on axis ``j`` times the axis' weight ``w_j``
        (:func:`fit_projection`), so distances are those of the weighted ``k``-dimensional scores.
    projection : float32 (k + 1, dim)
        From :func:`fit_projection`.
    empty : bool (n_cells,)
        Cells with no trained token: they stay zero (rather than becoming minus the projected centre).
    """
    centre, axes = projection[0], projection[1:]
    block -= centre
    block[...] = (block @ axes.T) @ axes
    block[empty] = 0.0
