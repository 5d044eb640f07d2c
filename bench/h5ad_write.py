"""How to write an .h5ad so that a full disk is an error, not a crash: anndata's own write (HDF5 writes the
file itself) against an HDF5 image built in memory (h5py's core driver, ``backing_store=False``) and written
with Python file I/O. Time and peak RSS of each, in one process each, on granja2019 (the whole matrix, as
``fastembed encode`` writes it without --embeddings-only).

    .venv/bin/python bench/h5ad_write.py {direct,image} OUT.h5ad
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "granja2019_bmmc_hg19"


def load() -> ad.AnnData:
    x = scipy.io.mmread(DATA / "matrix.mtx.gz").tocsr().astype(np.float32)
    obs = pd.read_csv(DATA / "barcodes.tsv", header=None, names=["barcode"]).set_index("barcode")
    a = ad.AnnData(X=x, obs=obs)
    a.obsm["scembed_X"] = np.random.default_rng(0).random((a.n_obs, 100), dtype=np.float32)
    return a


def main() -> None:
    how, out = sys.argv[1], Path(sys.argv[2])
    from fastembed.storage.faults import (
        write_h5ad,  # imported before the clock starts (fastembed loads numba)
    )

    adata = load()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if how == "direct":
        adata.write_h5ad(out)
    else:
        write_h5ad(adata, out)
    dt = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"{how}: {dt:.2f} s, file {out.stat().st_size / 2**20:.1f} MiB, peak RSS {rss1 / 2**10:.0f} MiB "
        f"(+{(rss1 - rss0) / 2**10:.0f} MiB over the loaded data)"
    )


if __name__ == "__main__":
    main()
