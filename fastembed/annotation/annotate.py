"""Cell-type annotation by k-nearest-neighbour label transfer from a labelled reference.

The work splits in two so that it can run in blocks of query cells, in one process or as Dask tasks: the
reference is fitted once (:func:`fit_reference`: centre, unit rows, label codes and, for large problems, a
pynndescent index; exact vs approximate search is decided here, once, from the whole query's size), and
each block of query cells is a :func:`predict` call on that fitted reference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd

from fastembed import settings
from fastembed.common.budget import query_blocks, resolve_memory
from fastembed.common.errors import HintedKeyError, HintedValueError, Keyword, ParameterError
from fastembed.common.validate import is_number, is_whole
from fastembed.common.warn import warn
from fastembed.settings import PARALLEL_FAST

__all__ = [
    "annotate_celltypes",
    "annotate_celltypes_table",
    "annotation_table",
    "knn_cosine",
    "fit_reference",
    "predict",
    "predicted_column",
    "FittedReference",
    "QueryEmbeddings",
]

CONFIDENCE_COLUMN = "confidence"
"""Column of the similarity-weighted vote share in annotation tables (the command line's and the demo's)."""


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
    table = pd.DataFrame(
        {
            predicted_column(label_key): predicted.to_numpy(),
            CONFIDENCE_COLUMN: np.asarray(confidence, dtype=float),
        },
        index=pd.Index(predicted.index, name="barcode"),
    )
    return table


# The query and the reference are checked for the same things, and their messages are worded alike: each starts
# with the input's name (input_name: which input and, when read from a file, its path), then the element
# (obsm['scembed_X'], obs['cell_type']) and what was expected, so a user with two files knows which to fix.
def input_name(which: str, path: str | os.PathLike | None = None) -> str:
    """How messages name an input: ``"query AnnData"`` in memory, ``"query '<path>'"`` when read from a path."""
    return f"{which} AnnData" if path is None else f"{which} '{path}'"


def _missing_embedding(name: str, key: str, keys) -> KeyError:
    have = ", ".join(map(repr, keys)) or "none"
    hint = Keyword("embedding_key")
    return HintedKeyError(
        f"{name} has no obsm['{key}'] (obsm keys: {have}); encode it first or pass {hint}", keywords=(hint,)
    )


def _not_an_anndata(which: str, value) -> TypeError:
    return TypeError(f"{which} must be an AnnData or an .h5ad/.zarr path, got {type(value).__name__}")


def embedding_matrix(adata, key: str, name: str) -> np.ndarray:
    """``adata.obsm[key]`` as float32 (cells, dims), checked; ``name`` (see :func:`input_name`) names the
    AnnData in messages."""
    if key not in adata.obsm:
        raise _missing_embedding(name, key, adata.obsm.keys())
    emb = adata.obsm[key]
    if hasattr(emb, "toarray"):  # a sparse matrix: embeddings are dense, but a store may hold them sparse
        emb = emb.toarray()
    try:
        emb = np.asarray(emb, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} obsm['{key}'] must be a numeric 2-d array (cells x dims), got values that are not "
            f"numbers ({str(err)[:100]})"
        ) from None
    if emb.ndim != 2:
        raise ValueError(
            f"{name} obsm['{key}'] must be a numeric 2-d array (cells x dims), got shape {emb.shape}"
        )
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} obsm['{key}'] has NaN or infinite values in {int(bad.sum())} cells "
            f"(first: {adata.obs_names[i]!r}); expected finite embeddings"
        )
    return emb


def read_embedded(path: str | os.PathLike, which: str, embedding_key: str):
    """The cell annotations and one embedding of an ``.h5ad`` file or of the AnnData ``.zarr`` store that encode
    writes, without its ``X`` or other elements: a reference of a million cells needs its labels and embeddings,
    not its counts.

    Parameters
    ----------
    path : str or os.PathLike
    which : str
        What the file is, for messages (``"reference"``).
    embedding_key : str
        The ``obsm`` entry to read.

    Returns
    -------
    anndata.AnnData
        ``obs`` as stored and ``obsm[embedding_key]`` (n_obs x dim, as stored; sparse stays sparse), no ``X``.
    """
    from pathlib import Path

    import anndata as ad

    from fastembed.genome.readers import open_element, read_obs

    p = Path(path)
    name = input_name(which, p)
    if not p.exists():
        raise FileNotFoundError(f"{name} does not exist")
    obs = read_obs(p)
    try:
        emb = open_element(p, f"obsm/{embedding_key}")
    except ValueError:
        try:
            have = list(open_element(p, "obsm").keys())
        except (ValueError, AttributeError):
            have = []
        raise _missing_embedding(name, embedding_key, have) from None
    shape = getattr(emb, "shape", ())
    if len(shape) >= 1 and shape[0] != len(obs):
        raise ValueError(
            f"{name}: obsm['{embedding_key}'] has {shape[0]} rows but obs has {len(obs)}; expected one row "
            "per cell"
        )
    return ad.AnnData(obs=obs, obsm={embedding_key: emb[:]})


def unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` (float, (n, d)) scaled to unit length: (the scaled rows, same dtype and shape; bool (n,),
    True where a row was nonzero). All-zero rows stay zero, so cosine similarity becomes a dot product."""
    norms = np.linalg.norm(x, axis=1)
    ok = norms > 0
    out = np.zeros_like(x)
    out[ok] = x[ok] / norms[ok, None]
    return out, ok


