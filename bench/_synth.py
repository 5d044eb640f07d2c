"""A synthetic scATAC atlas whose statistics follow real data, written to disk block by block.

What is fitted (``fit_real``), from granja2019 (../shared/data) and the bundled demo:

* regions per cell: log-normal; ``sigma`` is the spread of log(nonzeros per cell) in the real matrices (the
  shape of the distribution does not depend on how many peaks were called). The median is a parameter: those
  matrices hold 10,000 selected peaks, so their median (144 granja2019, 140 the demo) is far below a full peak
  set's. Their mean per-peak open share (1.96%) spread over a 500,000-region universe would give ~9,800 regions a
  cell, an upper bound (selected peaks are the most open ones); the issue's real peak matrices hold 1,000-10,000.
  The default, 2,000, is the low end of that range: realistic density, not the sparsest nor the densest.
* region popularity: the observed share of cells in which each peak is open, as a quantile function,
  stretched over the universe (rank r of U gets the real quantile at (r + 0.5) / U) and shuffled along the
  genome. A cell draws its regions with these weights (a Vose alias table: one random entry and one load).
* cell types: ``n_types`` (12) planted programs of ``program_frac`` (1%, 5,000 regions) of the universe each.
  Types come in ``n_lineages`` (4) lineages of 3, like blood cell types in myeloid and lymphoid branches: a share
  ``lineage_overlap`` (half) of each program is its lineage's common pool, so sister types are harder to tell
  apart than types of different lineages, as in granja2019. ``program_share`` of a cell's regions come from its
  type's program, the rest from the popularity weights.

The planted share is fitted, not chosen (bench/synth_fit.py; bench/RESULTS.md): at a share of 0.3 (the first
version) every type was separable and Leiden ARI and transfer accuracy were 1.0, which grades nothing. At the
atlas density (median 2,000) LSI's 10-NN transfer accuracy on 3,000 cells (``synth_fit.py --lsi-only``) is 0.09 /
0.10 / 0.48 / 0.68 at shares 0.01 / 0.02 / 0.04 / 0.05 (granja2019's LSI: 0.61, fastembed 0.75); the default 0.05 puts the
types just above that step, in granja2019's range of difficulty. fastembed on the 100,000-cell atlas (a 5,000-cell
training sample, 10 epochs): transfer accuracy 0.560, Leiden ARI 0.325 (granja2019: ~0.75 / ~0.44).

Generation is numba throughout and bounded by the block: cells are drawn in fixed chunks with their own seeds
(``prange``; the result does not depend on the thread count), the store is appended block by block, and the
fragments are formatted into one byte buffer per block and gzipped block by block.

Nothing here is fastembed: the generator only writes files (h5ad/zarr AnnData, a 10x fragments.tsv.gz, the
universe BED).
"""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _data import shared_data

REGION_BP, REGION_STEP = 500, 2_000


@dataclass
class Stats:
    """The fitted statistics and the chosen parameters of a synthetic atlas."""

    sigma_log_regions: float
    real_median_regions: float
    real_n_peaks: int
    popularity_quantiles: list  # share of cells per peak at 101 evenly spaced quantiles (0 = rarest)
    median_regions: float = 2_000.0
    n_regions: int = 500_000
    n_types: int = 12
    program_share: float = 0.05
    program_frac: float = 0.01
    n_lineages: int = 4
    lineage_overlap: float = 0.5
    seed: int = 0


def fit_real(median_regions: float = 2_000.0, n_regions: int = 500_000, seed: int = 0) -> Stats:
    """Fit the regions-per-cell spread and region popularity to granja2019 and the bundled demo."""
    import scipy.io

    from fastembed.datasets import load_demo

    d = shared_data() / "granja2019_bmmc_hg19"
    X = scipy.io.mmread(d / "matrix.mtx.gz").tocsr()
    demo = load_demo().X.tocsr()
    logs = np.concatenate([np.log(np.maximum(np.diff(m.indptr), 1)) for m in (X, demo)])
    share = np.bincount(X.indices, minlength=X.shape[1]) / X.shape[0]
    return Stats(
        sigma_log_regions=float(np.std(logs)),
        real_median_regions=float(np.median(np.diff(X.indptr))),
        real_n_peaks=int(X.shape[1]),
        popularity_quantiles=[float(q) for q in np.quantile(share, np.linspace(0, 1, 101))],
        median_regions=float(median_regions),
        n_regions=int(n_regions),
        seed=int(seed),
    )


