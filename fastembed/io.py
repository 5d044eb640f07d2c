"""Data in and out: 10x/MatrixMarket readers, peak coordinates of an AnnData, tokenization, token parquet files.

The token parquet layout is gtars's: one row per cell with ``tokens: list<int32>``, plus ``barcode: string``.
Its key-value metadata carries the universe (regions in token order) and its checksum, so a dataset always
knows its universe.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from . import tokenize as _tok
from ._atomic import atomic_file, check_output_path, output_lock
from .universe import MAX_COORD, Universe, open_text, parse_coordinate, read_bed, reading_text

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

# Cells per parquet row group: bounds the memory of one write.
ROW_GROUP_CELLS = 65_536
# Tokens per parquet row group: list<int32> offsets of a row group must stay below 2**31; a row group is
# closed early once it would hold more tokens than this (a 16x margin, and ~512 MB of int32 per group).
ROW_GROUP_TOKENS = 2**27
META_STATS = b"fastembed.tokenize.stats"
FEW_TOKENS = 10
"""A cell with fewer tokens than this (but at least one) counts as having few tokens in the tokenize
diagnostics: its embedding is the mean of a handful of vectors and is noisy."""

_COORD_NAME = re.compile(r"^(?P<chr>[^:\s]+?)[:\-](?P<start>[0-9]+)-(?P<end>[0-9]+)$")
_CHR_ALIASES = ("chr", "chrom", "chromosome", "seqnames", "seqname")
_START_ALIASES = ("start", "chromstart")
_END_ALIASES = ("end", "chromend")


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------
def _read_lines(path: Path, what: str) -> list[str]:
    """All lines of a UTF-8 text file (plain or gzipped) without line ends; a byte-order mark is dropped."""
    with reading_text(path, what), open_text(path) as fh:
        return [line.rstrip("\r\n") for line in fh]


def _read_barcodes(path: Path) -> np.ndarray:
    lines = [line.split("\t", 1)[0] for line in _read_lines(path, "barcodes file")]
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
        {
            "chr": pd.array(chroms, dtype=object),
            "start": starts.astype(np.int64),
            "end": ends.astype(np.int64),
        },
        index=names,
    )


_MM_BANNER = re.compile(r"%%MatrixMarket\s+matrix\s+(coordinate|array)\s+(\S+)\s+(\S+)\s*$", re.IGNORECASE)


def _mm_shape(path: Path) -> tuple[int, int]:
    """(rows, cols) from a MatrixMarket header, checked before scipy allocates anything.

    The entry count of the size line is checked against the file size too: scipy allocates arrays of that
    length up front, so a three-line file could otherwise ask for terabytes.
    """
    try:
        with open_text(path) as fh:
            header = fh.readline()
            if not header.startswith("%%MatrixMarket"):
                raise ValueError(
                    f"matrix file '{path}': not a MatrixMarket file (first line should start with "
                    f"'%%MatrixMarket', got {header.strip()[:60]!r})"
                )
            banner = _MM_BANNER.match(header.strip())
            if banner is None:
                raise ValueError(
                    f"matrix file '{path}' line 1: expected '%%MatrixMarket matrix coordinate|array <field> "
                    f"<symmetry>', got {header.strip()[:80]!r}"
                )
            lineno = 1
            for line in fh:
                lineno += 1
                if line.startswith("%") or not line.strip():
                    continue
                fields = line.split()
                n_expected = 3 if banner[1].lower() == "coordinate" else 2
                if len(fields) != n_expected or not all(f.isascii() and f.isdigit() for f in fields):
                    raise ValueError(
                        f"matrix file '{path}' line {lineno}: size line must hold {n_expected} non-negative "
                        f"integers, got {line.strip()[:80]!r}"
                    )
                rows, cols = int(fields[0]), int(fields[1])
                if n_expected == 3:
                    nnz = int(fields[2])
                    gz = _is_gzip(path)
                    if nnz > rows * cols or (not gz and nnz > path.stat().st_size):
                        raise ValueError(
                            f"matrix file '{path}' line {lineno}: {nnz} entries cannot fit a {rows} x {cols} "
                            "matrix in a file of this size"
                        )
                return rows, cols
    except UnicodeDecodeError:
        raise ValueError(f"matrix file '{path}': not a MatrixMarket text file") from None
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"matrix file '{path}' cannot be read ({type(err).__name__}: {str(err)[:120]})"
        ) from None
    raise ValueError(f"matrix file '{path}': no size line after the MatrixMarket header")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _read_mm(path: Path) -> sp.csr_matrix:
    try:
        with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as fh:
            # scipy does not expect a byte-order mark; skip it so the banner is the first thing it reads.
            if fh.read(3) != b"\xef\xbb\xbf":
                fh.seek(0)
            mat = scipy.io.mmread(io.BufferedReader(_NewlineAtEnd(fh)))
    except Exception as err:  # scipy raises several types on malformed entries
        raise ValueError(f"matrix file '{path}': cannot parse MatrixMarket data ({err})") from None
    mat = sp.csr_matrix(mat)
    if np.iscomplexobj(mat.data):
        raise ValueError(f"matrix file '{path}': complex values; expected integer or real counts")
    if mat.data.dtype.kind == "f" and not np.isfinite(mat.data).all():
        raise ValueError(f"matrix file '{path}': the matrix holds NaN or infinite values")
    return mat


class _NewlineAtEnd(io.RawIOBase):
    """A read-only stream that adds one newline after the end of ``fh``.

    scipy 1.17's MatrixMarket reader aborts the whole process (C++ terminate, no Python exception) when the
    last line ends in a space or a stray character without a final newline, e.g. ``"3 1 2 "``, and crashes
    on a NUL byte. With a newline after the end, and NUL bytes turned into ``x`` (never valid in a
    MatrixMarket file, so a damaged file still fails to parse), the reader raises a ValueError instead.
    """

    def __init__(self, fh):
        super().__init__()
        self._fh = fh
        self._tail = b"\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self._fh.readinto(buf)
        if n:
            view = memoryview(buf).cast("B")
            chunk = bytes(view[:n])
            if b"\x00" in chunk:
                view[:n] = chunk.replace(b"\x00", b"x")
            return n
        if self._tail:
            buf[:1] = self._tail
            self._tail = b""
            return 1
        return 0


def _orient(
    path: Path, shape: tuple[int, int], n_barcodes: int, n_peaks: int, barcodes_path: Path, peaks_path: Path
) -> bool:
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
    return ad.AnnData(
        X=X, obs=pd.DataFrame(index=pd.Index(bcs.astype(str))), var=_var_frame(chroms, starts, ends)
    )


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
    numbered = [
        (n, line.split("\t"))
        for n, line in enumerate(_read_lines(features, "features file"), 1)
        if line.strip()
    ]
    rows = [r for _, r in numbered]
    keep = np.array([len(r) < 3 or r[2] == "Peaks" for r in rows], dtype=bool)
    chroms, starts, ends = [], [], []
    for i, (lineno, r) in enumerate(numbered):
        if not keep[i]:
            continue
        if len(r) >= 6:
            c, s, e = r[3], r[4], r[5]
        else:
            m = _COORD_NAME.match(r[0])
            if m is None:
                raise ValueError(
                    f"features file '{features}' line {lineno}: field 1 should look like 'chr1:100-200' "
                    f"when there are no chrom/start/end columns, got {r[0]!r}"
                )
            c, s, e = m["chr"], m["start"], m["end"]
        where = f"features file '{features}' line {lineno}"
        s_, e_ = (parse_coordinate(v.strip(), where=where, field=f) for v, f in ((s, "start"), (e, "end")))
        if not c.strip():
            raise ValueError(f"{where}: the chromosome is empty")
        if s_ > e_:
            raise ValueError(f"{where}: start {s_} > end {e_}")
        chroms.append(c.strip())
        starts.append(s_)
        ends.append(e_)
    if not chroms:
        raise ValueError(f"features file '{features}' has no rows of type 'Peaks'")
    bcs = _read_barcodes(barcodes)
    transpose = _orient(matrix, _mm_shape(matrix), bcs.size, len(rows), barcodes, features)
    X = _read_mm(matrix)
    X = (X.T.tocsr() if transpose else X)[:, np.flatnonzero(keep)].tocsr()
    starts_a, ends_a = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    return ad.AnnData(
        X=X,
        obs=pd.DataFrame(index=pd.Index(bcs.astype(str))),
        var=_var_frame(np.array(chroms, dtype=object), starts_a, ends_a),
    )


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
        raise ValueError(
            f"AnnData file '{path}' cannot be read as .h5ad ({type(err).__name__}: {err})"
        ) from None


class LazyAnnData:
    """The parts of an on-disk AnnData (``.h5ad`` or ``.zarr``) that tokenizing and encoding read, lazily.

    Only ``var`` and the cell names are loaded; ``X`` stays on disk and ``X[lo:hi]`` reads one block of rows
    (anndata's backed sparse dataset for CSR/CSC groups, an array slice for dense ``X``; a CSC ``X`` is
    read whole for each block, so store large data as CSR). Other ``obs`` columns,
    ``obsm``, layers etc. are never read, so memory is bounded by the block size, not the dataset.

    Attributes
    ----------
    X : anndata backed sparse dataset or h5py/zarr array, shape (n_obs, n_vars), or None (no X in the file)
    layers : dict of str to the same kinds of matrix
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
            # The names stay on disk until asked for: for millions of cells they outweigh a block of X.
            self._obs_index = obs[obs.attrs["_index"]]
            self._obs_names = None

            def matrix(elem):
                sparse = elem.attrs.get("encoding-type", "") in ("csr_matrix", "csc_matrix")
                return sparse_dataset(elem) if sparse else elem

            # Counts may live in a layer with no X at all (anndata writes no "X" for X=None).
            self.X = matrix(root["X"]) if "X" in root else None
            self.layers = (
                {k: matrix(root["layers"][k]) for k in root["layers"].keys()} if "layers" in root else {}
            )
        except (KeyError, OSError, ValueError, TypeError) as err:
            raise ValueError(
                f"AnnData file '{path}' cannot be read as {path.suffix} ({type(err).__name__}: {str(err)[:200]})"
            ) from None
        self.n_obs, self.n_vars = int(self._obs_index.shape[0]), len(self.var)
        shape = None if self.X is None else tuple(int(n) for n in self.X.shape)
        if shape is not None and shape != (self.n_obs, self.n_vars):
            raise ValueError(
                f"AnnData file '{path}': X is {shape[0]} x {shape[1]} but obs has {self.n_obs} and "
                f"var {self.n_vars} rows"
            )
        self.var_names = self.var.index

    @property
    def obs_names(self) -> pd.Index:
        """All cell names (read on first use)."""
        if self._obs_names is None:
            from anndata.io import read_elem

            self._obs_names = pd.Index(np.asarray(read_elem(self._obs_index), dtype=object))
        return self._obs_names

    @property
    def names(self) -> LazyNames:
        """The cell names as a row-sliceable view that reads only the rows asked for."""
        return LazyNames(self._obs_index)


