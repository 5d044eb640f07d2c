"""The universe: the fixed, ordered set of genomic regions that are the vocabulary of a model.

Region ``i`` of the universe file is token ``i``; the seven special tokens of geniml/gtars follow as
ids ``N..N+6``. Regions are kept in file order; a sorted per-chromosome view for overlap queries is
built once, lazily.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from pathlib import Path

import numpy as np

from fastembed.common.warn import warn

SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>")
"""Special tokens appended after the universe regions, in this order (ids ``N..N+6``), as gtars does."""

N_SPECIAL = len(SPECIAL_TOKENS)

_SKIP_PREFIXES = ("#", "track", "browser")

MAX_COORD = 2**62
"""Largest accepted coordinate. Far beyond any genome, and low enough that the overlap arithmetic of the
tokenizer (``start + min_overlap``, ``end - min_overlap``) cannot overflow int64."""

# ASCII digits only: int() would also take '1_000', ' 12' or non-Latin digits, which no BED writer produces.
_INT = re.compile(r"-?[0-9]+")


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` starts with the gzip magic bytes (1f 8b): the one test of gzip in the package,
    by content, never by the file's name."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open a plain or gzipped UTF-8 text file for reading (gzip detected from the magic bytes, not the name).

    A UTF-8 byte-order mark (as Excel and some Windows editors write) is dropped, so it does not become part
    of the first field; CRLF and CR line ends read as plain newlines.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file '{path}' does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder; expected a file")
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="strict")
    return open(path, encoding="utf-8-sig", errors="strict")


def parse_coordinate(text: str, *, where: str, field: str) -> int:
    """One BED coordinate: ASCII decimal digits, ``0 <= value <= MAX_COORD``.

    Parameters
    ----------
    text
        The field, already stripped.
    where
        Prefix of messages naming the file and line (e.g. ``"universe 'u.bed' line 3"``).
    field
        Name of the field in messages (e.g. ``"field 2 (start)"``).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Not an integer, negative, or beyond ``MAX_COORD``.
    """
    if not _INT.fullmatch(text):
        raise ValueError(f"{where}: {field} must be an integer, got {text[:40]!r}")
    if text.startswith("-"):
        raise ValueError(f"{where}: {field} is negative ({text[:40]})")
    if len(text) > 19 or int(text) > MAX_COORD:
        raise ValueError(f"{where}: {field} {text[:40]} is beyond the largest accepted coordinate (2**62)")
    return int(text)


@contextlib.contextmanager
def reading_text(path, what: str, *, kind: str = "UTF-8 text"):
    """Around the reading of a text file (plain or gzipped): a decoding error or a damaged gzip stream becomes
    one ValueError naming ``what`` and ``path`` (``kind`` says what the file should have been); a missing file
    stays a FileNotFoundError."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} '{path}' is not {kind}: {err.reason} at byte {err.start}") from None
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt gzip stream
        raise ValueError(f"{what} '{path}' cannot be read ({type(err).__name__}: {str(err)[:120]})") from None


