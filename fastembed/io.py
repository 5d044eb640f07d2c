"""Data in and out: 10x/MatrixMarket readers, peak coordinates of an AnnData, tokenization, token parquet files.

The token parquet layout is gtars's: one row per cell with ``tokens: list<int32>``, plus ``barcode: string``.
Its key-value metadata carries the universe (regions in token order) and its checksum, so a dataset always
knows its universe.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from . import tokenize as _tok
from ._atomic import atomic_file, check_output_path, output_lock
from .universe import Universe, open_text, read_bed

__all__ = [
    "TokenizedCells",
    "read_mtx",
    "read_10x",
    "read_h5ad",
    "peak_coordinates",
    "tokenize_cells",
    "write_tokens_parquet",
    "read_tokens_parquet",
]

# Parquet key-value metadata keys.
META_FORMAT = b"fastembed.format"
META_UNIVERSE = b"fastembed.universe.bed.gz.b64"
META_CHECKSUM = b"fastembed.universe.sha256"
META_N_REGIONS = b"fastembed.universe.n_regions"
FORMAT_VERSION = b"fastembed-tokens/1"

# Cells per parquet row group: keeps list offsets within int32 and bounds memory of one write.
ROW_GROUP_CELLS = 65_536
META_STATS = b"fastembed.tokenize.stats"
FEW_TOKENS = 10
"""A cell with fewer tokens than this (but at least one) counts as having few tokens in the tokenize
diagnostics: its embedding is the mean of a handful of vectors and is noisy."""

_COORD_NAME = re.compile(r"^(?P<chr>[^:\s]+?)[:\-](?P<start>\d+)-(?P<end>\d+)$")
_CHR_ALIASES = ("chr", "chrom", "chromosome", "seqnames", "seqname")
_START_ALIASES = ("start", "chromstart")
_END_ALIASES = ("end", "chromend")


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------
def _read_barcodes(path: Path) -> np.ndarray:
    with open_text(path) as fh:
        lines = [line.rstrip("\r\n").split("\t", 1)[0] for line in fh]
    while lines and not lines[-1]:
        lines.pop()
    if any(not b for b in lines):
        first = next(i for i, b in enumerate(lines) if not b) + 1
        raise ValueError(f"barcodes file '{path}' line {first}: empty barcode")
    if not lines:
        raise ValueError(f"barcodes file '{path}' holds no barcodes")
    return np.array(lines, dtype=object)


def _var_frame(chroms: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pd.DataFrame:
    chroms = np.asarray(chroms, dtype=object).astype(str)
    names = pd.Index(
        [f"{c}:{s}-{e}" for c, s, e in zip(chroms.tolist(), starts.tolist(), ends.tolist(), strict=True)]
    )
    return pd.DataFrame(
        {"chr": pd.array(chroms, dtype=object), "start": starts.astype(np.int64), "end": ends.astype(np.int64)},
        index=names,
    )


def _mm_shape(path: Path) -> tuple[int, int]:
    try:
        with open_text(path) as fh:
            header = fh.readline()
            if not header.startswith("%%MatrixMarket"):
                raise ValueError(
                    f"matrix file '{path}': not a MatrixMarket file (first line should start with "
                    f"'%%MatrixMarket', got {header.strip()[:60]!r})"
                )
            for line in fh:
                if line.startswith("%") or not line.strip():
                    continue
                fields = line.split()
                return int(fields[0]), int(fields[1])
    except UnicodeDecodeError:
        raise ValueError(f"matrix file '{path}': not a MatrixMarket text file") from None
    raise ValueError(f"matrix file '{path}': no size line after the MatrixMarket header")


def _read_mm(path: Path) -> sp.csr_matrix:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            mat = scipy.io.mmread(fh)
    except Exception as err:  # scipy raises several types on malformed entries
        raise ValueError(f"matrix file '{path}': cannot parse MatrixMarket data ({err})") from None
    return sp.csr_matrix(mat)


def _orient(path: Path, shape: tuple[int, int], n_barcodes: int, n_peaks: int,
            barcodes_path: Path, peaks_path: Path) -> bool:
    """True if the matrix is peaks x cells (needs a transpose)."""
    rows, cols = shape
    cells_by_peaks = rows == n_barcodes and cols == n_peaks
    peaks_by_cells = rows == n_peaks and cols == n_barcodes
    if cells_by_peaks and peaks_by_cells:
        warnings.warn(
            f"matrix file '{path}' is {rows} x {cols} with as many barcodes as peaks; "
            "assuming the 10x orientation (peaks x cells)",
            stacklevel=3,
        )
        return True
    if peaks_by_cells:
        return True
    if cells_by_peaks:
        return False
    raise ValueError(
        f"matrix file '{path}' is {rows} x {cols}, which fits neither cells x peaks nor peaks x cells for "
        f"{n_barcodes} barcodes ('{barcodes_path}') and {n_peaks} peaks ('{peaks_path}')"
    )


def read_mtx(matrix: str | os.PathLike, barcodes: str | os.PathLike, peaks: str | os.PathLike):
    """Read a MatrixMarket peak matrix with its barcodes and peaks into an AnnData.

    Parameters
    ----------
    matrix
        ``.mtx`` or ``.mtx.gz``, cells x peaks or peaks x cells (10x writes peaks x cells); the
        orientation is decided from the numbers of barcodes and peaks.
    barcodes
        Text file, one barcode per line (further tab-separated columns are ignored; gzip allowed).
    peaks
        BED file of the matrix's peaks: chr, start, end (further columns ignored; gzip allowed).

    Returns
    -------
    anndata.AnnData
        ``X``: scipy CSR matrix (n_cells, n_peaks) with the file's values; ``obs_names``: barcodes;
        ``var``: columns ``chr`` (str), ``start``, ``end`` (int64), ``var_names`` ``chr:start-end``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing files, malformed lines (file and line named), or a matrix shape that fits neither
        orientation.
    """
    import anndata as ad

    matrix, barcodes, peaks = Path(matrix), Path(barcodes), Path(peaks)
    for p, what in ((matrix, "matrix"), (barcodes, "barcodes"), (peaks, "peaks")):
        if not p.is_file():
            raise FileNotFoundError(f"{what} file '{p}' does not exist")
    bcs = _read_barcodes(barcodes)
    chroms, starts, ends = read_bed(peaks, what="peaks file")
    if starts.size == 0:
        raise ValueError(f"peaks file '{peaks}' holds no peaks")
    transpose = _orient(matrix, _mm_shape(matrix), bcs.size, starts.size, barcodes, peaks)
    X = _read_mm(matrix)
    if transpose:
        X = X.T.tocsr()
    return ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(bcs.astype(str))), var=_var_frame(chroms, starts, ends))


def _find(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in ("", ".gz"):
            p = directory / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def read_10x(directory: str | os.PathLike):
    """Read a 10x Genomics peak-barcode matrix folder into an AnnData.

    Parameters
    ----------
    directory
        Folder holding ``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]`` and either ``peaks.bed[.gz]`` or
        ``features.tsv[.gz]`` (10x ATAC/multiome; only rows of type ``Peaks`` are kept).

    Returns
    -------
    anndata.AnnData
        As :func:`read_mtx`.
    """
    import anndata as ad

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"10x folder '{directory}' does not exist or is not a folder")
    matrix = _find(directory, ("matrix.mtx",))
    barcodes = _find(directory, ("barcodes.tsv",))
    peaks = _find(directory, ("peaks.bed",))
    features = _find(directory, ("features.tsv",))
    missing = [n for n, p in (("matrix.mtx[.gz]", matrix), ("barcodes.tsv[.gz]", barcodes)) if p is None]
    if peaks is None and features is None:
        missing.append("peaks.bed[.gz] or features.tsv[.gz]")
    if missing:
        raise FileNotFoundError(f"10x folder '{directory}' lacks {', '.join(missing)}")
    if peaks is not None:
        return read_mtx(matrix, barcodes, peaks)

    # features.tsv: id, name, type[, chrom, start, end]; a multiome file also lists genes.
    with open_text(features) as fh:
        rows = [line.rstrip("\r\n").split("\t") for line in fh if line.strip()]
    keep = np.array([len(r) < 3 or r[2] == "Peaks" for r in rows])
    chroms, starts, ends = [], [], []
    for i, r in enumerate(rows):
        if not keep[i]:
            continue
        if len(r) >= 6:
            c, s, e = r[3], r[4], r[5]
        else:
            m = _COORD_NAME.match(r[0])
            if m is None:
                raise ValueError(
                    f"features file '{features}' line {i + 1}: field 1 should look like 'chr1:100-200' "
                    f"when there are no chrom/start/end columns, got {r[0]!r}"
                )
            c, s, e = m["chr"], m["start"], m["end"]
        try:
            chroms.append(c)
            starts.append(int(s))
            ends.append(int(e))
        except ValueError:
            raise ValueError(f"features file '{features}' line {i + 1}: non-integer start/end {s!r}, {e!r}") from None
    if not chroms:
        raise ValueError(f"features file '{features}' has no rows of type 'Peaks'")
    bcs = _read_barcodes(barcodes)
    transpose = _orient(matrix, _mm_shape(matrix), bcs.size, len(rows), barcodes, features)
    X = _read_mm(matrix)
    X = (X.T.tocsr() if transpose else X)[:, np.flatnonzero(keep)].tocsr()
    starts_a, ends_a = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    return ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(bcs.astype(str))),
                      var=_var_frame(np.array(chroms, dtype=object), starts_a, ends_a))


def read_h5ad(path: str | os.PathLike, *, backed: bool = False):
    """Read an ``.h5ad`` file with a message that names the file when it is not one.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    backed
        Open ``X`` in read-only backed mode (rows are read on demand; useful for large files).

    Returns
    -------
    anndata.AnnData
    """
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AnnData file '{path}' does not exist")
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:
        raise ValueError(f"AnnData file '{path}' cannot be read as .h5ad ({type(err).__name__}: {err})") from None


class LazyAnnData:
    """The parts of an on-disk AnnData (``.h5ad`` or ``.zarr``) that tokenizing and encoding read, lazily.

    Only ``var`` and the cell names are loaded; ``X`` stays on disk and ``X[lo:hi]`` reads one block of rows
    (anndata's backed sparse dataset for CSR/CSC groups, an array slice for dense ``X``; a CSC ``X`` is
    read whole for each block, so store large data as CSR). Other ``obs`` columns,
    ``obsm``, layers etc. are never read, so memory is bounded by the block size, not the dataset.

    Attributes
    ----------
    X : anndata backed sparse dataset or h5py/zarr array, shape (n_obs, n_vars)
    var : pandas.DataFrame
    obs_names, var_names : pandas.Index
    n_obs, n_vars : int
    """

    def __init__(self, path: str | os.PathLike):
        from anndata.io import read_elem, sparse_dataset

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"AnnData file '{path}' does not exist")
        try:
            if path.suffix == ".zarr":
                import zarr

                self._root = zarr.open_group(str(path), mode="r")
            else:
                import h5py

                self._root = h5py.File(path, "r")
            root = self._root
            self.var = read_elem(root["var"])
            obs = root["obs"]
            self.obs_names = pd.Index(np.asarray(read_elem(obs[obs.attrs["_index"]]), dtype=object))
            x = root["X"]
            sparse = x.attrs.get("encoding-type", "") in ("csr_matrix", "csc_matrix")
            self.X = sparse_dataset(x) if sparse else x
        except (KeyError, OSError, ValueError, TypeError) as err:
            raise ValueError(
                f"AnnData file '{path}' cannot be read as {path.suffix} ({type(err).__name__}: {str(err)[:200]})"
            ) from None
        self.n_obs, self.n_vars = (int(n) for n in self.X.shape)
        if self.n_obs != len(self.obs_names) or self.n_vars != len(self.var):
            raise ValueError(
                f"AnnData file '{path}': X is {self.n_obs} x {self.n_vars} but obs has {len(self.obs_names)} and "
                f"var {len(self.var)} rows"
            )
        self.var_names = self.var.index

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_obs, self.n_vars


def as_adata(adata, *, backed: bool = True):
    """Return (AnnData, name for messages) from an AnnData or an .h5ad/.zarr path (read lazily, see LazyAnnData)."""
    if isinstance(adata, str | os.PathLike):
        if backed and Path(adata).suffix in (".h5ad", ".zarr"):
            return LazyAnnData(adata), f"'{adata}'"
        return read_h5ad(adata, backed=backed), f"'{adata}'"
    if not hasattr(adata, "var") or not hasattr(adata, "X"):
        raise TypeError(f"expected an AnnData or an .h5ad path, got {type(adata).__name__}")
    return adata, "the AnnData"


# --------------------------------------------------------------------------------------------------
# Peak coordinates of an AnnData
# --------------------------------------------------------------------------------------------------
def _find_column(var: pd.DataFrame, aliases: tuple[str, ...]) -> str | None:
    lower = {str(c).lower(): c for c in var.columns}
    for a in aliases:
        if a in lower:
            return lower[a]
    return None


def peak_coordinates(adata, *, name: str = "the AnnData") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Genomic coordinates of an AnnData's peaks (its ``var``).

    Taken from ``var`` columns ``chr``/``start``/``end`` (also ``chrom``/``seqnames``, ``chromStart``/
    ``chromEnd``), or else parsed from ``var_names`` like ``chr1:100-200`` or ``chr1-100-200``.

    Parameters
    ----------
    adata : anndata.AnnData
    name
        How messages name the AnnData (e.g. its file).

    Returns
    -------
    chroms : np.ndarray of str (object), shape (n_vars,)
    starts, ends : np.ndarray of int64, shape (n_vars,)
    """
    var = adata.var
    cc, sc_, ec = (_find_column(var, a) for a in (_CHR_ALIASES, _START_ALIASES, _END_ALIASES))
    if cc is not None and sc_ is not None and ec is not None:
        chroms = var[cc].astype(str).to_numpy(dtype=object)
        coords = []
        for col in (sc_, ec):
            values = pd.to_numeric(var[col], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{name}: var column '{col}' must hold integers; peak {i} ({var.index[i]!r}) has "
                    f"{var[col].iloc[i]!r}"
                )
            coords.append(values.astype(np.int64))
        starts, ends = coords
    else:
        names = pd.Series(np.asarray(adata.var_names, dtype=str))
        parts = names.str.extract(_COORD_NAME)
        missing = parts["chr"].isna().to_numpy()
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"{name}: var has no 'chr'/'start'/'end' columns and var_names do not look like "
                f"'chr1:100-200' or 'chr1-100-200' (var_name {i} is {names.iloc[i]!r})"
            )
        chroms = parts["chr"].to_numpy(dtype=object)
        starts = parts["start"].astype(np.int64).to_numpy()
        ends = parts["end"].astype(np.int64).to_numpy()
    bad = (starts < 0) | (starts > ends)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: peak {i} ({adata.var_names[i]!r}) has invalid coordinates [{starts[i]}, {ends[i]}) "
            "(need 0 <= start <= end)"
        )
    return chroms, starts, ends


