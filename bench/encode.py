"""Encode throughput: fastembed's numba mean-pooling vs a scipy sparse-matrix product, in one run.

Usage (from the repository root):

    python bench/encode.py [--cells 200000] [--tokens-per-cell 1000] [--dim 100] [--repeat 5]

Workload: a synthetic token CSR (power-law token popularity, ``--cells`` cells x ~``--tokens-per-cell`` tokens
over a 100,000-region vocabulary) and random float32 region vectors. Both methods compute the plain mean of each
cell's trained token vectors (about 2% of tokens untrained), checked equal. The rate is token-rows per second:
tokens pooled per second, each a ``dim``-long row. Also reported: encode of the real granja2019 tokens through
``ScEmbed.encode`` (including tokenization of the AnnData against the model's universe).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy
import scipy.sparse as sp
from _data import machine, shared_data

from fastembed.pooling import weighted_mean_pool


def scipy_reference(indptr, indices, vectors, weights):
    """(cells x vocab weight matrix) @ vectors, divided by the row sums."""
    n = indptr.size - 1
    A = sp.csr_matrix((weights[indices], indices, indptr), shape=(n, vectors.shape[0]))
    total = np.asarray(A.sum(axis=1)).ravel()
    out = A @ vectors
    nz = total > 0
    out[nz] /= total[nz, None]
    return out


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--tokens-per-cell", type=int, default=1000)
    ap.add_argument("--vocab", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, args.vocab + 1) ** 0.7
    p /= p.sum()
    lengths = rng.poisson(args.tokens_per_cell, args.cells)
    indptr = np.zeros(args.cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.choice(args.vocab, size=int(indptr[-1]), p=p).astype(np.int32)
    for c in range(args.cells):  # a cell's tokens are sorted, as the tokenizer writes them
        indices[indptr[c] : indptr[c + 1]].sort()
    vectors = rng.standard_normal((args.vocab, args.dim)).astype(np.float32)
    weights = (rng.random(args.vocab) > 0.02).astype(np.float32)
    out = np.empty((args.cells, args.dim), dtype=np.float32)

    weighted_mean_pool(indptr[:101], indices, vectors, weights)  # JIT warm-up
    t_ours, (ours, _) = best_of(
        lambda: weighted_mean_pool(indptr, indices, vectors, weights, out=out), args.repeat
    )
    t_ref, ref = best_of(lambda: scipy_reference(indptr, indices, vectors, weights), max(1, args.repeat // 2))
    err = float(np.abs(ours - ref).max())
    n = indices.size
    print(f"# encode bench — {machine()}, scipy {scipy.__version__}")
    print(f"workload: {args.cells:,} cells, {n:,} tokens, vocab {args.vocab:,}, dim {args.dim}")
    print("| method | seconds | M token-rows/s |")
    print("|---|---|---|")
    print(f"| fastembed weighted_mean_pool | {t_ours:.3f} | {n / t_ours / 1e6:.1f} |")
    print(f"| scipy sparse product | {t_ref:.3f} | {n / t_ref / 1e6:.1f} |")
    print(f"ratio fastembed / scipy: {t_ref / t_ours:.1f}x; max abs difference {err:.2e}")

    from fastembed.scembed import ScEmbed

    d = shared_data() / "granja2019_bmmc_hg19"
    if d.is_dir():
        import fastembed as fe

        adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
        uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
        tok = fe.tokenize_cells(adata, uni)
        model = ScEmbed(embedding_dim=args.dim, seed=0).train(tok, epochs=1, progress=False)
        model.encode(adata[:100])
        t_a, _ = best_of(lambda: model.encode(adata), args.repeat)
        t_t, _ = best_of(lambda: model.encode(tok), args.repeat)
        print(
            f"granja2019 ({adata.n_obs:,} cells, {tok.n_tokens:,} tokens): ScEmbed.encode from AnnData "
            f"{t_a:.3f} s ({tok.n_tokens / t_a / 1e6:.1f} M token-rows/s incl. tokenization), "
            f"from tokens {t_t:.3f} s ({tok.n_tokens / t_t / 1e6:.1f} M token-rows/s)"
        )


if __name__ == "__main__":
    main()