def _query_rows(query, fitted: FittedReference) -> tuple[np.ndarray, np.ndarray]:
    """Query embeddings (n, d) as the index compares them: float32, centred on the reference mean (when the
    reference was fitted with one) and scaled to unit length; and bool (n,), False for cells with no
    information (an all-zero embedding, or one equal to the reference mean)."""
    q = np.asarray(query, dtype=np.float32)
    ok = q.any(axis=1)  # decided before centring: an all-zero query embedding carries no information
    if fitted.mean is not None:
        q = q - fitted.mean
    q, centred_ok = unit_rows(q)
    return q, ok & centred_ok


def _check_finite(emb: np.ndarray, which: str, first_row: int = 0) -> None:
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{which} has NaN or infinite values in {int(bad.sum())} cells of rows "
            f"{first_row}..{first_row + emb.shape[0] - 1} (first: row {first_row + int(np.flatnonzero(bad)[0])}); "
            "expected finite embeddings"
        )


@numba.njit(**PARALLEL_FAST)
def _similarities(query, reference, out):
    # Each dot product is one thread's fixed loop, so a value does not depend on the thread count or on the
    # rows around it; BLAS's sgemm splits sums differently with 1 or n threads (Dask workers run it with 1),
    # which changed confidences in the last bit and could flip near-tied labels.
    for i in numba.prange(query.shape[0]):
        for j in range(reference.shape[0]):
            s = np.float32(0.0)
            for d in range(query.shape[1]):
                s += query[i, d] * reference[j, d]
            out[i, j] = s


