"""The token dataset used for training: :class:`TokenizedCells` loaded from a file, optionally sampled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed.common.errors import ParameterError
from fastembed.genome.tokens import (
    TokenizedCells,
    barcodes_column,
    open_tokens_parquet,
    read_tokens_parquet,
    read_tokens_table,
    tokens_csr,
)
from fastembed.genome.universe import Universe

__all__ = ["Region2VecDataset"]


class Region2VecDataset(TokenizedCells):
    """Tokenized cells as CSR arrays, loaded from a token parquet file or a :class:`TokenizedCells`.

    A :class:`TokenizedCells` itself (``len()``, ``dataset[i]``, ``indptr``, ``indices``, ``barcodes``,
    ``universe``, ``n_tokens``, ``vocab_size``, ``stats``), made by its loading constructor, plus where the
    data came from and what share of it a sample kept.

    Parameters
    ----------
    path_or_tokenized : str, os.PathLike or TokenizedCells
        A parquet file written by :func:`fastembed.io.tokenize_cells` (or by gtars, with ``universe=``),
        a folder of such parquet parts, or tokens already in memory (a ``Region2VecDataset`` keeps its
        ``source``, ``path`` and ``sample_info``). A folder's ``*.parquet`` files are
        read in sorted name order (``part-0.parquet`` sorts before ``part-1.parquet``; zero-pad numbers
        so that ``part-10`` does not sort before ``part-2``) and concatenated; files whose names start
        with ``.`` or ``_`` and subfolders are skipped. All parts must hold the same universe; if they
        do not, it is a ValueError naming two of them.
    universe : str, os.PathLike or Universe, optional
        For parquet files that do not carry their universe. For files that do, it must be the same
        universe (same regions in the same order), else a ValueError names both.
    sample_cells : int, optional
        Keep a random sample of this many cells (for data larger than memory: region vectors converge on a
        sample, and every cell can be encoded afterwards). A parquet file is read one row group at a time and
        each row group gives cells in proportion to its size (largest remainders), chosen without replacement
        and kept in file order, so peak memory is the sample plus one row group. In-memory tokens are
        stratified the same way over blocks of ``settings.ROW_GROUP_CELLS`` cells. ``None`` or a number >= the
        cell count keeps every cell. ``sample_info`` says what fraction of cells and tokens was kept, and
        :meth:`fastembed.ScEmbed.train` copies it into ``training_info``.
    seed : int, optional
        Seed of the sample (numpy ``default_rng``); the same seed and file give the same cells.

    Attributes
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (n_tokens,)
        Cell ``i`` holds tokens ``indices[indptr[i]:indptr[i+1]]``.
    barcodes : np.ndarray of str (object), shape (n_cells,)
    universe : Universe
    stats : dict
        As :attr:`TokenizedCells.stats` (a sample holds only ``n_cells`` and ``n_tokens``).
    source : str
        Where the data came from (for messages).
    path : pathlib.Path or None
        The parquet file read, if any (outputs may not replace it).
    sample_info : dict
        ``n_cells_total``, ``n_tokens_total`` (of the whole input), ``fraction_cells_seen``,
        ``fraction_tokens_seen`` (of those, in this dataset; 1.0 without ``sample_cells``) and ``sample_seed``.

    Notes
    -----
    The parquet list column is read through pyarrow's buffers into two numpy arrays; no Python object is
    created per cell or per token. Made from tokens in memory, the dataset shares their arrays (no copy).
    """

    def __init__(
        self,
        path_or_tokenized,
        *,
        universe: str | os.PathLike | Universe | None = None,
        sample_cells: int | None = None,
        seed: int | None = None,
    ):
        if sample_cells is not None and (
            isinstance(sample_cells, bool) or int(sample_cells) != sample_cells or sample_cells < 1
        ):
            raise ParameterError("sample_cells", "an integer >= 1", sample_cells, or_none=True)
        if seed is not None and (isinstance(seed, bool) or int(seed) != seed or seed < 0):
            raise ParameterError("seed", "a non-negative integer", seed, or_none=True)
        sample_info = None
        if isinstance(path_or_tokenized, str | os.PathLike):
            self.source = f"'{Path(path_or_tokenized)}'"
            self.path = Path(path_or_tokenized)
            if sample_cells is not None:
                # Row group by row group: the whole file is never in memory.
                tok, sample_info = _sample_parquet(self.path, int(sample_cells), seed, universe)
            else:
                tok = read_tokens_parquet(path_or_tokenized, universe=universe)
        elif isinstance(path_or_tokenized, TokenizedCells):
            tok = path_or_tokenized
            self.source = getattr(tok, "source", "tokenized cells in memory")
            self.path = getattr(tok, "path", None)
            if sample_cells is not None:
                tok, sample_info = _sample_tokens(tok, int(sample_cells), seed)
            else:
                sample_info = getattr(tok, "sample_info", None)
        else:
            raise TypeError(
                "Region2VecDataset takes a token parquet path or TokenizedCells, "
                f"got {type(path_or_tokenized).__name__}"
            )
        super().__init__(tok.indptr, tok.indices, tok.barcodes, tok.universe, tok.stats)
        self.sample_info = dict(sample_info or _full_info(tok))

    def __repr__(self) -> str:
        return (
            f"Region2VecDataset({len(self)} cells, {self.n_tokens} tokens, vocab_size={self.vocab_size}, "
            f"from {self.source})"
        )


def _full_info(tok: TokenizedCells) -> dict:
    return {
        "n_cells_total": len(tok),
        "n_tokens_total": tok.n_tokens,
        "fraction_cells_seen": 1.0,
        "fraction_tokens_seen": 1.0,
        "sample_seed": None,
    }


def _group_quota(sizes: np.ndarray, n: int) -> np.ndarray:
    """Cells to draw from each group: proportional to its size, rounded by largest remainders to sum to n."""
    exact = sizes * (n / sizes.sum())
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    if short:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    return np.minimum(quota, sizes)


def _gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the given rows (sorted) of a CSR token matrix, without a Python loop over cells."""
    lengths = indptr[rows + 1] - indptr[rows]
    out_ptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    at = np.arange(out_ptr[-1], dtype=np.int64) - np.repeat(out_ptr[:-1] - indptr[rows], lengths)
    return out_ptr, indices[at]


