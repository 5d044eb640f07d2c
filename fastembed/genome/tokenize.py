"""Tokenization: each cell's open regions (peaks) -> the sorted, unique ids of the universe regions they overlap.

:func:`tokenize_cells` is the user-facing function; below it, numba kernels in two stages, so no work is
repeated per cell:

1. :func:`map_peaks` maps every peak (a column of the cells x peaks matrix) to the universe regions it
   overlaps, as a CSR ``peak -> tokens`` table. Queries run in parallel; each does two binary searches in
   the per-chromosome sorted universe (see :class:`fastembed.universe.SortedRegions`).
2. :func:`cells_to_tokens` turns each row of the cells x peaks CSR matrix into the sorted, unique token
   ids of its peaks, in parallel over cells.

Overlap rule (gtars): half-open intervals overlap when ``min(q.end, u.end) - max(q.start, u.start) >=
min_overlap``. That holds exactly when ``u.start <= q.end - m``, ``u.end >= q.start + m``, and both
intervals are at least ``m`` long.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import numba
import numpy as np
import pandas as pd

from fastembed import settings
from fastembed.common.budget import peak_matrix_blocks, resolve_memory
from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.common.inputs import TOKENIZE_ACCEPTS, refuse_fragments
from fastembed.common.warn import warn
from fastembed.genome.datauniverse import check_universe_fit
from fastembed.genome.readers import (
    _csr_rows,
    _style_hint,
    as_adata,
    cell_matrix,
    peak_coordinates,
    restyle_chroms,
)
from fastembed.genome.tokens import META_STATS, TokenizedCells
from fastembed.genome.universe import Universe, resolve_universe
from fastembed.settings import PARALLEL, SERIAL
from fastembed.storage.atomic import held_output

__all__ = ["cells_to_tokens", "map_peaks", "tokenize_cells", "tokenize_summary"]


@numba.njit(**SERIAL)
def _first_above(a, lo, hi, x):
    """First index i in [lo, hi) with a[i] > x (hi if none); ``a[lo:hi]`` must be non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] > x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(**SERIAL)
