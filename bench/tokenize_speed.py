"""Tokenizer throughput: fastembed's numba tokenizer vs a vectorised numpy/scipy reference (and gtars if present).

Usage (from the repository root; see bench/README.md for the venv):

    python bench/tokenize_speed.py [--cells 1000000] [--tokens-per-cell 200] [--reference-cells 100000]

Two workloads:
1. granja2019 (real; ../shared/data): 14,125 cells x 10,000 peaks against the Buenrostro 2018 universe.
2. synthetic: ``--cells`` cells x 100,000 peaks (random 501-bp peaks on 3 chromosomes), ~``--tokens-per-cell``
   open peaks per cell, against another random 100,000-region universe (so peaks hit 0, 1 or 2 regions).

Both methods produce the same tokens (checked). Rates are tokens written per second, end to end from a
cells x peaks CSR matrix to the CSR of tokens, after a JIT warm-up. Peak RSS is read from the OS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _data import machine, shared_data

import fastembed as fe
from fastembed.universe import Universe


def numpy_reference(adata, uni: Universe, min_overlap: int = 1) -> sp.csr_matrix:
    """Vectorised numpy/scipy tokenizer: searchsorted candidate ranges, then (X != 0) @ (peaks x tokens)."""
    s = uni.sorted_index
    lookup = {c: i for i, c in enumerate(uni.chrom_names)}
    q_chr = adata.var["chr"].map(lookup).fillna(-1).to_numpy(dtype=np.int64)
    qs = adata.var["start"].to_numpy(np.int64)
    qe = adata.var["end"].to_numpy(np.int64)
    rows, cols = [], []
    for c in np.unique(q_chr[q_chr >= 0]):
        lo, hi = s.chrom_lo[c], s.chrom_hi[c]
        peaks = np.flatnonzero(q_chr == c)
        right = lo + np.searchsorted(s.starts[lo:hi], qe[peaks] - min_overlap, side="right")
        left = lo + np.searchsorted(s.max_end[lo:hi], qs[peaks] + min_overlap, side="left")
        n = np.maximum(right - left, 0)
        peak_rep = np.repeat(peaks, n)
        cand = np.repeat(left - np.cumsum(n) + n, n) + np.arange(n.sum())
        ok = (s.ends[cand] >= qs[peak_rep] + min_overlap) & (s.ends[cand] - s.starts[cand] >= min_overlap)
        rows.append(peak_rep[ok])
        cols.append(s.token[cand[ok]])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    M = sp.csr_matrix((np.ones(rows.size, dtype=np.int32), (rows, cols)), shape=(adata.n_vars, len(uni)))
    X = adata.X
    B = sp.csr_matrix((np.ones(X.nnz, dtype=np.int32), X.indices, X.indptr), shape=X.shape)
    T = (B @ M).tocsr()
    T.sort_indices()
    return T


def gtars_rate(adata, uni: Universe, tok, n_cells: int) -> tuple[float, float] | None:
    """Tokens/s of gtars (the Rust tokenizer geniml calls), cell by cell as geniml feeds it, on the first
    ``n_cells`` cells; and the share of those cells whose token set equals fastembed's. None without gtars."""
    try:
        from gtars.tokenizers import Tokenizer
    except ImportError:
        return None
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    Region = namedtuple("Region", "chr start end")  # gtars reads .chr/.start/.end off any object
    with tempfile.TemporaryDirectory() as tmp:
        bed = Path(tmp) / "universe.bed"
        uni.write_bed(bed)
        gt = Tokenizer.from_bed(str(bed))
    # Region objects are built once per peak, outside the timing: this favours gtars.
    peaks = [
        Region(c, int(a), int(b))
        for c, a, b in zip(adata.var["chr"].astype(str), adata.var["start"], adata.var["end"], strict=True)
    ]
    X = adata.X[:n_cells].tocsr()
    t = time.perf_counter()
    ids = [
        gt.convert_tokens_to_ids(gt.tokenize([peaks[j] for j in X.indices[X.indptr[i] : X.indptr[i + 1]]]))
        for i in range(X.shape[0])
    ]
    elapsed = time.perf_counter() - t
    # gtars numbers the regions its own way, so compare regions, not ids.
    names = gt.convert_ids_to_tokens(list(range(gt.vocab_size)))
    ours = np.array(
        [f"{c}:{a}-{b}" for c, a, b in zip(uni.chroms, uni.starts.tolist(), uni.ends.tolist(), strict=True)],
        dtype=object,
    )
    same = np.mean(
        [
            {names[j] for j in ids[i]} == set(ours[tok.indices[tok.indptr[i] : tok.indptr[i + 1]]])
            for i in range(X.shape[0])
        ]
    )
    return sum(len(x) for x in ids) / elapsed, float(same)


