"""Shared helpers of the benchmarks: where the real data is, and the granja2019 loader."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFERENCE_DONOR, QUERY_DONOR = "D6T1", "D5T1"


def shared_data() -> Path:
    """The real data folder: $FASTEMBED_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("FASTEMBED_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_granja():
    """granja2019 (14,125 cells x 10,000 peaks) as an AnnData with binary X and obs cell_type, donor.

    Donor comes from the barcode: BMM_R1_* = D5T1 (query), BMM_R2_* = D6T1 (reference).
    """
    import fastembed as fe

    d = shared_data() / "granja2019_bmmc_hg19"
    if not d.is_dir():
        raise SystemExit(f"granja2019 not found under {shared_data()}; set FASTEMBED_SHARED_DATA")
    adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
    adata.X.data[:] = 1
    adata.X = adata.X.astype(np.float32)
    labels = pd.read_csv(d / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    adata.obs["cell_type"] = pd.Categorical(labels.loc[adata.obs_names].to_numpy())
    bc = adata.obs_names.to_series()
    adata.obs["donor"] = pd.Categorical(np.where(bc.str.startswith("BMM_R1_"), QUERY_DONOR, REFERENCE_DONOR))
    return adata


def machine() -> str:
    """One line naming the machine, date and main versions, for RESULTS.md."""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (StopIteration, OSError):
        model = platform.processor() or platform.machine()
    import numba

    return (
        f"{time.strftime('%Y-%m-%d')}, {model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}"
    )


def load_forebrain(seed: int = 0):
    """forebrain_preissl2018 (1,043 mouse cells x 7,674 peaks, 8 types) as an AnnData with binary float32 X and obs
    cell_type, rows shuffled with ``seed`` (the source sorts the cells by label). Its placeholder peaks are its own
    universe; it has no donors, so k-NN accuracy on it is by cross-validation (``_metrics.cv_transfer``)."""
    import fastembed as fe

    d = shared_data() / "forebrain_preissl2018_mouse_nocoords"
    if not d.is_dir():
        raise SystemExit(f"forebrain_preissl2018_mouse_nocoords not found under {shared_data()}")
    adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
    adata.X.data[:] = 1
    adata.X = adata.X.astype(np.float32)
    labels = pd.read_csv(d / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    adata.obs["cell_type"] = pd.Categorical(labels.loc[adata.obs_names].to_numpy())
    order = np.random.default_rng(3000 + seed).permutation(adata.n_obs)
    return adata[order].copy()


POOL_SIZE = 12
"""Cells of one donor and type merged into one cell of the high-coverage granja variant (~1,200 peaks per cell)."""


def _disjoint_groups(key, pool_size: int, rng):
    """Each key's rows (``key``: a Series over the cells) cut at random into disjoint groups of ``pool_size``,
    keys in sorted order, the rest of each key left out; returns the groups (int arrays) and their keys."""
    groups, keys = [], []
    for k, idx in sorted(key.groupby(key).indices.items()):
        idx = rng.permutation(idx)
        for lo in range(0, idx.size - pool_size + 1, pool_size):
            groups.append(idx[lo : lo + pool_size])
            keys.append(k)
    return groups, keys


def _merged_cells(x, groups, n_cells: int):
    """float32 CSR (len(groups), n_peaks): row ``i`` is 1 at every peak held by a cell of ``groups[i]``."""
    import scipy.sparse as sp

    rows = np.repeat(np.arange(len(groups)), [g.size for g in groups])
    agg = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, np.concatenate(groups))), shape=(len(groups), n_cells)
    )
    merged = (agg @ x).tocsr()
    merged.data[:] = 1
    merged.sort_indices()  # SnapATAC2 refuses a CSR matrix with unsorted indices (the product leaves them so)
    return merged.astype(np.float32)