def _first_at_least(a, lo, hi, x):
    """First index i in [lo, hi) with a[i] >= x (hi if none); ``a[lo:hi]`` must be non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] >= x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(**SERIAL)
def _candidate_range(qs, qe, lo, hi, u_starts, u_max_end, m):
    """Slice [left, right) of sorted regions that can overlap [qs, qe) by >= m bp."""
    right = _first_above(u_starts, lo, hi, qe - m)
    left = _first_at_least(u_max_end, lo, right, qs + m)
    return left, right


@numba.njit(**PARALLEL)
def _count_hits(q_chrom, q_start, q_end, chrom_lo, chrom_hi, u_starts, u_ends, u_max_end, m):
    n = q_start.size
    counts = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        c = q_chrom[i]
        qs = q_start[i]
        qe = q_end[i]
        if c < 0 or qe - qs < m:
            continue
        left, right = _candidate_range(qs, qe, chrom_lo[c], chrom_hi[c], u_starts, u_max_end, m)
        k = 0
        for j in range(left, right):
            if u_ends[j] >= qs + m and u_ends[j] - u_starts[j] >= m:
                k += 1
        counts[i] = k
    return counts


@numba.njit(**PARALLEL)
def _fill_hits(
    q_chrom, q_start, q_end, chrom_lo, chrom_hi, u_starts, u_ends, u_max_end, u_token, m, offsets, out
):
    n = q_start.size
    for i in numba.prange(n):
        if offsets[i + 1] == offsets[i]:
            continue
        c = q_chrom[i]
        qs = q_start[i]
        qe = q_end[i]
        left, right = _candidate_range(qs, qe, chrom_lo[c], chrom_hi[c], u_starts, u_max_end, m)
        k = offsets[i]
        for j in range(left, right):
            if u_ends[j] >= qs + m and u_ends[j] - u_starts[j] >= m:
                out[k] = u_token[j]
                k += 1
        out[offsets[i] : k].sort()


def map_peaks(q_chrom, q_start, q_end, sorted_regions, min_overlap=1):
    """Map query intervals to the universe regions they overlap.

    Parameters
    ----------
    q_chrom : np.ndarray of int32, shape (n_peaks,)
        Chromosome code of each peak in the universe's ``chrom_names``; -1 if the universe lacks it.
    q_start, q_end : np.ndarray of int64, shape (n_peaks,)
        Half-open peak coordinates.
    sorted_regions : fastembed.universe.SortedRegions
        The universe's sorted view.
    min_overlap : int
        Minimum overlap in bp (>= 1).

    Returns
    -------
    offsets : np.ndarray of int64, shape (n_peaks + 1,)
    tokens : np.ndarray of int32, shape (offsets[-1],)
        Peak ``i`` maps to ``tokens[offsets[i]:offsets[i+1]]``, sorted ascending.
    """
    m = np.int64(min_overlap)
    s = sorted_regions
    args = (
        np.ascontiguousarray(q_chrom, dtype=np.int32),
        np.ascontiguousarray(q_start, dtype=np.int64),
        np.ascontiguousarray(q_end, dtype=np.int64),
        s.chrom_lo,
        s.chrom_hi,
        s.starts,
        s.ends,
        s.max_end,
    )
    counts = _count_hits(*args, m)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    tokens = np.empty(offsets[-1], dtype=np.int32)
    _fill_hits(*args, s.token, m, offsets, tokens)
    return offsets, tokens


@numba.njit(**PARALLEL)
def _cell_upper_bounds(x_indptr, x_indices, x_data, peak_offsets):
    """Per cell: tokens before dedup, nonzero entries, and nonzero entries on a peak that maps (the last two for
    the tokenize diagnostics, counted in this pass rather than by whole-block numpy masks)."""
    n_cells = x_indptr.size - 1
    upper = np.zeros(n_cells, dtype=np.int64)
    n_nonzero = np.zeros(n_cells, dtype=np.int64)
    n_mapped = np.zeros(n_cells, dtype=np.int64)
    for c in numba.prange(n_cells):
        k = 0
        nz = 0
        mp = 0
        for p in range(x_indptr[c], x_indptr[c + 1]):
            if x_data[p] != 0:
                col = x_indices[p]
                hits = peak_offsets[col + 1] - peak_offsets[col]
                k += hits
                nz += 1
                if hits > 0:
                    mp += 1
        upper[c] = k
        n_nonzero[c] = nz
        n_mapped[c] = mp
    return upper, n_nonzero, n_mapped


@numba.njit(**PARALLEL)
def _cell_collect(x_indptr, x_indices, x_data, peak_offsets, peak_tokens, buf_offsets, buf):
    """Gather each cell's tokens into its slice of ``buf``, sort and dedupe in place; return unique counts."""
    n_cells = x_indptr.size - 1
    n_unique = np.zeros(n_cells, dtype=np.int64)
    for c in numba.prange(n_cells):
        lo = buf_offsets[c]
        k = lo
        for p in range(x_indptr[c], x_indptr[c + 1]):
            if x_data[p] != 0:
                col = x_indices[p]
                for t in range(peak_offsets[col], peak_offsets[col + 1]):
                    buf[k] = peak_tokens[t]
                    k += 1
        if k == lo:
            continue
        # Peaks sorted by position over a position-ordered universe yield sorted tokens already:
        # a linear check skips the sort in that common case.
        ordered = True
        for j in range(lo + 1, k):
            if buf[j] <= buf[j - 1]:
                ordered = False
                break
        if not ordered:
            buf[lo:k].sort()
            w = lo + 1
            for j in range(lo + 1, k):
                if buf[j] != buf[w - 1]:
                    buf[w] = buf[j]
                    w += 1
            k = w
        n_unique[c] = k - lo
    return n_unique


@numba.njit(**PARALLEL)
def _compact(buf, buf_offsets, indptr, out):
    n_cells = indptr.size - 1
    for c in numba.prange(n_cells):
        lo = buf_offsets[c]
        n = indptr[c + 1] - indptr[c]
        out[indptr[c] : indptr[c] + n] = buf[lo : lo + n]