class LazyNames:
    """Cell names of an on-disk AnnData, read by row slices: ``names[lo:hi]`` is np.ndarray of str (object)."""

    def __init__(self, elem):
        self._elem = elem

    def __len__(self) -> int:
        return int(self._elem.shape[0])

    def __getitem__(self, key: slice) -> np.ndarray:
        elem = self._elem
        if hasattr(elem, "asstr"):  # h5py keeps strings as bytes
            elem = elem.asstr()
        return np.asarray(elem[key], dtype=object)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_obs, self.n_vars


def open_element(path: str | os.PathLike, element: str):
    """One element of an on-disk AnnData, opened read-only without loading it.

    Parameters
    ----------
    path
        ``.h5ad`` or ``.zarr`` AnnData.
    element
        Its path inside the store, e.g. ``"X"`` or ``"obsm/scembed_X"``.

    Returns
    -------
    anndata backed sparse dataset (CSR/CSC groups) or h5py/zarr array
        Sliced by rows (``elem[lo:hi]``) to read a block.
    """
    from anndata.io import sparse_dataset

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"AnnData file '{path}' does not exist")
    try:
        if path.suffix == ".zarr":
            import zarr

            root = zarr.open_group(str(path), mode="r")
        else:
            import h5py

            root = h5py.File(path, "r")
        elem = root[element]
        sparse = elem.attrs.get("encoding-type", "") in ("csr_matrix", "csc_matrix")
        return sparse_dataset(elem) if sparse else elem
    except (KeyError, OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"AnnData file '{path}': cannot open '{element}' ({type(err).__name__}: {str(err)[:200]})"
        ) from None


