"""Fragments to tokens: stream a 10x/tabix fragments file into each barcode's universe token set.

Input: a plain or gzipped (also BGZF, i.e. tabix) text file, one fragment per line,
``chrom  start  end  barcode  [count ...]`` tab-separated; lines starting with ``#`` are comments, and a first
line of column names (its start and end fields read like ``start``/``chromStart`` and ``end``/``stop``) is
skipped as a header. Only the first four columns are used: a line is one fragment whatever its duplicate
count (column 5). Every line must have as many columns as the first data line (at least four).

Coordinates are 0-based and end-exclusive (10x, BED): a fragment covers bases ``start .. end-1`` and must
span at least one base (``start < end``).

* ``mode="fragment"``: the fragment ``[start, end)`` maps to every region it overlaps by ``>= min_overlap``
  bp (the rule of :func:`fastembed.tokenize.map_peaks`).
* ``mode="insertion"``: the fragment stands for its two Tn5 insertion sites, the first and the last base it
  covers, i.e. the 1-bp intervals ``[start, start+1)`` and ``[end-1, end)`` (the 10x convention; ArchR's
  1-based ``start+1`` and ``end`` are the same bases). A region gets the token if it contains either site,
  so ``min_overlap`` must be 1. A fragment whose body spans a region but whose ends both lie outside it does
  not count.

How it stays in bounded memory: pyarrow's streaming CSV reader hands over blocks of lines; chromosome and
barcode columns are dictionary-encoded per block, so Python touches each *distinct* barcode of a block once
(never each fragment); the numba overlap kernels map the block; (cell, token) pairs are kept as int32 arrays
and folded into the per-cell sorted unique token lists whenever the pending pairs outgrow the folded result.
Returned in memory, the result (unique tokens per cell) is held whole, plus a few blocks. Written to a parquet
file, the folded tokens go to disk in sorted runs whenever they pass a sixteenth of the memory budget, and the
runs are merged range of cells by range into the file (:mod:`fastembed.genome.spill`): memory then follows the
budget (plus 8 bytes a barcode), not the file.

Malformed lines are found without slowing the good path: when a block fails to decompress, parse, convert or
validate, the file is scanned once more in plain Python up to the first bad line, whose number, field and value
go into a ValueError naming the file (so is a truncated or corrupt gzip stream, and text that is not UTF-8).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from fastembed import settings
from fastembed.common.budget import fragment_limits, resolve_memory
from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn
from fastembed.genome import tokenize as _tok
from fastembed.genome.droplets import droplet_threshold
from fastembed.genome.spill import TokenRuns
from fastembed.genome.tokens import TokenizedCells, write_tokens_parquet
from fastembed.genome.universe import MAX_COORD, Universe, is_gzip, open_text, resolve_universe
from fastembed.settings import PARALLEL, SERIAL
from fastembed.storage.atomic import held_output, scratch_folder

__all__ = ["tokenize_fragments", "read_whitelist"]

MODES = ("fragment", "insertion")
META_STATS = b"fastembed.fragments.stats"
# Scalar stats first, then per-cell arrays; the metadata gets the scalars.
_PER_CELL = ("fragments_per_cell", "fragments_in_universe_per_cell")


# --------------------------------------------------------------------------------------------------
# Kernels: fold (cell, token) pairs into per-cell sorted unique token lists
# --------------------------------------------------------------------------------------------------
@numba.njit(**SERIAL)
def _scatter(old_indptr, old_indices, cells, tokens, n_cells):
    """Group the old CSR rows and the new pairs by cell (counting sort): returns (offsets, buffer)."""
    n_old = old_indptr.size - 1
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for c in range(n_old):
        counts[c + 1] = old_indptr[c + 1] - old_indptr[c]
    for i in range(cells.size):
        counts[cells[i] + 1] += 1
    for c in range(n_cells):
        counts[c + 1] += counts[c]
    buf = np.empty(counts[n_cells], dtype=np.int32)
    pos = counts[:n_cells].copy()
    for c in range(n_old):
        for j in range(old_indptr[c], old_indptr[c + 1]):
            buf[pos[c]] = old_indices[j]
            pos[c] += 1
    for i in range(cells.size):
        c = cells[i]
        buf[pos[c]] = tokens[i]
        pos[c] += 1
    return counts, buf


@numba.njit(**PARALLEL)
def _sort_unique_rows(offsets, buf):
    """Sort each row ``buf[offsets[c]:offsets[c+1]]`` and move its unique values to its front."""
    n_cells = offsets.size - 1
    n_unique = np.zeros(n_cells, dtype=np.int64)
    for c in numba.prange(n_cells):
        lo = offsets[c]
        hi = offsets[c + 1]
        if hi == lo:
            continue
        buf[lo:hi].sort()
        w = lo + 1
        for j in range(lo + 1, hi):
            if buf[j] != buf[w - 1]:
                buf[w] = buf[j]
                w += 1
        n_unique[c] = w - lo
    return n_unique


def fold_pairs(indptr, indices, cells, tokens, n_cells):
    """Merge (cell, token) pairs into a CSR of sorted unique tokens per cell.

    Parameters
    ----------
    indptr : np.ndarray of int64, shape (n_old + 1,)
    indices : np.ndarray of int32, shape (indptr[-1],)
        Tokens already folded, for cells ``0..n_old-1`` (``n_old <= n_cells``).
    cells : np.ndarray of int32, shape (n_pairs,)
        Cell of each new pair, in ``[0, n_cells)``.
    tokens : np.ndarray of int32, shape (n_pairs,)
    n_cells : int

    Returns
    -------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32
        Cell ``c`` holds ``indices[indptr[c]:indptr[c+1]]``, strictly increasing.
    """
    offsets, buf = _scatter(indptr, indices, cells, tokens, np.int64(n_cells))
    n_unique = _sort_unique_rows(offsets, buf)
    new_indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(n_unique, out=new_indptr[1:])
    if new_indptr[-1] == buf.size:
        return new_indptr, buf
    out = np.empty(new_indptr[-1], dtype=np.int32)
    _tok._compact(buf, offsets, new_indptr, out)
    return new_indptr, out


# --------------------------------------------------------------------------------------------------
# Whitelist
# --------------------------------------------------------------------------------------------------
def read_whitelist(barcodes) -> list[str]:
    """The barcodes to keep, in order, from a file or a sequence of strings.

    Parameters
    ----------
    barcodes : str or os.PathLike or sequence of str
        A text file (plain or gzipped), one barcode per line; further tab-separated columns, blank lines and a
        UTF-8 byte-order mark are ignored. Or the barcodes themselves.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        Empty whitelist, an empty barcode among other columns, or a barcode listed twice (named).
    """
    if isinstance(barcodes, str | os.PathLike):
        path = Path(barcodes)
        if not path.is_file():
            raise FileNotFoundError(f"barcode whitelist '{path}' does not exist")
        name = f"barcode whitelist '{path}'"
        out = []
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                if not line.strip():
                    continue
                bc = line.rstrip("\r\n").split("\t", 1)[0].strip()
                if not bc:
                    raise ValueError(f"{name} line {lineno}: field 1 (barcode) is empty")
                out.append(bc)
    else:
        name = "barcodes"
        out = list(barcodes)
        bad = [b for b in out if not isinstance(b, str) or not b]
        if bad:
            raise ParameterError("barcodes", "non-empty strings", bad[0])
    if not out:
        raise ValueError(f"{name}: the whitelist holds no barcodes")
    if len(set(out)) != len(out):
        seen = set()
        dup = next(b for b in out if b in seen or seen.add(b))
        raise ValueError(f"{name}: barcode {dup!r} is listed more than once")
    return out


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
_FIELDS = ("chrom", "start", "end", "barcode")
# ASCII digits, with the spaces pyarrow trims around a number: int() would also take '1_000' or '+1'.
_INT = re.compile(r" *(-?[0-9]+) *")
# The start and end fields of a header line of column names: 'start'/'chromStart'/'begin', 'end'/'stop'.
_HEADER_START = re.compile(r"[a-z_.]*(start|begin)[a-z0-9_.]*", re.IGNORECASE)
_HEADER_END = re.compile(r"[a-z_.]*(end|stop)[a-z0-9_.]*", re.IGNORECASE)


def _is_header(fields: list[str]) -> bool:
    """A line of column names (``chrom start end barcode ...``, ``chromStart``/``chromEnd``, ``begin``/``stop``)."""
    return (
        len(fields) >= 4
        and _HEADER_START.fullmatch(fields[1].strip()) is not None
        and _HEADER_END.fullmatch(fields[2].strip()) is not None
    )


def _text_lines(path: Path, gz: bool) -> Iterator[tuple[int, str | None]]:
    """(line number, line without its end) of a plain or gzipped file; a line that is not UTF-8 comes as None.

    Undecodable bytes are kept as surrogates until their line is complete, so they are found line by line.
    """
    binary = gzip.open(path, "rb") if gz else open(path, "rb")
    with io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                yield lineno, None
            else:
                yield lineno, line


def _not_text(path: Path, gz: bool, lineno: int) -> ValueError:
    if not gz and has_suffix(path, ".gz", ".bgz"):
        return ValueError(
            f"fragments file '{path}' is neither gzip (its name ends in {path.suffix} but it does not start "
            f"with the gzip magic bytes 1f 8b) nor UTF-8 text (line {lineno} holds bytes that are not UTF-8)"
        )
    return ValueError(f"fragments file '{path}' line {lineno}: holds bytes that are not UTF-8 text")


def _bad_gzip(path: Path, err: BaseException, lineno: int) -> ValueError:
    """A gzip stream that ends early or does not decompress; ``lineno``: the last line read before."""
    if isinstance(err, EOFError):
        what = "is truncated: its gzip stream ends early"
    else:
        what = f"is not valid gzip ({str(err)[:100]})"
    where = f"after line {lineno}" if lineno else "before any whole line"
    return ValueError(f"fragments file '{path}' {what}, {where}")


def _layout(path: Path) -> tuple[int, int]:
    """(lines before the first fragment, number of columns of the first fragment).

    Skipped are ``#`` comment lines, blank lines and a header line of column names if it is the first other
    line (see :func:`_is_header`).
    """
    gz = is_gzip(path)
    n_skip = lineno = 0
    header = False
    lines = _text_lines(path, gz)
    try:
        with contextlib.closing(lines):
            for lineno, line in lines:
                if line is None:
                    raise _not_text(path, gz, lineno)
                if line.startswith("#") or not line.strip():
                    n_skip += 1
                    continue
                fields = line.split("\t")
                if not header and _is_header(fields):
                    n_skip += 1
                    header = True
                    continue
                n_cols = len(fields)
                if n_cols < 4:
                    raise ValueError(
                        f"fragments file '{path}' line {lineno}: expected at least 4 tab-separated fields "
                        f"(chrom, start, end, barcode), got {n_cols}: {line.strip()[:80]!r}"
                    )
                return n_skip, n_cols
    except (EOFError, OSError, zlib.error) as err:
        if not gz or isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise _bad_gzip(path, err, lineno) from None
    raise ValueError(
        f"fragments file '{path}' holds no fragments (only comments, blank lines or a header line)"
    )


def _coordinate(text: str, k: int) -> tuple[int | None, str | None]:
    """(value, None) or (None, problem) for field ``k`` (1: start, 2: end), strict like pyarrow's int64."""
    field = f"field {k + 1} ({_FIELDS[k]})"
    m = _INT.fullmatch(text)
    if m is None:
        return None, f"{field} must be a non-negative integer, got {text[:40]!r}"
    digits = m.group(1)
    if len(digits.lstrip("-")) > 19 or abs(int(digits)) > MAX_COORD:
        return None, f"{field} {digits[:40]} is beyond the largest accepted coordinate (2**62)"
    return int(digits), None


