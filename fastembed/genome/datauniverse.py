"""A universe made from the data's own peaks, and the check that a given universe fits the data.

Why: how much of the data a universe covers matters more than any training setting. granja2019 tokenized
against the Buenrostro 2018 universe keeps 30% of its peaks; its embeddings transfer labels clearly worse than
with its own peaks (bench/RESULTS-archive.md). So training without a universe uses the data's peaks, and tokenizing
against a universe that misses much of the data warns, in Python as on the command line.

Data-derived universe (:func:`universe_from_peaks`): the peaks of ``var``, sorted by chromosome (natural order:
``chr1, chr2, ..., chr10, ..., chrX, chrY, chrM``, then other names alphabetically) and start, with peaks that
overlap by at least 1 bp merged into one region (their union). Merged, not kept: with overlapping regions kept,
one peak would map to itself and to each neighbour it touches, so a cell would get tokens for regions it does
not hold and neighbouring tokens would always co-occur; after merging every peak maps to exactly one token.
Book-ended peaks (one ends where the next starts: half-open, no shared base) stay separate, and exact
duplicates become one region. Peaks of non-overlapping sets (the usual case: a peak caller's merged peak set)
come through unchanged, one token per peak.
"""

from __future__ import annotations

import re

import numpy as np

from fastembed.common.warn import warn
from fastembed.genome.universe import Universe

__all__ = [
    "universe_for",
    "LOW_FRACTION_COUNTS",
    "LOW_FRACTION_PEAKS",
    "check_universe_fit",
    "universe_from_peaks",
]

LOW_FRACTION_PEAKS = 0.5
"""Warn when fewer than this fraction of the data's peaks overlap the universe."""
LOW_FRACTION_COUNTS = 0.8
"""Warn when fewer than this fraction of the data's nonzero counts lie on such peaks."""


def _chrom_key(name: str) -> tuple:
    """Natural order of chromosome names: numbered ones by number, then X, Y, M/MT, then the rest by name."""
    core = re.sub(r"^chr", "", name, flags=re.IGNORECASE)
    if core.isdigit():
        return (0, int(core), name)
    special = {"x": 1, "y": 2, "m": 3, "mt": 3}
    if core.lower() in special:
        return (special[core.lower()], 0, name)
    return (4, 0, name)


def merge_sorted_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals of one chromosome, given sorted by start.

    Parameters
    ----------
    starts, ends : np.ndarray of int64, shape (n,)
        Sorted by ``starts``.

    Returns
    -------
    starts, ends : np.ndarray of int64, shape (m,), m <= n
        Intervals sharing at least one base are merged; book-ended ones (``end == next start``) are not.
    """
    if starts.size == 0:
        return starts, ends
    # A new region starts where a peak begins at or after every earlier peak's end.
    run_end = np.maximum.accumulate(ends)
    new = np.ones(starts.size, dtype=bool)
    new[1:] = starts[1:] >= run_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], starts.size) - 1
    return starts[first].copy(), run_end[last].copy()


def universe_from_peaks(adata, *, name: str | None = None) -> Universe:
    """The data's own peaks as a universe: sorted, overlapping peaks merged (see the module docstring).

    Parameters
    ----------
    adata : anndata.AnnData or str or os.PathLike
        Cells x peaks (``var`` with ``chr``/``start``/``end`` or ``var_names`` like ``chr1:100-200``), or an
        ``.h5ad``/``.zarr`` path (only ``var`` is read).
    name : str, optional
        How the universe is named in messages (its ``source``); default ``"peaks of <the AnnData>"``.

    Returns
    -------
    Universe
        Regions in natural chromosome order, then by start; ``len()`` <= the number of peaks (equal when no two
        peaks overlap).
    """
    from fastembed.genome.readers import as_adata, peak_coordinates

    data, data_name = as_adata(adata)
    if data.n_vars == 0:
        raise ValueError(f"{data_name} has zero peaks (var is empty); no universe can be made from them")
    chroms, starts, ends = peak_coordinates(data, name=data_name)
    chroms = np.asarray(chroms, dtype=object)
    out_c, out_s, out_e = [], [], []
    for chrom in sorted(set(chroms.tolist()), key=_chrom_key):
        on = np.flatnonzero(chroms == chrom)
        order = np.lexsort((ends[on], starts[on]))
        s, e = merge_sorted_intervals(starts[on][order], ends[on][order])
        out_c.append(np.full(s.size, chrom, dtype=object))
        out_s.append(s)
        out_e.append(e)
    return Universe.from_arrays(
        np.concatenate(out_c),
        np.concatenate(out_s),
        np.concatenate(out_e),
        source=name or f"peaks of {data_name}",
    )


def universe_for(adata, universe, *, name: str | None = None) -> tuple[Universe, bool]:
    """The universe to tokenize ``adata`` with: (Universe, from_data).

    ``universe`` None: the data's own peaks (:func:`universe_from_peaks`, ``from_data`` True); else a
    :class:`Universe`, BED path or anything :func:`fastembed.genome.universe.resolve_universe` takes
    (``from_data`` False). ``name`` names the AnnData in messages.
    """
    from fastembed.genome.universe import resolve_universe

    if universe is None:
        return universe_from_peaks(adata, name=name), True
    return resolve_universe(universe), False


def check_universe_fit(stats: dict, name: str, universe_source) -> bool:
    """Warn when a universe maps few of the data's peaks or counts; True if it warned.

    Parameters
    ----------
    stats : dict
        Tokenize stats (:attr:`fastembed.TokenizedCells.stats`): ``n_peaks``, ``n_peaks_unmapped``,
        ``fraction_peaks_in_universe``, ``n_counts``, ``n_counts_in_universe``, ``fraction_counts_in_universe``.
    name : str
        How the message names the data.
    universe_source
        How the message names the universe.

    Returns
    -------
    bool
        Whether the fraction of peaks is below :data:`LOW_FRACTION_PEAKS` or the fraction of counts below
        :data:`LOW_FRACTION_COUNTS` (and a ``UserWarning`` was issued).
    """
    f_peaks = float(stats["fraction_peaks_in_universe"])
    f_counts = float(stats["fraction_counts_in_universe"])
    if f_peaks >= LOW_FRACTION_PEAKS and f_counts >= LOW_FRACTION_COUNTS:
        return False
    n_in = stats["n_peaks"] - stats["n_peaks_unmapped"]
    warn(
        f"universe '{universe_source}' covers little of {name}: {n_in} of {stats['n_peaks']} peaks "
        f"({100 * f_peaks:.1f}%) and {stats['n_counts_in_universe']} of {stats['n_counts']} counts "
        f"({100 * f_counts:.1f}%) fall in it (warned below {100 * LOW_FRACTION_PEAKS:.0f}% of peaks or "
        f"{100 * LOW_FRACTION_COUNTS:.0f}% of counts); what misses the universe is lost to the embedding. "
        "Unless you need this universe (e.g. to use a pretrained model), tokenize against the data's own peaks: "
        "fe.tl.scembed(adata) with no universe, or fe.pp.universe_from_peaks(adata)"
    )
    return True