def read_obs_names(path: str | os.PathLike) -> pd.Index:
    """The cell names (``obs`` index) of an on-disk ``.h5ad`` or ``.zarr`` AnnData, without the rest of obs."""
    from anndata.io import read_elem

    obs = open_element(path, "obs")
    try:
        return pd.Index(np.asarray(read_elem(obs[obs.attrs["_index"]]), dtype=object))
    except (KeyError, OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"AnnData file '{path}': cannot read the obs index ({type(err).__name__}: {str(err)[:200]})"
        ) from None


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
        starts, ends = (_coordinate_column(var, col, name) for col in (sc_, ec))
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
        # More than 19 digits cannot be an int64; check before converting so the message names the peak.
        too_long = (parts["start"].str.len() > 19) | (parts["end"].str.len() > 19)
        if too_long.any():
            i = int(np.flatnonzero(too_long.to_numpy())[0])
            raise ValueError(
                f"{name}: var_name {i} ({names.iloc[i][:60]!r}) has a coordinate beyond the largest accepted "
                "one (2**62)"
            )
        starts = parts["start"].astype(np.int64).to_numpy()
        ends = parts["end"].astype(np.int64).to_numpy()
    bad = (starts < 0) | (starts > ends) | (ends > MAX_COORD)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: peak {i} ({str(adata.var_names[i])[:60]!r}) has invalid coordinates [{starts[i]}, {ends[i]}) "
            "(need 0 <= start <= end <= 2**62)"
        )
    return chroms, starts, ends