def read_bed(path: str | os.PathLike, *, what: str = "BED file") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the first three columns of a BED file (plain or gzipped).

    Lines that are empty or start with ``#``, ``track`` or ``browser`` are skipped; columns past the third
    are ignored. Fields are tab-separated (any whitespace if a line has no tab). A UTF-8 byte-order mark and
    CRLF line ends are accepted. Coordinates are ASCII decimal integers in ``[0, 2**62]``.

    Parameters
    ----------
    path
        The BED file.
    what
        How messages name the file (e.g. ``"universe"``).

    Returns
    -------
    chroms : np.ndarray of str (object), shape (n,)
    starts : np.ndarray of int64, shape (n,)
    ends : np.ndarray of int64, shape (n,)

    Raises
    ------
    ValueError
        A line with fewer than three fields, a non-integer, negative or out-of-range coordinate,
        ``start > end``, or a file that is not UTF-8 text; the message names the file, the line number
        and the field.
    """
    path = Path(path)
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    with reading_text(path, what, kind="a text BED file (not UTF-8 text)"):
        with open_text(path) as fh:
            text = fh.read()
        fast = _bed_at_once(text)
        if fast is not None:
            return fast
        with io.StringIO(text) as fh:  # the lines as the file gave them (newlines already translated)
            for lineno, line in enumerate(fh, 1):
                if not line.strip() or line.startswith(_SKIP_PREFIXES):
                    continue
                parts = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
                if len(parts) < 3:
                    raise ValueError(
                        f"{what} '{path}' line {lineno}: expected at least 3 fields (chr, start, end), "
                        f"got {len(parts)}: {line.strip()[:80]!r}"
                    )
                chrom, start_s, end_s = parts[0].strip(), parts[1].strip(), parts[2].strip()
                if not chrom:
                    raise ValueError(f"{what} '{path}' line {lineno}: field 1 (chr) is empty")
                where = f"{what} '{path}' line {lineno}"
                start = parse_coordinate(start_s, where=where, field="field 2 (start)")
                end = parse_coordinate(end_s, where=where, field="field 3 (end)")
                if start > end:
                    raise ValueError(
                        f"{what} '{path}' line {lineno}: start {start} > end {end} "
                        "(BED intervals are half-open [start, end) with start <= end)"
                    )
                chroms.append(chrom)
                starts.append(start)
                ends.append(end)
    return (
        np.array(chroms, dtype=object),
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
    )


# A plain BED line: a chromosome of printable ASCII, two tab-separated coordinates of at most 18 digits (always
# within MAX_COORD), any further columns after a tab.
_BED_LINE = re.compile(r"^([!-~]+)\t([0-9]{1,18})\t([0-9]{1,18})(?:\t[^\n]*)?$", re.MULTILINE)


def _bed_at_once(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The three columns of BED ``text`` from one regex scan, or None when a line needs the line-by-line reader
    of :func:`read_bed` (a blank, comment, track or browser line, fields split by spaces or padded, a start
    after its end, a coordinate of 19 digits or more): that reader gives the same arrays, or the error naming
    the line. A universe of 500,000 regions reads in a fraction of the seconds the line loop needs.

    Each line yields at most one match (``^`` anchors it at the line's start; no part of the pattern crosses a
    newline), so as many matches as lines means every line is plain.
    """
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if not text or n_lines == 0:
        return None
    found = _BED_LINE.findall(text)
    if len(found) != n_lines:
        return None
    # itemgetter per column: zip(*found) would call next() on 500,000 iterators per step (seconds).
    chroms, starts_s, ends_s = (list(map(itemgetter(i), found)) for i in range(3))
    if any(c.startswith(_SKIP_PREFIXES) for c in set(chroms)):
        return None
    starts = np.fromiter(map(int, starts_s), dtype=np.int64, count=n_lines)
    ends = np.fromiter(map(int, ends_s), dtype=np.int64, count=n_lines)
    if np.any(starts > ends):
        return None
    return np.array(chroms, dtype=object), starts, ends


