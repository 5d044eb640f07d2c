"""Small real datasets that ship inside the package (no network needed)."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fastembed.genome.universe import read_bed

__all__ = ["demo_peaks_path", "load_demo"]

_DEMO = "granja2019_demo"


def _data_file(name: str) -> Path:
    path = Path(str(resources.files("fastembed") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"bundled data file '{path}' is missing; reinstall fastembed-sc")
    return path


def demo_peaks_path() -> Path:
    """Path of the demo's peak BED file (gzipped; 10,000 hg19 peaks), also usable as its universe."""
    return _data_file(f"{_DEMO}_peaks.bed.gz")


def load_demo():
    """Load the bundled slice of the Granja et al. 2019 bone-marrow scATAC-seq (real data, hg19).

    5,000 cells (2,000 of donor D5T1, 3,000 of D6T1) x 10,000 peaks, 16 cell types. See
    ``fastembed/data/README.md`` for provenance, license and citation.

    Returns
    -------
    anndata.AnnData
        ``X``: CSR (5000, 10000) float32 raw insertion counts; ``obs``: ``cell_type`` (categorical),
        ``donor`` (``D5T1``/``D6T1``, categorical); ``var``: ``chr``, ``start``, ``end``, ``name``,
        ``var_names`` ``chr:start-end``.
    """
    import anndata as ad

    with np.load(_data_file(f"{_DEMO}_matrix.npz"), allow_pickle=False) as z:
        shape = tuple(int(v) for v in z["shape"])
        X = sp.csr_matrix(
            (z["data"].astype(np.float32), z["indices"].astype(np.int32), z["indptr"].astype(np.int64)),
            shape=shape,
        )
    with gzip.open(_data_file(f"{_DEMO}_cells.tsv.gz"), "rt") as fh:
        cells = pd.read_csv(fh, sep="\t", dtype=str)
    chroms, starts, ends = read_bed(demo_peaks_path(), what="demo peaks")
    with gzip.open(demo_peaks_path(), "rt") as fh:
        names = [line.rstrip("\n").split("\t")[3] for line in fh if line.strip()]
    var = pd.DataFrame({"chr": chroms.astype(str), "start": starts, "end": ends, "name": names})
    var.index = [f"{c}:{s}-{e}" for c, s, e in zip(var["chr"], starts.tolist(), ends.tolist(), strict=True)]
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(cells["cell_type"]), "donor": pd.Categorical(cells["donor"])},
        index=pd.Index(cells["barcode"].to_numpy()),
    )
    if X.shape != (len(obs), len(var)):
        raise ValueError(
            f"bundled demo data is inconsistent: matrix {X.shape}, {len(obs)} cells, {len(var)} peaks"
        )
    return ad.AnnData(X=X, obs=obs, var=var)
