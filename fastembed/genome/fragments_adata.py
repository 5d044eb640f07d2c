"""Fragments to an AnnData: a cells x universe count matrix with per-cell QC in ``obs``, for scanpy users.

:func:`read_fragments` streams a 10x/tabix fragments file the way :func:`fastembed.tokenize_fragments` does (same
conventions, same parser and error messages: see :mod:`fastembed.fragments`), but keeps counts rather than token
sets, and measures each barcode on the way. The result is an AnnData ``fe.tl.scembed``, ``sc.pp`` functions and
SnapATAC2 take: ``X`` CSR float32 (cells x regions), ``var`` ``chr``/``start``/``end``, and in ``obs``:

* ``n_fragments``: fragments (lines) of the barcode, on any chromosome;
* ``n_fragments_in_universe`` and ``frac_fragments_in_universe``: those overlapping at least one region (with
  peaks as the universe, the FRiP score);
* ``n_regions``: regions with a nonzero count;
* ``frac_nucleosome_free`` (fragments shorter than 147 bp) and ``frac_mononucleosome`` (147-294 bp), and
  ``nucleosome_signal`` = mononucleosomal / nucleosome-free fragments (Signac's measure; NaN when a barcode has
  no nucleosome-free fragment). Good cells show a nucleosome-free excess; a high signal flags poor
  fragmentation. They need no annotation file, unlike the TSS enrichment;
* ``frac_fragments_mito``: fragments on ``chrM``/``chrMT``/``M``/``MT`` (high in damaged cells; 10x pipelines
  may have removed them already, then it is 0).

Which barcodes are cells: with a whitelist (``barcodes=``), exactly those, in its order, whatever their counts.
Without one, ``min_fragments="auto"`` (the default) drops empty droplets by the order-of-magnitude rule of Cell
Ranger's cell calling applied to fragments: a barcode is kept when it has at least
``max(AUTO_FLOOR, m / 10)`` fragments, where ``m`` is the 99th percentile of the fragment counts of the
``EXPECTED_CELLS`` barcodes with the most fragments (all barcodes when there are fewer). Empty droplets hold
ambient fragments two or more orders of magnitude fewer than cells, so they fall below it; cells with a tenth of
a typical large cell's fragments stay. An integer ``min_fragments`` is a plain threshold (1 keeps every
barcode). Filter further on the QC columns (e.g. ``adata[adata.obs.n_fragments >= 1000]``, ArchR's and
SnapATAC2's usual minimum) once you have looked at them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.genome.droplets import AUTO_FLOOR, EXPECTED_CELLS, droplet_threshold
from fastembed.genome.fragments import (
    _Barcodes,
    _check_read_args,
    _grow,
    _query_tokens,
    _read_batches,
    read_whitelist,
)
from fastembed.genome.universe import Universe, resolve_universe

__all__ = ["AUTO_FLOOR", "EXPECTED_CELLS", "droplet_threshold", "read_fragments"]

NUCLEOSOME_FREE_MAX = 147  # fragments shorter than one nucleosome's DNA
MONONUCLEOSOME_MAX = 294  # up to two
MITO_NAMES = frozenset({"chrM", "chrMT", "M", "MT"})


def _check_min_fragments(min_fragments):
    if isinstance(min_fragments, str):
        if min_fragments != "auto":
            raise ParameterError("min_fragments", "'auto' or an integer >= 1", min_fragments)
        return "auto"
    if isinstance(min_fragments, bool) or int(min_fragments) != min_fragments or min_fragments < 1:
        raise ParameterError("min_fragments", "'auto' or an integer >= 1", min_fragments)
    return int(min_fragments)


def read_fragments(
    path,
    universe,
    *,
    barcodes=None,
    min_fragments: int | str = "auto",
    mode: str = "fragment",
    min_overlap: int = 1,
    block_size: int = settings.FRAGMENT_BLOCK_BYTES,
):
    """Read a fragments file as a cells x universe count AnnData with per-cell QC in ``obs``.

    Parameters
    ----------
    path : str or os.PathLike
        Fragments file, plain or gzipped/BGZF: ``chrom start end barcode [count ...]`` tab-separated, 0-based
        end-exclusive (see :mod:`fastembed.fragments`). Streamed: memory follows the result, not the file.
    universe : str or os.PathLike or Universe
        The regions to count in (a peak set BED; line ``i`` = column ``i``).
    barcodes : str or os.PathLike or sequence of str, optional
        Whitelist: exactly these barcodes, in this order (also those without fragments: an empty row).
        It wins over ``min_fragments``.
    min_fragments : "auto" or int
        Without a whitelist: which barcodes are cells. ``"auto"`` (default): the empty-droplet rule of the
        module docstring; an integer: at least that many fragments (1 keeps every barcode).
    mode : {"fragment", "insertion"}
        ``"fragment"``: a fragment adds 1 to every region it overlaps by ``>= min_overlap`` bp.
        ``"insertion"``: each of its two Tn5 insertion sites (bases ``start`` and ``end - 1``) adds 1 to the
        region holding it (as SnapATAC2 counts), so one fragment can add 2.
    min_overlap : int
        Minimum overlap in bp (``"fragment"`` mode; 1 in ``"insertion"`` mode).
    block_size : int
        Bytes of text parsed at a time.

    Returns
    -------
    anndata.AnnData
        ``X``: scipy CSR float32 (n_cells, n_regions) counts; ``obs_names`` the barcodes; ``var`` ``chr`` (str),
        ``start``, ``end`` (int64), ``var_names`` ``chr:start-end``; ``obs`` the QC columns of the module
        docstring (``n_fragments``, ``n_fragments_in_universe``, ``n_regions`` int64; the fractions and
        ``nucleosome_signal`` float64); ``uns["fragments"]``: the file, mode, the rule and threshold applied and
        how many barcodes and fragments were read and dropped.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`fastembed.tokenize_fragments` (missing files, malformed lines named by file and line, no
        chromosome in common, no barcode left).
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise IsADirectoryError(f"fragments file '{path}' is a folder; expected a fragments.tsv.gz file")
        raise FileNotFoundError(f"fragments file '{path}' does not exist")
    _check_read_args(mode, min_overlap, block_size)
    rule = _check_min_fragments(min_fragments)
    uni: Universe = resolve_universe(universe)
    whitelist = read_whitelist(barcodes) if barcodes is not None else None
    bcs = _Barcodes(whitelist)
    chrom_ids = {c: i for i, c in enumerate(uni.chrom_names)}
    n_regions = len(uni)
    m = int(min_overlap)

    per_cell = {
        k: np.zeros(len(bcs) or 1024, dtype=np.int64) for k in ("frags", "in_uni", "nfr", "mono", "mito")
    }
    counts = sp.csr_matrix((0, n_regions), dtype=np.float32)
    pending_cells: list[np.ndarray] = []
    pending_tokens: list[np.ndarray] = []
    n_pending = 0
    n_read = n_unknown = n_rejected = 0

    def fold():
        nonlocal counts, pending_cells, pending_tokens, n_pending
        cells = np.concatenate(pending_cells) if pending_cells else np.empty(0, dtype=np.int32)
        tokens = np.concatenate(pending_tokens) if pending_tokens else np.empty(0, dtype=np.int32)
        n = len(bcs)
        add = sp.csr_matrix(
            (np.ones(cells.size, dtype=np.float32), (cells, tokens)), shape=(n, n_regions)
        )  # duplicates are summed
        counts.resize((n, n_regions))
        counts = (counts + add).tocsr()
        pending_cells, pending_tokens, n_pending = [], [], 0

    for batch in _read_batches(path, bcs, int(block_size)):
        chrom_names, chrom_idx, cells = batch.chrom_names, batch.chrom_idx, batch.cells
        starts, ends = batch.starts, batch.ends
        chrom_map = np.array([chrom_ids.get(c, -1) for c in chrom_names], dtype=np.int32)
        is_mito = np.array([c in MITO_NAMES for c in chrom_names], dtype=bool)
        codes = chrom_map[chrom_idx]
        n_read += codes.size
        n_unknown += int(np.count_nonzero(codes < 0))
        kept = cells >= 0
        if not kept.all():
            n_rejected += int(np.count_nonzero(~kept))
            chrom_idx, cells, starts, ends, codes = (
                chrom_idx[kept],
                cells[kept],
                starts[kept],
                ends[kept],
                codes[kept],
            )
        n = len(bcs)
        for k in per_cell:
            per_cell[k] = _grow(per_cell[k], n)
        lengths = ends - starts
        per_cell["frags"][:n] += np.bincount(cells, minlength=n)
        per_cell["nfr"][:n] += np.bincount(cells[lengths < NUCLEOSOME_FREE_MAX], minlength=n)
        mono = (lengths >= NUCLEOSOME_FREE_MAX) & (lengths <= MONONUCLEOSOME_MAX)
        per_cell["mono"][:n] += np.bincount(cells[mono], minlength=n)
        per_cell["mito"][:n] += np.bincount(cells[is_mito[chrom_idx]], minlength=n)
        token_cells, tokens, hits = _query_tokens(codes, starts, ends, cells, mode, uni.sorted_index, m)
        per_cell["in_uni"][:n] += np.bincount(cells[hits > 0], minlength=n)
        if tokens.size:
            pending_cells.append(token_cells)
            pending_tokens.append(tokens)
            n_pending += tokens.size
        if n_pending > settings.FOLD_PAIRS:
            fold()
    fold()
    n_all = len(bcs)
    qc = {k: v[:n_all].copy() for k, v in per_cell.items()}
    name = f"fragments file '{path}'"
    if n_read == 0:
        raise ValueError(f"{name} holds no fragments")
    if n_unknown == n_read:
        raise ValueError(
            f"none of the chromosomes of {name} occur in universe '{uni.source}' "
            f"({', '.join(repr(c) for c in uni.chrom_names[:4])}): the two name chromosomes differently "
            "(e.g. '1' vs 'chr1'); rename one to match"
        )
    names = np.array(list(bcs.ids), dtype=object)
    threshold = None
    if bcs.fixed:
        if not qc["frags"].any():
            raise ValueError(
                f"none of the {names.size} whitelisted barcodes occur in {name}; check the whitelist "
                "(e.g. a '-1' suffix)"
            )
        keep = np.ones(n_all, dtype=bool)
    else:
        threshold = droplet_threshold(qc["frags"]) if rule == "auto" else rule
        keep = qc["frags"] >= threshold
        if not keep.any():
            hints = (Keyword("min_fragments", threshold), Keyword("min_fragments"), Keyword("barcodes"))
            raise HintedValueError(
                f"no barcode of {name} has {hints[0]} fragments (the most is {qc['frags'].max()}); "
                f"pass a lower {hints[1]} or a whitelist ({hints[2]})",
                keywords=hints,
            )
    X = counts[np.flatnonzero(keep)] if not keep.all() else counts
    X.sort_indices()
    qc = {k: v[keep] for k, v in qc.items()}
    frags = qc["frags"]
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.maximum(frags, 1)
        obs = pd.DataFrame(
            {
                "n_fragments": frags,
                "n_fragments_in_universe": qc["in_uni"],
                "frac_fragments_in_universe": qc["in_uni"] / denom,
                "n_regions": np.diff(X.indptr).astype(np.int64),
                "frac_nucleosome_free": qc["nfr"] / denom,
                "frac_mononucleosome": qc["mono"] / denom,
                "nucleosome_signal": np.where(qc["nfr"] > 0, qc["mono"] / np.maximum(qc["nfr"], 1), np.nan),
                "frac_fragments_mito": qc["mito"] / denom,
            },
            index=pd.Index(names[keep].astype(str), name=None),
        )
    chroms = uni.chroms.astype(str)
    var = pd.DataFrame({"chr": chroms, "start": uni.starts, "end": uni.ends})
    var.index = [
        f"{c}:{s}-{e}" for c, s, e in zip(chroms, uni.starts.tolist(), uni.ends.tolist(), strict=True)
    ]
    n_dropped = int(np.count_nonzero(~keep))
    info = {
        "path": os.fspath(path),
        "universe": str(uni.source),
        "mode": mode,
        "min_overlap": m,
        "cell_rule": "whitelist" if bcs.fixed else ("auto" if rule == "auto" else "min_fragments"),
        "n_fragments": int(n_read),
        "n_fragments_unknown_chrom": int(n_unknown),
        "n_barcodes": int(np.count_nonzero(per_cell["frags"][:n_all]) + len(bcs.rejected)),
        "n_cells": int(keep.sum()),
        "n_barcodes_below_min_fragments": n_dropped,
        "n_fragments_below_min_fragments": int(per_cell["frags"][:n_all][~keep].sum()),
    }
    if threshold is not None:
        info["min_fragments"] = int(threshold)
    if bcs.fixed:
        info["n_barcodes_not_in_whitelist"] = len(bcs.rejected)
        info["n_fragments_not_in_whitelist"] = int(n_rejected)
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs, var=var)
    adata.uns["fragments"] = info
    return adata