def _line_problem(fields: list[str], n_cols: int) -> str | None:
    if len(fields) != n_cols:
        return (
            f"expected {n_cols} tab-separated fields (chrom, start, end, barcode{', ...' if n_cols > 4 else ''}) "
            f"like the first fragment, got {len(fields)}"
        )
    if _is_header(fields):
        return "a header line of column names; only the first line that is not a comment may be one"
    if not fields[0]:
        return "field 1 (chrom) is empty"
    if not fields[3]:
        return "field 4 (barcode) is empty"
    start, problem = _coordinate(fields[1], 1)
    if problem:
        return problem
    end, problem = _coordinate(fields[2], 2)
    if problem:
        return problem
    if start < 0:
        return f"field 2 (start) is negative ({start})"
    if start >= end:
        return f"start {start} >= end {end} (a fragment [start, end) spans at least 1 bp)"
    return None


def _comment_problem(fields: list[str], n_cols: int) -> str | None:
    """A ``#`` line past the top with as many fields as a fragment is read as one: its coordinates must parse."""
    if len(fields) != n_cols:
        return None
    if _coordinate(fields[1], 1)[1] is None and _coordinate(fields[2], 2)[1] is None:
        return None
    return (
        f"a comment line with {n_cols} tab-separated fields but no integer start and end cannot be read "
        "amid the fragments; only comments at the top of the file may look like that"
    )


