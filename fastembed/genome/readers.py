"""Reading cells x peaks data: 10x folders, MatrixMarket files, ``.h5ad``/``.zarr`` AnnData (lazily or whole).

Also what every consumer of such data needs: the peaks' genomic coordinates (from ``var``), chromosome
naming styles, the matrix to read (``X`` or a layer) and row blocks of it as checked CSR.
Nothing here knows about universes or tokens; :mod:`fastembed.tokenize` builds on it.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import weakref
import zlib
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn
from fastembed.genome.universe import MAX_COORD, is_gzip, open_text, parse_coordinate, read_bed, reading_text

__all__ = [
    "CHROM_STYLES",
    "LazyAnnData",
    "cell_matrix",
    "open_element",
    "peak_coordinates",
    "read_10x",
    "read_h5ad",
    "read_mtx",
    "read_obs_names",
    "restyle_chroms",
]

# A peak named by its coordinates: chr:start-end, chr-start-end or chr_start_end. The chromosome is the shortest
# prefix that leaves two coordinates, so it may hold dashes or underscores itself (hg19's chrUn_gl000220_100_200
# is chrUn_gl000220, 100, 200: the last two underscore-separated fields are the integers). In the underscore form
# both separators are underscores (the `us` group), so chr1_100-200 or chr1:100_200 are not coordinates.
_COORD_NAME = re.compile(r"^(?P<chr>[^:\s]+?)(?:(?P<us>_)|[:\-])(?P<start>[0-9]+)(?(us)_|-)(?P<end>[0-9]+)$")
_COORD_EXAMPLES = "'chr1:100-200', 'chr1-100-200' or 'chr1_100_200'"
_CHR_ALIASES = ("chr", "chrom", "chromosome", "seqnames", "seqname")
_START_ALIASES = ("start", "chromstart")
_END_ALIASES = ("end", "chromend")


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------
# Where an AnnData read by this module came from, for messages: id -> (weak reference, "'path'"). The object
# itself is left alone (an attribute or uns entry would travel into the files encode writes).
_SOURCES: dict[int, tuple[weakref.ref, str]] = {}


def _remember_source(adata, name: str):
    """``adata``, noted as read from ``name`` (how messages about its peaks and matrix will call it)."""
    key = id(adata)
    _SOURCES[key] = (weakref.ref(adata, lambda _, key=key: _SOURCES.pop(key, None)), name)
    return adata


def _source_name(adata) -> str:
    entry = _SOURCES.get(id(adata))
    return entry[1] if entry is not None and entry[0]() is adata else "the AnnData"


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
                    gz = is_gzip(path)
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


def _read_mm(path: Path) -> sp.csr_matrix:
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as fh:
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
        warn(
            f"matrix file '{path}' is {rows} x {cols} with as many barcodes as peaks; "
            "assuming the 10x orientation (peaks x cells)",
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
        if p.is_dir():
            raise IsADirectoryError(f"{what} file '{p}' is a folder; expected a file")
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
    adata = ad.AnnData(
        X=X, obs=pd.DataFrame(index=pd.Index(bcs.astype(str))), var=_var_frame(chroms, starts, ends)
    )
    return _remember_source(adata, f"'{matrix}'")


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
        return _remember_source(read_mtx(matrix, barcodes, peaks), f"'{directory}'")

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
                    f"features file '{features}' line {lineno}: field 1 should look like {_COORD_EXAMPLES} "
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
    adata = ad.AnnData(
        X=X,
        obs=pd.DataFrame(index=pd.Index(bcs.astype(str))),
        var=_var_frame(np.array(chroms, dtype=object), starts_a, ends_a),
    )
    return _remember_source(adata, f"'{directory}'")


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
        adata = ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:
        raise ValueError(
            f"AnnData file '{path}' cannot be read as .h5ad ({type(err).__name__}: {err})"
        ) from None
    return _remember_source(adata, f"'{path}'")


def _check_sparse_chunks(group, path: Path, field: str) -> None:
    """Raise a ValueError naming the store and ``field`` if a chunk of a zarr sparse matrix's ``data`` or
    ``indices`` is missing.

    zarr reads a missing chunk as its fill value (0), so a store whose chunk files were lost (a copy cut short,
    a disk cleaned mid-run) reads without error: lost ``data`` chunks turn regions into explicit zeros, which are
    not regions, and lost ``indices`` chunks move them to the first peak. zarr does not write a chunk that is
    all fill value, but a chunk of all-zero counts, or of thousands of consecutive entries all in the first
    column, is not real count data; a dense group (not CSR/CSC) is not checked.

    Parameters
    ----------
    group : zarr.Group
        The sparse matrix's group (``X`` or a layer), with ``data`` and ``indices`` arrays.
    path : Path
        The store, for the message.
    field : str
        How messages name the matrix, e.g. ``"X"`` or ``"layers['counts']"``.
    """
    if group.attrs.get("encoding-type", "") not in ("csr_matrix", "csc_matrix"):
        return
    for name in ("data", "indices"):
        arr = group[name]
        n_stored, n_chunks = int(arr.nchunks_initialized), int(arr.nchunks)
        if arr.shape[0] and n_stored < n_chunks:
            raise ValueError(
                f"AnnData store '{path}': {n_chunks - n_stored} of {n_chunks} chunks of {field}/{name} are "
                "missing (zarr would read them as zeros and the cells in them would lose their regions); the "
                "store is incomplete: write it again"
            )


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
            if has_suffix(path, ".zarr"):
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
            if has_suffix(path, ".zarr"):
                if "X" in root:
                    _check_sparse_chunks(root["X"], path, "X")
                for k in self.layers:
                    _check_sparse_chunks(root["layers"][k], path, f"layers[{k!r}]")
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

    @property
    def shape(self) -> tuple[int, int]:
        """(n_obs, n_vars), as AnnData's."""
        return self.n_obs, self.n_vars


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
        if has_suffix(path, ".zarr"):
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