# --------------------------------------------------------------------------------------------------
# Tokenized cells
# --------------------------------------------------------------------------------------------------
@dataclass
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
        What tokenization kept and dropped (:func:`tokenize_cells`; also in the parquet metadata):
        ``n_cells``, ``n_tokens``, ``n_peaks``, ``n_peaks_unmapped`` (peaks overlapping no region),
        ``n_peaks_unknown_chrom``, ``fraction_peaks_in_universe``; ``n_counts`` (nonzero cell x peak entries
        of the matrix), ``n_counts_in_universe``, ``fraction_counts_in_universe``; ``n_empty_cells`` (no
        token), ``n_few_token_cells`` (1 to ``few_tokens - 1`` tokens), ``few_tokens``
        (:data:`FEW_TOKENS`), ``median_tokens_per_cell``. A file read back has what its writer recorded.
    """

    indptr: np.ndarray
    indices: np.ndarray
    barcodes: np.ndarray
    universe: Universe
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        """Token ids of cell ``i``: np.ndarray of int32."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"cell {i} out of range for {n} cells")
        i %= n
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

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
        return write_tokens_parquet(path, self.indptr, self.indices, self.barcodes, self.universe,
                                    overwrite=overwrite)


def resolve_universe(universe_file) -> Universe:
    """A :class:`Universe` from itself or from a BED path."""
    if isinstance(universe_file, Universe):
        return universe_file
    path = Path(universe_file)
    if not path.is_file():
        raise FileNotFoundError(f"universe file '{path}' does not exist")
    return Universe.from_bed(path)