def _pyarrow_cause(err: BaseException) -> str:
    """pyarrow's message, with its 0-based ``column #k`` turned into the 1-based field and its name."""

    def name(m: re.Match) -> str:
        k = int(m.group(1))
        return f"field {k + 1}" + (f" ({_FIELDS[k]})" if k < len(_FIELDS) else "")

    return re.sub(r"(?:CSV )?column #(\d+)", name, str(err).strip().replace("\n", " "))[:200]


def _malformed(path: Path, n_skip: int, n_cols: int, first_row: int, n_rows: int, err) -> ValueError:
    """The error for a block that failed to decompress, parse, convert or validate.

    The file is read once more in plain Python (slow, but only on this path) up to its first bad line, whose
    number and field go into the error; ``err`` (pyarrow's exception, or a str) is the fallback.
    """
    gz = is_gzip(path)
    lineno = 0
    lines = _text_lines(path, gz)
    try:
        with contextlib.closing(lines):
            for lineno, line in lines:
                if lineno <= n_skip:
                    continue
                if line is None:
                    return _not_text(path, gz, lineno)
                if not line.strip():
                    continue
                fields = line.split("\t")
                if line.startswith("#"):
                    problem = _comment_problem(fields, n_cols)
                else:
                    problem = _line_problem(fields, n_cols)
                if problem:
                    return ValueError(
                        f"fragments file '{path}' line {lineno}: {problem}: {line.strip()[:60]!r}"
                    )
    except (EOFError, OSError, zlib.error) as e:
        if not gz or isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        return _bad_gzip(path, e, lineno)
    if n_rows:
        where = f"fragments {first_row + 1}-{first_row + n_rows}"
    else:
        where = f"the block after fragment {first_row}" if first_row else "the first block"
    cause = err if isinstance(err, str) else _pyarrow_cause(err)
    if gz and isinstance(err, OSError):
        return ValueError(
            f"fragments file '{path}' is not valid gzip: {where} cannot be decompressed ({cause})"
        )
    return ValueError(f"fragments file '{path}': {where} cannot be read ({cause})")


