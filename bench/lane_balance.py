"""How evenly the training work is shared between threads: prange's even split of block indices against
fastembed's token-balanced lanes (``fastembed.sgns._lanes``), on granja2019's cells as stored.

The work of a block is proportional to its tokens, so the busiest thread's share of the tokens bounds the
speed-up of an epoch: ``threads / (max share / mean share)``. This is a model of the schedule, not a timing;
``bench/train_vs_gensim.py --scaling`` measures the speed-ups.

    python bench/lane_balance.py [--threads 2,4,8,16] [--batch-size 256]
"""

from __future__ import annotations

import argparse

import numpy as np
from _data import load_granja

from fastembed import settings
from fastembed.sgns import _lanes


def even_split(n_blocks: int, threads: int) -> np.ndarray:
    """Block boundaries of a static schedule: contiguous runs whose sizes differ by at most one block."""
    sizes = [n_blocks // threads + (1 if t < n_blocks % threads else 0) for t in range(threads)]
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def busiest(block_tokens: np.ndarray, bounds: np.ndarray) -> float:
    loads = np.add.reduceat(block_tokens, bounds[:-1]) if block_tokens.size else np.zeros(1)
    loads[np.diff(bounds) == 0] = 0
    return float(loads.max() / (block_tokens.sum() / (bounds.size - 1)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2,4,8,16")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    x = load_granja().X.tocsr()
    tokens_per_cell = np.diff(x.indptr).astype(np.int64)
    n_cells = tokens_per_cell.size
    indptr = np.concatenate(([0], np.cumsum(tokens_per_cell)))
    print(f"granja2019: {n_cells} cells, {indptr[-1]} tokens")
    print(
        "threads | batch | blocks | even split: busiest / mean, cap | token lanes (blocks shrunk): busiest / mean, cap"
    )
    for threads in (int(t) for t in args.threads.split(",")):
        bs = args.batch_size
        nb = -(-n_cells // bs)
        bt = np.diff(indptr[np.minimum(np.arange(nb + 1) * bs, n_cells)])
        even = busiest(bt, even_split(nb, threads))
        small = min(bs, max(1, -(-n_cells // (threads * settings.BLOCKS_PER_THREAD))))
        nbs = -(-n_cells // small)
        bts = np.diff(indptr[np.minimum(np.arange(nbs + 1) * small, n_cells)])
        lanes = busiest(bts, _lanes(bts, 0, nbs, threads))
        print(
            f"{threads:7d} | {small:5d} | {nbs:6d} | {even:.3f}, {threads / even:5.2f}x | {lanes:.3f}, "
            f"{threads / lanes:5.2f}x"
        )


if __name__ == "__main__":
    main()