CHROM_STYLES = ("asis", "add-chr", "strip-chr")
"""How peak chromosome names are matched to the universe's: as they are, with a ``chr`` prefix added
(Ensembl ``1``, ``MT`` -> UCSC ``chr1``, ``chrM``), or with it removed (the reverse)."""


def restyle_chroms(chroms: np.ndarray, style: str) -> np.ndarray:
    """Chromosome names in another naming style (see :data:`CHROM_STYLES`).

    ``"add-chr"`` prefixes names that lack ``chr`` and maps ``MT`` to ``chrM``; ``"strip-chr"`` removes the
    prefix and maps ``chrM`` to ``MT``; names already in the target style are kept. ``"asis"`` changes nothing.
    """
    if style not in CHROM_STYLES:
        raise ValueError(f"chrom_style must be one of {', '.join(CHROM_STYLES)}, got {style!r}")
    chroms = np.asarray(chroms, dtype=object)
    if style == "asis":
        return chroms
    names = pd.unique(chroms)
    if style == "add-chr":
        new = ["chrM" if c == "MT" else c if c.startswith("chr") else f"chr{c}" for c in names]
    else:
        new = ["MT" if c == "chrM" else c[3:] if c.startswith("chr") else c for c in names]
    return pd.Series(chroms).map(dict(zip(names, new, strict=True))).to_numpy(dtype=object)