def _open_batches(path: Path, n_skip: int, n_cols: int, block_size: int):
    """pyarrow's streaming CSV reader of the fragments (it reads and converts the first block already)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = list(_FIELDS) + [f"c{i}" for i in range(5, n_cols + 1)]

    def on_invalid(row):
        # Called only for rows with the wrong field count: comment and whitespace-only lines are skipped.
        text = row.text or ""
        return "skip" if text.startswith("#") or not text.strip() else "error"

    stream = pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)
    return pcsv.open_csv(
        stream,
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=n_skip, block_size=block_size),
        parse_options=pcsv.ParseOptions(
            delimiter="\t",
            quote_char=False,
            double_quote=False,
            escape_char=False,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            include_columns=list(_FIELDS),
            column_types={
                "chrom": pa.string(),
                "start": pa.int64(),
                "end": pa.int64(),
                "barcode": pa.string(),
            },
            # No null markers: an empty or 'NA' start is an error, not a null.
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


class _Barcodes:
    """Global barcode ids: the whitelist's positions, or ids in order of first appearance."""

    def __init__(self, whitelist: list[str] | None):
        self.fixed = whitelist is not None
        self.ids: dict[str, int] = {b: i for i, b in enumerate(whitelist)} if self.fixed else {}
        self.rejected: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def map(self, values: list[str]) -> np.ndarray:
        ids = self.ids
        out = np.empty(len(values), dtype=np.int32)
        if self.fixed:
            for k, b in enumerate(values):
                i = ids.get(b, -1)
                if i < 0:
                    self.rejected.add(b)
                out[k] = i
        else:
            for k, b in enumerate(values):
                i = ids.get(b)
                if i is None:
                    i = ids[b] = len(ids)
                out[k] = i
        return out


class _Batch(NamedTuple):
    """One parsed block of fragments, comment lines removed; arrays are one entry per fragment."""

    chrom_idx: np.ndarray  # int32: index into chrom_names
    chrom_names: list[str]
    cells: np.ndarray  # int32: barcode id from _Barcodes (-1: not in the whitelist)
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64


