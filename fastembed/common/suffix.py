"""File-name endings, matched without regard to case.

One rule for every reader, writer and command: ``DATA.H5AD`` is an ``.h5ad`` file, ``cells.PARQUET`` a token
parquet file and ``E.Zarr`` a zarr store, as their lower-case names are. Code that tells files apart by their
ending asks :func:`has_suffix` rather than comparing ``Path.suffix`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_suffix(path: str | os.PathLike, *suffixes: str) -> bool:
    """True if the file name of ``path`` ends in one of ``suffixes``, ignoring case.

    Parameters
    ----------
    path : str or os.PathLike
    *suffixes : str
        Endings with their leading dot, possibly several parts long (``".h5ad"``, ``".mtx.gz"``).
    """
    name = Path(path).name.lower()
    return any(name.endswith(s.lower()) and len(name) > len(s) for s in suffixes)
