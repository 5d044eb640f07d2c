"""A token parquet file written block by block, so that tokenizing an atlas to disk holds one block, not all tokens.

The file is the one :func:`fastembed.tokens.write_tokens_parquet` writes, byte for byte in its row groups: the
row groups are cut by the same greedy rule (at most ``ROW_GROUP_CELLS`` cells and the budget's row-group
tokens each) over the concatenated stream, so a cut never depends on where the blocks ended. The cells of the
last, still open row group wait for the next block; at most one row group is pending.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed.common.budget import resolve_memory, row_group_tokens
from fastembed.genome.tokens import _row_group_bounds, _universe_metadata
from fastembed.storage.atomic import atomic_file


class TokenParquetStream:
    """Append blocks of tokenized cells to a parquet file that appears, complete, only when :meth:`close` runs.

    Use as a context manager: an exception (or Ctrl-C) leaves no file behind (the temporary is deleted).

    Parameters
    ----------
    path : pathlib.Path
        The checked output path (``.parquet``).
    universe : Universe
        Stored in the key-value metadata, as ``write_tokens_parquet`` does.
    overwrite, inputs
        As for :func:`fastembed._atomic.atomic_file`.
    memory : int or str, optional
        The budget that bounds a row group's tokens (default ``settings.MEMORY_BUDGET``).
    extra_columns : sequence of str
        Further per-cell int64 columns after ``barcode`` (as ``write_tokens_parquet``'s ``extra_columns``);
        :meth:`append` then takes their values for each block.
    """

    def __init__(
        self, path: Path, universe, *, overwrite: bool = False, inputs=(), memory=None, extra_columns=()
    ):
        self.path = Path(path)
        self.universe = universe
        self.overwrite = overwrite
        self.inputs = list(inputs)
        self.max_tokens = row_group_tokens(resolve_memory(memory))
        self._stack = contextlib.ExitStack()
        self._writer = None
        self._ptr = np.zeros(1, dtype=np.int64)
        self._idx = np.empty(0, dtype=np.int32)
        self._names = np.empty(0, dtype=object)
        self._extra = {k: np.empty(0, dtype=np.int64) for k in extra_columns}
        self.n_cells = 0

    def __enter__(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._schema = pa.schema(
            [pa.field("tokens", pa.list_(pa.int32())), pa.field("barcode", pa.string())]
            + [pa.field(k, pa.int64()) for k in self._extra]
        )
        # Entered on a stack of its own until both are open: a writer that fails to open (a full disk refuses
        # its first bytes) unwinds through atomic_file, which names the path and removes the temporary and the
        # lock; only then is the stack handed to __exit__.
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(
                atomic_file(
                    self.path,
                    what="parquet output",
                    overwrite=self.overwrite,
                    inputs=self.inputs,
                    kind="parquet",
                )
            )
            # As in write_tokens_parquet: the metadata once, in the key-value metadata (not also in ARROW:schema).
            self._writer = stack.enter_context(
                pq.ParquetWriter(tmp, self._schema, compression="zstd", store_schema=False)
            )
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def _write(self, lo: int, hi: int) -> None:
        import pyarrow as pa

        base = self._ptr[lo]
        offsets = pa.array((self._ptr[lo : hi + 1] - base).astype(np.int32))
        values = pa.array(self._idx[base : self._ptr[hi]], type=pa.int32())
        tokens = pa.ListArray.from_arrays(offsets, values)
        names = pa.array(np.asarray(self._names[lo:hi]).astype(str))
        columns = {"tokens": tokens, "barcode": names}
        columns.update({k: pa.array(v[lo:hi]) for k, v in self._extra.items()})
        self._writer.write_table(pa.table(columns, schema=self._schema))

    def append(self, indptr: np.ndarray, indices: np.ndarray, barcodes, extra: dict | None = None) -> None:
        """Add a block: ``indptr`` int64 (n + 1,) from 0, ``indices`` int32, ``barcodes`` (n,) str, and
        ``extra``: the block's (n,) values of each extra column named at construction."""
        if indptr.size > 1 and int(np.diff(indptr).max()) >= 2**31:
            raise ValueError(f"parquet output '{self.path}': a cell holds 2**31 or more tokens")
        self._ptr = np.concatenate([self._ptr, indptr[1:] + self._ptr[-1]])
        self._idx = np.concatenate([self._idx, np.asarray(indices, dtype=np.int32)])
        self._names = np.concatenate([self._names, np.asarray(barcodes, dtype=object)])
        for k in self._extra:
            self._extra[k] = np.concatenate([self._extra[k], np.asarray(extra[k], dtype=np.int64)])
        self.n_cells += indptr.size - 1
        bounds = _row_group_bounds(self._ptr, settings.ROW_GROUP_CELLS, self.max_tokens)
        # Every row group but the last is closed (the next cell did not fit); the last may still grow.
        for lo, hi in zip(bounds[:-2], bounds[1:-1], strict=True):
            self._write(lo, hi)
        keep = bounds[-2] if len(bounds) > 1 else 0
        if keep:
            base = self._ptr[keep]
            self._idx = self._idx[base:].copy()
            self._ptr = self._ptr[keep:] - base
            self._names = self._names[keep:]
            self._extra = {k: v[keep:] for k, v in self._extra.items()}

    def close(self, extra_metadata: dict | None = None) -> Path:
        """Write the pending row group and the metadata; the file is published when the ``with`` block ends."""
        n = self._ptr.size - 1
        if n or self.n_cells == 0:
            self._write(0, n)  # zero cells: one empty row group, as write_tokens_parquet writes
        self._writer.add_key_value_metadata({**_universe_metadata(self.universe), **(extra_metadata or {})})
        return self.path
