"""Tokens of cells kept on disk in sorted runs, for a fragments file whose tokens outgrow the memory budget.

A fragments file is sorted by position, so every cell's fragments run through the whole file and a cell's
tokens are complete only at its end. :func:`fastembed.genome.fragments.tokenize_fragments` folds the (cell,
token) pairs it reads into one CSR of sorted unique tokens per cell; written to a parquet file, that CSR would
be as large as the output. Once it passes a sixteenth of the budget, each fold is written here instead, as a *run*
(its row pointers and tokens, two raw files), and memory starts again from nothing. At the end the runs are
read back by ranges of cells (each range's slice of every run) and folded once more, so the output holds the
same cells and tokens as the in-memory fold, while memory holds one range plus 8 bytes a cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastembed.storage.faults import write_error

__all__ = ["TokenRuns"]


class TokenRuns:
    """Runs of per-cell tokens in a folder (a :func:`fastembed.storage.atomic.scratch_folder`).

    Parameters
    ----------
    folder : pathlib.Path
        Where the runs are written; the caller removes it.
    output : pathlib.Path
        The output the runs are for, named by a write error (full disk, removed folder).
    """

    def __init__(self, folder: Path, output: Path):
        self.folder = Path(folder)
        self.output = Path(output)
        self._runs: list[tuple[Path, Path, int]] = []
        self.n_tokens = 0

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        """Write one run: ``indptr`` int64 (n + 1,) from 0 over cells ``0..n-1``, ``indices`` int32 (indptr[-1],)."""
        k = len(self._runs)
        ptr_path, idx_path = self.folder / f"run{k}.ptr", self.folder / f"run{k}.idx"
        try:
            np.asarray(indptr, dtype=np.int64).tofile(ptr_path)
            np.asarray(indices, dtype=np.int32).tofile(idx_path)
        except OSError as err:
            raise (write_error(err, self.output, "parquet output", self.folder) or err) from None
        self._runs.append((ptr_path, idx_path, int(indptr.size - 1)))
        self.n_tokens += int(indptr[-1])

    def total_indptr(self, n_cells: int) -> np.ndarray:
        """int64 (n_cells + 1,): cell ``c``'s tokens summed over the runs (duplicates across runs counted), as
        row pointers, to cut the ranges that :meth:`pairs` reads."""
        total = np.zeros(n_cells + 1, dtype=np.int64)
        for ptr_path, _, n in self._runs:
            ptr = np.fromfile(ptr_path, dtype=np.int64)
            total[: n + 1] += ptr
            total[n + 1 :] += ptr[-1]
        return total

    def pairs(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(cells, tokens), int32 each: every run's tokens of cells ``lo..hi-1``, cells counted from ``lo``."""
        cells: list[np.ndarray] = []
        tokens: list[np.ndarray] = []
        for ptr_path, idx_path, n in self._runs:
            a, b = min(lo, n), min(hi, n)
            if a == b:
                continue
            ptr = np.fromfile(ptr_path, dtype=np.int64, count=b - a + 1, offset=8 * a)
            if ptr[-1] == ptr[0]:
                continue
            tokens.append(
                np.fromfile(idx_path, dtype=np.int32, count=int(ptr[-1] - ptr[0]), offset=4 * int(ptr[0]))
            )
            cells.append(np.repeat(np.arange(a - lo, b - lo, dtype=np.int32), np.diff(ptr)))
        if not tokens:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int32)
        return np.concatenate(cells), np.concatenate(tokens)

    def ranges(self, n_cells: int, max_tokens: int) -> Iterator[tuple[int, int]]:
        """Consecutive ranges ``(lo, hi)`` of the cells ``0..n_cells-1`` whose tokens over all runs number at
        most ``max_tokens`` (a cell with more gets a range of its own)."""
        total = self.total_indptr(n_cells)
        lo = 0
        while lo < n_cells:
            fits = int(np.searchsorted(total, total[lo] + max_tokens, side="right")) - 1
            hi = max(min(fits, n_cells), lo + 1)
            yield lo, hi
            lo = hi