def read_obs(path: str | os.PathLike, *, index: bool = True) -> pd.DataFrame:
    """The cell annotations (``obs``) of an on-disk ``.h5ad`` or ``.zarr`` AnnData, without reading ``X`` or
    ``obsm``.

    Parameters
    ----------
    path : str or os.PathLike
    index : bool
        Read the cell names as the index (default); False leaves a RangeIndex and reads only the columns (the
        names of an atlas are written block by block elsewhere).

    Returns
    -------
    pandas.DataFrame
        One row per cell, the columns in the file's order.
    """
    from anndata.io import read_elem

    obs = open_element(path, "obs")
    try:
        if index:
            return read_elem(obs)
        columns = list(obs.attrs.get("column-order", []))
        return pd.DataFrame({c: read_elem(obs[c]) for c in columns}, columns=columns)
    except (KeyError, OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"AnnData file '{path}': cannot read obs ({type(err).__name__}: {str(err)[:200]})"
        ) from None


def as_adata(adata, *, backed: bool = True):
    """(AnnData or LazyAnnData, name for messages) from an AnnData or an ``.h5ad``/``.zarr`` path.

    A path is read lazily (:class:`LazyAnnData`) unless ``backed`` is False; anything without ``var`` and
    ``X`` is a TypeError.
    """
    if isinstance(adata, str | os.PathLike):
        if backed and has_suffix(adata, ".h5ad", ".zarr"):
            return LazyAnnData(adata), f"'{adata}'"
        return read_h5ad(adata, backed=backed), f"'{adata}'"
    # The class is asked first: evaluating ``X`` of a backed AnnData whose file has no X raises KeyError (and of
    # a view, copies the matrix); cell_matrix() reports a missing X with the layers to use instead.
    if not hasattr(adata, "var") or not (hasattr(type(adata), "X") or hasattr(adata, "X")):
        raise TypeError(f"expected an AnnData or an .h5ad path, got {type(adata).__name__}")
    return adata, _source_name(adata)


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
    ``chromEnd``), or else parsed from ``var_names`` like ``chr1:100-200``, ``chr1-100-200`` or ``chr1_100_200``.
    The chromosome is everything before the last two coordinates, so it may hold dashes or underscores
    (``chrUn_gl000220_100_200`` is ``chrUn_gl000220``, 100, 200).

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
        blank = var[cc].isna().to_numpy() | (var[cc].astype(str).str.strip() == "").to_numpy()
        if blank.any():
            # astype(str) would turn a missing name into a chromosome called 'nan'.
            i = int(np.flatnonzero(blank)[0])
            raise ValueError(
                f"{name}: var['{cc}'] has no chromosome name for {int(blank.sum())} peaks (first: peak {i}, "
                f"{str(adata.var_names[i])[:60]!r})"
            )
        chroms = var[cc].astype(str).to_numpy(dtype=object)
        starts, ends = (_coordinate_column(var, col, name) for col in (sc_, ec))
    else:
        fast = _coord_names_at_once(np.asarray(adata.var_names, dtype=str).tolist())
        if fast is not None:
            chroms, starts, ends = fast
        else:
            chroms, starts, ends = _coord_names_one_by_one(adata.var_names, name)
    bad = (starts < 0) | (starts > ends) | (ends > MAX_COORD)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: peak {i} ({str(adata.var_names[i])[:60]!r}) has invalid coordinates [{starts[i]}, {ends[i]}) "
            "(need 0 <= start <= end <= 2**62)"
        )
    return chroms, starts, ends


