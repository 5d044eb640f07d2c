"""The memory budget: how many cells one block of a streaming step may hold, cut by nonzeros, not by cells.

Every streaming step (tokenizing an AnnData, encoding, annotating a query, tokenizing fragments, the Dask tasks,
writing and sampling token files) reads, converts and writes its cells a block at a time. A block's memory
follows its nonzeros (a cell with 10,000 open regions weighs a thousand times one with 10), so blocks are cut
here by a cumulative search over the rows' ``indptr``: a block ends where the bytes it needs would pass the
budget. What a block needs is a linear model, ``bytes = nnz * per_nnz + cells * per_cell``, whose two costs
each step states (what it reads, the token arrays it makes, the block of output it fills, and the previous
block's arrays still alive while the next one is read: double buffering).

The budget is one setting, :data:`fastembed.settings.MEMORY_BUDGET` (bytes), overridden per call by the
``memory=`` keyword and on the command line by ``--memory``; both accept bytes or a string like ``"512MB"``
or ``"2GiB"``. It bounds the blocks only: the model's vectors and the outputs that are returned in memory
(an in-memory embedding matrix, tokens returned as :class:`fastembed.TokenizedCells`) come on top of it.

A cell that alone needs more than the budget is a ``ValueError`` raised before anything is read or written
(it names the cell, its nonzeros, the bytes it needs and the budget): a budget is a promise, and a block that
silently exceeded it would break it exactly when the machine is short of memory.
"""

from __future__ import annotations

import re

import numpy as np

from fastembed import settings
from fastembed.common.errors import HintedValueError, Keyword