def cells_to_tokens(x_indptr, x_indices, x_data, peak_offsets, peak_tokens):
    """Turn a cells x peaks CSR matrix into each cell's sorted, unique token ids.

    Parameters
    ----------
    x_indptr : np.ndarray of int64, shape (n_cells + 1,)
    x_indices : np.ndarray of int32 or int64, shape (nnz,)
    x_data : np.ndarray, shape (nnz,)
        Stored values; explicit zeros are not regions of the cell.
    peak_offsets, peak_tokens
        The ``peak -> tokens`` table from :func:`map_peaks`.

    Returns
    -------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (indptr[-1],)
        Cell ``c`` holds ``indices[indptr[c]:indptr[c+1]]``, strictly increasing.
    """
    indptr, indices, _, _ = _tokens_counted(x_indptr, x_indices, x_data, peak_offsets, peak_tokens)
    return indptr, indices


def _tokens_counted(x_indptr, x_indices, x_data, peak_offsets, peak_tokens):
    """:func:`cells_to_tokens` and the block's nonzero entries, all and those on a peak that maps:
    ``(indptr, indices, n_counts, n_counts_in_universe)``."""
    x_indptr = np.ascontiguousarray(x_indptr, dtype=np.int64)
    upper, n_nonzero, n_mapped = _cell_upper_bounds(x_indptr, x_indices, x_data, peak_offsets)
    counts = int(n_nonzero.sum()), int(n_mapped.sum())
    buf_offsets = np.zeros(upper.size + 1, dtype=np.int64)
    np.cumsum(upper, out=buf_offsets[1:])
    buf = np.empty(buf_offsets[-1], dtype=np.int32)
    n_unique = _cell_collect(x_indptr, x_indices, x_data, peak_offsets, peak_tokens, buf_offsets, buf)
    if np.array_equal(n_unique, upper):
        return buf_offsets, buf, *counts
    indptr = np.zeros(upper.size + 1, dtype=np.int64)
    np.cumsum(n_unique, out=indptr[1:])
    out = np.empty(indptr[-1], dtype=np.int32)
    _compact(buf, buf_offsets, indptr, out)
    return indptr, out, *counts


# --------------------------------------------------------------------------------------------------
# AnnData -> tokens
# --------------------------------------------------------------------------------------------------
def _chrom_codes(peak_chroms: np.ndarray, uni: Universe, name: str, chrom_style: str = "asis") -> np.ndarray:
    given = peak_chroms
    peak_chroms = restyle_chroms(peak_chroms, chrom_style)
    lookup = {c: i for i, c in enumerate(uni.chrom_names)}
    codes_per_name = pd.Series(peak_chroms).map(lookup)
    codes = codes_per_name.fillna(-1).to_numpy(dtype=np.int32)
    unknown = codes < 0
    if unknown.all():
        peak_examples = ", ".join(repr(c) for c in pd.unique(peak_chroms)[:4])
        uni_examples = ", ".join(repr(c) for c in uni.chrom_names[:4])
        used = Keyword("chrom_style", chrom_style)
        styled = "" if chrom_style == "asis" else f" ({used})"
        advice, style = _style_hint(pd.unique(given), uni.chrom_names)
        raise HintedValueError(
            f"none of the peak chromosomes of {name}{styled} ({peak_examples}) occur in universe "
            f"'{uni.source}' ({uni_examples}): the two name chromosomes differently "
            f"(e.g. '1' vs 'chr1'); {advice}",
            keywords=(used, style),
        )
    if unknown.any():
        missing = pd.unique(peak_chroms[unknown])
        # Reached from tokenize_cells and from ScEmbed.encode at different depths: no fixed stacklevel fits.
        warn(
            f"{int(unknown.sum())} of {unknown.size} peaks of {name} lie on {missing.size} chromosomes absent "
            f"from universe '{uni.source}' ({', '.join(repr(c) for c in missing[:5])}"
            f"{', ...' if missing.size > 5 else ''}); they get no token"
        )
    return codes


