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

* ``hot``: the trainer as users run it with ``sgns.PRIVATE_HOT_ROWS`` on (each thread trains its own copy of the
  most written output rows, merged into the shared matrix every ``HOT_MERGE_TOKENS / (threads - 1)`` tokens; a
  real model); ``omp`` runs with it off. ``--hot-rows 256,1024`` gives one mode per size (``hot256``, ...).

If ``private`` runs clearly ahead of ``shared``, writes to rows both threads use (hot regions, shared negatives)
cost time and a per-thread output matrix could pay; if ``omp`` trails ``shared``, the thread pool does; if all
three move together with ``compute`` near 2x, the machine's memory side (a cache shared with other tenants) sets
the scaling, not the kernel. Busy cores (CPU time / wall time) tell threads that wait from threads that stall.

    python bench/two_threads.py [--rounds 5] [--epochs 4] [--data DIR] [--corpus granja,synthetic]
        [--modes omp,hot,shared,private,private_in,private_out] [--hot-rows 512]

The A/B of the private hot rows alone, on both corpora (what bench/RESULTS.md records; ~4 minutes on 2 cores):

    python bench/two_threads.py --corpus granja,synthetic --modes omp,hot --rounds 6 --iters 30000000

granja2019 and a synthetic corpus of 2,000 cells x 50,000 regions (train_vs_gensim.synthetic_csr, ~3,500 tokens
per cell; ``--synthetic-epochs``), ``sample=0``, the random start, default settings otherwise; words/s as in
train_vs_gensim.py. About a minute per round and corpus with all modes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
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
from train_vs_gensim import granja_csr, shared_data, synthetic_csr  # noqa: E402


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
    ap.add_argument("--epochs", type=int, default=4, help="epochs per granja2019 run")
    ap.add_argument("--synthetic-epochs", type=int, default=1, help="epochs per synthetic-corpus run")
    ap.add_argument("--iters", type=int, default=150_000_000, help="FMA steps per task of the compute loop")
    ap.add_argument("--data", default=None)
    ap.add_argument("--corpus", default="granja", help="comma-separated: granja, synthetic")
    ap.add_argument("--modes", default="omp,hot,shared,private,private_in,private_out")
    ap.add_argument("--hot-rows", default="512", help="sizes of PRIVATE_HOT_ROWS for the hot mode(s)")
    args = ap.parse_args(argv)

    import numba

    import fastembed.kernels.sgns as sg

    numba_parallel = sg._blocks_parallel
    mode = {"name": "omp"}
    hot_sizes = [int(h) for h in args.hot_rows.split(",") if h]
    modes = []
    for name in args.modes.split(","):
        if name == "hot":
            modes += [f"hot{h}" if len(hot_sizes) > 1 else "hot" for h in hot_sizes]
        elif name in ("omp", "shared", "private", "private_in", "private_out"):
            modes.append(name)
        else:
            raise SystemExit(f"--modes: unknown mode {name!r}")
    hot_of = {"hot": hot_sizes[0] if hot_sizes else 0, **{f"hot{h}": h for h in hot_sizes}}

    def blocks_two_python_threads(threads, counter, p1, order, starts, ip, ix, w_in, w_out, params, epoch):
        # Same signature as sgns._blocks_parallel, which train_sgns looks up when it runs.
        if mode["name"] == "omp" or mode["name"].startswith("hot"):
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
    corpora = {}
    for name in args.corpus.split(","):
        if name == "granja":
            corpora[name] = (*granja_csr(shared_data(args.data)), args.epochs)
        elif name == "synthetic":
            corpora[name] = (*synthetic_csr(n_cells=2000, n_regions=50_000), args.synthetic_epochs)
        else:
            raise SystemExit(f"--corpus: unknown corpus {name!r}")
    indptr, indices, vocab, _ = next(iter(corpora.values()))
    small = int(indptr[200])
    for hot in (0, 64):  # compile (or load from the cache) outside the timed runs
        sg.PRIVATE_HOT_ROWS = hot
        for t in (1, 2):
            sg.train_sgns(indptr[:201], indices[:small], vocab, epochs=1, threads=t, seed=0, progress=False)
    fma_chains(2, 10)  # compile (or load from the cache) outside the timed runs

    def train(corpus: str, threads: int) -> tuple[float, float]:
        # Every mode sets the flag itself, so the result does not depend on the package's default.
        sg.PRIVATE_HOT_ROWS = hot_of.get(mode["name"], 0)
        ip, ix, voc, epochs = corpora[corpus]
        c0, t0 = time.process_time(), time.perf_counter()
        r = sg.train_sgns(ip, ix, voc, epochs=epochs, threads=threads, seed=1, progress=False)
        return r.words_processed / r.seconds, (time.process_time() - c0) / (time.perf_counter() - t0)

    def compute(threads: int) -> float:
        numba.set_num_threads(threads)
        t0 = time.perf_counter()
        fma_chains(2, args.iters)
        return time.perf_counter() - t0

    print(
        f"# two threads on {', '.join(corpora)} — {machine()}; granja {args.epochs} epochs, synthetic "
        f"{args.synthetic_epochs} per run; load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    ratios: dict[tuple[str, str], list[float]] = {}
    ones: dict[str, list[float]] = {c: [] for c in corpora}
    compute_ratios: list[float] = []
    loads = []
    wall0 = time.perf_counter()
    for rnd in range(args.rounds):
        compute_ratios.append(compute(1) / compute(2))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        line = [f"compute {compute_ratios[-1]:.2f}x"]
        for corpus in corpora:
            mode["name"] = "omp"
            one, _ = train(corpus, 1)
            ones[corpus].append(one)
            line.append(f"{corpus}: 1 thread {one / 1e3:.0f}k words/s")
            # The order rotates from round to round, so a drift of the machine does not favour one mode.
            for name in modes[rnd % len(modes) :] + modes[: rnd % len(modes)]:
                mode["name"] = name
                wps, busy = train(corpus, 2)
                ratios.setdefault((corpus, name), []).append(wps / one)
                line.append(f"{name} {wps / one:.2f}x ({busy:.2f} cores busy)")
        mode["name"] = "omp"
        loads.append(os.getloadavg()[0])
        print(f"round {rnd}: " + "; ".join(line) + f"; load {loads[-1]:.2f}", flush=True)
    print("\n| corpus | 2 threads / 1 thread | median | range |\n|---|---|---|---|")
    print(
        f"| - | compute | {statistics.median(compute_ratios):.2f}x | {min(compute_ratios):.2f}-{max(compute_ratios):.2f}x |"
    )
    for (corpus, name), r in ratios.items():
        print(f"| {corpus} | {name} | {statistics.median(r):.2f}x | {min(r):.2f}-{max(r):.2f}x |")
    print()
    for corpus in corpora:
        print(f"{corpus}: 1 thread median {statistics.median(ones[corpus]) / 1e3:.0f}k words/s")
        base = "shared" if (corpus, "shared") in ratios else "omp"
        for name in modes:
            if name == base:
                continue
            paired = [p / s for p, s in zip(ratios[corpus, name], ratios[corpus, base], strict=True)]
            print(
                f"{corpus}: {name} / {base}, round by round: median {statistics.median(paired):.3f} "
                f"({min(paired):.3f}-{max(paired):.3f}); ahead in {sum(p > 1 for p in paired)} of {len(paired)}"
            )
    print(
        f"\nload average over the rounds: median {statistics.median(loads):.2f} "
        f"({min(loads):.2f}-{max(loads):.2f}) on {os.cpu_count()} CPUs; wall {time.perf_counter() - wall0:.0f} s"
    )


if __name__ == "__main__":
    main()