def _encode_chroms(chroms: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Chromosome names in order of first appearance and an int32 code per region."""
    names, first, codes = np.unique(
        np.asarray(chroms, dtype=object).astype(str), return_index=True, return_inverse=True
    )
    # np.unique sorts names; renumber so codes follow the order of first appearance (stable, readable).
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [str(n) for n in names[order]], rank[codes.ravel()].astype(np.int32)


@dataclass(frozen=True, eq=False)
class Universe:
    """An ordered set of genomic regions; region ``i`` is token ``i``.

    Attributes
    ----------
    chrom_names : list of str
        Chromosome names in order of first appearance.
    chrom_codes : np.ndarray of int32, shape (n_regions,)
        Index into ``chrom_names`` of each region, in token order.
    starts, ends : np.ndarray of int64, shape (n_regions,)
        Half-open BED coordinates ``[start, end)`` in token order.
    source : str or None
        Where the universe was read from (used in messages).
    """

    chrom_names: list[str]
    chrom_codes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    source: str | None = field(default=None)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_bed(cls, path: str | os.PathLike) -> Universe:
        """Read a universe BED file (plain or gzipped); region order in the file is token order.

        Duplicate regions are kept (so token ids match models trained on the same file) and reported
        in a warning, since a peak overlapping one of them maps to every copy.
        """
        chroms, starts, ends = read_bed(path, what="universe")
        if starts.size == 0:
            raise ValueError(f"universe '{path}' holds no regions")
        uni = cls.from_arrays(chroms, starts, ends, source=str(path))
        uni._warn_duplicates()
        return uni

    @classmethod
    def from_arrays(cls, chroms, starts, ends, *, source: str | None = None) -> Universe:
        """Build a universe from per-region arrays (chromosome names, int starts, int ends)."""
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        ends = np.ascontiguousarray(ends, dtype=np.int64)
        chroms = np.asarray(chroms, dtype=object)
        if not (chroms.shape == starts.shape == ends.shape) or starts.ndim != 1:
            raise ValueError("universe arrays chroms, starts, ends must be 1-d and of equal length")
        invalid = (starts < 0) | (starts > ends) | (ends > MAX_COORD)
        if invalid.any():
            bad = int(np.flatnonzero(invalid)[0])
            raise ValueError(
                f"universe {source or ''} region {bad}: invalid interval [{starts[bad]}, {ends[bad]}) "
                "(need 0 <= start <= end <= 2**62)"
            )
        names, codes = _encode_chroms(chroms)
        return cls(names, codes, starts, ends, source)

    @classmethod
    def from_bed_text(cls, text: str, *, source: str | None = None) -> Universe:
        """Parse the canonical text written by :meth:`to_bed_text` (three tab-separated columns)."""
        if not text:
            raise ValueError(f"universe {source or ''}: empty region list")
        rows = [line.split("\t") for line in text.rstrip("\n").split("\n")]
        if any(len(r) != 3 for r in rows):
            raise ValueError(f"universe {source or ''}: expected 3 tab-separated columns per region")
        table = np.array(rows, dtype=object).reshape(len(rows), 3)
        try:
            starts = np.array([int(v) for v in table[:, 1]], dtype=np.int64)
            ends = np.array([int(v) for v in table[:, 2]], dtype=np.int64)
        except (ValueError, OverflowError):
            raise ValueError(
                f"universe {source or ''}: a start or end is not an integer in the int64 range"
            ) from None
        return cls.from_arrays(table[:, 0], starts, ends, source=source)

    def _warn_duplicates(self) -> None:
        # Sorted by (chromosome, start, end), a copy sits next to the region it repeats: as many duplicates as
        # equal neighbours (a lexsort of three int columns, far cheaper than np.unique on records).
        order = np.lexsort((self.ends, self.starts, self.chrom_codes))
        c, st, en = self.chrom_codes[order], self.starts[order], self.ends[order]
        n_dup = int(np.count_nonzero((c[1:] == c[:-1]) & (st[1:] == st[:-1]) & (en[1:] == en[:-1])))
        if n_dup:
            warn(
                f"universe '{self.source}': {n_dup} regions are exact duplicates of earlier lines; "
                "each copy keeps its own token id and a peak overlapping it maps to every copy",
            )

    # -- basic facts --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def n_regions(self) -> int:
        """Number of regions ``N`` (tokens ``0..N-1``)."""
        return len(self)

    @property
    def vocab_size(self) -> int:
        """``N + 7``: the regions plus the special tokens."""
        return len(self) + N_SPECIAL

    @cached_property
    def chroms(self) -> np.ndarray:
        """Chromosome name of each region in token order, np.ndarray of str (object), shape (N,)."""
        return np.array(self.chrom_names, dtype=object)[self.chrom_codes]

    def to_bed_text(self) -> str:
        """The regions as canonical BED text: ``chr\\tstart\\tend\\n`` per region, in token order."""
        # Built once: the checksum and every token file's metadata need it, and an atlas universe takes a second.
        return self._bed_text

    @cached_property
    def _bed_text(self) -> str:
        out = io.StringIO()
        names = self.chrom_names
        for c, s, e in zip(self.chrom_codes.tolist(), self.starts.tolist(), self.ends.tolist(), strict=True):
            out.write(f"{names[c]}\t{s}\t{e}\n")
        return out.getvalue()

    @cached_property
    def checksum(self) -> str:
        """SHA-256 (hex) of :meth:`to_bed_text`: identifies the universe regardless of file formatting."""
        return hashlib.sha256(self.to_bed_text().encode()).hexdigest()

    def write_bed(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the regions as a three-column BED file, row ``i`` = token ``i`` (the specials are implied).

        An existing ``path`` is an error unless ``overwrite`` (a regular file only; never a folder or a link).
        """
        from fastembed.storage.atomic import atomic_file

        with atomic_file(path, what="universe output", overwrite=overwrite) as tmp:
            tmp.write_text(self.to_bed_text())

    def same_as(self, other: Universe) -> bool:
        """True if both universes hold the same regions in the same token order."""
        return (
            len(self) == len(other)
            and np.array_equal(self.starts, other.starts)
            and np.array_equal(self.ends, other.ends)
            and np.array_equal(self.chroms, other.chroms)
        )

    # -- sorted view for overlap queries ------------------------------------------------------------
    @cached_property
    def sorted_index(self) -> SortedRegions:
        """Regions sorted by (chromosome, start) with a running maximum of ends per chromosome."""
        return SortedRegions.build(self)


def resolve_universe(universe_file) -> Universe:
    """The :class:`Universe` that a ``universe=`` argument names: a Universe as it is, or one read from the BED
    file at a path. A folder or a missing file is an IsADirectoryError or FileNotFoundError naming the path;
    anything else (e.g. a DataFrame of regions) is a TypeError that says what to pass."""
    if isinstance(universe_file, Universe):
        return universe_file
    if not isinstance(universe_file, str | os.PathLike):
        raise TypeError(
            f"the universe must be a BED file path or a fastembed Universe, got {type(universe_file).__name__}"
            " (a table of regions: write it as BED, chr/start/end separated by tabs, and pass the file)"
        )
    path = Path(universe_file)
    if path.is_dir():
        raise IsADirectoryError(f"universe file '{path}' is a folder; expected a BED file")
    if not path.is_file():
        raise FileNotFoundError(f"universe file '{path}' does not exist")
    return Universe.from_bed(path)


@dataclass(frozen=True)
class SortedRegions:
    """The universe sorted by (chromosome code, start, end), laid out for binary search in numba.

    Attributes
    ----------
    chrom_lo, chrom_hi : np.ndarray of int64, shape (n_chroms,)
        Slice of the sorted arrays holding each chromosome (indexed by chromosome code).
    starts, ends : np.ndarray of int64, shape (N,)
        Sorted region coordinates.
    max_end : np.ndarray of int64, shape (N,)
        Running maximum of ``ends`` from the start of each chromosome's slice; non-decreasing within a
        chromosome, so the first region that can reach a query is found by binary search even when
        regions nest or overlap.
    token : np.ndarray of int32, shape (N,)
        Token id (position in file order) of each sorted region.
    """

    chrom_lo: np.ndarray
    chrom_hi: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    max_end: np.ndarray
    token: np.ndarray

    @classmethod
    def build(cls, uni: Universe) -> SortedRegions:
        order = np.lexsort((uni.ends, uni.starts, uni.chrom_codes))
        codes = uni.chrom_codes[order]
        starts = uni.starts[order]
        ends = uni.ends[order]
        n_chroms = len(uni.chrom_names)
        chrom_lo = np.searchsorted(codes, np.arange(n_chroms), side="left").astype(np.int64)
        chrom_hi = np.searchsorted(codes, np.arange(n_chroms), side="right").astype(np.int64)
        max_end = ends.copy()
        for lo, hi in zip(chrom_lo.tolist(), chrom_hi.tolist(), strict=True):
            np.maximum.accumulate(max_end[lo:hi], out=max_end[lo:hi])
        return cls(chrom_lo, chrom_hi, starts, ends, max_end, order.astype(np.int32))