def _read_batches(path: Path, bcs: _Barcodes, block_size: int) -> Iterator[_Batch]:
    """The fragments of ``path`` block by block, validated; every reader of fragment files goes through here.

    A block that fails to decompress, parse, convert or validate raises :func:`_malformed`'s ValueError naming
    the file and line: pyarrow's own errors (ArrowInvalid for a parse or conversion error, OSError for a damaged
    gzip stream) name neither.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n_skip, n_cols = _layout(path)
    read_errors = (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError)
    n_read = 0  # fragments yielded so far: where a failing block starts
    try:
        reader = _open_batches(path, n_skip, n_cols, int(block_size))  # reads the first block already
    except read_errors as err:
        raise _malformed(path, n_skip, n_cols, 0, 0, err) from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except read_errors as err:
            raise _malformed(path, n_skip, n_cols, n_read, 0, err) from None
        if batch.num_rows == 0:
            continue
        chrom_col = pc.dictionary_encode(batch.column(0))
        bc_col = pc.dictionary_encode(batch.column(3))
        starts = batch.column(1).to_numpy()
        ends = batch.column(2).to_numpy()
        chrom_names = chrom_col.dictionary.to_pylist()
        bc_names = bc_col.dictionary.to_pylist()
        if (
            "" in chrom_names
            or "" in bc_names
            or starts.min() < 0
            or np.any(starts >= ends)
            or ends.max() > MAX_COORD
        ):
            raise _malformed(path, n_skip, n_cols, n_read, batch.num_rows, "empty field or bad coordinates")
        chrom_idx = chrom_col.indices.to_numpy()
        cells = bcs.map(bc_names)[bc_col.indices.to_numpy()]
        comment = np.array([c.startswith("#") for c in chrom_names], dtype=bool)
        real = ~comment[chrom_idx]
        if not real.all():  # a '#' line that happened to have the right number of fields: not a fragment
            chrom_idx, cells, starts, ends = chrom_idx[real], cells[real], starts[real], ends[real]
        n_read += chrom_idx.size
        yield _Batch(chrom_idx, chrom_names, cells, starts, ends)


def _check_read_args(mode, min_overlap, block_size) -> None:
    """The checks every reader of fragment files makes of its reading options (ValueError naming the option)."""
    if mode not in MODES:
        raise ParameterError("mode", f"one of {', '.join(map(repr, MODES))}", mode)
    if isinstance(min_overlap, bool) or int(min_overlap) != min_overlap or min_overlap < 1:
        raise ParameterError("min_overlap", "an integer >= 1 bp", min_overlap)
    if mode == "insertion" and min_overlap != 1:
        insertion = Keyword("mode", "insertion")
        raise ParameterError(
            "min_overlap", f"1 in {insertion} (an insertion site is 1 bp)", min_overlap, keywords=(insertion,)
        )
    if int(block_size) < 1024:
        raise ValueError(f"block_size must be at least 1024 bytes, got {block_size!r}")


def _query_tokens(codes, starts, ends, cells, mode: str, sorted_index, min_overlap: int):
    """Map fragments (``mode="fragment"``) or their two insertion sites to universe tokens.

    Returns ``(token_cells, tokens, hits)``: int32 cell and token of every (cell, region) hit, in fragment
    order, and the int64 number of hits of each fragment (its two sites together in insertion mode). ``codes``
    of -1 (chromosome not in the universe) hit nothing.
    """
    if mode == "fragment":
        q_codes, q_starts, q_ends, q_cells = codes, starts, ends, cells
    else:
        q_codes = np.repeat(codes, 2)
        q_starts = np.empty(2 * codes.size, dtype=np.int64)
        q_starts[0::2] = starts
        q_starts[1::2] = ends - 1
        q_ends = q_starts + 1
        q_cells = np.repeat(cells, 2)
    offsets, tokens = _tok.map_peaks(q_codes, q_starts, q_ends, sorted_index, min_overlap)
    hits = np.diff(offsets)
    token_cells = np.repeat(q_cells, hits).astype(np.int32, copy=False)
    if mode == "insertion":
        hits = hits[0::2] + hits[1::2]
    return token_cells, tokens, hits


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    if a.size >= n:
        return a
    b = np.zeros(max(n, 2 * a.size), dtype=a.dtype)
    b[: a.size] = a
    return b


def tokenize_fragments(
    path,
    universe,
    output=None,
    *,
    barcodes=None,
    min_fragments: int = 1,
    mode: str = "fragment",
    min_overlap: int = 1,
    block_size: int = settings.FRAGMENT_BLOCK_BYTES,
    overwrite: bool = False,
    memory: int | str | None = None,
):
    """Tokenize a fragments file: each barcode becomes the sorted unique set of universe regions its fragments hit.

    Parameters
    ----------
    path : str or os.PathLike
        Fragments file, plain or gzipped/BGZF: ``chrom start end barcode [count ...]`` tab-separated, 0-based
        end-exclusive, ``#`` comment lines, an optional first line of column names (``chrom start end ...``,
        skipped); read as a stream (see the module docstring for the conventions).
    universe : str or os.PathLike or Universe
        Universe BED file; line ``i`` is token ``i``.
    output : str or os.PathLike, optional
        Parquet path, written atomically in the layout of :func:`fastembed.io.tokenize_cells` plus two
        int64 columns ``n_fragments`` and ``n_fragments_in_universe`` per cell and the scalar ``stats`` as JSON
        under the metadata key ``fastembed.fragments.stats``. If None, the tokens are returned in memory.
    barcodes : str or os.PathLike or sequence of str, optional
        Whitelist (a one-column file or the barcodes): only these are kept, one row each in the whitelist's
        order, also those without fragments (an empty row). Without it every barcode with at least
        ``min_fragments`` fragments is kept, in order of first appearance in the file.
    min_fragments : int or "auto"
        Drop barcodes with fewer fragments (lines, on any chromosome). Only without a whitelist. ``"auto"``:
        drop empty droplets by the rule of :func:`fastembed.pp.read_fragments` (the command line's default;
        ``stats["min_fragments"]`` holds the threshold it chose).
    mode : {"fragment", "insertion"}
        What of a fragment is overlapped with the regions: its whole interval, or its two Tn5 insertion sites.
    min_overlap : int
        Minimum overlap in bp (``"fragment"`` mode; must be 1 in ``"insertion"`` mode).
    block_size : int
        Bytes of decompressed text parsed at a time (pyarrow ``block_size``; at most a sixteenth of ``memory``).
    memory : int or str, optional
        Bytes the parsing may hold besides the result (e.g. ``"512MB"``; default ``settings.MEMORY_BUDGET``):
        the parsed block and the (cell, token) pairs waiting to be folded into the result, which are folded once
        they would pass the budget (or the result's own size, whichever is larger: folding more often than that
        would copy the result over and over). Returned in memory, the tokens of the result come on top; written
        to ``output``, the tokens folded so far go to disk in sorted runs beside it once they pass a sixteenth of
        the budget, and are merged into the file range by range at the end (peak memory then follows the budget,
        plus 8 bytes a barcode).
    overwrite : bool
        Replace an existing ``output``, only if it is a token parquet written by fastembed; ``output`` may never
        be the fragments, universe or whitelist file (nor a folder holding one).

    Returns
    -------
    TokenizedCells or pathlib.Path
        ``indptr`` int64 (n_cells + 1,), ``indices`` int32, ``barcodes`` str; or the parquet path. ``stats``:
        ``n_fragments`` (lines read), ``n_fragments_kept`` (of kept barcodes), ``n_fragments_in_universe``
        (of kept barcodes, hitting >= 1 region), ``fragments_per_cell`` and ``fragments_in_universe_per_cell``
        (int64 arrays, one per row), ``n_fragments_unknown_chrom`` and ``unknown_chroms`` (chromosomes absent
        from the universe), ``n_barcodes`` (distinct in the file), ``n_barcodes_kept``,
        ``n_barcodes_not_in_whitelist`` / ``n_fragments_not_in_whitelist``,
        ``n_barcodes_below_min_fragments`` / ``n_fragments_below_min_fragments``,
        ``n_whitelist_without_fragments``, ``n_empty_cells``, ``n_tokens``.

    Raises
    ------
    FileNotFoundError
        Missing fragments, universe or whitelist file.
    ValueError
        A malformed line (file, line number, field and value named), a truncated or corrupt gzip stream, text
        that is not UTF-8, bad parameters, no fragment chromosome in the universe, no barcode left. Nothing is
        written then.
    """
    inputs = [path, universe.source if isinstance(universe, Universe) else universe]
    if isinstance(barcodes, str | os.PathLike):
        inputs.append(barcodes)
    with held_output(
        output, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet"
    ) as out_path:
        return _tokenize_fragments(
            path,
            universe,
            out_path,
            barcodes,
            min_fragments,
            mode,
            min_overlap,
            block_size,
            overwrite,
            inputs,
            memory,
        )


def _tokenize_fragments(
    path,
    universe,
    out_path,
    barcodes,
    min_fragments,
    mode,
    min_overlap,
    block_size,
    overwrite,
    inputs,
    memory=None,
):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fragments file '{path}' does not exist")
    _check_read_args(mode, min_overlap, block_size)
    if min_fragments != "auto" and (
        isinstance(min_fragments, bool | str) or int(min_fragments) != min_fragments or min_fragments < 1
    ):
        raise ParameterError("min_fragments", "an integer >= 1 or 'auto'", min_fragments)
    if barcodes is not None and min_fragments != 1:
        hints = (Keyword("barcodes"), Keyword("min_fragments"))
        raise HintedValueError(
            f"pass either {hints[0]} (a whitelist keeps every listed barcode) or {hints[1]}, not both",
            keywords=hints,
        )
    budget = resolve_memory(memory)
    block_size, fold_at = fragment_limits(budget, int(block_size))
    uni = resolve_universe(universe)
    whitelist = read_whitelist(barcodes) if barcodes is not None else None

    sorted_regions = uni.sorted_index
    chrom_ids = {c: i for i, c in enumerate(uni.chrom_names)}
    bcs = _Barcodes(whitelist)
    m = int(min_overlap)
    n_read = n_unknown = n_rejected_frags = 0
    unknown_chroms: dict[str, int] = {}
    frags = np.zeros(len(bcs) or 1024, dtype=np.int64)
    in_uni = np.zeros_like(frags)
    indptr, indices = np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int32)
    pending_cells: list[np.ndarray] = []
    pending_tokens: list[np.ndarray] = []
    n_pending = 0
    with contextlib.ExitStack() as stack:
        # The folded tokens on disk, once they pass the budget (file output only).
        runs: TokenRuns | None = None

        def spill():
            nonlocal runs, indptr, indices
            if runs is None:
                runs = TokenRuns(
                    stack.enter_context(scratch_folder(out_path, what="parquet output")), out_path
                )
            runs.add(indptr, indices)
            indptr, indices = np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int32)

        for batch in _read_batches(path, bcs, int(block_size)):
            chrom_names, chrom_idx, cells = batch.chrom_names, batch.chrom_idx, batch.cells
            starts, ends = batch.starts, batch.ends
            chrom_map = np.array([chrom_ids.get(c, -1) for c in chrom_names], dtype=np.int32)
            codes = chrom_map[chrom_idx]
            n_read += codes.size
            unknown = codes == -1
            if unknown.any():
                n_unknown += int(np.count_nonzero(unknown))
                per_name = np.bincount(chrom_idx[unknown], minlength=len(chrom_names))
                for k in np.flatnonzero(per_name):
                    unknown_chroms[chrom_names[k]] = unknown_chroms.get(chrom_names[k], 0) + int(per_name[k])
            kept = cells >= 0
            if not kept.all():
                n_rejected_frags += int(np.count_nonzero(~kept))
                codes = np.where(kept, codes, -1)
            frags = _grow(frags, len(bcs))
            in_uni = _grow(in_uni, len(bcs))
            frags[: len(bcs)] += np.bincount(cells[kept], minlength=len(bcs))
            token_cells, tokens, hits = _query_tokens(codes, starts, ends, cells, mode, sorted_regions, m)
            in_uni[: len(bcs)] += np.bincount(cells[hits > 0], minlength=len(bcs))
            if tokens.size:
                pending_cells.append(token_cells)
                pending_tokens.append(tokens)
                n_pending += tokens.size
            if n_pending > max(fold_at, indices.size):
                indptr, indices = fold_pairs(
                    indptr, indices, np.concatenate(pending_cells), np.concatenate(pending_tokens), len(bcs)
                )
                pending_cells, pending_tokens, n_pending = [], [], 0
                # The parsed block and the pending pairs already take the budget (fragment_limits), and a fold
                # holds the result about three times over: past a sixteenth of the budget it goes to disk.
                if out_path is not None and indices.nbytes > budget // 16:
                    spill()

        n_cells_all = len(bcs)
        cat_cells = np.concatenate(pending_cells) if pending_cells else np.empty(0, dtype=np.int32)
        cat_tokens = np.concatenate(pending_tokens) if pending_tokens else np.empty(0, dtype=np.int32)
        indptr, indices = fold_pairs(indptr, indices, cat_cells, cat_tokens, n_cells_all)
        del cat_cells, cat_tokens, pending_cells, pending_tokens
        if runs is not None:
            spill()
        frags, in_uni = frags[:n_cells_all].copy(), in_uni[:n_cells_all].copy()
        name = f"fragments file '{path}'"
        names, keep, stats = _select(
            name,
            uni,
            bcs,
            frags,
            n_read=n_read,
            n_unknown=n_unknown,
            n_rejected_frags=n_rejected_frags,
            min_fragments=min_fragments if min_fragments == "auto" else int(min_fragments),
            mode=mode,
            min_overlap=m,
            unknown_chroms=unknown_chroms,
        )
        if keep is not None:
            names, frags, in_uni = names[keep], frags[keep], in_uni[keep]
        if runs is not None:
            return _write_runs(
                runs, keep, names, frags, in_uni, stats, name, out_path, uni, overwrite, inputs, budget
            )
        if keep is not None:
            indptr, indices = _kept_rows(indptr, indices, keep)
        return _finish(indptr, indices, names, frags, in_uni, stats, name, out_path, uni, overwrite, inputs)


def _select(
    name: str,
    uni: Universe,
    bcs: _Barcodes,
    frags,
    *,
    n_read,
    n_unknown,
    n_rejected_frags,
    min_fragments,
    mode,
    min_overlap,
    unknown_chroms,
):
    """The barcodes to keep and the stats known before the tokens: (names of all barcodes, keep mask or None for
    all, stats). Raises what leaves nothing to write (no chromosome in the universe, no whitelisted barcode in the
    file, no barcode with ``min_fragments``); ``name`` is how messages name the file."""
    if n_unknown == n_read:
        frag_examples = ", ".join(repr(c) for c in list(unknown_chroms)[:4])
        uni_examples = ", ".join(repr(c) for c in uni.chrom_names[:4])
        raise ValueError(
            f"none of the chromosomes of {name} ({frag_examples}) occur in universe '{uni.source}' "
            f"({uni_examples}): the two name chromosomes differently (e.g. '1' vs 'chr1'); rename one to match"
        )
    names = np.array(list(bcs.ids), dtype=object)
    n_seen = int(np.count_nonzero(frags)) if bcs.fixed else len(names)
    stats = {
        "mode": mode,
        "min_overlap": min_overlap,
        "min_fragments": min_fragments,
        "n_fragments": n_read,
        "n_barcodes": n_seen + len(bcs.rejected),
        "n_barcodes_not_in_whitelist": len(bcs.rejected),
        "n_fragments_not_in_whitelist": n_rejected_frags,
        "n_whitelist_without_fragments": int(np.count_nonzero(frags == 0)) if bcs.fixed else 0,
        "n_barcodes_below_min_fragments": 0,
        "n_fragments_below_min_fragments": 0,
        "n_fragments_unknown_chrom": n_unknown,
        "unknown_chroms": sorted(unknown_chroms),
    }
    keep = None  # every barcode
    if bcs.fixed:
        if n_seen == 0:
            file_examples = ", ".join(repr(b) for b in sorted(bcs.rejected)[:3])
            raise ValueError(
                f"none of the {len(names)} whitelisted barcodes ({', '.join(repr(b) for b in names[:3])}) occur in "
                f"{name} (its barcodes look like {file_examples}); check the whitelist (e.g. a '-1' suffix)"
            )
    else:
        if min_fragments == "auto":  # the empty-droplet rule of fe.pp.read_fragments
            min_fragments = stats["min_fragments"] = droplet_threshold(frags)
        keep = frags >= min_fragments
        if keep.all():
            keep = None
        else:
            stats["n_barcodes_below_min_fragments"] = int(np.count_nonzero(~keep))
            stats["n_fragments_below_min_fragments"] = int(frags[~keep].sum())
            if not keep.any():
                given = Keyword("min_fragments", min_fragments)
                raise HintedValueError(
                    f"no barcode of {name} has {given} fragments (the most is {frags.max()})",
                    keywords=(given,),
                )
    if unknown_chroms:
        shown = sorted(unknown_chroms, key=unknown_chroms.get, reverse=True)
        warn(
            f"{n_unknown} of {n_read} fragments of {name} lie on {len(shown)} chromosomes absent from universe "
            f"'{uni.source}' ({', '.join(repr(c) for c in shown[:5])}{', ...' if len(shown) > 5 else ''}); "
            "they get no token",
        )
    return names, keep, stats


def _kept_rows(indptr: np.ndarray, indices: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a CSR (``indptr`` int64, ``indices`` int32) where ``keep`` (bool, one per row) is True."""
    lengths = np.diff(indptr)
    out = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=out[1:])
    return out, indices[np.repeat(keep, lengths)]