def synthetic(n_cells: int, per_cell: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_peaks = 100_000
    chroms = np.array(["chr1", "chr2", "chr3"], dtype=object)

    def regions(n):
        c = chroms[rng.integers(0, 3, n)]
        s = rng.integers(0, 50_000_000, n)
        return c, s, s + 501

    pc, ps, pe = regions(n_peaks)
    uc, us, ue = regions(100_000)
    # Random starts collide a few dozen times; a real universe has no duplicate regions (gtars keeps each once in
    # its vocabulary and then names most cells' hits as other regions), so keep the first of each.
    _, first = np.unique(np.char.add(uc.astype(str), us.astype(str)), return_index=True)
    first.sort()
    uc, us, ue = uc[first], us[first], ue[first]
    # Power-law peak popularity, as in real data: a few peaks are open in most cells.
    popularity = 1.0 / np.arange(1, n_peaks + 1) ** 0.6
    popularity /= popularity.sum()
    lengths = rng.poisson(per_cell, n_cells).astype(np.int64)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.choice(n_peaks, size=int(indptr[-1]), p=popularity).astype(np.int32)
    X = sp.csr_matrix((np.ones(indices.size, dtype=np.uint8), indices, indptr), shape=(n_cells, n_peaks))
    var = pd.DataFrame({"chr": pc, "start": ps, "end": pe}, index=[f"p{i}" for i in range(n_peaks)])
    import anndata as ad

    adata = ad.AnnData(X=X, var=var, obs=pd.DataFrame(index=np.arange(n_cells).astype(str)))
    return adata, Universe.from_arrays(uc, us, ue, source="synthetic")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat=3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run(name, adata, uni, ref_cells, repeat, gtars_cells):
    import warnings

    warnings.simplefilter("ignore")
    fe.tokenize_cells(adata[: min(1000, adata.n_obs)], uni)  # JIT warm-up (cached after the first process)
    t_ours, tok = timed(lambda: fe.tokenize_cells(adata, uni), repeat)
    sub = adata if ref_cells >= adata.n_obs else adata[:ref_cells]
    t_ref, T = timed(lambda: numpy_reference(sub, uni), 1 if sub.n_obs > 200_000 else repeat)
    n_sub = sub.n_obs
    same = np.array_equal(T.indptr, tok.indptr[: n_sub + 1]) and np.array_equal(
        T.indices, tok.indices[: T.nnz]
    )
    rate_ours = tok.n_tokens / t_ours
    rate_ref = T.nnz / t_ref
    csr_mb = (adata.X.indptr.nbytes + adata.X.indices.nbytes + adata.X.data.nbytes) / 2**20
    g = gtars_rate(adata, uni, tok, min(gtars_cells, adata.n_obs)) if gtars_cells else None
    gtars_col = (
        "not installed"
        if g is None
        else (
            f"{g[0] / 1e6:.2f} M/s ({min(gtars_cells, adata.n_obs):,} cells; {rate_ours / g[0]:.0f}x; "
            f"same token sets {g[1]:.1%})"
        )
    )
    print(
        f"| {name} | {adata.n_obs:,} x {adata.n_vars:,} | {tok.n_tokens:,} | {rate_ours / 1e6:.1f} M/s "
        f"| {rate_ref / 1e6:.1f} M/s ({n_sub:,} cells) | {rate_ours / rate_ref:.1f}x | {same} | {gtars_col} "
        f"| {csr_mb:,.0f} MB |"
    )
    return rate_ours, rate_ref


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--tokens-per-cell", type=int, default=200)
    ap.add_argument(
        "--reference-cells",
        type=int,
        default=100_000,
        help="cells of the synthetic set the numpy reference tokenizes (it needs far more memory)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--gtars-cells",
        type=int,
        default=20_000,
        help="cells gtars tokenizes per workload if it is installed (0: skip); it runs one cell per call",
    )
    args = ap.parse_args(argv)
    print(f"# tokenize bench — {machine()}")
    print(
        "| workload | cells x peaks | tokens | fastembed | numpy/scipy reference | ratio | same tokens | gtars "
        "| input CSR |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    d = shared_data() / "granja2019_bmmc_hg19"
    if d.is_dir():
        adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
        uni = Universe.from_bed(shared_data() / "universe_buenrostro2018_hg19" / "peaks.bed")
        run("granja2019 vs Buenrostro universe", adata, uni, adata.n_obs, args.repeat, args.gtars_cells)
    else:
        print(f"(granja2019 not found under {shared_data()}; set FASTEMBED_SHARED_DATA)")
    adata, uni = synthetic(args.cells, args.tokens_per_cell)
    run("synthetic", adata, uni, args.reference_cells, args.repeat, min(args.gtars_cells, 5_000))
    print(f"peak RSS of this process: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