def _coordinate_column(var: pd.DataFrame, col, name: str) -> np.ndarray:
    """A var column of coordinates as int64, or a ValueError naming the column and the first bad peak.

    Integer columns are taken exactly (a float round trip would lose precision beyond 2**53); anything
    else must hold whole finite numbers within the accepted range.
    """
    series = var[col]
    if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
        values = series.to_numpy()
        if values.dtype.kind == "u" and values.size and values.max() > MAX_COORD:
            bad = values > MAX_COORD
        else:
            return values.astype(np.int64)
    else:
        floats = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(floats) | (floats != np.round(floats)) | (np.abs(floats) > MAX_COORD)
        if not bad.any():
            return floats.astype(np.int64)
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f"{name}: var column '{col}' must hold integers; peak {i} ({str(var.index[i])[:60]!r}) "
        f"has {str(series.iloc[i])[:40]!r} (accepted: whole numbers in [0, 2**62])"
    )


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


def cell_matrix(adata, layer: str | None = None, *, name: str = "the AnnData"):
    """The cells x peaks matrix to tokenize: ``adata.X``, or ``adata.layers[layer]``.

    Parameters
    ----------
    adata : anndata.AnnData
    layer : str, optional
        Name of a layer holding the counts (e.g. ``"counts"``) when ``X`` is absent or holds something else.
    name : str
        How messages name the AnnData.

    Returns
    -------
    (matrix, field)
        The matrix (in memory or backed) and how messages name it (``"X"`` or ``"layers['counts']"``).

    Raises
    ------
    ValueError
        ``X`` is None (the message lists the layers to pass as ``layer=``), the layer does not exist, or the
        matrix does not have one row per cell and one column per peak.
    """
    if layer is None:
        try:
            matrix = adata.X
        except KeyError:  # a backed .h5ad file without X: anndata looks it up in the file and fails
            matrix = None
        field_name = "X"
        if matrix is None:
            layers = list(getattr(adata, "layers", {}).keys())
            hint = (
                f"pass layer= with one of its layers: {', '.join(repr(k) for k in layers[:6])}"
                if layers
                else "it has no layers either; store the peak counts in X"
            )
            raise ValueError(f"{name} has no X matrix (X is None); {hint}")
    else:
        if not isinstance(layer, str):
            raise ValueError(f"layer must be the name of a layer (a str), got {layer!r}")
        layers = getattr(adata, "layers", {})
        if layer not in layers:
            raise ValueError(
                f"{name} has no layer {layer!r} (layers: {', '.join(repr(k) for k in list(layers.keys())[:6]) or 'none'})"
            )
        matrix, field_name = layers[layer], f"layers[{layer!r}]"
    shape = getattr(matrix, "shape", None)
    if shape is None or tuple(shape) != (adata.n_obs, adata.n_vars):
        raise ValueError(f"{name}: {field_name} has shape {shape}, expected cells x peaks {adata.shape}")
    return matrix, field_name