def _coord_names_one_by_one(var_names, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peak coordinates parsed from ``var_names`` name by name; a ValueError names the first bad one."""
    names = pd.Series(np.asarray(var_names, dtype=str))
    parts = names.str.extract(_COORD_NAME)
    missing = parts["chr"].isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"{name}: var has no 'chr'/'start'/'end' columns and var_names do not look like "
            f"{_COORD_EXAMPLES} (var_name {i} is {names.iloc[i]!r})"
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
    return chroms, starts, ends


# The same pattern, anchored at every line: one scan of all names joined by newlines finds every peak at once.
_COORD_NAME_LINES = re.compile(_COORD_NAME.pattern, re.MULTILINE)


def _coord_names_at_once(names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Peak coordinates of ``names`` from one regex scan of them joined by newlines, or None when that cannot
    decide alone (a name fails to match, holds a newline, or has a coordinate of 19 digits or more): the caller
    then parses name by name, which gives the same values and names the bad peak.

    pandas' per-name ``str.extract`` costs seconds for the 500,000 peaks of an atlas; this costs a fraction.
    Each line yields at most one match (``^`` anchors it at the line's start, and no part of the pattern can
    cross a newline), so ``len(names)`` matches means every name matched whole.
    """
    text = "\n".join(names)
    if not names or text.count("\n") != len(names) - 1:
        return None
    found = _COORD_NAME_LINES.findall(text)
    if len(found) != len(names):
        return None
    # itemgetter per column: zip(*found) would call next() on 500,000 iterators per step (seconds).
    chroms, starts, ends = (list(map(itemgetter(i), found)) for i in (0, 2, 3))
    if max(map(len, starts)) >= 19 or max(map(len, ends)) >= 19:
        return None
    return (
        np.array(chroms, dtype=object),
        np.fromiter(map(int, starts), dtype=np.int64, count=len(starts)),
        np.fromiter(map(int, ends), dtype=np.int64, count=len(ends)),
    )


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
# Chromosome naming styles
# --------------------------------------------------------------------------------------------------
CHROM_STYLES = ("asis", "add-chr", "strip-chr")
"""How peak chromosome names are matched to the universe's: as they are, with a ``chr`` prefix added
(Ensembl ``1``, ``MT`` -> UCSC ``chr1``, ``chrM``), or with it removed (the reverse)."""


def restyle_chroms(chroms: np.ndarray, style: str) -> np.ndarray:
    """Chromosome names in another naming style (see :data:`CHROM_STYLES`).

    ``"add-chr"`` prefixes names that lack ``chr`` and maps ``MT`` to ``chrM``; ``"strip-chr"`` removes the
    prefix and maps ``chrM`` to ``MT``; names already in the target style are kept. ``"asis"`` changes nothing.
    """
    if style not in CHROM_STYLES:
        raise ParameterError("chrom_style", f"one of {', '.join(CHROM_STYLES)}", style)
    chroms = np.asarray(chroms, dtype=object)
    if style == "asis":
        return chroms
    names = pd.unique(chroms)
    if style == "add-chr":
        new = ["chrM" if c == "MT" else c if c.startswith("chr") else f"chr{c}" for c in names]
    else:
        new = ["MT" if c == "chrM" else c[3:] if c.startswith("chr") else c for c in names]
    return pd.Series(chroms).map(dict(zip(names, new, strict=True))).to_numpy(dtype=object)


def _style_hint(peak_chroms, uni_chroms) -> tuple[str, Keyword]:
    """How to match the peaks' chromosome names to the universe's: (the advice, the keyword it names)."""
    peak_chr = sum(str(c).startswith("chr") for c in peak_chroms) > len(peak_chroms) / 2
    uni_chr = sum(str(c).startswith("chr") for c in uni_chroms) > len(uni_chroms) / 2
    if uni_chr != peak_chr:
        style = Keyword("chrom_style", "add-chr" if uni_chr else "strip-chr")
        return f"pass {style} to match them", style
    style = Keyword("chrom_style")
    return f"rename one to match the other ({style} adds or strips a 'chr' prefix)", style


# --------------------------------------------------------------------------------------------------
# The matrix to read, in row blocks
# --------------------------------------------------------------------------------------------------
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
            layer_kw = Keyword("layer")
            hint = (
                f"pass {layer_kw} with one of its layers: {', '.join(repr(k) for k in layers[:6])}"
                if layers
                else "it has no layers either; store the peak counts in X"
            )
            raise HintedValueError(f"{name} has no X matrix (X is None); {hint}", keywords=(layer_kw,))
    else:
        if not isinstance(layer, str):
            raise ParameterError("layer", "the name of a layer (a str)", layer)
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
            if block.dtype == np.float16:  # scipy.sparse has no float16; every float16 is exact in float32
                block = block.astype(np.float32)
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