def load_granja_pooled(n: int, seed: int, granja=None, pool_size: int = POOL_SIZE):
    """A high-coverage variant of granja2019: its cells split, within each (donor, cell type), into disjoint groups
    of ``pool_size`` at random; ``n`` groups drawn (``seed``); each becomes one cell holding the union of its
    members' peaks (about 1,200 of the 10,000 peaks at 12, against ~164 for one cell; ~1,800 at 24), with the
    group's donor and type. Disjoint groups keep one cell's reads from being in two pooled cells."""
    import anndata as ad

    g = load_granja() if granja is None else granja
    rng = np.random.default_rng(4000 + seed)
    key = g.obs["donor"].astype(str) + "|" + g.obs["cell_type"].astype(str)
    groups, keys = _disjoint_groups(key, pool_size, rng)
    pick = np.sort(rng.choice(len(groups), size=min(n, len(groups)), replace=False))
    meta = [keys[p].split("|", 1) for p in pick]
    obs = pd.DataFrame(
        {"donor": pd.Categorical([m[0] for m in meta]), "cell_type": pd.Categorical([m[1] for m in meta])},
        index=[f"pool{p}" for p in pick],
    )
    return ad.AnnData(X=_merged_cells(g.X, [groups[p] for p in pick], g.n_obs), obs=obs, var=g.var.copy())


def split_peaks(adata, k: int, seed: int):
    """A finer universe from the same reads: every peak cut into ``k`` equal sub-intervals, and each cell's
    presence at a peak moved to one of its ``k`` pieces at random (``seed``). Cells keep their number of regions
    and their labels; each region is held by ``k`` times fewer cells, as in a dataset whose own peak calling gives
    a large universe (100,000+ peaks over a few hundred cells) where most peaks are seen in a handful of cells.
    The pieces of one peak carry the same biology, so nothing here is invented; only the counting is spread."""
    import anndata as ad
    import scipy.sparse as sp

    x = sp.csr_matrix(adata.X)
    x.sum_duplicates()
    rng = np.random.default_rng(5000 + seed)
    cols = x.indices.astype(np.int64) * k + rng.integers(0, k, size=x.nnz)
    y = sp.csr_matrix((np.ones(x.nnz, np.float32), cols, x.indptr.copy()), shape=(x.shape[0], x.shape[1] * k))
    y.sort_indices()
    start = adata.var["start"].to_numpy(np.int64)
    end = adata.var["end"].to_numpy(np.int64)
    piece = np.maximum((end - start) // k, 1)
    j = np.tile(np.arange(k), start.size)
    s0 = np.repeat(start, k) + j * np.repeat(piece, k)
    var = pd.DataFrame(
        {"chr": np.repeat(adata.var["chr"].to_numpy(), k), "start": s0, "end": s0 + np.repeat(piece, k)},
        index=[f"{n}:{i}" for n in adata.var_names for i in range(k)],
    )
    return ad.AnnData(X=y, obs=adata.obs.copy(), var=var)


def load_forebrain_pooled(pool_size: int, seed: int):
    """A high-coverage variant of forebrain: its cells split, within each type, into disjoint groups of
    ``pool_size`` at random (``seed``); each group becomes one cell holding the union of its members' peaks (about
    1,000 of the 7,674 peaks at 3, against ~371 for one cell), with the group's type. All groups are kept (~347
    cells at 3)."""
    import anndata as ad

    f = load_forebrain(seed)
    rng = np.random.default_rng(6000 + seed)
    groups, types = _disjoint_groups(f.obs["cell_type"].astype(str), pool_size, rng)
    order = rng.permutation(len(groups))  # the groups come out sorted by type; cells should not
    groups, types = [groups[i] for i in order], [types[i] for i in order]
    obs = pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"pool{i}" for i in range(len(groups))])
    return ad.AnnData(X=_merged_cells(f.X, groups, f.n_obs), obs=obs, var=f.var.copy())


def load_pooled_name(name: str, seed: int, granja=None):
    """``granja-pool-N`` (12 cells a group) or ``granja-poolP-N`` (``P`` cells a group): :func:`load_granja_pooled`;
    ``forebrain-poolP``: :func:`load_forebrain_pooled`."""
    if name.startswith("forebrain-pool"):
        return load_forebrain_pooled(int(name[len("forebrain-pool") :]), seed)
    head, n = name.rsplit("-", 1)
    size = head[len("granja-pool") :]
    return load_granja_pooled(int(n), seed, granja, pool_size=int(size) if size else POOL_SIZE)