def _csr_rows(X, lo: int, hi: int, what: str = "X") -> sp.csr_matrix:
    """Rows lo:hi of X (in memory or backed) as CSR.

    A ValueError naming ``what`` (e.g. ``"'a.h5ad': X"``) if a value is NaN, inf or not a number, or if the
    sparse structure is out of range.
    """
    if sp.issparse(X) and X.format == "csr" and lo == 0 and hi == X.shape[0]:
        block = X  # the whole in-memory matrix: no copy
    else:
        block = X[lo:hi]
        if hasattr(block, "to_memory"):
            block = block.to_memory()
        if not sp.issparse(block):
            block = np.asarray(block)
            if block.dtype == object or block.dtype.kind in "USV":
                raise ValueError(f"{what} holds {block.dtype} values; expected numbers")
            block = sp.csr_matrix(block)
        block = sp.csr_matrix(block)
    # A CSR matrix built by hand (csr_matrix((data, indices, indptr))) is not bounds-checked by scipy, and
    # the tokenizer kernel indexes the peak table with these column ids.
    ip = block.indptr
    nnz = int(ip[-1]) if ip.size else -1
    ix = block.indices[: max(nnz, 0)]
    if (
        ip.size != block.shape[0] + 1
        or ip[0] != 0
        or not 0 <= nnz <= min(block.indices.size, block.data.size)
        or np.any(np.diff(ip) < 0)
        or (ix.size and (int(ix.min()) < 0 or int(ix.max()) >= block.shape[1]))
    ):
        raise ValueError(
            f"{what} is a malformed sparse matrix (indptr/indices out of range for shape {block.shape})"
        )
    if block.data.dtype.kind not in "biuf":
        raise ValueError(f"{what} holds {block.data.dtype} values; expected numbers")
    data = block.data[:nnz]
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = np.flatnonzero(~np.isfinite(data))[0]
        row = int(np.searchsorted(block.indptr, bad, side="right")) - 1 + lo
        raise ValueError(
            f"{what} holds {data[bad]} (cell {row}); a cell's peaks are its nonzero values, which must be finite "
            "numbers"
        )
    return block


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
            raise ValueError(f"min_overlap must be an integer >= 1 bp, got {min_overlap!r}")
        if adata.n_obs == 0:
            raise ValueError(f"{name} has zero cells; nothing to tokenize")
        if adata.n_vars == 0:
            raise ValueError(f"{name} has zero peaks (var is empty); nothing to tokenize")
        self.universe = universe
        self.name = name
        chroms, starts, ends = peak_coordinates(adata, name=name)
        codes = _chrom_codes(chroms, universe, name, chrom_style)
        self.peak_offsets, self.peak_tokens = _tok.map_peaks(
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
        nonzero = block.data != 0
        self.n_counts += int(np.count_nonzero(nonzero))
        self.n_counts_in_universe += int(np.count_nonzero(nonzero & self._mapped[block.indices]))
        return _tok.cells_to_tokens(
            block.indptr, block.indices, block.data, self.peak_offsets, self.peak_tokens
        )


def tokenize_cells(
    adata,
    universe_file,
    output=None,
    *,
    min_overlap: int = 1,
    chunk_cells: int = 100_000,
    overwrite: bool = False,
    layer: str | None = None,
    client=None,
    chrom_style: str = "asis",
):
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
    layer : str, optional
        Read the cells x peaks values from ``adata.layers[layer]`` instead of ``adata.X`` (for files whose
        ``X`` is None or holds normalised values).
    client : dask.distributed.Client, optional
        Tokenize each block of ``chunk_cells`` cells as a task on the cluster (the peak-to-token map is sent to
        every worker once; a path input is read by the workers, so it must be on a file system they see). Same
        result as without.
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
        return _tokenize_cells(
            adata,
            universe_file,
            None,
            min_overlap,
            chunk_cells,
            overwrite,
            inputs,
            layer,
            client,
            chrom_style,
        )
    out_path = check_output_path(
        output, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet"
    )
    # Held for the whole run, so a second writer of the same file fails now rather than after the work.
    with output_lock(out_path, what="parquet output"):
        return _tokenize_cells(
            adata,
            universe_file,
            out_path,
            min_overlap,
            chunk_cells,
            overwrite,
            inputs,
            layer,
            client,
            chrom_style,
        )


def _tokenize_cells(
    adata, universe_file, out_path, min_overlap, chunk_cells, overwrite, inputs, layer, client, chrom_style
):
    restyle_chroms([], chrom_style)  # a bad style is refused before any file is read
    uni = resolve_universe(universe_file)
    if isinstance(chunk_cells, bool) or int(chunk_cells) != chunk_cells or chunk_cells < 1:
        raise ValueError(f"chunk_cells must be an integer >= 1, got {chunk_cells!r}")
    chunk_cells = int(chunk_cells)
    source = adata
    adata, name = as_adata(adata)
    matrix, field_name = cell_matrix(adata, layer, name=name)
    mapper = PeakMapper(adata, uni, min_overlap=min_overlap, name=name, chrom_style=chrom_style)
    if mapper.n_peaks_unmapped == mapper.n_peaks:
        # Raised here, not at training ("empty dataset"), where the cause is no longer visible.
        raise ValueError(
            f"none of the {mapper.n_peaks} peaks of {name} overlaps a region of universe '{uni.source}' by at "
            f"least min_overlap={min_overlap} bp ({mapper.n_peaks_unknown_chrom} lie on chromosomes the universe "
            "lacks): lower min_overlap= or check that the peaks and the universe use the same genome build"
        )
    if client is None:
        parts = (
            mapper.tokens(matrix, lo, min(lo + chunk_cells, adata.n_obs), field_name)
            for lo in range(0, adata.n_obs, chunk_cells)
        )
    else:
        from .distributed import tokenize_blocks

        if layer is not None:
            raise ValueError(
                "layer= is not supported with client=; store the counts in X for Dask tokenizing"
            )
        parts = tokenize_blocks(client, adata, source, mapper, chunk_cells)
    indptr_parts, index_parts = [np.zeros(1, dtype=np.int64)], []
    total = 0
    for ip, ix in parts:
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
    return write_tokens_parquet(
        out_path,
        indptr,
        indices,
        barcodes,
        uni,
        overwrite=overwrite,
        inputs=inputs,
        extra_metadata={META_STATS: json.dumps(stats).encode()},
    )


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
        + [pa.field(k, pa.int64()) for k in extra],
        metadata={**_universe_metadata(universe), **(extra_metadata or {})},
    )
    bounds = _row_group_bounds(indptr, ROW_GROUP_CELLS, ROW_GROUP_TOKENS)
    with (
        atomic_file(path, what="parquet output", overwrite=overwrite, inputs=inputs, kind="parquet") as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
    ):
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            base = indptr[lo]
            offsets = pa.array((indptr[lo : hi + 1] - base).astype(np.int32))
            values = pa.array(indices[base : indptr[hi]], type=pa.int32())
            tokens = pa.ListArray.from_arrays(offsets, values)
            columns = {"tokens": tokens, "barcode": pa.array(barcodes[lo:hi].astype(str))}
            columns.update({k: pa.array(v[lo:hi]) for k, v in extra.items()})
            writer.write_table(pa.table(columns, schema=schema))
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
        all hold the same universe.
    universe : Universe or path, optional
        The universe, for files that do not carry one in their metadata (e.g. written by gtars). For a file
        that carries one, it must be the same universe (same checksum), else a ValueError names both.

    Returns
    -------
    TokenizedCells
        Barcodes default to ``"0".."n-1"`` when the file has no ``barcode`` column.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a parquet file; a missing or wrongly typed column; a null list, token or barcode; a token id
        outside the universe; a ``universe`` that differs from the stored one; parts of a folder with
        different universes. Every message names the file (and the column).
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
        if p.suffix == ".parquet" and not p.name.startswith((".", "_")) and p.is_file()
    )
    if not parts:
        raise ValueError(
            f"token folder '{folder}' holds no .parquet files (names starting with '.' or '_' and "
            "subfolders are not read)"
        )
    tokens = [_read_parquet_file(parts[0], given)]
    for part in parts[1:]:
        tok = _read_parquet_file(part, given)
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
    barcodes = np.concatenate([np.asarray(t.barcodes, dtype=object) for t in tokens])
    stats = {"n_cells": int(indptr.size - 1), "n_tokens": int(indptr[-1]), "n_parts": len(parts)}
    return TokenizedCells(indptr, indices, barcodes, tokens[0].universe, stats)