def _info(n_total: int, t_total: int, n: int, t: int, seed) -> dict:
    return {
        "n_cells_total": int(n_total),
        "n_tokens_total": int(t_total),
        "fraction_cells_seen": n / max(n_total, 1),
        "fraction_tokens_seen": t / max(t_total, 1),
        "sample_seed": seed,
    }


def _sample_tokens(tok: TokenizedCells, n: int, seed) -> tuple[TokenizedCells, dict]:
    n_total = len(tok)
    if n >= n_total:
        return tok, _info(n_total, tok.n_tokens, n_total, tok.n_tokens, seed)
    rng = np.random.default_rng(seed)
    starts = np.arange(0, n_total, settings.ROW_GROUP_CELLS)
    sizes = np.diff(np.append(starts, n_total))
    rows = np.concatenate(
        [
            lo + np.sort(rng.choice(size, q, replace=False))
            for lo, size, q in zip(starts, sizes, _group_quota(sizes, n), strict=True)
        ]
    )
    indptr, indices = _gather_rows(tok.indptr, tok.indices, rows)
    sample = TokenizedCells(
        indptr,
        indices,
        np.asarray(tok.barcodes, dtype=object)[rows],
        tok.universe,
        {"n_cells": int(rows.size), "n_tokens": int(indptr[-1])},
    )
    return sample, _info(n_total, tok.n_tokens, rows.size, int(indptr[-1]), seed)


def _sample_parquet(path: Path, n: int, seed, universe) -> tuple[TokenizedCells, dict]:
    pfile, uni = open_tokens_parquet(path, universe=universe)
    meta = pfile.metadata
    sizes = np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], dtype=np.int64)
    n_total = int(sizes.sum())
    if n_total == 0:
        raise ValueError(f"token file '{path}' holds no cells to sample")
    quota = _group_quota(sizes, min(n, n_total))
    rng = np.random.default_rng(seed)
    has_barcode = "barcode" in pfile.schema_arrow.names
    ptr_parts, idx_parts, bc_parts = [np.zeros(1, dtype=np.int64)], [], []
    t_total = kept_tokens = 0
    offset = 0
    for g, (size, q) in enumerate(zip(sizes, quota, strict=True)):
        table = read_tokens_table(pfile, path, row_group=g)
        ip, ix = tokens_csr(table.column("tokens"), path, uni)
        t_total += int(ip[-1])
        rows = np.sort(rng.choice(int(size), int(q), replace=False)) if q < size else np.arange(size)
        sp, si = _gather_rows(ip, ix, rows)
        ptr_parts.append(sp[1:] + kept_tokens)
        idx_parts.append(si)
        kept_tokens += int(sp[-1])
        if has_barcode:
            bc_parts.append(barcodes_column(table, path)[rows])
        else:
            bc_parts.append((rows + offset).astype(str).astype(object))
        offset += int(size)
    indptr = np.concatenate(ptr_parts)
    indices = np.concatenate(idx_parts) if idx_parts else np.empty(0, dtype=np.int32)
    tok = TokenizedCells(
        indptr,
        indices,
        np.concatenate(bc_parts),
        uni,
        {"n_cells": int(indptr.size - 1), "n_tokens": int(indptr[-1])},
    )
    return tok, _info(n_total, t_total, len(tok), kept_tokens, seed)