def _warn_duplicate_names(barcodes: np.ndarray, name: str) -> None:
    """Warn when cell names repeat: every cell keeps its row, but joins by name downstream (``emb[adata.obs_names]``,
    annotation tables, ``adata.obs.loc``) cannot tell the copies apart."""
    names = pd.Index(barcodes)
    if names.is_unique:
        return
    dup = names[names.duplicated()].unique()
    warn(
        f"{int(names.duplicated().sum())} cell names of {name} repeat an earlier one (first: {str(dup[0])[:60]!r}); "
        "each cell keeps its row, but joining results back by name will be ambiguous: make them unique first "
        "(adata.obs_names_make_unique())",
    )


class PeakMapper:
    """The peaks of one AnnData mapped once to a universe; turns row blocks of its matrix into tokens.

    Parameters
    ----------
    adata : anndata.AnnData
        Cells x peaks (``var`` with coordinates, see :func:`peak_coordinates`).
    universe : Universe
    min_overlap : int
        Minimum overlap in bp (>= 1).
    name : str
        How messages name the AnnData.
    chrom_style : {"asis", "add-chr", "strip-chr"}
        How the peaks' chromosome names are matched to the universe's (:func:`restyle_chroms`).

    Attributes
    ----------
    peak_offsets : np.ndarray of int64, shape (n_peaks + 1,)
    peak_tokens : np.ndarray of int32
        Peak ``j`` maps to ``peak_tokens[peak_offsets[j]:peak_offsets[j+1]]``.
    n_peaks_unmapped, n_peaks_unknown_chrom : int
    n_counts, n_counts_in_universe : int
        Nonzero entries of the blocks passed to :meth:`tokens` so far, and those on a peak that maps.
    """

    def __init__(
        self,
        adata,
        universe: Universe,
        *,
        min_overlap: int = 1,
        name: str = "the AnnData",
        chrom_style: str = "asis",
    ):
        if isinstance(min_overlap, bool) or not isinstance(min_overlap, int | np.integer) or min_overlap < 1:
            raise ParameterError("min_overlap", "an integer >= 1 bp", min_overlap)
        if adata.n_obs == 0:
            raise ValueError(f"{name} has zero cells; nothing to tokenize")
        if adata.n_vars == 0:
            raise ValueError(f"{name} has zero peaks (var is empty); nothing to tokenize")
        self.universe = universe
        self.name = name
        chroms, starts, ends = peak_coordinates(adata, name=name)
        codes = _chrom_codes(chroms, universe, name, chrom_style)
        self.peak_offsets, self.peak_tokens = map_peaks(
            codes, starts, ends, universe.sorted_index, int(min_overlap)
        )
        self.n_peaks = int(adata.n_vars)
        self._mapped = np.diff(self.peak_offsets) > 0
        self.n_peaks_unmapped = int(np.count_nonzero(~self._mapped))
        self.n_peaks_unknown_chrom = int(np.count_nonzero(codes < 0))
        self.n_counts = 0
        self.n_counts_in_universe = 0

    def tokens(self, X, lo: int, hi: int, field: str = "X") -> tuple[np.ndarray, np.ndarray]:
        """Tokens of rows ``lo:hi`` of ``X`` (in memory or backed): ``(indptr int64, indices int32)``.

        ``field`` names the matrix in messages (e.g. ``"layers['counts']"``); NaN or inf values are an error.
        Also adds the block's nonzero entries to ``n_counts`` and those on a mapped peak to
        ``n_counts_in_universe``.
        """
        block = _csr_rows(X, lo, hi, f"{self.name}: {field}")
        indptr, indices, n_counts, n_in_universe = _tokens_counted(
            block.indptr, block.indices, block.data, self.peak_offsets, self.peak_tokens
        )
        self.n_counts += n_counts
        self.n_counts_in_universe += n_in_universe
        return indptr, indices