def _complete_stats(stats: dict, lengths: np.ndarray, frags, in_uni, uni: Universe, name: str) -> dict:
    """The full stats: those of :func:`_select` and the counts that need the kept barcodes' tokens (``lengths``,
    tokens per kept barcode), in the order the files have always listed them; warns about barcodes without a
    token."""
    n_empty = int(np.count_nonzero(lengths == 0))
    unknown = ("n_fragments_unknown_chrom", "unknown_chroms")
    out = {k: v for k, v in stats.items() if k not in unknown}
    out.update(
        {
            "n_barcodes_kept": int(lengths.size),
            "n_fragments_kept": int(frags.sum()),
            "n_fragments_in_universe": int(in_uni.sum()),
            **{k: stats[k] for k in unknown},
            "n_cells": int(lengths.size),
            "n_empty_cells": n_empty,
            "n_tokens": int(lengths.sum()),
            "fragments_per_cell": frags,
            "fragments_in_universe_per_cell": in_uni,
        }
    )
    if n_empty:
        warn(
            f"{n_empty} of {lengths.size} barcodes of {name} have no token in universe '{uni.source}'; they keep "
            "their rows with an empty token list",
        )
    return out


def _scalar_metadata(stats: dict) -> dict:
    scalars = {k: v for k, v in stats.items() if k not in _PER_CELL}
    return {META_STATS: json.dumps(scalars).encode()}


