"""Argument checks shared by the API, the command line and the demo: one home, so that a bad value gets the same
message wherever it is passed.

The predicates (:func:`is_number`, :func:`is_whole`) answer yes or no; the ``check_*`` functions return the value
in its canonical type or raise a :class:`fastembed.common.errors.ParameterError` (a ValueError) that starts with the argument's name (the command line shows it as
it is). Messages quote the bad value, cut to 300 characters so that a huge value cannot flood a log.
"""

from __future__ import annotations

import numpy as np

from fastembed.common.errors import ParameterError

__all__ = [
    "is_number",
    "is_whole",
    "check_positive_int",
    "check_positive_float",
    "check_fraction",
    "check_sample",
    "require_anndata",
]


def is_number(value) -> bool:
    """True for a Python or NumPy int or float (NaN and inf included); False for a bool, a str or anything else."""
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def is_whole(value) -> bool:
    """True for an integer, or a float holding one (``k=10.0``); never a bool, NaN, inf or a str."""
    return is_number(value) and bool(np.isfinite(value)) and int(value) == value


def check_positive_int(name: str, value) -> int:
    """``value`` as an ``int`` if it is a Python or NumPy integer >= 1, else a ValueError naming ``name``.

    Only real integers pass: ``int("abc")`` would escape as an unrelated error, and ``int(2.5)`` or ``True``
    would be accepted silently.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(name, "an integer >= 1", value)
    return int(value)


def check_positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite number > 0 (>= 0 with ``allow_zero``), else a ValueError
    naming ``name``."""
    if not is_number(value):
        raise ParameterError(name, "a number", value)
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ParameterError(name, f"a finite number {'>=' if allow_zero else '>'} 0", value)
    return value


def check_fraction(name: str, value) -> float:
    """``value`` as a ``float`` if it is a number in ``[0, 1)``, else a ValueError naming ``name``."""
    value = check_positive_float(name, value, allow_zero=True)
    if value >= 1:
        raise ParameterError(name, "a number in [0, 1)", value)
    return value


def check_sample(value) -> float | str:
    """The frequent-region subsampling setting (``sample=``, ``--subsample``): ``"auto"`` as it is, else a
    number in ``[0, 1)`` as a ``float``; anything else is a ValueError naming ``sample``."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        return check_fraction("sample", value)
    except ValueError:
        raise ParameterError("sample", "'auto' or a number in [0, 1)", value) from None


def require_anndata(adata, what: str) -> None:
    """Refuse anything but an in-memory AnnData for ``what`` (``"fe.tl.scembed"``): a TypeError that names the
    file API instead. The scanpy-style steps write their results into the AnnData, which a backed one or a path
    cannot take."""
    import anndata as ad

    if not isinstance(adata, ad.AnnData) or adata.isbacked:
        raise TypeError(
            f"{what} needs an AnnData in memory (it writes its results into it), got "
            f"{'a backed AnnData' if isinstance(adata, ad.AnnData) else type(adata).__name__}; for a file, "
            "read it first (adata = anndata.read_h5ad(path)), or use the file API: fe.tokenize_cells(path, "
            "universe, output=...) and model.encode(path, out=...)"
        )