def _exact_knn(reference: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n_ref, n_query = reference.shape[0], query.shape[0]
    idx = np.empty((n_query, k), dtype=np.int64)
    sim = np.empty((n_query, k), dtype=np.float32)
    batch = max(1, settings.EXACT_SEARCH_BLOCK_PAIRS // max(n_ref, 1))
    reference = np.ascontiguousarray(reference, dtype=np.float32)
    for lo in range(0, n_query, batch):
        piece = np.ascontiguousarray(query[lo : lo + batch], dtype=np.float32)
        s = np.empty((piece.shape[0], n_ref), dtype=np.float32)
        _similarities(piece, reference, s)
        part = (
            np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n_ref else np.tile(np.arange(n_ref), (len(s), 1))
        )
        ps = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx[lo : lo + batch] = np.take_along_axis(part, order, axis=1)
        sim[lo : lo + batch] = np.take_along_axis(ps, order, axis=1)
    return idx, sim


def build_index(reference: np.ndarray, k: int, random_state: int | None, n_jobs: int | None):
    """A pynndescent NN-descent index over ``reference`` (float32 unit rows, (n, d)), dense enough to find the
    ``k`` nearest neighbours of a query by cosine (dot product); built when exact search would be too slow."""
    from pynndescent import NNDescent

    # A denser graph and a wider search than pynndescent's defaults (15, 0.1): on scATAC embeddings the
    # defaults find only ~85% of the true 10 neighbours; the settings' values find ~98% for little extra time.
    index = NNDescent(
        reference,
        metric="cosine",
        n_neighbors=max(settings.NNDESCENT_MIN_NEIGHBORS, settings.NNDESCENT_NEIGHBORS_PER_K * k),
        random_state=random_state,
        n_jobs=n_jobs if n_jobs is not None else -1,
    )
    index.prepare()  # the search graph, built once here rather than by every process the index is sent to
    return index


_INDEX_LOCK = threading.Lock()


def _index_query(index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    # pynndescent's query marks visited nodes in one buffer of the index: two threads sharing an index (Dask
    # tasks on a worker with several threads get the same scattered object) must not search at once.
    with _INDEX_LOCK:
        idx, dist = index.query(query, k=k, epsilon=settings.NNDESCENT_EPSILON)
    return idx.astype(np.int64), (1.0 - dist).astype(np.float32)


def knn_cosine(
    reference: np.ndarray,
    query: np.ndarray,
    k: int,
    *,
    random_state: int | None = 0,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
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
    Small problems (fewer than ``settings.EXACT_SEARCH_PAIRS`` pairs) use an exact blocked search; larger
    ones use a pynndescent index with the cosine metric (approximate; ~98% recall of the exact neighbours in
    our tests).
    """
    if reference.shape[0] * query.shape[0] <= settings.EXACT_SEARCH_PAIRS:
        return _exact_knn(reference, query, k)
    return _index_query(build_index(reference, k, random_state, n_jobs), query, k)


@dataclass
class FittedReference:
    """A labelled reference prepared once for many :func:`predict` calls (small enough to send to workers).

    Attributes
    ----------
    unit : np.ndarray of float32, shape (n_ref, dim)
        Usable reference embeddings, centred (if ``mean`` is set) and scaled to unit length.
    mean : np.ndarray of float32, shape (dim,), or None
        The reference mean subtracted from every query row (None: plain cosine).
    codes : np.ndarray of int, shape (n_ref,)
        Label of each row as an index into ``categories``.
    categories : list of str
    k : int
    index : pynndescent.NNDescent or None
        The approximate index; None means exact search (decided from the whole query size).
    name : str
        How messages name the reference: ``"reference AnnData"``, or ``"reference '<path>'"`` when read from a
        path.
    """

    unit: np.ndarray
    mean: np.ndarray | None
    codes: np.ndarray
    categories: list
    k: int
    index: object | None = None
    name: str = "reference AnnData"

    @property
    def dim(self) -> int:
        return int(self.unit.shape[1])


def fit_reference(
    reference_adata,
    *,
    n_query: int,
    embedding_key: str = settings.EMBEDDING_KEY,
    k: int = 10,
    label_key: str = "cell_type",
    center: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
) -> FittedReference:
    """Prepare a labelled reference for k-NN label transfer to ``n_query`` query cells.

    Parameters
    ----------
    reference_adata : anndata.AnnData or str or os.PathLike
        Embeddings in ``obsm[embedding_key]`` and labels in ``obs[label_key]``; cells with a missing label or an
        all-zero embedding are left out (warning). A path (``.h5ad``, or the ``.zarr`` store that encode writes)
        is read with :func:`read_embedded`: only its obs and that embedding.
    n_query : int
        Number of query cells of the whole job: it alone decides exact (``n_query * n_ref <=
        settings.EXACT_SEARCH_PAIRS``) or approximate search, so every block of the query is searched the
        same way.
    embedding_key, k, label_key, center, random_state, n_jobs
        As :func:`annotate_celltypes`.

    Returns
    -------
    FittedReference
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ParameterError("k", "an integer >= 1", k)
    if isinstance(reference_adata, str | os.PathLike):
        name = input_name("reference", reference_adata)
        reference_adata = read_embedded(reference_adata, "reference", embedding_key)
    elif hasattr(reference_adata, "obsm"):
        name = input_name("reference")
    else:
        raise _not_an_anndata("reference", reference_adata)
    if reference_adata.n_obs == 0:
        raise ValueError(f"{name} has no cells; expected labelled cells with embeddings")
    if label_key not in reference_adata.obs:
        have = ", ".join(map(repr, reference_adata.obs.columns)) or "none"
        hint = Keyword("label_key")
        raise HintedKeyError(
            f"{name} has no obs['{label_key}'] (obs columns: {have}); pass {hint}", keywords=(hint,)
        )
    r = embedding_matrix(reference_adata, embedding_key, name)
    labels = reference_adata.obs[label_key]
    keep = r.any(axis=1) & labels.notna().to_numpy()
    if not keep.all():
        warn(
            f"{int((~keep).sum())} cells of {name} have no label in obs['{label_key}'] or an all-zero "
            f"obsm['{embedding_key}']; left out",
        )
    r = r[keep]
    mean = None
    if center and r.shape[0]:
        mean = r.mean(axis=0, dtype=np.float64).astype(np.float32)
        r = r - mean
    r, _ = unit_rows(r)
    categorical = isinstance(labels.dtype, pd.CategoricalDtype)
    categories = list(labels.cat.categories) if categorical else sorted(pd.unique(labels[keep].astype(str)))
    codes = pd.Categorical(
        labels[keep] if categorical else labels[keep].astype(str), categories=categories
    ).codes
    if k > r.shape[0]:
        given = Keyword("k", k)
        raise HintedValueError(
            f"{given} is larger than the {r.shape[0]} usable cells of {name} (cells with a label in "
            f"obs['{label_key}'] and a non-zero obsm['{embedding_key}']); expected k <= {r.shape[0]}",
            keywords=(given,),
        )
    index = None
    if int(n_query) * r.shape[0] > settings.EXACT_SEARCH_PAIRS:
        index = build_index(r, int(k), random_state, n_jobs)
    return FittedReference(
        unit=r, mean=mean, codes=np.asarray(codes), categories=categories, k=int(k), index=index, name=name
    )


def _vote(
    idx: np.ndarray, sim: np.ndarray, codes: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    weights = np.maximum(sim, 1e-6).astype(np.float64)
    n_q = idx.shape[0]
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
    return winner.astype(np.int64), confidence


def predict(
    fitted: FittedReference, query: np.ndarray, start: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vote labels for one block of query cells.

    Parameters
    ----------
    fitted : FittedReference
    query : np.ndarray of float32, shape (n, dim)
        Raw (uncentred) finite embeddings of query rows ``start .. start + n - 1``.
    start : int
        Absolute row of the block's first cell; the block is searched in pieces cut at multiples of
        ``settings.QUERY_BATCH``, so labels do not depend on how the query was split into blocks.

    Returns
    -------
    winner : np.ndarray of int64, shape (n,)
        Index into ``fitted.categories``.
    confidence : np.ndarray of float32, shape (n,)
        The winner's vote share, 0 for cells without information.
    ok : np.ndarray of bool, shape (n,)
        False for cells whose embedding is all zeros (or equal to the reference mean): no label.
    """
    q, ok = _query_rows(query, fitted)
    n = q.shape[0]
    winner = np.zeros(n, dtype=np.int64)
    confidence = np.zeros(n, dtype=np.float32)
    step = settings.QUERY_BATCH
    cuts = [0, *range(-start % step or step, n, step), n]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi <= lo:
            continue
        piece = q[lo:hi]
        if fitted.index is None:
            idx, sim = _exact_knn(fitted.unit, piece, fitted.k)
        else:
            idx, sim = _index_query(fitted.index, piece, fitted.k)
        winner[lo:hi], confidence[lo:hi] = _vote(idx, sim, fitted.codes, len(fitted.categories))
    confidence[~ok] = 0.0
    return winner, confidence, ok


class QueryEmbeddings:
    """Query embeddings from an in-memory AnnData or from ``obsm[key]`` of an on-disk ``.h5ad``/``.zarr``,
    read in blocks of rows.

    Attributes
    ----------
    path : pathlib.Path or None
        The file, when read from disk (only ``obsm[key]`` and the obs index are read, block by block).
    key : str
    name : str
        How messages name the query: ``"query AnnData"``, or ``"query '<path>'"`` when read from disk.
    obs_names : pandas.Index
    n_obs, dim : int
    """

    def __init__(self, query, key: str):
        from pathlib import Path

        self.key = key
        if isinstance(query, str | os.PathLike):
            from fastembed.genome.readers import open_element, read_obs_names

            self.path = Path(query)
            self.name = input_name("query", self.path)
            self._array = None
            if not self.path.exists():
                raise FileNotFoundError(f"{self.name} does not exist")
            obsm = open_element(self.path, "obsm")
            if key not in obsm:
                raise _missing_embedding(self.name, key, obsm.keys())
            arr = open_element(self.path, f"obsm/{key}")
            # Read in blocks of rows straight from the file, so only a dense numeric array will do here (a
            # reference is read whole and may be stored sparse).
            if not hasattr(arr, "dtype") or len(arr.shape) != 2 or np.dtype(arr.dtype).kind not in "biuf":
                raise ValueError(
                    f"{self.name} obsm['{key}'] must be a numeric 2-d array (cells x dims), stored dense to "
                    f"be read in blocks, got {type(arr).__name__} of dtype {getattr(arr, 'dtype', None)} and "
                    f"shape {getattr(arr, 'shape', None)}"
                )
            self.obs_names = read_obs_names(self.path)
            self.n_obs, self.dim = (int(n) for n in arr.shape)
            if self.n_obs != len(self.obs_names):
                raise ValueError(
                    f"{self.name}: obsm['{key}'] has {self.n_obs} rows but obs has {len(self.obs_names)}; "
                    "expected one row per cell"
                )
        else:
            if not hasattr(query, "obsm"):
                raise _not_an_anndata("query", query)
            self.path = None
            self.name = input_name("query")
            self._array = embedding_matrix(query, key, self.name)
            self.obs_names = query.obs_names
            self.n_obs, self.dim = self._array.shape

    def block(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` as float32 (hi - lo, dim), checked finite."""
        if self._array is not None:
            return self._array[lo:hi]
        return read_query_block(self.path, self.key, lo, hi)


def read_query_block(path, key: str, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of ``obsm[key]`` of an on-disk AnnData as float32, checked finite (also run in workers)."""
    from fastembed.genome.readers import open_element

    q = np.asarray(open_element(path, f"obsm/{key}")[lo:hi], dtype=np.float32)
    _check_finite(q, f"{input_name('query', path)} obsm['{key}']", lo)
    return q


def _predict_payload(payload: tuple, fitted):
    # One Dask task: read a block of the query (by path on the worker, or the rows sent) and label it.
    if payload[0] == "path":
        _, path, key, lo, hi = payload
        return predict(fitted, read_query_block(path, key, lo, hi), lo)
    _, lo, q = payload
    return predict(fitted, q, lo)


def _predict_blocks(client, fitted, query, spans) -> list:
    """:func:`predict` of each block ``(lo, hi)`` of ``spans`` of ``query`` (a QueryEmbeddings) as a Dask task, the
    fitted reference sent once to every worker; ``[(winner, confidence, ok), ...]`` in cell order."""
    from fastembed.backends.dask import map_blocks

    spans = list(spans)
    payloads = [
        ("path", str(query.path.absolute()), query.key, lo, hi)
        if query.path is not None
        else ("rows", lo, query.block(lo, hi))
        for lo, hi in spans
    ]
    out: list = [None] * len(spans)
    for i, result in map_blocks(client, _predict_payload, payloads, shared=(fitted,)):
        out[i] = result
    return out


class ReferenceHandler(NamedTuple):
    """How :func:`annotate_celltypes` hands a reference folder (or a novelty request) to :mod:`fastembed.reference`.

    The reference module builds on this one (it fits references and votes with its functions), so it registers
    itself here when imported (``import fastembed`` does) instead of this module importing it back.
    """

    is_reference: Callable[[object], bool]  # a Reference object or a reference folder's path
    from_anndata: Callable[..., object]  # a labelled AnnData -> an in-memory Reference (novelty on AnnData)
    annotate: Callable[
        ..., tuple
    ]  # annotate_celltypes' arguments, a Reference as the reference -> (labels, columns)


_REFERENCE_HANDLER: ReferenceHandler | None = None


def register_reference_handler(handler: ReferenceHandler) -> None:
    """Let :func:`annotate_celltypes` accept reference folders (called once by :mod:`fastembed.reference`)."""
    global _REFERENCE_HANDLER
    _REFERENCE_HANDLER = handler


def annotate_celltypes(
    query_adata,
    reference_adata,
    embedding_key: str = settings.EMBEDDING_KEY,
    k: int = 10,
    *,
    label_key: str = "cell_type",
    confidence_key: str | None = None,
    min_confidence: float | None = None,
    unknown_label: str = "unknown",
    center: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    batch_cells: int = settings.ANNOTATE_BATCH_CELLS,
    client=None,
    novelty_key: str | None = None,
    max_novelty="auto",
    memory: int | str | None = None,
) -> pd.Series:
    """Transfer cell-type labels from a labelled reference to query cells by k-NN on their embeddings.

    Each query cell takes the label with the largest summed cosine similarity among its ``k`` nearest
    reference cells (similarities below 1e-6 count as 1e-6, so every neighbour votes). A tie goes to the
    label of the nearest tied neighbour. By default the cosine is taken around the reference's mean embedding
    (``center``).

    A :class:`fastembed.Reference` or a reference folder (:mod:`fastembed.reference`) is accepted as
    ``reference_adata``: the query then may also be an AnnData without embeddings or a path of any input the
    reference's model encodes, ``label_key`` and ``embedding_key`` are the reference's, and the confidence is
    its calibrated one. A ``k`` or ``center`` other than the folder's is allowed (the novelty null is recomputed).

    Parameters
    ----------
    query_adata : anndata.AnnData or str or os.PathLike
        With embeddings in ``obsm[embedding_key]``; or a path to an on-disk ``.h5ad``/``.zarr`` AnnData, whose
        ``obsm[embedding_key]`` is read ``batch_cells`` rows at a time (nothing else but the obs index is read).
    reference_adata : anndata.AnnData or str or os.PathLike
        Embeddings of the same dimension in ``obsm[embedding_key]`` and labels in ``obs[label_key]``. Reference
        cells with a missing label or an all-zero embedding are left out (warning). A path (``.h5ad``, or the
        ``.zarr`` store that encode writes) is read without its ``X``: only obs and that embedding.
    embedding_key : str
        The ``obsm`` key (default ``"scembed_X"``).
    k : int
        Neighbours per query cell, 1 <= k <= number of usable reference cells.
    label_key : str
        Reference ``obs`` column with the labels.
    confidence_key : str, optional
        If given (e.g. ``"cell_type_confidence"``), the winning label's similarity-weighted vote share (float32
        in [0, 1]: the winner's summed neighbour similarity over that of all k neighbours, not the fraction of
        neighbours) is
        written to ``query_adata.obs[confidence_key]``. A query given as a path has no ``obs`` to write to: use
        :func:`annotate_celltypes_table`, which returns the labels and these columns as one DataFrame (this
        function still returns that DataFrame for a path query, with a DeprecationWarning).
    min_confidence : float, optional
        Query cells whose vote share is below this get ``unknown_label``.
    unknown_label : str
        Label for cells below ``min_confidence`` and for query cells whose embedding is all zeros. When such
        cells exist it must not be one of the reference's labels (ValueError, raised before anything is
        written), so that unassigned cells cannot pass for cells of that type.
    center : bool
        Subtract the mean embedding of the usable reference cells from query and reference before the cosine
        k-NN (default True). Mean-pooled region vectors share a large common component, which makes raw cosine
        similarities of all cells close to each other; measured around the reference centroid, the cosine
        compares what differs between cells. On granja2019 (bench/quality.py) this raises donor-transfer
        accuracy of fastembed embeddings by about 0.02 and macro-F1 by about 0.04. The same mean is used for
        the query, so query cells are placed in the reference's frame. False gives plain cosine.
    random_state, n_jobs
        For the pynndescent index (large problems only: more than ``settings.EXACT_SEARCH_PAIRS`` query x
        reference pairs over the whole query).
    batch_cells : int
        Most query cells per block (a multiple of ``settings.QUERY_BATCH`` = 1024): an upper bound; ``memory``
        may make blocks smaller (still multiples of 1024). Labels do not depend on it.
    client : dask.distributed.Client, optional
        Run each block as a task on the cluster (the fitted reference is sent to every worker once); same
        labels as without. Workers read a path query themselves, so it must be on a file system they see.
    novelty_key : str, optional
        If given (e.g. ``"cell_type_novelty"``), each cell's novelty score (float32 in [0, 1): how far the
        cell lies from the reference cells of its predicted type, :mod:`fastembed.annotation.novelty`) is written to
        ``query_adata.obs[novelty_key]`` (for a path query, see ``confidence_key``).
    max_novelty : float, None or "auto"
        Query cells whose novelty is above this get ``unknown_label`` (cells of types the reference lacks).
        ``"auto"`` (default): the reference folder's stored threshold for a :class:`fastembed.Reference` (see
        :data:`fastembed.annotation.novelty.DEFAULT_MAX_NOVELTY`), None (no novelty calls) for an AnnData reference.

    memory : int or str, optional
        Bytes one block of query cells may need (e.g. ``"512MB"``; default ``settings.MEMORY_BUDGET``): the rows
        read, their centred and normalised copies and their neighbours (:mod:`fastembed.common.budget`). The fitted
        reference and the labels come on top. Too small for 1024 query cells: a ValueError.

    Returns
    -------
    pandas.Series
        Categorical labels indexed by the query's obs names, named ``label_key``; categories are the
        reference's labels (plus ``unknown_label`` when used). (Deprecated: a path query with ``confidence_key``
        or ``novelty_key`` gives :func:`annotate_celltypes_table`'s DataFrame.)

    Raises
    ------
    ValueError
        Besides bad arguments and inputs (each message names the input, the field and what was expected): a
        query whose embedding is all zeros in every cell (nothing could be labelled), and an ``unknown_label``
        that is also a reference label when some cells would get it. Nothing is written to ``query_adata``.
    """
    labels, columns = _annotate_labels(
        query_adata,
        reference_adata,
        embedding_key,
        k,
        label_key=label_key,
        confidence_key=confidence_key,
        min_confidence=min_confidence,
        unknown_label=unknown_label,
        center=center,
        random_state=random_state,
        n_jobs=n_jobs,
        batch_cells=batch_cells,
        client=client,
        novelty_key=novelty_key,
        max_novelty=max_novelty,
        memory=memory,
    )
    if not columns:
        return labels
    if not hasattr(query_adata, "obs"):  # a path (or tokens): nowhere to write the columns to
        warn(
            "annotate_celltypes() with confidence_key= or novelty_key= on a query without obs (a path) returns a "
            "DataFrame, which is deprecated: call annotate_celltypes_table() for the labels with these columns; "
            "annotate_celltypes() will return only the labels (a Series)",
            DeprecationWarning,
        )
        return _table(labels, columns)
    for key, values in columns.items():
        query_adata.obs[key] = values
    return labels


def annotate_celltypes_table(
    query_adata,
    reference_adata,
    embedding_key: str = settings.EMBEDDING_KEY,
    k: int = 10,
    *,
    label_key: str = "cell_type",
    confidence_key: str = CONFIDENCE_COLUMN,
    min_confidence: float | None = None,
    unknown_label: str = "unknown",
    center: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    batch_cells: int = settings.ANNOTATE_BATCH_CELLS,
    client=None,
    novelty_key: str | None = None,
    max_novelty="auto",
    memory: int | str | None = None,
) -> pd.DataFrame:
    """:func:`annotate_celltypes`, with each cell's vote share (and novelty score) as columns of one table.

    Takes any query :func:`annotate_celltypes` takes (an AnnData, or a path that is read block by block) and
    writes nothing to it. The arguments are :func:`annotate_celltypes`'s, except ``confidence_key``: the name of
    the confidence column, always present.

    Returns
    -------
    pandas.DataFrame
        Indexed by the query's obs names, in their order. Columns: the labels (categorical, named by the
        reference's label column, ``label_key``), ``confidence_key`` (float32 in [0, 1]: the similarity-weighted
        vote share, or a reference folder's calibrated confidence) and, with ``novelty_key``, the novelty score
        (float32 in [0, 1]).
    """
    if not isinstance(confidence_key, str) or not confidence_key:
        raise ValueError(
            f"confidence_key must be a non-empty str (a column name), got {confidence_key!r}"[:300]
        )
    labels, columns = _annotate_labels(
        query_adata,
        reference_adata,
        embedding_key,
        k,
        label_key=label_key,
        confidence_key=confidence_key,
        min_confidence=min_confidence,
        unknown_label=unknown_label,
        center=center,
        random_state=random_state,
        n_jobs=n_jobs,
        batch_cells=batch_cells,
        client=client,
        novelty_key=novelty_key,
        max_novelty=max_novelty,
        memory=memory,
    )
    return _table(labels, columns)


def _table(labels: pd.Series, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({labels.name: labels, **columns}, index=labels.index)


def _annotate_labels(
    query_adata,
    reference_adata,
    embedding_key: str,
    k,
    *,
    label_key: str,
    confidence_key: str | None,
    min_confidence,
    unknown_label: str,
    center: bool,
    random_state,
    n_jobs,
    batch_cells,
    client,
    novelty_key: str | None,
    max_novelty,
    memory,
) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """The work of :func:`annotate_celltypes` and :func:`annotate_celltypes_table`, writing nothing: the labels
    (categorical Series indexed by the query's cell names, named by the label column) and the per-cell columns
    asked for, ``{confidence_key: float32 (n_cells,), novelty_key: float32 (n_cells,)}`` (only those not None)."""
    handler = _REFERENCE_HANDLER
    is_reference = handler is not None and handler.is_reference(reference_adata)
    wants_novelty = novelty_key is not None or not (
        max_novelty is None or (isinstance(max_novelty, str) and max_novelty == "auto")
    )
    if is_reference or wants_novelty:
        if handler is None:  # only a bare ``import fastembed.annotation.annotate`` misses the registration
            raise RuntimeError("reference folders and novelty scores need `import fastembed.reference` first")
        if novelty_key is not None and (not isinstance(novelty_key, str) or not novelty_key):
            raise ValueError(f"novelty_key must be a non-empty str or None, got {novelty_key!r}"[:300])
        if not is_reference:
            if not is_whole(k) or k < 1:
                raise ParameterError("k", "an integer >= 1", k)
            reference_adata = handler.from_anndata(
                reference_adata, label_key=label_key, embedding_key=embedding_key, k=int(k), center=center
            )
            if isinstance(max_novelty, str) and max_novelty == "auto":
                max_novelty = None
        return handler.annotate(
            query_adata,
            reference_adata,
            k=k,
            confidence_key=confidence_key,
            novelty_key=novelty_key,
            min_confidence=min_confidence,
            max_novelty=max_novelty,
            unknown_label=unknown_label,
            center=center,
            random_state=random_state,
            n_jobs=n_jobs,
            batch_cells=batch_cells,
            client=client,
        )
    # Checked by type first: int(None), int(nan) or a str compared with a float would escape as a bare error.
    if not is_whole(k) or k < 1:
        raise ParameterError("k", "an integer >= 1", k)
    if min_confidence is not None and not (is_number(min_confidence) and 0.0 <= min_confidence <= 1.0):
        raise ParameterError("min_confidence", "a number in [0, 1]", min_confidence, or_none=True)
    if not is_whole(batch_cells) or batch_cells < 1 or batch_cells % settings.QUERY_BATCH:
        raise ParameterError("batch_cells", f"a positive multiple of {settings.QUERY_BATCH}", batch_cells)
    if not isinstance(unknown_label, str):
        raise ValueError(f"unknown_label must be a str, got {unknown_label!r}"[:300])
    if confidence_key is not None and (not isinstance(confidence_key, str) or not confidence_key):
        raise ValueError(
            f"confidence_key must be a non-empty str (an obs column name) or None, got {confidence_key!r}"[
                :300
            ]
        )
    batch_cells = int(batch_cells)
    query = QueryEmbeddings(query_adata, embedding_key)
    if query.n_obs == 0:
        raise ValueError(f"{query.name} has no cells; expected cells with embeddings to label")
    fitted = fit_reference(
        reference_adata,
        n_query=query.n_obs,
        embedding_key=embedding_key,
        k=k,
        label_key=label_key,
        center=center,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    if query.dim != fitted.dim:
        raise ValueError(
            f"embedding dimensions differ: {query.name} obsm['{embedding_key}'] has {query.dim} dims, "
            f"{fitted.name} obsm['{embedding_key}'] has {fitted.dim}; expected equal dimensions (both "
            "from one model)"
        )
    spans = query_blocks(query.n_obs, query.dim, k, resolve_memory(memory), batch_cells, query.name)
    if client is None:
        parts = [predict(fitted, query.block(lo, hi), lo) for lo, hi in spans]
    else:
        parts = _predict_blocks(client, fitted, query, spans)
    winner = np.concatenate([p[0] for p in parts])
    confidence = np.concatenate([p[1] for p in parts])
    q_ok = np.concatenate([p[2] for p in parts])

    if not q_ok.any():
        # Nothing to label: every cell would come back unknown_label, which looks like a result. A zarr store whose
        # embedding chunks are missing also reads as zeros.
        raise ValueError(
            f"{query.name} obsm['{embedding_key}'] is all zeros in all {query.n_obs} cells (no cell has a trained "
            "token, or the stored embedding is missing); expected embeddings from encode"
        )
    categories = list(fitted.categories)
    predicted = np.asarray(categories, dtype=object)[winner]
    unknown = ~q_ok
    if unknown.any():
        warn(
            f"{int(unknown.sum())} cells of {query.name} have an all-zero obsm['{embedding_key}'] (no trained "
            f"token); labelled {unknown_label!r}",
        )
    if min_confidence is not None:
        unknown |= confidence < min_confidence
    if unknown.any():
        if unknown_label in categories:
            # The unassigned cells would be indistinguishable from cells predicted as that reference type.
            raise ValueError(
                f"unknown_label {unknown_label!r} is also a label in {fitted.name} obs['{label_key}'], and "
                f"{int(unknown.sum())} query cells would get it as unassigned; pass an unknown_label that is not "
                "a reference label"
            )
        predicted[unknown] = unknown_label
        categories = [*categories, unknown_label]
    labels = pd.Series(
        pd.Categorical(predicted, categories=categories), index=query.obs_names.copy(), name=label_key
    )
    return labels, ({} if confidence_key is None else {confidence_key: confidence})