def tokenize_cells(
    adata,
    universe_file,
    output=None,
    *,
    min_overlap: int = 1,
    batch_cells: int = settings.TOKENIZE_BATCH_CELLS,
    overwrite: bool = False,
    layer: str | None = None,
    client=None,
    chrom_style: str = "asis",
    chunk_cells: int | None = None,
    memory: int | str | None = None,
):
    """Tokenize each cell's open regions against a universe.

    Parameters
    ----------
    adata : anndata.AnnData or str or os.PathLike
        Cells x peaks AnnData, or a path to an on-disk ``.h5ad`` or ``.zarr`` AnnData, read lazily
        ``batch_cells`` rows at a time (:class:`fastembed.readers.LazyAnnData`; bit-identical to the in-memory
        result). Its peaks come from
        ``var`` ``chr``/``start``/``end`` or ``var_names`` like ``chr1:100-200`` (or ``chr1-100-200``,
        ``chr1_100_200``). A cell's regions are its nonzero columns; values are not counts.
    universe_file : str or os.PathLike or Universe
        Universe BED file (optionally gzipped); line ``i`` is token ``i``.
    output : str or os.PathLike, optional
        Parquet path (ending in ``.parquet``). If given, the tokens are written there (atomically) and the path
        is returned.
    min_overlap : int
        Minimum overlap in bp between a peak and a universe region (half-open intervals; default 1: any
        overlap, as gtars does). A peak maps to every region it overlaps.
    batch_cells : int
        Most cells processed at a time (the same name as in :meth:`fastembed.ScEmbed.encode` and
        :func:`fastembed.annotate_celltypes`): an upper bound; ``memory`` cuts blocks of dense cells smaller.
    overwrite : bool
        Replace an existing ``output``, only if it is a token parquet file written by fastembed. ``output`` may
        never be the AnnData's file or the universe file (nor a folder holding them).
    layer : str, optional
        Read the cells x peaks values from ``adata.layers[layer]`` instead of ``adata.X`` (for files whose
        ``X`` is None or holds normalised values).
    client : dask.distributed.Client, optional
        Tokenize each block of ``batch_cells`` cells as a task on the cluster (the peak-to-token map is sent to
        every worker once; a path input is read by the workers, so it must be on a file system they see). Same
        result as without.
    chrom_style : {"asis", "add-chr", "strip-chr"}
        Match the peaks' chromosome names to the universe's as they are (default), with a ``chr`` prefix
        added (data ``1``, ``MT`` against a universe ``chr1``, ``chrM``) or removed (the reverse). Never
        guessed: names that match in no style are an error that suggests the style to pass.
    chunk_cells : int, optional
        The former name of ``batch_cells`` (version 0.2); still accepted, with a ``FutureWarning``.
    memory : int or str, optional
        Bytes one block may need (e.g. ``"512MB"``; default ``settings.MEMORY_BUDGET``): blocks are cut by the
        cells' nonzeros (:mod:`fastembed.budget`). With ``output``, tokens are written block by block, so memory
        stays within the budget plus the cell names; in memory, the returned tokens come on top. A cell that
        alone needs more is a ValueError before anything is read.

    Returns
    -------
    TokenizedCells or pathlib.Path
        In-memory tokens (``output=None``) or the parquet path. Every input cell keeps its row, in order,
        even with no token. Peaks that hit nothing are dropped and counted in ``stats``.
    """
    if chunk_cells is not None:
        warn(
            "tokenize_cells(chunk_cells=...) is now batch_cells=..., the name encode and annotate_celltypes use; "
            "chunk_cells will be removed in a later version",
            FutureWarning,
        )
        batch_cells = chunk_cells
    refuse_fragments(adata, "tokenize_cells", TOKENIZE_ACCEPTS)
    inputs = [adata, universe_file if not isinstance(universe_file, Universe) else universe_file.source]
    with held_output(
        output, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet"
    ) as out_path:
        return _tokenize_cells(
            adata,
            universe_file,
            out_path,
            min_overlap,
            batch_cells,
            overwrite,
            inputs,
            layer,
            client,
            chrom_style,
            memory,
        )


