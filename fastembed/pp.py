"""Preprocessing for scanpy users (``fe.pp``): in-memory steps that read or annotate an AnnData, no file written.

Named after scanpy's and SnapATAC2's ``pp`` namespaces (``sc.pp.neighbors``, ``snap.pp.import_data``): steps
that prepare data, as opposed to ``fe.tl`` (:mod:`fastembed.tl`), which computes the embedding and stores it in
the AnnData.

* :func:`universe_from_peaks`: the data's own peaks as a universe (sorted, overlapping peaks merged).
* :func:`tokenize`: the cells' tokens in memory, with what landed in the universe recorded in
  ``adata.uns["scembed"]["tokenize"]``.
* :func:`read_fragments`: a fragments file as a cells x universe count AnnData with per-cell QC in ``obs``.

Each call can be repeated (a notebook re-runs cells): it replaces what it wrote before and never fails because
its previous result exists.
"""

from __future__ import annotations

from fastembed.common.validate import require_anndata
from fastembed.genome.datauniverse import universe_for, universe_from_peaks

__all__ = ["read_fragments", "tokenize", "universe_from_peaks"]

UNS_KEY = "scembed"
"""``adata.uns`` key of what fastembed records about a run (settings, tokenize stats, training)."""


def universe_info(uni, from_data: bool) -> dict:
    """What ``uns`` records of a universe: where it came from, its size and checksum (all h5ad-storable)."""
    return {
        "source": str(uni.source),
        "from_data": bool(from_data),
        "n_regions": len(uni),
        "sha256": uni.checksum,
    }


def tokenize(
    adata,
    universe=None,
    *,
    min_overlap: int = 1,
    layer: str | None = None,
    chrom_style: str = "asis",
    key_added: str = UNS_KEY,
):
    """Tokenize an in-memory AnnData's cells, recording the tokenize stats in ``adata.uns``; no file written.

    Parameters
    ----------
    adata : anndata.AnnData
        Cells x peaks (``var`` with ``chr``/``start``/``end`` or ``var_names`` like ``chr1:100-200``). A cell's
        regions are its nonzero columns.
    universe : str or os.PathLike or Universe, optional
        Universe BED file (line ``i`` = token ``i``) or a :class:`fastembed.Universe`. None (the default):
        the data's own peaks (:func:`universe_from_peaks`). A given universe that maps few of the data's peaks
        or counts gets a ``UserWarning`` with the numbers (:func:`fastembed.genome.datauniverse.check_universe_fit`).
    min_overlap, layer, chrom_style
        As in :func:`fastembed.io.tokenize_cells`.
    key_added : str
        ``adata.uns`` key to write under (default ``"scembed"``).

    Returns
    -------
    TokenizedCells
        ``indptr`` int64 (n_cells + 1,), ``indices`` int32, one row per cell in ``adata`` order; ``.stats``
        and ``.universe``. Also sets ``adata.uns[key_added]["tokenize"]`` (the scalar stats) and
        ``adata.uns[key_added]["universe"]`` (source, ``from_data``, ``n_regions``, ``sha256``), replacing
        earlier values of those two entries.
    """
    from fastembed.genome.tokenize import tokenize_cells

    require_anndata(adata, "fe.pp.tokenize")
    uni, from_data = universe_for(adata, universe)
    tokens = tokenize_cells(adata, uni, min_overlap=min_overlap, layer=layer, chrom_style=chrom_style)
    record = dict(adata.uns.get(key_added, {}))
    record["tokenize"] = {k: v for k, v in tokens.stats.items() if v is not None}
    record["universe"] = universe_info(uni, from_data)
    adata.uns[key_added] = record
    return tokens


def read_fragments(*args, **kwargs):
    """A fragments file as a cells x universe count AnnData with per-cell QC in ``obs``.

    See :func:`fastembed.genome.fragments_adata.read_fragments` for the parameters and the QC columns.
    """
    from fastembed.genome.fragments_adata import read_fragments as _read

    return _read(*args, **kwargs)
