"""The empty-droplet rule for fragments files, shared by :func:`fastembed.pp.read_fragments` and
:func:`fastembed.tokenize_fragments` (``min_fragments="auto"``); see :mod:`fastembed.genome.fragments_adata`."""

from __future__ import annotations

import math

import numpy as np

EXPECTED_CELLS = 3000
"""Barcodes whose fragment counts set the scale of a cell in the ``"auto"`` rule (Cell Ranger's default)."""
AUTO_FLOOR = 100
"""The ``"auto"`` rule never keeps a barcode with fewer fragments than this."""


def droplet_threshold(fragments_per_barcode: np.ndarray) -> int:
    """The ``min_fragments="auto"`` threshold for these barcodes (the rule: :mod:`fastembed.genome.fragments_adata`).

    Parameters
    ----------
    fragments_per_barcode : np.ndarray of int, shape (n_barcodes,)

    Returns
    -------
    int
        ``max(AUTO_FLOOR, ceil(m / 10))``, ``m`` the 99th percentile of the top ``EXPECTED_CELLS`` counts.
    """
    counts = np.sort(np.asarray(fragments_per_barcode, dtype=np.int64))[::-1][:EXPECTED_CELLS]
    if counts.size == 0:
        return AUTO_FLOOR
    m = float(np.percentile(counts, 99))
    return max(AUTO_FLOOR, math.ceil(m / 10))