class Atlas:
    """Draws cells of the fitted atlas; ``cells(lo, hi)`` is deterministic in (seed, lo) for fixed blocks."""

    def __init__(self, stats: Stats):
        self.s = stats
        rng = np.random.default_rng(stats.seed)
        u = stats.n_regions
        q = np.asarray(stats.popularity_quantiles)
        ranks = (np.arange(u) + 0.5) / u
        weight = np.interp(ranks, np.linspace(0, 1, q.size), q)
        weight = rng.permutation(weight)
        self.weight = weight / weight.sum()
        self.alias = _alias_table(self.weight)
        self.programs = _programs(rng, u, stats)

    def universe(self) -> pd.DataFrame:
        """chr1..chr22 in equal shares, 500-bp regions every 2 kb."""
        u = self.s.n_regions
        per = -(-u // 22)
        chrom = np.repeat([f"chr{i}" for i in range(1, 23)], per)[:u]
        start = 10_000 + (np.arange(u) % per) * REGION_STEP
        return pd.DataFrame({"chr": chrom, "start": start, "end": start + REGION_BP})

    def cells(self, lo: int, hi: int, fixed: int | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
        """(CSR uint8 cells x regions, planted type per cell) of cells lo:hi; ``fixed``: every cell that many
        regions (the memory benchmark's densities) instead of the log-normal."""
        s = self.s
        rng = np.random.default_rng([s.seed, lo])
        n, u = hi - lo, s.n_regions
        types = rng.integers(0, s.n_types, n)
        if fixed is None:
            counts = np.exp(rng.normal(np.log(s.median_regions), s.sigma_log_regions, n))
            counts = np.clip(np.rint(counts), 10, u // 10).astype(np.int64)
        else:
            counts = np.full(n, int(fixed), dtype=np.int64)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        c = np.empty(indptr[-1], dtype=np.int32)
        chunks = np.linspace(0, n, min(n, 64) + 1).astype(np.int64)
        _draw_cells(
            indptr, types, self.alias, self.programs, s.program_share, s.seed * 1_000_003 + lo, chunks, c
        )
        x = sp.csr_matrix((np.ones(c.size, dtype=np.uint8), c, indptr), shape=(n, u))
        return x, types


def _programs(rng: np.random.Generator, u: int, s: Stats) -> np.ndarray:
    """int32[n_types, size] sorted regions of each type's program. Types come in ``n_lineages`` groups (as blood
    types in myeloid, lymphoid, ... lineages): a share ``lineage_overlap`` of each program is its lineage's
    common pool, the rest is the type's own; programs are drawn without overlap between lineages."""
    size = max(int(round(u * s.program_frac)), 10)
    common = int(round(size * s.lineage_overlap))
    own = size - common
    lineage = np.arange(s.n_types) % s.n_lineages
    need = s.n_lineages * common + s.n_types * own
    pool = rng.choice(u, need, replace=False)
    pools = pool[: s.n_lineages * common].reshape(s.n_lineages, common)
    owns = pool[s.n_lineages * common :].reshape(s.n_types, own)
    out = np.concatenate([pools[lineage], owns], axis=1)
    return np.sort(out, axis=1).astype(np.int32)


def _alias_table(w: np.ndarray) -> np.ndarray:
    """Vose alias table of the probabilities ``w``, packed in one int64[U] so a draw costs one load: entry i
    keeps i with probability (low 32 bits) / 2**32, else gives the high 32 bits."""
    n = w.size
    p = w * n
    small = list(np.flatnonzero(p < 1.0))
    large = list(np.flatnonzero(p >= 1.0))
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int32)
    while small and large:
        i, j = small.pop(), large[-1]
        prob[i], alias[i] = p[i], j
        p[j] -= 1.0 - p[i]
        if p[j] < 1.0:
            small.append(large.pop())
    keep = np.minimum(np.rint(prob * 2.0**32), 2.0**32 - 1).astype(np.int64)
    return (alias.astype(np.int64) << 32) | keep


@numba.njit(cache=True, parallel=True)
def _draw_cells(indptr, types, alias, programs, share, seed, chunks, out):
    """Each cell's distinct regions, sorted: from its program with probability ``share``, else by popularity
    (alias draws); a region already drawn is drawn again (a cell holds exactly its count). Cells go in fixed
    chunks, each with its own seed, so the result does not depend on the number of threads."""
    u = alias.size
    width = programs.shape[1]
    for ch in numba.prange(chunks.size - 1):
        np.random.seed(seed + ch)
        mark = np.zeros(u, dtype=np.uint8)
        for i in range(chunks[ch], chunks[ch + 1]):
            lo, hi = indptr[i], indptr[i + 1]
            k = lo
            while k < hi:
                if np.random.random() < share:
                    col = programs[types[i], np.random.randint(0, width)]
                else:
                    j = np.random.randint(0, u)
                    e = alias[j]
                    col = j if np.random.randint(0, 1 << 32) < (e & 0xFFFFFFFF) else e >> 32
                if mark[col] == 0:
                    mark[col] = 1
                    out[k] = col
                    k += 1
            out[lo:hi].sort()
            for j in range(lo, hi):
                mark[out[j]] = 0


def write_universe(atlas: Atlas, path: Path) -> Path:
    atlas.universe().to_csv(path, sep="\t", header=False, index=False)
    return path


def write_store(
    atlas: Atlas, path: Path, n_cells: int, block: int = 20_000, fixed: int | None = None, offset: int = 0
) -> dict:
    """Cells ``offset .. offset + n_cells`` as an on-disk AnnData (``.h5ad`` or ``.zarr``), CSR X written block
    by block, ``obs['cell_type']`` the planted type; returns {"nnz", "seconds"}."""
    import time

    from anndata.io import sparse_dataset, write_elem

    t = time.perf_counter()
    if path.suffix == ".zarr":
        import zarr

        root = zarr.open_group(str(path), mode="w")
        closer = None
    else:
        import h5py

        root = closer = h5py.File(path, "w")
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    uni = atlas.universe()
    var = pd.DataFrame(
        index=[f"{c}:{s}-{e}" for c, s, e in zip(uni["chr"], uni["start"], uni["end"], strict=True)]
    )
    nnz, types = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lo in range(offset, offset + n_cells, block):
            x, ty = atlas.cells(lo, min(lo + block, offset + n_cells), fixed)
            nnz += x.nnz
            types.append(ty)
            if lo == offset:
                # 64-bit row pointers from the start: anndata's append cannot widen them, and an atlas passes
                # 2**31 nonzeros (1,000,000 cells at a median of 2,000 hold 2.33 G).
                x.indptr = x.indptr.astype(np.int64)
                write_elem(root, "X", x)
                X = sparse_dataset(root["X"])
            else:
                X.append(x)
        labels = np.concatenate(types)
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical([f"type{t}" for t in labels])},
            index=pd.Index([f"cell{i}" for i in range(offset, offset + n_cells)]),
        )
        write_elem(root, "obs", obs)
        write_elem(root, "var", var)
        for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(root, name, {})
    if closer is not None:
        closer.close()
    return {"nnz": int(nnz), "seconds": time.perf_counter() - t}