def _read_parquet_file(path: Path, given: Universe | None) -> TokenizedCells:
    pfile, uni = open_tokens_parquet(path, universe=given)
    table = read_tokens_table(pfile, path)
    indptr, indices = _tokens_csr(table.column("tokens"), path, uni)
    barcodes = _barcodes_column(table, path)
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
        pfile = pq.ParquetFile(path, memory_map=True)
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
    return pfile, _file_universe(schema.metadata or {}, path, given)


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


def _barcodes_column(table, path: Path) -> np.ndarray:
    if "barcode" not in table.column_names:
        return np.arange(table.num_rows).astype(str).astype(object)
    col = table.column("barcode")
    if col.null_count:
        i = int(np.flatnonzero(~np.asarray(col.is_valid(), dtype=bool))[0])
        raise ValueError(f"token file '{path}': column 'barcode' is null for cell {i}")
    return col.to_numpy(zero_copy_only=False).astype(object)


def _tokens_csr(col, path, uni: Universe) -> tuple[np.ndarray, np.ndarray]:
    """A pyarrow list column of token ids as CSR ``(indptr int64, indices int32)``, ids checked against ``uni``."""
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


def _file_universe(meta: dict[bytes, bytes], path: Path, given: Universe | None) -> Universe:
    """The universe of a token file: the one it carries, checked against ``given`` if both exist."""
    stored = _universe_from_metadata(meta, path)
    if stored is None and given is None:
        raise ValueError(
            f"token file '{path}' does not carry its universe (not written by fastembed); "
            "pass universe=<the BED file it was tokenized with>"
        )
    if stored is not None and given is not None and stored.checksum != given.checksum:
        # The ids index the stored regions; reading them against other regions would silently mislabel cells.
        raise ValueError(
            f"token file '{path}' was tokenized with another universe ({len(stored)} regions, checksum "
            f"{stored.checksum[:12]}) than universe= '{given.source}' ({len(given)} regions, checksum "
            f"{given.checksum[:12]}); drop universe= to use the file's own"
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
    return uni