def _finish(indptr, indices, names, frags, in_uni, stats, name, out_path, uni: Universe, overwrite, inputs):
    """Return or write the kept barcodes' tokens, held in memory (``indptr``, ``indices``)."""
    stats = _complete_stats(stats, np.diff(indptr), frags, in_uni, uni, name)
    if out_path is None:
        return TokenizedCells(indptr, indices, names, uni, stats)
    return write_tokens_parquet(
        out_path,
        indptr,
        indices,
        names,
        uni,
        extra_columns={"n_fragments": frags, "n_fragments_in_universe": in_uni},
        extra_metadata=_scalar_metadata(stats),
        overwrite=overwrite,
        inputs=inputs,
    )


def _write_runs(
    runs: TokenRuns, keep, names, frags, in_uni, stats, name, out_path, uni, overwrite, inputs, budget
):
    """Write the kept barcodes' tokens, held on disk in ``runs``, range by range: the same file as
    :func:`_finish` writes from memory (row groups cut by ``budget``)."""
    from fastembed.genome.tokenstream import TokenParquetStream

    n_all = frags.size if keep is None else keep.size
    lengths = np.zeros(names.size, dtype=np.int64)
    kept_before = np.zeros(n_all + 1, dtype=np.int64)  # kept barcodes before each barcode: its output row
    np.cumsum(np.ones(n_all, dtype=np.int64) if keep is None else keep, out=kept_before[1:])
    with TokenParquetStream(
        out_path,
        uni,
        overwrite=overwrite,
        inputs=inputs,
        memory=budget,
        extra_columns=("n_fragments", "n_fragments_in_universe"),
    ) as stream:
        # A range's pairs (8 bytes each), their scatter buffer and the folded result (4 + 4): a sixteenth of the
        # budget in tokens keeps them, and the stream's pending row group, within it.
        for lo, hi in runs.ranges(n_all, max(budget // 64, 1)):
            cells, tokens = runs.pairs(lo, hi)
            ptr, idx = fold_pairs(
                np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int32), cells, tokens, hi - lo
            )
            del cells, tokens
            if keep is not None:
                ptr, idx = _kept_rows(ptr, idx, keep[lo:hi])
            a, b = int(kept_before[lo]), int(kept_before[hi])
            lengths[a:b] = np.diff(ptr)
            stream.append(
                ptr,
                idx,
                names[a:b],
                {"n_fragments": frags[a:b], "n_fragments_in_universe": in_uni[a:b]},
            )
        # Inside the stream: a warning or an error here still leaves no file behind.
        stats = _complete_stats(stats, lengths, frags, in_uni, uni, name)
        return stream.close(_scalar_metadata(stats))
