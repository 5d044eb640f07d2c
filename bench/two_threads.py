"""Where two threads lose time: the machine, or the kernel's shared matrices?

On the 2-core VMs the SGNS kernel's 1 -> 2 thread scaling moves between ~1.3x and ~2.2x from one round to the
next (bench/RESULTS.md). This script separates the causes, in interleaved rounds (one line per round):

* ``compute``: a numba ``prange`` loop of register-resident FMAs (no memory traffic, nothing shared), 1 vs 2
  threads. Near 2x says the VM gives two whole cores to arithmetic.
* ``omp``: the trainer as users run it (``train_sgns(threads=2)``: numba's parallel driver, hogwild on one pair
  of matrices) against ``threads=1``.
* ``shared``: two Python threads, each running the serial (``nogil``) block kernel on half of each epoch's
  blocks, on the same matrices: the same sharing as ``omp`` without numba's thread pool.
* ``private``: the same, the second thread on its own copies of the matrices, so the threads share nothing they
  write; ``private_in`` and ``private_out`` copy only the input or only the output matrix. Their vectors are not
  a model (half the updates are thrown away); only their words/s mean anything.

If ``private`` runs clearly ahead of ``shared``, writes to rows both threads use (hot regions, shared negatives)
cost time and a per-thread output matrix could pay; if ``omp`` trails ``shared``, the thread pool does; if all
three move together with ``compute`` near 2x, the machine's memory side (a cache shared with other tenants) sets
the scaling, not the kernel. Busy cores (CPU time / wall time) tell threads that wait from threads that stall.

    python bench/two_threads.py [--rounds 5] [--epochs 4] [--data DIR]

granja2019, ``sample=0``, the random start, default settings otherwise; words/s as in train_vs_gensim.py. About a
minute per round on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _data import machine  # noqa: E402
from numba import njit, prange  # noqa: E402
from train_vs_gensim import granja_csr, shared_data  # noqa: E402


@njit(parallel=True, fastmath=True, cache=True)
def fma_chains(n_tasks, iters):
    """``n_tasks`` independent chains of 64-float multiply-adds, one per ``prange`` iteration: arithmetic from
    registers only, so its 1 -> 2 thread scaling is what the machine gives, whatever the memory does."""
    out = np.zeros(n_tasks, np.float32)
    for t in prange(n_tasks):
        acc = np.zeros(64, np.float32)
        for _ in range(iters):
            for d in range(64):
                acc[d] = acc[d] * np.float32(1.0001) + np.float32(1e-7)
        out[t] = acc.sum()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--iters", type=int, default=150_000_000, help="FMA steps per task of the compute loop")
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)

    import numba

    import fastembed.sgns as sg

    indptr, indices, vocab = granja_csr(shared_data(args.data))
    numba_parallel = sg._blocks_parallel
    mode = {"name": "omp"}

    def blocks_two_python_threads(threads, counter, p1, order, starts, ip, ix, w_in, w_out, params, epoch):
        # Same signature as sgns._blocks_parallel, which train_sgns looks up when it runs.
        if mode["name"] == "omp":
            return numba_parallel(threads, counter, p1, order, starts, ip, ix, w_in, w_out, params, epoch)
        p0 = int(counter[0])
        mid = (p0 + p1) // 2
        name = mode["name"]
        second = (
            w_in if name in ("shared", "private_out") else w_in.copy(),
            w_out if name in ("shared", "private_in") else w_out.copy(),
        )
        jobs = [(p0, mid, w_in, w_out), (mid, p1, *second)]
        workers = [
            threading.Thread(
                target=sg._blocks_serial, args=(a, b, order, starts, ip, ix, wi, wo, params, epoch)
            )
            for a, b, wi, wo in jobs
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    sg._blocks_parallel = blocks_two_python_threads
    small = int(indptr[200])
    for t in (1, 2):  # compile (or load from the cache) outside the timed runs
        sg.train_sgns(indptr[:201], indices[:small], vocab, epochs=1, threads=t, seed=0, progress=False)
    fma_chains(2, 10)  # compile (or load from the cache) outside the timed runs

    def train(threads: int) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        r = sg.train_sgns(indptr, indices, vocab, epochs=args.epochs, threads=threads, seed=1, progress=False)
        return r.words_processed / r.seconds, (time.process_time() - c0) / (time.perf_counter() - t0)

    def compute(threads: int) -> float:
        numba.set_num_threads(threads)
        t0 = time.perf_counter()
        fma_chains(2, args.iters)
        return time.perf_counter() - t0

    print(f"# two threads on granja2019 — {machine()}; {args.epochs} epochs per run", flush=True)
    modes = ("omp", "shared", "private", "private_in", "private_out")
    ratios: dict[str, list[float]] = {k: [] for k in ("compute", *modes)}
    for rnd in range(args.rounds):
        ratios["compute"].append(compute(1) / compute(2))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        one, _ = train(1)
        line = [f"compute {ratios['compute'][-1]:.2f}x", f"1 thread {one / 1e3:.0f}k words/s"]
        # The order rotates from round to round, so a drift of the machine does not favour one mode.
        for name in modes[rnd % len(modes) :] + modes[: rnd % len(modes)]:
            mode["name"] = name
            wps, busy = train(2)
            ratios[name].append(wps / one)
            line.append(f"{name} {wps / one:.2f}x ({busy:.2f} cores busy)")
        mode["name"] = "omp"
        print(f"round {rnd}: " + "; ".join(line), flush=True)
    print("\n| 2 threads / 1 thread | median | range |\n|---|---|---|")
    for name, r in ratios.items():
        print(f"| {name} | {statistics.median(r):.2f}x | {min(r):.2f}-{max(r):.2f}x |")
    print()
    for name in ("omp", "private", "private_in", "private_out"):
        paired = [p / s for p, s in zip(ratios[name], ratios["shared"], strict=True)]
        print(
            f"{name} / shared, round by round: median {statistics.median(paired):.3f} "
            f"({min(paired):.3f}-{max(paired):.3f}); ahead in {sum(p > 1 for p in paired)} of {len(paired)}"
        )


if __name__ == "__main__":
    main()
