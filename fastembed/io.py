"""Data in and out, under the names of the public contract (``fastembed.io.read_mtx`` and so on).

The code lives in one module per idea; this module only gathers their public names:

- :mod:`fastembed.readers`: 10x / MatrixMarket / ``.h5ad`` / ``.zarr`` readers and peak coordinates;
- :mod:`fastembed.tokenize`: :func:`tokenize_cells` and its overlap kernels;
- :mod:`fastembed.tokens`: :class:`TokenizedCells` and the token parquet format.
"""

from __future__ import annotations

from fastembed.genome.readers import (
    CHROM_STYLES,
    LazyAnnData,
    cell_matrix,
    open_element,
    peak_coordinates,
    read_10x,
    read_h5ad,
    read_mtx,
    read_obs_names,
    restyle_chroms,
)
from fastembed.genome.tokenize import tokenize_cells, tokenize_summary
from fastembed.genome.tokens import (
    FORMAT_VERSION,
    TokenizedCells,
    open_tokens_parquet,
    read_tokens_parquet,
    read_tokens_table,
    write_tokens_parquet,
)

__all__ = [
    "CHROM_STYLES",
    "FORMAT_VERSION",
    "LazyAnnData",
    "TokenizedCells",
    "cell_matrix",
    "open_element",
    "open_tokens_parquet",
    "peak_coordinates",
    "read_10x",
    "read_h5ad",
    "read_mtx",
    "read_obs_names",
    "read_tokens_parquet",
    "read_tokens_table",
    "restyle_chroms",
    "tokenize_cells",
    "tokenize_summary",
    "write_tokens_parquet",
]