__all__ = [
    "parse_memory",
    "resolve_memory",
    "cell_blocks",
    "aligned_chunk",
    "row_pointer",
    "format_bytes",
    "peak_matrix_blocks",
    "plan_blocks",
    "query_blocks",
    "fragment_limits",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_memory(value, what: str = "memory") -> int:
    """Bytes from an int or a string like ``"1GB"``, ``"512 MB"``, ``"2GiB"`` or ``"1e9"``.

    Parameters
    ----------
    value : int or str
        A positive number of bytes; strings take the decimal units B, KB, MB, GB, TB (and K, M, G, T) or the
        binary KiB, MiB, GiB, TiB, in any case.
    what : str
        How messages name the value (``"memory"``, ``"--memory"``).

    Returns
    -------
    int
        The budget in bytes, >= 1.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes or a size like '1GB', got {value!r}")
    if isinstance(value, int | np.integer):
        number, unit = float(value), ""
    elif isinstance(value, float | np.floating):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(
                f"{what} must be a number of bytes or a size like '1GB', '512MB' or '2GiB', got {value!r}"[
                    :300
                ]
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(f"{what} must be a number of bytes or a size like '1GB', got {type(value).__name__}")
    size = number * _UNITS[unit]
    if not np.isfinite(size) or size < 1:
        raise ValueError(f"{what} must be at least 1 byte, got {value!r}"[:300])
    return int(size)


def resolve_memory(memory) -> int:
    """The budget in bytes: ``memory`` if given (see :func:`parse_memory`), else ``settings.MEMORY_BUDGET``."""
    return parse_memory(settings.MEMORY_BUDGET if memory is None else memory)


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``"1.07 GB"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def row_pointer(matrix) -> np.ndarray | None:
    """The CSR row pointer (int64, n_rows + 1) of an in-memory or on-disk matrix, without reading its values.

    An in-memory scipy CSR matrix gives its ``indptr``; an on-disk CSR group (anndata's backed sparse dataset)
    reads only its ``indptr`` array (8 bytes a cell: the index of the output, not a block). Anything else (a
    dense or CSC matrix) has no row pointer: None, and its blocks are cut by cells at the cost of a dense row.
    """
    import scipy.sparse as sp

    if sp.issparse(matrix):
        return np.asarray(matrix.indptr, dtype=np.int64) if matrix.format == "csr" else None
    fmt = getattr(matrix, "format", None)
    group = getattr(matrix, "group", None)
    if fmt == "csr" and group is not None and "indptr" in group:
        return np.asarray(group["indptr"][:], dtype=np.int64)
    return None


def _costs(indptr: np.ndarray, per_nnz: int, per_cell: int) -> np.ndarray:
    """Cumulative bytes before each cell: ``cost[hi] - cost[lo]`` is what cells lo:hi need."""
    cells = np.arange(indptr.size, dtype=np.int64)
    return (indptr - indptr[0]) * np.int64(per_nnz) + cells * np.int64(per_cell)


def _too_small(indptr, costs, budget: int, what: str) -> None:
    need = np.diff(costs)
    worst = int(np.argmax(need))
    if need.size and need[worst] > budget:
        nnz = int(indptr[worst + 1] - indptr[worst])
        hint = Keyword("memory")
        raise HintedValueError(
            f"memory budget {format_bytes(budget)} is too small for one cell of {what}: cell {worst} holds "
            f"{nnz} nonzeros, which need about {format_bytes(int(need[worst]))} in one block; pass a larger "
            f"{hint} (or --memory), e.g. {format_bytes(max(int(need[worst]) * 64, 64 << 20))}",
            keywords=(hint,),
        )


def cell_blocks(
    indptr: np.ndarray | None,
    n_cells: int,
    *,
    budget: int,
    per_nnz: int,
    per_cell: int,
    max_cells: int | None = None,
    multiple: int = 1,
    what: str = "the cells",
) -> list[tuple[int, int]]:
    """Cut ``range(n_cells)`` into blocks that each need at most ``budget`` bytes.

    Parameters
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,), or None
        The rows' CSR pointer (only differences are used, so a slice of a larger pointer works). None: every
        cell costs ``per_cell`` alone (dense rows, or embeddings).
    n_cells : int
    budget : int
        Bytes one block may need.
    per_nnz, per_cell : int
        Bytes a block needs per nonzero (or token) and per cell.
    max_cells : int, optional
        No block holds more cells than this (the ``batch_cells`` upper bound).
    multiple : int
        Every block but the last holds a multiple of this many cells (annotate's query pieces, zarr chunks).
    what : str
        How the error names the cells.

    Returns
    -------
    list of (lo, hi)
        Consecutive, covering ``range(n_cells)``; empty for no cells.

    Raises
    ------
    ValueError
        One cell (or, with ``multiple``, one group of ``multiple`` cells) needs more than ``budget``.
    """
    if n_cells == 0:
        return []
    if indptr is None:
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    if indptr.size != n_cells + 1:
        raise ValueError(f"{what}: row pointer of {indptr.size} entries for {n_cells} cells")
    costs = _costs(indptr, per_nnz, per_cell)
    _too_small(indptr, costs, budget, what)
    cap = n_cells if max_cells is None else max(int(max_cells), 1)
    spans, lo = [], 0
    while lo < n_cells:
        fits = int(np.searchsorted(costs, costs[lo] + budget, side="right")) - 1
        hi = min(fits, lo + cap, n_cells)
        if hi < n_cells and multiple > 1:
            hi = lo + (hi - lo) // multiple * multiple
            if hi == lo:
                hint = Keyword("memory")
                raise HintedValueError(
                    f"memory budget {format_bytes(budget)} is too small for {multiple} cells of {what} "
                    f"(cells {lo}:{lo + multiple} need {format_bytes(int(costs[min(lo + multiple, n_cells)] - costs[lo]))}); "
                    f"pass a larger {hint} (or --memory)",
                    keywords=(hint,),
                )
        spans.append((lo, hi))
        lo = hi
    return spans


def aligned_chunk(
    indptr: np.ndarray | None,
    n_cells: int,
    *,
    budget: int,
    per_nnz: int,
    per_cell: int,
    start: int,
    what: str,
) -> int:
    """The largest chunk length, ``start`` halved as often as needed, whose every aligned chunk fits the budget.

    Encoding to zarr writes whole chunks (a Dask task rewrites exactly its own chunks when retried), so its
    blocks must start and end on chunk boundaries; this picks the chunk. Raises the too-small error of
    :func:`cell_blocks` when not even one cell fits.
    """
    if n_cells == 0:
        return max(int(start), 1)
    if indptr is None:
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    costs = _costs(indptr, per_nnz, per_cell)
    _too_small(indptr, costs, budget, what)
    chunk = max(min(int(start), n_cells), 1)
    while chunk > 1:
        edges = np.append(np.arange(0, n_cells, chunk), n_cells)
        if int(np.diff(costs[edges]).max()) <= budget:
            break
        chunk //= 2
    return chunk


# --------------------------------------------------------------------------------------------------
# What one block of each step needs
# --------------------------------------------------------------------------------------------------
TOKEN_BYTES = 4
"""A token id (int32)."""

POINTER_BYTES = 8
"""One entry of a CSR row pointer (int64)."""


def peak_block_costs(matrix, tokens_per_nnz: float, out_per_cell: int = 0) -> tuple[int, int]:
    """(per_nnz, per_cell) bytes of one block of a cells x peaks matrix turned into tokens (and pooled).

    Per nonzero: the block's values and column ids as read, once more for the copy a reader makes on the way
    (h5py/zarr into anndata's CSR), three byte masks of the tokenize diagnostics, and the tokens: the
    kernel's buffer and its compacted copy, plus the previous block's tokens still referenced while the next
    block is read (double buffering); ``tokens_per_nnz`` is the mean number of universe regions a peak maps
    to. Per cell: the row pointers of the block and of its tokens (twice, as the tokens), and
    ``out_per_cell`` bytes of output held for the block, twice (the block filled and the copy being written).
    A dense matrix (no row pointer) costs its whole row per cell.
    """
    data_size = int(getattr(getattr(matrix, "dtype", None), "itemsize", 8) or 8)
    index_size = 4
    idx = getattr(matrix, "indices", None)
    if idx is not None and hasattr(idx, "dtype"):
        index_size = int(idx.dtype.itemsize)
    group = getattr(matrix, "group", None)
    if group is not None and "indices" in group:
        index_size = int(group["indices"].dtype.itemsize)
    tokens = int(np.ceil(3 * TOKEN_BYTES * max(float(tokens_per_nnz), 1.0)))
    per_nnz = 2 * (data_size + index_size) + 3 + tokens
    per_cell = 4 * POINTER_BYTES + 2 * int(out_per_cell)
    if row_pointer_cheap(matrix) is False:
        # Dense rows: every column is read, whatever its value.
        per_cell += 2 * data_size * int(matrix.shape[1])
    return per_nnz, per_cell


def row_pointer_cheap(matrix) -> bool:
    """Whether ``matrix`` is CSR (its blocks can be cut by nonzeros); False for dense or CSC."""
    import scipy.sparse as sp

    if sp.issparse(matrix):
        return matrix.format == "csr"
    return getattr(matrix, "format", None) == "csr"


def token_block_costs(out_per_cell: int = 0) -> tuple[int, int]:
    """(per_nnz, per_cell) bytes of one block of tokens already in memory (views) and its output."""
    return TOKEN_BYTES, 2 * POINTER_BYTES + 2 * int(out_per_cell)


def row_group_tokens(budget: int) -> int:
    """Most tokens in one row group of a token parquet file, so that reading one back (arrow's list column,
    its offsets and values, the CSR copy and the rows kept of it: ~4 copies of int32) fits ``budget``."""
    return int(max(min(settings.ROW_GROUP_TOKENS, budget // (4 * TOKEN_BYTES)), 1))


def plan_blocks(
    indptr: np.ndarray | None,
    n_cells: int,
    *,
    budget: int,
    per_nnz: int,
    per_cell: int,
    max_cells: int | None,
    chunked: bool,
    what: str,
) -> tuple[list[tuple[int, int]], int]:
    """(blocks, chunk): :func:`cell_blocks`, and with ``chunked`` blocks made of whole chunks of the length
    :func:`aligned_chunk` picks (at most ``max_cells``); without, ``chunk`` is the longest block."""
    chunk = 1
    if chunked:
        start = n_cells if max_cells is None else max_cells
        chunk = aligned_chunk(
            indptr, n_cells, budget=budget, per_nnz=per_nnz, per_cell=per_cell, start=start, what=what
        )
    spans = cell_blocks(
        indptr,
        n_cells,
        budget=budget,
        per_nnz=per_nnz,
        per_cell=per_cell,
        max_cells=max_cells,
        multiple=chunk,
        what=what,
    )
    if not chunked:
        chunk = max((hi - lo for lo, hi in spans), default=1)
    return spans, chunk


def peak_matrix_blocks(
    matrix,
    mapper,
    budget: int,
    max_cells: int | None,
    name: str,
    *,
    out_per_cell: int = 0,
    chunked: bool = False,
) -> list[tuple[int, int]] | tuple[list[tuple[int, int]], int]:
    """Blocks of a cells x peaks matrix (in memory or on disk) for tokenizing (and pooling) within ``budget``.

    ``mapper`` is the peak-to-token map (:class:`fastembed.tokenize.PeakMapper`): its mean regions per mapped
    peak scale the token arrays. Returns the blocks; with ``chunked``, ``(blocks, chunk)`` as
    :func:`plan_blocks` gives them (each block whole chunks, for zarr).
    """
    n_mapped = max(mapper.n_peaks - mapper.n_peaks_unmapped, 1)
    per_nnz, per_cell = peak_block_costs(matrix, mapper.peak_tokens.size / n_mapped, out_per_cell)
    spans, chunk = plan_blocks(
        row_pointer(matrix),
        int(matrix.shape[0]),
        budget=budget,
        per_nnz=per_nnz,
        per_cell=per_cell,
        max_cells=max_cells,
        chunked=chunked,
        what=f"{name} (cells x peaks)",
    )
    return (spans, chunk) if chunked else spans


def query_blocks(
    n_cells: int, dim: int, k: int, budget: int, max_cells: int | None, name: str
) -> list[tuple[int, int]]:
    """Blocks of query cells for annotation within ``budget``, each a multiple of ``settings.QUERY_BATCH``.

    Per cell: the embedding as read (up to float64) and its centred and normalised float32 copies, the ``k``
    neighbours' ids and similarities of the search and of the vote, and the cell's label, vote share and flag.
    """
    per_cell = dim * (8 + 4 + 4) + k * 2 * (8 + 4) + 16
    return cell_blocks(
        None,
        n_cells,
        budget=budget,
        per_nnz=0,
        per_cell=per_cell,
        max_cells=max_cells,
        multiple=settings.QUERY_BATCH,
        what=f"{name} (query cells)",
    )


PAIR_BYTES = 32
"""A pending (cell, token) pair of a fragments file: two int32 in the pending lists, their concatenated copies
and the sort that folds them into the result."""


def fragment_limits(budget: int, block_size: int) -> tuple[int, int]:
    """(block_size, fold_pairs) for tokenizing a fragments file within ``budget``: a parsed text block of at
    most a sixteenth of the budget (arrow's columns and the parsed arrays hold ~8 times the text), the rest
    for pending pairs (``settings.FOLD_PAIRS`` at most: folding sooner costs little)."""
    block_size = max(min(int(block_size), budget // 16), 1024)
    pairs = (budget - 8 * block_size) // PAIR_BYTES
    return block_size, int(max(min(settings.FOLD_PAIRS, pairs), 1 << 12))