def _style_hint(peak_chroms, uni_chroms) -> str:
    peak_chr = sum(str(c).startswith("chr") for c in peak_chroms) > len(peak_chroms) / 2
    uni_chr = sum(str(c).startswith("chr") for c in uni_chroms) > len(uni_chroms) / 2
    if uni_chr and not peak_chr:
        return "pass chrom_style='add-chr' to match them"
    if peak_chr and not uni_chr:
        return "pass chrom_style='strip-chr' to match them"
    return "rename one to match the other (chrom_style= adds or strips a 'chr' prefix)"


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
        styled = "" if chrom_style == "asis" else f" (chrom_style='{chrom_style}')"
        raise ValueError(
            f"none of the peak chromosomes of {name}{styled} ({peak_examples}) occur in universe "
            f"'{uni.source}' ({uni_examples}): the two name chromosomes differently "
            f"(e.g. '1' vs 'chr1'); {_style_hint(pd.unique(given), uni.chrom_names)}"
        )
    if unknown.any():
        missing = pd.unique(peak_chroms[unknown])
        warnings.warn(
            f"{int(unknown.sum())} of {unknown.size} peaks of {name} lie on {missing.size} chromosomes absent "
            f"from universe '{uni.source}' ({', '.join(repr(c) for c in missing[:5])}"
            f"{', ...' if missing.size > 5 else ''}); they get no token",
            stacklevel=3,
        )
    return codes