def write_fragments(atlas: Atlas, path: Path, n_cells: int, block: int = 2_000) -> dict:
    """Cells 0..n_cells as a 10x fragments.tsv.gz (chrom, start, end, barcode, count): one fragment inside each
    open region of a cell, 50-200 bp long at a random place; grouped by cell, not sorted by position. Lines are
    formatted by a numba kernel into one byte buffer per block and gzipped (level 1) block by block, so memory
    holds one block; written to ``path``.part and renamed when complete."""
    import time

    t = time.perf_counter()
    uni = atlas.universe()
    chrom = uni["chr"].str.slice(3).astype(np.int64).to_numpy()  # chr1..chr22 -> 1..22
    start = uni["start"].to_numpy().astype(np.int64)
    n_lines = 0
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as fh:
        fh.write(b"# synthetic fragments (bench/_synth.py)\n")
        for lo in range(0, n_cells, block):
            x, _ = atlas.cells(lo, min(lo + block, n_cells))
            rng = np.random.default_rng([atlas.s.seed, 7, lo])
            length = rng.integers(50, 200, x.nnz)
            offset = rng.integers(0, REGION_BP - 50, x.nnz)
            buf = np.empty(
                x.nnz * 48, dtype=np.uint8
            )  # "chr22\t" 6 + 2 x 10 digits + 2 tabs + "cell" 4 + 10 + "\t1\n" 3
            used = _format_fragments(x.indptr, x.indices, lo, chrom, start, offset, length, buf)
            fh.write(buf[:used].tobytes())
            n_lines += x.nnz
    part.replace(path)
    return {"fragments": n_lines, "seconds": time.perf_counter() - t}


@numba.njit(cache=True)
def _put_int(buf, k, v):
    """Write the decimal digits of v >= 0 at buf[k:], return the position after them."""
    n = 1
    w = v
    while w >= 10:
        w //= 10
        n += 1
    for j in range(n - 1, -1, -1):
        buf[k + j] = 48 + v % 10
        v //= 10
    return k + n


@numba.njit(cache=True)
def _format_fragments(indptr, indices, first_cell, chrom, start, offset, length, buf):
    """One 10x fragment line per nonzero of the CSR block into ``buf``; returns the bytes used."""
    k = 0
    for i in range(indptr.size - 1):
        for p in range(indptr[i], indptr[i + 1]):
            r = indices[p]
            s = start[r] + offset[p]
            buf[k] = 99  # c
            buf[k + 1] = 104  # h
            buf[k + 2] = 114  # r
            k = _put_int(buf, k + 3, chrom[r])
            buf[k] = 9
            k = _put_int(buf, k + 1, s)
            buf[k] = 9
            k = _put_int(buf, k + 1, s + length[p])
            buf[k] = 9
            buf[k + 1] = 99  # c
            buf[k + 2] = 101  # e
            buf[k + 3] = 108  # l
            buf[k + 4] = 108  # l
            k = _put_int(buf, k + 5, first_cell + i)
            buf[k] = 9
            buf[k + 1] = 49
            buf[k + 2] = 10
            k += 3
    return k


def save_stats(stats: Stats, path: Path) -> None:
    path.write_text(json.dumps(asdict(stats), indent=1))


def load_stats(path: Path) -> Stats:
    return Stats(**json.loads(path.read_text()))