def _tokenize_cells(
    adata,
    universe_file,
    out_path,
    min_overlap,
    batch_cells,
    overwrite,
    inputs,
    layer,
    client,
    chrom_style,
    memory=None,
):
    restyle_chroms([], chrom_style)  # a bad style is refused before any file is read
    uni = resolve_universe(universe_file)
    if isinstance(batch_cells, bool) or int(batch_cells) != batch_cells or batch_cells < 1:
        raise ParameterError("batch_cells", "an integer >= 1", batch_cells)
    batch_cells = int(batch_cells)
    source = adata
    adata, name = as_adata(adata)
    matrix, field_name = cell_matrix(adata, layer, name=name)
    mapper = PeakMapper(adata, uni, min_overlap=min_overlap, name=name, chrom_style=chrom_style)
    if mapper.n_peaks_unmapped == mapper.n_peaks:
        # Raised here, not at training ("empty dataset"), where the cause is no longer visible.
        hints = (Keyword("min_overlap", min_overlap), Keyword("min_overlap"))
        raise HintedValueError(
            f"none of the {mapper.n_peaks} peaks of {name} overlaps a region of universe '{uni.source}' by at "
            f"least {hints[0]} bp ({mapper.n_peaks_unknown_chrom} lie on chromosomes the universe "
            f"lacks): lower {hints[1]} or check that the peaks and the universe use the same genome build",
            keywords=hints,
        )
    spans = peak_matrix_blocks(matrix, mapper, resolve_memory(memory), batch_cells, name)
    if client is None:
        parts = (mapper.tokens(matrix, lo, hi, field_name) for lo, hi in spans)
    else:
        if layer is not None:
            hint = Keyword("layer")
            raise HintedValueError(
                f"{hint} is not supported with client=; store the counts in X for Dask tokenizing",
                keywords=(hint,),
            )
        parts = _tokenize_blocks(client, adata, source, mapper, spans)
    if out_path is not None:
        return _stream_tokens(adata, uni, mapper, parts, spans, out_path, overwrite, inputs, name, memory)
    indptr_parts, index_parts = [np.zeros(1, dtype=np.int64)], []
    total = 0
    for ip, ix in parts:
        indptr_parts.append(ip[1:] + total)
        index_parts.append(ix)
        total += int(ip[-1])
    indptr = np.concatenate(indptr_parts)
    indices = np.concatenate(index_parts)
    stats = _tokenize_stats(adata, uni, mapper, np.diff(indptr), name)
    barcodes = np.asarray(adata.obs_names, dtype=object)
    _warn_duplicate_names(barcodes, name)
    return TokenizedCells(indptr, indices, barcodes, uni, stats)


def _tokenize_task(payload: tuple, mapper):
    """One Dask task: the tokens of one block (:func:`fastembed.genome.blocks.block_tokens`) and the entries
    counted for the tokenize diagnostics, ``(indptr, indices, n_counts, n_counts_in_universe)``."""
    from fastembed.genome.blocks import block_tokens

    # A shallow copy with its own counters: the entries counted are this block's alone, whatever else the
    # worker runs on its copy of the mapper.
    local = copy.copy(mapper)
    local.n_counts = local.n_counts_in_universe = 0
    ip, ix = block_tokens(payload, local)
    return ip, ix, local.n_counts, local.n_counts_in_universe