def _csr_rows(X, lo: int, hi: int) -> sp.csr_matrix:
    """Rows lo:hi of X (in memory or backed) as CSR with int64 indptr."""
    if sp.issparse(X) and X.format == "csr" and lo == 0 and hi == X.shape[0]:
        return X  # the whole in-memory matrix: no copy
    block = X[lo:hi]
    if hasattr(block, "to_memory"):
        block = block.to_memory()
    if not sp.issparse(block):
        block = sp.csr_matrix(np.asarray(block))
    return sp.csr_matrix(block)


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

    def __init__(self, adata, universe: Universe, *, min_overlap: int = 1, name: str = "the AnnData",
                 chrom_style: str = "asis"):
        if int(min_overlap) != min_overlap or min_overlap < 1:
            raise ValueError(f"min_overlap must be an integer >= 1 bp, got {min_overlap!r}")
        if adata.n_obs == 0:
            raise ValueError(f"{name} has zero cells; nothing to tokenize")
        if adata.n_vars == 0:
            raise ValueError(f"{name} has zero peaks (var is empty); nothing to tokenize")
        self.universe = universe
        self.name = name
        chroms, starts, ends = peak_coordinates(adata, name=name)
        codes = _chrom_codes(chroms, universe, name, chrom_style)
        self.peak_offsets, self.peak_tokens = _tok.map_peaks(codes, starts, ends, universe.sorted_index,
                                                             int(min_overlap))
        self.n_peaks = int(adata.n_vars)
        self._mapped = np.diff(self.peak_offsets) > 0
        self.n_peaks_unmapped = int(np.count_nonzero(~self._mapped))
        self.n_peaks_unknown_chrom = int(np.count_nonzero(codes < 0))
        self.n_counts = 0
        self.n_counts_in_universe = 0

    def tokens(self, X, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of rows ``lo:hi`` of ``X`` (in memory or backed): ``(indptr int64, indices int32)``.

        Also adds the block's nonzero entries to ``n_counts`` and those on a mapped peak to
        ``n_counts_in_universe``.
        """
        block = _csr_rows(X, lo, hi)
        nonzero = block.data != 0
        self.n_counts += int(np.count_nonzero(nonzero))
        self.n_counts_in_universe += int(np.count_nonzero(nonzero & self._mapped[block.indices]))
        return _tok.cells_to_tokens(block.indptr, block.indices, block.data, self.peak_offsets, self.peak_tokens)


def tokenize_cells(adata, universe_file, output=None, *, min_overlap: int = 1, chunk_cells: int = 100_000,
                   overwrite: bool = False, chrom_style: str = "asis"):
    """Tokenize each cell's open regions against a universe.

    Parameters
    ----------
    adata : anndata.AnnData or str or os.PathLike
        Cells x peaks AnnData, or a path to an on-disk ``.h5ad`` or ``.zarr`` AnnData, read lazily
        ``chunk_cells`` rows at a time (:class:`LazyAnnData`; bit-identical to the in-memory result). Its peaks come from
        ``var`` ``chr``/``start``/``end`` or ``var_names`` like ``chr1:100-200``. A cell's regions are its
        nonzero columns; values are not counts.
    universe_file : str or os.PathLike or Universe
        Universe BED file (optionally gzipped); line ``i`` is token ``i``.
    output : str or os.PathLike, optional
        Parquet path. If given, the tokens are written there (atomically) and the path is returned.
    min_overlap : int
        Minimum overlap in bp between a peak and a universe region (half-open intervals; default 1: any
        overlap, as gtars does). A peak maps to every region it overlaps.
    chunk_cells : int
        Cells processed at a time; bounds memory for large backed files.
    overwrite : bool
        Replace an existing ``output``, only if it is a token parquet file written by fastembed. ``output`` may
        never be the AnnData's file or the universe file (nor a folder holding them).
    chrom_style : {"asis", "add-chr", "strip-chr"}
        Match the peaks' chromosome names to the universe's as they are (default), with a ``chr`` prefix
        added (data ``1``, ``MT`` against a universe ``chr1``, ``chrM``) or removed (the reverse). Never
        guessed: names that match in no style are an error that suggests the style to pass.

    Returns
    -------
    TokenizedCells or pathlib.Path
        In-memory tokens (``output=None``) or the parquet path. Every input cell keeps its row, in order,
        even with no token. Peaks that hit nothing are dropped and counted in ``stats``.
    """
    inputs = [adata, universe_file if not isinstance(universe_file, Universe) else universe_file.source]
    if output is None:
        return _tokenize_cells(adata, universe_file, None, min_overlap, chunk_cells, overwrite, inputs, chrom_style)
    out_path = check_output_path(output, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet")
    # Held for the whole run, so a second writer of the same file fails now rather than after the work.
    with output_lock(out_path, what="parquet output"):
        return _tokenize_cells(adata, universe_file, out_path, min_overlap, chunk_cells, overwrite, inputs,
                               chrom_style)


def _tokenize_cells(adata, universe_file, out_path, min_overlap, chunk_cells, overwrite, inputs, chrom_style):
    restyle_chroms([], chrom_style)  # a bad style is refused before any file is read
    uni = resolve_universe(universe_file)
    adata, name = as_adata(adata)
    mapper = PeakMapper(adata, uni, min_overlap=min_overlap, name=name, chrom_style=chrom_style)
    if mapper.n_peaks_unmapped == mapper.n_peaks:
        # Raised here, not at training ("empty dataset"), where the cause is no longer visible.
        raise ValueError(
            f"none of the {mapper.n_peaks} peaks of {name} overlaps a region of universe '{uni.source}' by at "
            f"least min_overlap={min_overlap} bp ({mapper.n_peaks_unknown_chrom} lie on chromosomes the universe "
            "lacks): lower min_overlap= or check that the peaks and the universe use the same genome build"
        )
    indptr_parts, index_parts = [np.zeros(1, dtype=np.int64)], []
    total = 0
    for lo in range(0, adata.n_obs, chunk_cells):
        ip, ix = mapper.tokens(adata.X, lo, min(lo + chunk_cells, adata.n_obs))
        indptr_parts.append(ip[1:] + total)
        index_parts.append(ix)
        total += int(ip[-1])
    indptr = np.concatenate(indptr_parts)
    indices = np.concatenate(index_parts)
    lengths = np.diff(indptr)
    n_empty = int(np.count_nonzero(lengths == 0))
    if n_empty == lengths.size:
        raise ValueError(
            f"no cell of {name} has a token in universe '{uni.source}': the {adata.n_obs} cells have no nonzero "
            f"entry on the {mapper.n_peaks - mapper.n_peaks_unmapped} peaks that overlap a region; check the "
            "matrix (cells x peaks) and the universe"
        )
    stats = {
        "n_cells": int(adata.n_obs),
        "n_tokens": int(indptr[-1]),
        "n_peaks": mapper.n_peaks,
        "n_peaks_unmapped": mapper.n_peaks_unmapped,
        "n_peaks_unknown_chrom": mapper.n_peaks_unknown_chrom,
        "fraction_peaks_in_universe": 1 - mapper.n_peaks_unmapped / mapper.n_peaks,
        "n_counts": mapper.n_counts,
        "n_counts_in_universe": mapper.n_counts_in_universe,
        "fraction_counts_in_universe": mapper.n_counts_in_universe / max(mapper.n_counts, 1),
        "n_empty_cells": n_empty,
        "n_few_token_cells": int(np.count_nonzero((lengths > 0) & (lengths < FEW_TOKENS))),
        "few_tokens": FEW_TOKENS,
        "median_tokens_per_cell": float(np.median(lengths)),
    }
    if n_empty:
        warnings.warn(
            f"{n_empty} of {adata.n_obs} cells of {name} have no token in universe '{uni.source}' "
            "(their peaks overlap no region); they keep their rows with an empty token list",
            stacklevel=3,
        )
    barcodes = np.asarray(adata.obs_names, dtype=object)
    if out_path is None:
        return TokenizedCells(indptr, indices, barcodes, uni, stats)
    return write_tokens_parquet(out_path, indptr, indices, barcodes, uni, overwrite=overwrite, inputs=inputs,
                                extra_metadata={META_STATS: json.dumps(stats).encode()})


def tokenize_summary(stats: dict) -> str:
    """The tokenize diagnostics of ``stats`` (:attr:`TokenizedCells.stats`) as one line for people."""
    return (f"{stats['n_peaks'] - stats['n_peaks_unmapped']} of {stats['n_peaks']} peaks "
            f"({100 * stats['fraction_peaks_in_universe']:.1f}%) and {stats['n_counts_in_universe']} of "
            f"{stats['n_counts']} counts ({100 * stats['fraction_counts_in_universe']:.1f}%) in the universe; "
            f"{stats['n_empty_cells']} of {stats['n_cells']} cells with no token, {stats['n_few_token_cells']} "
            f"with fewer than {stats['few_tokens']}; median {stats['median_tokens_per_cell']:g} tokens per cell")


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


def write_tokens_parquet(path, indptr, indices, barcodes, universe: Universe, *, extra_columns=None,
                         extra_metadata=None, overwrite: bool = False, inputs=()) -> Path:
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
    if barcodes.size != n_cells:
        raise ValueError(f"{barcodes.size} barcodes for {n_cells} cells")
    extra = {k: np.asarray(v, dtype=np.int64) for k, v in (extra_columns or {}).items()}
    for k, v in extra.items():
        if v.shape != (n_cells,):
            raise ValueError(f"column '{k}': {v.size} values for {n_cells} cells")
    schema = pa.schema(
        [pa.field("tokens", pa.list_(pa.int32())), pa.field("barcode", pa.string())]
        + [pa.field(k, pa.int64()) for k in extra],
        metadata={**_universe_metadata(universe), **(extra_metadata or {})},
    )
    with (atomic_file(path, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet") as tmp,
          pq.ParquetWriter(tmp, schema, compression="zstd") as writer):
        for lo in range(0, max(n_cells, 1), ROW_GROUP_CELLS):
            hi = min(lo + ROW_GROUP_CELLS, n_cells)
            base = indptr[lo]
            offsets = pa.array((indptr[lo:hi + 1] - base).astype(np.int32))
            values = pa.array(indices[base:indptr[hi]], type=pa.int32())
            tokens = pa.ListArray.from_arrays(offsets, values)
            columns = {"tokens": tokens, "barcode": pa.array(barcodes[lo:hi].astype(str))}
            columns.update({k: pa.array(v[lo:hi]) for k, v in extra.items()})
            writer.write_table(pa.table(columns, schema=schema))
    return path


def read_tokens_parquet(path: str | os.PathLike, *, universe=None):
    """Read a token parquet file (ours or gtars's) into CSR arrays without per-cell Python objects.

    Parameters
    ----------
    path
        Parquet file with a ``tokens`` list column (int32 or int64) and optionally ``barcode``.
    universe : Universe or path, optional
        The universe, for files that do not carry one in their metadata (e.g. written by gtars).

    Returns
    -------
    TokenizedCells
        Barcodes default to ``"0".."n-1"`` when the file has no ``barcode`` column.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file '{path}' does not exist")
    try:
        pfile = pq.ParquetFile(path, memory_map=True)
    except Exception as err:
        raise ValueError(f"token file '{path}' is not a parquet file ({err})") from None
    schema = pfile.schema_arrow
    if "tokens" not in schema.names:
        raise ValueError(f"token file '{path}' has no 'tokens' column (columns: {', '.join(schema.names)})")
    ttype = schema.field("tokens").type
    if not (pa.types.is_list(ttype) or pa.types.is_large_list(ttype)) or not pa.types.is_integer(ttype.value_type):
        raise ValueError(f"token file '{path}': column 'tokens' must be list<int32>, got {ttype}")
    meta = schema.metadata or {}
    uni = _universe_from_metadata(meta, path) if universe is None else resolve_universe(universe)
    if uni is None:
        raise ValueError(
            f"token file '{path}' does not carry its universe (not written by fastembed); "
            "pass universe=<the BED file it was tokenized with>"
        )
    columns = ["tokens"] + (["barcode"] if "barcode" in schema.names else [])
    table = pfile.read(columns=columns)
    col = table.column("tokens")
    n_cells = table.num_rows
    lengths = np.zeros(n_cells, dtype=np.int64)
    values_parts = []
    row = 0
    for chunk in col.chunks:
        n = len(chunk)
        offs = np.asarray(chunk.offsets, dtype=np.int64)
        if chunk.null_count:
            valid = np.asarray(chunk.is_valid(), dtype=bool)
            seg = np.where(valid, np.diff(offs), 0)
        else:
            seg = np.diff(offs)
        lengths[row:row + n] = seg
        vals = np.asarray(chunk.values, dtype=np.int64 if chunk.values.type.bit_width > 32 else np.int32)
        vals = vals[offs[0]:offs[-1]]
        if chunk.null_count:
            keep = np.repeat(valid, np.diff(offs))
            vals = vals[keep]
        values_parts.append(vals)
        row += n
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    values = np.concatenate(values_parts) if values_parts else np.empty(0, dtype=np.int32)
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= uni.vocab_size:
            raise ValueError(
                f"token file '{path}': token ids must lie in [0, {uni.vocab_size}) for its universe of "
                f"{len(uni)} regions, found {lo if lo < 0 else hi}"
            )
    indices = np.ascontiguousarray(values, dtype=np.int32)
    if "barcode" in columns:
        barcodes = table.column("barcode").to_numpy(zero_copy_only=False).astype(object)
    else:
        barcodes = np.arange(n_cells).astype(str).astype(object)
    stats = {}
    if META_STATS in meta:
        try:
            stats = json.loads(meta[META_STATS])
        except ValueError:
            stats = {}  # diagnostics only: a damaged entry does not make the tokens unreadable
    stats.update(n_cells=n_cells, n_tokens=int(indptr[-1]))
    return TokenizedCells(indptr, indices, barcodes, uni, stats)


def _universe_from_metadata(meta: dict[bytes, bytes], path: Path) -> Universe | None:
    if META_UNIVERSE not in meta:
        return None
    try:
        text = gzip.decompress(base64.b64decode(meta[META_UNIVERSE])).decode()
    except Exception as err:
        raise ValueError(f"token file '{path}': universe in the metadata is corrupt ({err})") from None
    uni = Universe.from_bed_text(text, source=f"{path} (embedded)")
    expected = meta.get(META_CHECKSUM, b"").decode()
    if expected and uni.checksum != expected:
        raise ValueError(
            f"token file '{path}': the embedded universe does not match its checksum "
            f"({uni.checksum[:12]} != {expected[:12]}); the file is corrupt"
        )
    return uni

