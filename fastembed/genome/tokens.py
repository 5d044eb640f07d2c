"""Tokenized cells: the in-memory type (:class:`TokenizedCells`) and the token parquet file format.

The file layout is gtars's: one row per cell with ``tokens: list<int32>``, plus ``barcode: string``.
Its key-value metadata carries the universe (regions in token order, gzip + base64 BED text), its checksum
and region count, the format version, and what tokenization kept and dropped, so a dataset always knows its
universe. Files without that metadata (e.g. gtars's) are read with a ``universe=`` given by the caller.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed.common.errors import HintedValueError, Keyword
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn
from fastembed.genome.universe import Universe, resolve_universe
from fastembed.storage.atomic import atomic_file, check_output_path

__all__ = [
    "FORMAT_VERSION",
    "TokenizedCells",
    "open_tokens_parquet",
    "read_tokens_parquet",
    "read_tokens_table",
    "write_tokens_parquet",
    "barcodes_column",
    "tokens_csr",
    "footer_regions",
    "token_obs",
]

# Parquet key-value metadata keys.
META_FORMAT = b"fastembed.format"
META_UNIVERSE = b"fastembed.universe.bed.gz.b64"
META_CHECKSUM = b"fastembed.universe.sha256"
META_N_REGIONS = b"fastembed.universe.n_regions"
META_STATS = b"fastembed.tokenize.stats"
FORMAT_VERSION = b"fastembed-tokens/1"
"""The value of ``fastembed.format`` this version writes and reads; a file with another value is refused."""


# eq=False: equality of two CSR array sets is not a yes/no question numpy can answer; identity is.
@dataclass(eq=False)
class TokenizedCells:
    """Cells as sets of universe tokens, in CSR layout.

    Attributes
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (n_tokens,)
        Cell ``i`` holds ``indices[indptr[i]:indptr[i+1]]`` (sorted, unique token ids).
    barcodes : np.ndarray of str (object), shape (n_cells,)
    universe : Universe
        Token ``i < N`` is universe region ``i``; ids ``N..N+6`` are the special tokens.
    stats : dict
        What tokenization kept and dropped (:func:`fastembed.tokenize.tokenize_cells`; also in the parquet
        metadata): ``n_cells``, ``n_tokens``, ``n_peaks``, ``n_peaks_unmapped`` (peaks overlapping no
        region), ``n_peaks_unknown_chrom``, ``fraction_peaks_in_universe``; ``n_counts`` (nonzero cell x peak
        entries of the matrix), ``n_counts_in_universe``, ``fraction_counts_in_universe``; ``n_empty_cells``
        (no token), ``n_few_token_cells`` (1 to ``few_tokens - 1`` tokens), ``few_tokens``
        (:data:`fastembed.settings.FEW_TOKENS`), ``median_tokens_per_cell``. A file read back has what its
        writer recorded.
    """

    indptr: np.ndarray
    indices: np.ndarray
    barcodes: np.ndarray
    universe: Universe
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        """Token ids of cell ``i`` (an integer position): np.ndarray of int32."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(
                f"cells are indexed by one integer position, got {type(i).__name__}; for several cells use "
                "the CSR arrays (indptr, indices)"
            )
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"cell {i} out of range for {n} cells")
        i %= n
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return len(self)

    @property
    def n_tokens(self) -> int:
        """Total number of tokens over all cells."""
        return int(self.indptr[-1])

    @property
    def vocab_size(self) -> int:
        """Universe regions plus the 7 special tokens."""
        return self.universe.vocab_size

    def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the gtars-layout parquet file (see :func:`write_tokens_parquet`); returns its path."""
        return write_tokens_parquet(
            path, self.indptr, self.indices, self.barcodes, self.universe, overwrite=overwrite
        )


# --------------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------------
def _universe_metadata(uni: Universe) -> dict[bytes, bytes]:
    packed = base64.b64encode(gzip.compress(uni.to_bed_text().encode(), compresslevel=6, mtime=0))
    return {
        META_FORMAT: FORMAT_VERSION,
        META_UNIVERSE: packed,
        META_CHECKSUM: uni.checksum.encode(),
        META_N_REGIONS: str(len(uni)).encode(),
    }


def write_tokens_parquet(
    path,
    indptr,
    indices,
    barcodes,
    universe: Universe,
    *,
    extra_columns=None,
    extra_metadata=None,
    overwrite: bool = False,
    inputs=(),
) -> Path:
    """Write tokenized cells to parquet atomically (temp file in the same folder, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.parquet`` path; its folder must exist.
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (indptr[-1],)
    barcodes : array-like of str, shape (n_cells,)
    universe : Universe
        Stored in the file's key-value metadata (gzip+base64 BED text) with its SHA-256 checksum.
    extra_columns : dict of str to np.ndarray of shape (n_cells,), optional
        Further per-cell int64 columns after ``barcode`` (e.g. fragment counts).
    extra_metadata : dict of bytes to bytes, optional
        Further key-value metadata.
    overwrite : bool
        Replace an existing ``path``, only if it is a token parquet file written by fastembed.
    inputs : iterable of paths
        Files the tokens were made from; ``path`` may not be one of them or a folder holding one.

    Returns
    -------
    pathlib.Path
        The written file: one row per cell, columns ``tokens: list<int32>`` and ``barcode: string``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = check_output_path(path, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet")
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int32)
    barcodes = np.asarray(barcodes, dtype=object)
    n_cells = indptr.size - 1
    if indptr.ndim != 1 or indptr.size < 1:
        raise ValueError(f"parquet output '{path}': indptr must be 1-d with n_cells + 1 entries")
    if barcodes.size != n_cells:
        raise ValueError(f"parquet output '{path}': {barcodes.size} barcodes for {n_cells} cells")
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"parquet output '{path}': indptr must start at 0, never decrease and end at "
            f"len(indices) = {indices.size}"
        )
    if n_cells and int(np.diff(indptr).max()) >= 2**31:
        raise ValueError(f"parquet output '{path}': a cell holds 2**31 or more tokens")
    extra = {k: np.asarray(v, dtype=np.int64) for k, v in (extra_columns or {}).items()}
    for k, v in extra.items():
        if v.shape != (n_cells,):
            raise ValueError(f"parquet output '{path}': column '{k}': {v.size} values for {n_cells} cells")
    schema = pa.schema(
        [pa.field("tokens", pa.list_(pa.int32())), pa.field("barcode", pa.string())]
        + [pa.field(k, pa.int64()) for k in extra]
    )
    metadata = {**_universe_metadata(universe), **(extra_metadata or {})}
    from fastembed.common.budget import resolve_memory, row_group_tokens

    # Row groups within the memory budget, so that sampling (which reads one at a time) stays within it.
    bounds = _row_group_bounds(indptr, settings.ROW_GROUP_CELLS, row_group_tokens(resolve_memory(None)))
    with (
        atomic_file(path, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet") as tmp,
        # The metadata goes into the file's key-value metadata once: on the schema, pyarrow would also store
        # a second copy inside ARROW:schema (~1.8 MB for a 126k-region universe). The columns are plain
        # list<int32>, string and int64, which read back the same without that serialized schema.
        pq.ParquetWriter(tmp, schema, compression="zstd", store_schema=False) as writer,
    ):
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            base = indptr[lo]
            offsets = pa.array((indptr[lo : hi + 1] - base).astype(np.int32))
            values = pa.array(indices[base : indptr[hi]], type=pa.int32())
            tokens = pa.ListArray.from_arrays(offsets, values)
            columns = {"tokens": tokens, "barcode": pa.array(barcodes[lo:hi].astype(str))}
            columns.update({k: pa.array(v[lo:hi]) for k, v in extra.items()})
            writer.write_table(pa.table(columns, schema=schema))
        writer.add_key_value_metadata(metadata)
    return path


def _row_group_bounds(indptr: np.ndarray, max_cells: int, max_tokens: int) -> list[int]:
    """Cell boundaries of row groups holding at most ``max_cells`` cells and ``max_tokens`` tokens each.

    A single cell with more than ``max_tokens`` tokens gets a row group of its own (it still fits int32
    offsets: the caller checks that no cell reaches 2**31 tokens). Zero cells give one empty row group, so
    the file still has the schema and its metadata in a row group like any other.
    """
    n_cells = indptr.size - 1
    bounds = [0]
    while bounds[-1] < n_cells:
        lo = bounds[-1]
        fits = int(np.searchsorted(indptr, indptr[lo] + max_tokens, side="right")) - 1
        bounds.append(max(min(lo + max_cells, n_cells, fits), lo + 1))
    if n_cells == 0:
        bounds.append(0)
    return bounds


def read_tokens_parquet(path: str | os.PathLike, *, universe=None):
    """Read a token parquet file (ours or gtars's), or a folder of parts, into CSR arrays.

    No Python object is made per cell or per token (barcodes aside).

    Parameters
    ----------
    path
        Parquet file with a ``tokens`` list column (``list<int32>``; any integer list type is accepted) and
        optionally a ``barcode`` string column. Or a folder: its ``*.parquet`` files (names starting with
        ``.`` or ``_`` skipped, subfolders ignored) are read in sorted name order and concatenated; they must
        all hold the same universe. A cell name found in more than one part is warned about (see Warns).
    universe : Universe or path, optional
        The universe, for files that do not carry one in their metadata (e.g. written by gtars). For a file
        that carries one, it must be the same universe (same checksum), else a ValueError names both.

    Returns
    -------
    TokenizedCells
        Barcodes default to ``"0".."n-1"`` when the file has no ``barcode`` column; in a folder, a part without
        one gets its cells' row numbers in the whole dataset, so parts do not repeat each other's names.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a parquet file; a missing or wrongly typed column; a null list, token or barcode; a token id
        outside the universe; a ``universe`` that differs from the stored one; parts of a folder with
        different universes. Every message names the file (and the column).

    Warns
    -----
    UserWarning
        In a folder, cell names that appear in more than one part (the message names the folder, the count,
        the first such name and two parts holding it), as :func:`fastembed.tokenize.tokenize_cells` warns on
        repeated names: every cell keeps its row, but joining results back by name would be ambiguous.
    """
    path = Path(path)
    given = None if universe is None else resolve_universe(universe)
    if path.is_dir():
        return _read_parquet_parts(path, given)
    if not path.is_file():
        raise FileNotFoundError(f"token file '{path}' does not exist")
    return _read_parquet_file(path, given)


def _read_parquet_parts(folder: Path, given: Universe | None) -> TokenizedCells:
    parts = sorted(
        p
        for p in folder.iterdir()
        if has_suffix(p, ".parquet") and not p.name.startswith((".", "_")) and p.is_file()
    )
    if not parts:
        raise ValueError(
            f"token folder '{folder}' holds no .parquet files (names starting with '.' or '_' and "
            "subfolders are not read)"
        )
    tokens = [_read_parquet_file(parts[0], given)]
    for part in parts[1:]:
        tok = _read_parquet_file(part, given, first_cell=sum(len(t) for t in tokens))
        if tok.universe.checksum != tokens[0].universe.checksum:
            raise ValueError(
                f"token folder '{folder}': part '{part.name}' was tokenized with another universe "
                f"({len(tok.universe)} regions, checksum {tok.universe.checksum[:12]}) than '{parts[0].name}' "
                f"({len(tokens[0].universe)} regions, checksum {tokens[0].universe.checksum[:12]}); "
                "a dataset holds one universe"
            )
        tokens.append(tok)
    offsets = np.cumsum([0] + [t.n_tokens for t in tokens[:-1]])
    indptr = np.concatenate(
        [np.zeros(1, dtype=np.int64)] + [t.indptr[1:] + o for t, o in zip(tokens, offsets, strict=True)]
    )
    indices = np.concatenate([t.indices for t in tokens])
    _warn_names_in_several_parts(folder, parts, [t.barcodes for t in tokens])
    barcodes = np.concatenate([np.asarray(t.barcodes, dtype=object) for t in tokens])
    stats = {"n_cells": int(indptr.size - 1), "n_tokens": int(indptr[-1]), "n_parts": len(parts)}
    return TokenizedCells(indptr, indices, barcodes, tokens[0].universe, stats)


def _warn_names_in_several_parts(folder: Path, parts: list[Path], barcodes: list[np.ndarray]) -> None:
    """Warn when a cell name appears in more than one of ``parts`` (``barcodes[k]``: the names of part k).

    Each part was tokenized on its own, so tokenize's warning on repeated names never saw two parts together.
    Names repeated within one part are left to that warning, as reading a single file does. One hash pass
    over the names (no per-token work).
    """
    import pandas as pd

    if len(parts) < 2:
        return
    distinct = [pd.unique(np.asarray(b, dtype=object)) for b in barcodes]
    names = pd.Index(np.concatenate(distinct))
    again = names.duplicated()  # within-part repeats are gone, so True means: seen in an earlier part
    if not again.any():
        return
    part_of = np.repeat(np.arange(len(parts)), [d.size for d in distinct])
    i = int(np.argmax(again))
    first = int(np.argmax(names == names[i]))
    warn(
        f"token folder '{folder}': {int(names[again].nunique())} cell names appear in more than one part "
        f"(first: {str(names[i])[:60]!r}, in '{parts[part_of[first]].name}' and '{parts[part_of[i]].name}'); "
        "each cell keeps its row, but joining results back by name will be ambiguous: make the names unique "
        "across parts before tokenizing (e.g. a per-part prefix, or adata.obs_names_make_unique() on the "
        "combined data)",
    )


def _read_parquet_file(path: Path, given: Universe | None, first_cell: int = 0) -> TokenizedCells:
    """One token file; ``first_cell`` numbers the default barcodes of a file without a ``barcode`` column."""
    pfile, uni = open_tokens_parquet(path, universe=given)
    table = read_tokens_table(pfile, path)
    indptr, indices = tokens_csr(table.column("tokens"), path, uni)
    barcodes = barcodes_column(table, path, first_cell)
    stats = {}
    meta = pfile.schema_arrow.metadata or {}
    if META_STATS in meta:
        try:
            stats = dict(json.loads(meta[META_STATS]))
        except (ValueError, TypeError):
            stats = {}  # diagnostics only: a damaged entry does not make the tokens unreadable
    stats.update(n_cells=table.num_rows, n_tokens=int(indptr[-1]))
    return TokenizedCells(indptr, indices, barcodes, uni, stats)


def open_tokens_parquet(path: str | os.PathLike, *, universe=None):
    """Open a token parquet file without reading its rows: ``(pyarrow.parquet.ParquetFile, Universe)``.

    Checks the column types and finds the universe as :func:`read_tokens_parquet` does (errors name the file).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    given = None if universe is None else resolve_universe(universe)
    try:
        # Read, not memory-mapped: mapped pages of a file read through stay in the resident set (and in peak
        # RSS and a cgroup's charge) until it is closed, so sampling a 7 GB file would show 7 GB resident.
        pfile = pq.ParquetFile(path, memory_map=False)
        schema = pfile.schema_arrow
    except Exception as err:
        raise ValueError(
            f"token file '{path}' is not a parquet file ({type(err).__name__}: {str(err)[:200]})"
        ) from None
    if "tokens" not in schema.names:
        raise ValueError(
            f"token file '{path}' has no 'tokens' column (columns: {', '.join(schema.names)[:200]})"
        )
    ttype = schema.field("tokens").type
    if not (pa.types.is_list(ttype) or pa.types.is_large_list(ttype)) or not pa.types.is_integer(
        ttype.value_type
    ):
        raise ValueError(f"token file '{path}': column 'tokens' must be list<int32>, got {str(ttype)[:100]}")
    if "barcode" in schema.names:
        btype = schema.field("barcode").type
        if not (pa.types.is_string(btype) or pa.types.is_large_string(btype)):
            raise ValueError(f"token file '{path}': column 'barcode' must be string, got {str(btype)[:100]}")
    meta = schema.metadata or {}
    _check_format(meta, path)
    return pfile, _file_universe(meta, path, given)


def read_tokens_table(pfile, path: Path, row_group: int | None = None):
    """The ``tokens`` (and ``barcode``) columns of a token file, or of one row group, fully validated."""
    columns = ["tokens"] + (["barcode"] if "barcode" in pfile.schema_arrow.names else [])
    try:
        table = (
            pfile.read(columns=columns)
            if row_group is None
            else pfile.read_row_group(row_group, columns=columns)
        )
        # Full validation checks offsets and UTF-8 of what a damaged page may have decoded to, before numpy
        # reads the buffers.
        table.validate(full=True)
    except Exception as err:  # corrupt pages, bad compression, truncated file, invalid UTF-8
        raise ValueError(
            f"token file '{path}': cannot read its data ({type(err).__name__}: {str(err)[:200]})"
        ) from None
    return table


def barcodes_column(table, path: Path, first_cell: int = 0) -> np.ndarray:
    """The cell names of a token table (a ``pyarrow.Table`` read from ``path``): its ``barcode`` column as an object
    array of str, or ``first_cell, first_cell + 1, ...`` as strings when it has none; a null barcode is a
    ValueError naming ``path`` and the cell."""
    if "barcode" not in table.column_names:
        return np.arange(first_cell, first_cell + table.num_rows).astype(str).astype(object)
    col = table.column("barcode")
    if col.null_count:
        i = int(np.flatnonzero(~np.asarray(col.is_valid(), dtype=bool))[0])
        raise ValueError(f"token file '{path}': column 'barcode' is null for cell {i}")
    return col.to_numpy(zero_copy_only=False).astype(object)


def tokens_csr(col, path, uni: Universe) -> tuple[np.ndarray, np.ndarray]:
    """A token table's ``tokens`` column (a pyarrow chunked ``list<int>`` array of ``n_cells`` rows, read from
    ``path``) as CSR: ``(indptr int64 (n_cells + 1,), indices int32)``; every id is checked against ``uni``, and a
    null cell or id is a ValueError naming ``path`` and the cell."""
    n_cells = len(col)
    lengths = np.zeros(n_cells, dtype=np.int64)
    values_parts = []
    row = 0
    for chunk in col.chunks:
        n = len(chunk)
        if chunk.null_count:
            i = row + int(np.flatnonzero(~np.asarray(chunk.is_valid(), dtype=bool))[0])
            raise ValueError(
                f"token file '{path}': column 'tokens' is null for cell {i}; an empty cell is an "
                "empty list, not null"
            )
        offs = np.asarray(chunk.offsets, dtype=np.int64)
        lengths[row : row + n] = np.diff(offs)
        vals = chunk.values.slice(int(offs[0]), int(offs[-1] - offs[0]))
        if vals.null_count:
            j = int(np.flatnonzero(~np.asarray(vals.is_valid(), dtype=bool))[0])
            i = row + int(np.searchsorted(offs - offs[0], j, side="right")) - 1
            raise ValueError(f"token file '{path}': column 'tokens' holds a null token id in cell {i}")
        values_parts.append(vals.to_numpy(zero_copy_only=False))
        row += n
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    values = np.concatenate(values_parts) if values_parts else np.empty(0, dtype=np.int32)
    if values.size:
        # On the file's own integer type, before narrowing to int32 (which could wrap an id into range).
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= uni.vocab_size:
            raise ValueError(
                f"token file '{path}': column 'tokens': token ids must lie in [0, {uni.vocab_size}) for its "
                f"universe of {len(uni)} regions, found {lo if lo < 0 else hi}"
            )
    return indptr, np.ascontiguousarray(values, dtype=np.int32)


def _check_format(meta: dict[bytes, bytes], path: Path) -> None:
    """Refuse a file whose ``fastembed.format`` names another layout; files without the key (gtars's) pass."""
    found = meta.get(META_FORMAT)
    if found is not None and found != FORMAT_VERSION:
        raise ValueError(
            f"token file '{path}': metadata field '{META_FORMAT.decode()}' is "
            f"{found[:60].decode('utf-8', errors='replace')!r}, expected '{FORMAT_VERSION.decode()}' (written by "
            "another version of fastembed, or not a fastembed token file); tokenize the cells again with this one"
        )


def _file_universe(meta: dict[bytes, bytes], path: Path, given: Universe | None) -> Universe:
    """The universe of a token file: the one it carries, checked against ``given`` if both exist."""
    stored = _universe_from_metadata(meta, path)
    if stored is None and given is None:
        hint = Keyword("universe", "<the BED file it was tokenized with>", placeholder=True)
        raise HintedValueError(
            f"token file '{path}' does not carry its universe (not written by fastembed); pass {hint}",
            keywords=(hint,),
        )
    if stored is not None and given is not None and stored.checksum != given.checksum:
        # The ids index the stored regions; reading them against other regions would silently mislabel cells.
        hint = Keyword("universe")
        raise HintedValueError(
            f"token file '{path}' was tokenized with another universe ({len(stored)} regions, checksum "
            f"{stored.checksum[:12]}) than {hint} '{given.source}' ({len(given)} regions, checksum "
            f"{given.checksum[:12]}); drop {hint} to use the file's own",
            keywords=(hint,),
        )
    return stored if stored is not None else given


def _universe_from_metadata(meta: dict[bytes, bytes], path: Path) -> Universe | None:
    if META_UNIVERSE not in meta:
        return None
    try:
        packed = base64.b64decode(meta[META_UNIVERSE], validate=True)
        # Bounded: a few KB of crafted metadata could otherwise inflate to gigabytes. Real universes compress
        # about 5-10x, far inside this limit.
        limit = max(2**26, 64 * len(packed))
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(packed, limit)
        if inflater.unconsumed_tail:
            raise ValueError(f"inflates beyond {limit} bytes")
        text = raw.decode()
    except Exception as err:
        raise ValueError(
            f"token file '{path}': universe in the metadata is corrupt ({str(err)[:120]})"
        ) from None
    uni = Universe.from_bed_text(text, source=f"{path} (embedded)")
    expected = meta.get(META_CHECKSUM, b"").decode("ascii", errors="replace")
    if expected and uni.checksum != expected:
        raise ValueError(
            f"token file '{path}': the embedded universe does not match its checksum "
            f"({uni.checksum[:12]} != {expected[:12]}); the file is corrupt"
        )
    n_regions = meta.get(META_N_REGIONS, b"").decode("ascii", errors="replace")
    if n_regions and n_regions != str(len(uni)):
        raise ValueError(
            f"token file '{path}': metadata field '{META_N_REGIONS.decode()}' is {n_regions[:30]!r} but the "
            f"embedded universe holds {len(uni)} regions; the file is corrupt"
        )
    return uni


def footer_regions(path: str | os.PathLike) -> int:
    """Regions of the universe a token parquet file carries, from its footer (0 where it does not say, or where
    the file cannot be read as parquet): what the training-memory check needs before the tokens are read."""
    import pyarrow.parquet as pq

    try:
        return int((pq.ParquetFile(path).schema_arrow.metadata or {}).get(META_N_REGIONS, b"0"))
    except (ValueError, OSError):
        return 0


def token_obs(data):
    """Per-cell fragment counts of tokens made by :func:`fastembed.tokenize_fragments`, as a ``pandas.DataFrame``
    with int64 columns ``n_fragments`` and ``n_fragments_in_universe`` (one row per cell, default index), so that
    an embeddings store keeps them beside the vectors; None for other tokens.

    ``data`` is a :class:`TokenizedCells` (its in-memory stats) or a token parquet file (its columns of those
    names); anything else gives None.
    """
    import pandas as pd

    if isinstance(data, TokenizedCells):
        stats = data.stats or {}
        if "fragments_per_cell" not in stats:
            return None
        return pd.DataFrame(
            {
                "n_fragments": np.asarray(stats["fragments_per_cell"], dtype=np.int64),
                "n_fragments_in_universe": np.asarray(
                    stats["fragments_in_universe_per_cell"], dtype=np.int64
                ),
            }
        )
    if isinstance(data, str | os.PathLike) and has_suffix(data, ".parquet") and Path(data).is_file():
        import pyarrow.parquet as pq

        wanted = ["n_fragments", "n_fragments_in_universe"]
        if not set(wanted) <= set(pq.ParquetFile(data).schema_arrow.names):
            return None
        return pq.read_table(data, columns=wanted).to_pandas()
    return None
