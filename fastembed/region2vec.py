"""The token dataset used for training: a CSR view of tokenized cells."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import TokenizedCells, read_tokens_parquet
from .universe import Universe

__all__ = ["Region2VecDataset"]


class Region2VecDataset:
    """Tokenized cells as CSR arrays, loaded from a token parquet file or a :class:`TokenizedCells`.

    Parameters
    ----------
    path_or_tokenized : str, os.PathLike or TokenizedCells
        A parquet file written by :func:`fastembed.io.tokenize_cells` (or by gtars, with ``universe=``),
        a folder of such parquet parts, or tokens already in memory. A folder's ``*.parquet`` files are
        read in sorted name order (``part-0.parquet`` sorts before ``part-1.parquet``; zero-pad numbers
        so that ``part-10`` does not sort before ``part-2``) and concatenated; files whose names start
        with ``.`` or ``_`` and subfolders are skipped. All parts must hold the same universe; if they
        do not, it is a ValueError naming two of them.
    universe : str, os.PathLike or Universe, optional
        For parquet files that do not carry their universe. For files that do, it must be the same
        universe (same regions in the same order), else a ValueError names both.

    Attributes
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (n_tokens,)
        Cell ``i`` holds tokens ``indices[indptr[i]:indptr[i+1]]``.
    barcodes : np.ndarray of str (object), shape (n_cells,)
    universe : Universe
    source : str
        Where the data came from (for messages).
    path : pathlib.Path or None
        The parquet file read, if any (outputs may not replace it).

    Notes
    -----
    The parquet list column is read through pyarrow's buffers into two numpy arrays; no Python object is
    created per cell or per token.
    """

    def __init__(self, path_or_tokenized, *, universe: str | os.PathLike | Universe | None = None):
        if isinstance(path_or_tokenized, Region2VecDataset):
            tok = path_or_tokenized._tokens
            self.source = path_or_tokenized.source
            self.path = path_or_tokenized.path
        elif isinstance(path_or_tokenized, TokenizedCells):
            tok = path_or_tokenized
            self.source = "tokenized cells in memory"
            self.path = None
        elif isinstance(path_or_tokenized, str | os.PathLike):
            tok = read_tokens_parquet(path_or_tokenized, universe=universe)
            self.source = f"'{Path(path_or_tokenized)}'"
            self.path = Path(path_or_tokenized)
        else:
            raise TypeError(
                "Region2VecDataset takes a token parquet path or TokenizedCells, "
                f"got {type(path_or_tokenized).__name__}"
            )
        self._tokens = tok

    @property
    def indptr(self) -> np.ndarray:
        return self._tokens.indptr

    @property
    def indices(self) -> np.ndarray:
        return self._tokens.indices

    @property
    def barcodes(self) -> np.ndarray:
        return self._tokens.barcodes

    @property
    def universe(self) -> Universe:
        return self._tokens.universe

    @property
    def n_tokens(self) -> int:
        """Total number of tokens over all cells."""
        return self._tokens.n_tokens

    @property
    def vocab_size(self) -> int:
        """Universe regions plus the 7 special tokens."""
        return self._tokens.vocab_size

    @property
    def tokenized(self) -> TokenizedCells:
        """The underlying :class:`TokenizedCells` (no copy)."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __getitem__(self, i: int) -> np.ndarray:
        """Token ids of cell ``i``: np.ndarray of int32 (a view)."""
        return self._tokens[i]

    def __repr__(self) -> str:
        return (f"Region2VecDataset({len(self)} cells, {self.n_tokens} tokens, vocab_size={self.vocab_size}, "
                f"from {self.source})")
