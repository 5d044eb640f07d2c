"""What a Dask task reads: one block of cells, as a small picklable payload, and its tokens on the worker.

A payload is one of

- ``("path", path, mtime_ns, lo, hi)``: rows ``lo:hi`` of ``X`` of an ``.h5ad``/``.zarr`` file that the worker
  opens itself, so only the block's coordinates travel;
- ``("rows", csr)``: the block's rows themselves (an in-memory AnnData);
- ``("tokens", indptr, indices)``: a block that is already tokenized.

The features that run tasks (tokenizing in :mod:`fastembed.genome.tokenize`, encoding in :mod:`fastembed.scembed`)
build their payloads here and read them back with :func:`block_tokens`; the Dask backend only carries them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from fastembed.common.suffix import has_suffix
from fastembed.genome.readers import _csr_rows, open_element

__all__ = ["source_path", "x_payload", "block_tokens"]


@functools.lru_cache(maxsize=8)
def _open_x(path: str, mtime_ns: int):
    # One open file per worker process and input (mtime in the key: a rewritten file is reopened).
    return open_element(path, "X")


def source_path(data) -> Path | None:
    """The absolute path of ``data`` when it is an ``.h5ad``/``.zarr`` file that workers can read themselves,
    else None (an in-memory input, whose blocks travel as rows)."""
    if isinstance(data, str | os.PathLike) and has_suffix(data, ".h5ad", ".zarr"):
        return Path(data).absolute()
    return None


def x_payload(adata, path: Path | None, lo: int, hi: int) -> tuple:
    """The payload of cells ``lo:hi``: their coordinates in ``path`` (with its mtime, so a rewritten file is not
    read from a stale handle), or, without a path, rows ``lo:hi`` of ``adata.X`` as CSR."""
    if path is not None:
        return ("path", str(path), os.stat(path).st_mtime_ns, lo, hi)
    return ("rows", _csr_rows(adata.X, lo, hi))


def block_tokens(payload: tuple, mapper) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr int64, indices int32)`` of a payload's cells; ``mapper`` (a peak-to-token map) tokenizes peak
    rows (it is not used for a ``"tokens"`` payload) and counts their entries as
    :meth:`fastembed.genome.tokenize.PeakMapper.tokens` does."""
    kind = payload[0]
    if kind == "tokens":
        return payload[1], payload[2]
    if kind == "path":
        _, path, mtime, lo, hi = payload
        return mapper.tokens(_open_x(path, mtime), lo, hi)
    rows = payload[1]
    return mapper.tokens(rows, 0, rows.shape[0])