def _tokenize_blocks(client, adata, source, mapper, spans) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Token blocks of every cell of ``adata``, each block ``(lo, hi)`` of ``spans`` a Dask task, yielded in cell
    order as ``(indptr int64, indices int32)`` (what :meth:`PeakMapper.tokens` gives for each block). At most
    two blocks per worker slot are in flight and the driver holds the one being consumed, so writing to parquet
    streams (the driver does not gather every block). Workers read an ``.h5ad``/``.zarr`` ``source``
    themselves; an in-memory one travels block by block. The blocks' entry counts are added to
    ``mapper.n_counts`` and ``mapper.n_counts_in_universe`` as they come."""
    from fastembed.backends.dask import map_blocks
    from fastembed.genome.blocks import source_path, x_payload

    path = source_path(source)
    payloads = (x_payload(adata, path, lo, hi) for lo, hi in spans)
    slots = max(1, sum(client.nthreads().values()))
    for _, (ip, ix, n_counts, n_in_universe) in map_blocks(
        client, _tokenize_task, payloads, shared=(mapper,), window=2 * slots
    ):
        mapper.n_counts += n_counts  # the caller's mapper reports the whole dataset, as in the serial path
        mapper.n_counts_in_universe += n_in_universe
        yield ip, ix


def _stream_tokens(adata, uni, mapper, parts, spans, out_path, overwrite, inputs, name, memory):
    """Write the token blocks to ``out_path`` as they come (one block in memory), then the stats."""
    from fastembed.genome.tokenstream import TokenParquetStream

    barcodes = np.asarray(adata.obs_names, dtype=object)
    _warn_duplicate_names(barcodes, name)
    lengths = np.empty(adata.n_obs, dtype=np.int64)
    with TokenParquetStream(out_path, uni, overwrite=overwrite, inputs=inputs, memory=memory) as stream:
        for (lo, hi), (ip, ix) in zip(spans, parts, strict=True):
            lengths[lo:hi] = np.diff(ip)
            stream.append(ip, ix, barcodes[lo:hi])
        # Raised inside the stream: an error here leaves no file (the temporary is deleted).
        stats = _tokenize_stats(adata, uni, mapper, lengths, name)
        return stream.close({META_STATS: json.dumps(stats).encode()})


def _tokenize_stats(adata, uni, mapper, lengths: np.ndarray, name: str) -> dict:
    """The tokenize diagnostics from the tokens per cell; an error if no cell has a token."""
    n_empty = int(np.count_nonzero(lengths == 0))
    if n_empty == lengths.size:
        raise ValueError(
            f"no cell of {name} has a token in universe '{uni.source}': the {adata.n_obs} cells have no nonzero "
            f"entry on the {mapper.n_peaks - mapper.n_peaks_unmapped} peaks that overlap a region; check the "
            "matrix (cells x peaks) and the universe"
        )
    stats = {
        "n_cells": int(adata.n_obs),
        "n_tokens": int(lengths.sum()),
        "n_peaks": mapper.n_peaks,
        "n_peaks_unmapped": mapper.n_peaks_unmapped,
        "n_peaks_unknown_chrom": mapper.n_peaks_unknown_chrom,
        "fraction_peaks_in_universe": 1 - mapper.n_peaks_unmapped / mapper.n_peaks,
        "n_counts": mapper.n_counts,
        "n_counts_in_universe": mapper.n_counts_in_universe,
        "fraction_counts_in_universe": mapper.n_counts_in_universe / max(mapper.n_counts, 1),
        "n_empty_cells": n_empty,
        "n_few_token_cells": int(np.count_nonzero((lengths > 0) & (lengths < settings.FEW_TOKENS))),
        "few_tokens": settings.FEW_TOKENS,
        "median_tokens_per_cell": float(np.median(lengths)),
    }
    # In Python as on the command line: a universe that misses much of the data costs quality silently.
    check_universe_fit(stats, name, uni.source)
    if n_empty:
        warn(
            f"{n_empty} of {adata.n_obs} cells of {name} have no token in universe '{uni.source}' "
            "(their peaks overlap no region); they keep their rows with an empty token list",
        )
    return stats


def tokenize_summary(stats: dict) -> str:
    """The tokenize diagnostics of ``stats`` (:attr:`TokenizedCells.stats`) as one line for people."""
    counts = (
        ""
        if stats.get("n_counts") is None
        else f" and {stats['n_counts_in_universe']} of {stats['n_counts']} counts "
        f"({100 * stats['fraction_counts_in_universe']:.1f}%)"
    )
    return (
        f"{stats['n_peaks'] - stats['n_peaks_unmapped']} of {stats['n_peaks']} peaks "
        f"({100 * stats['fraction_peaks_in_universe']:.1f}%){counts} in the universe; "
        f"{stats['n_empty_cells']} of {stats['n_cells']} cells with no token, {stats['n_few_token_cells']} "
        f"with fewer than {stats['few_tokens']}; median {stats['median_tokens_per_cell']:g} tokens per cell"
    )
