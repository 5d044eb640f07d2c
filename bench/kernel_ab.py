"""Interleaved A/B of the SGNS kernel with different values of one module constant (default: ``PAD``, the
padding of the thread-local rows), on granja2019: words/s of each variant, their ratio and paired wins.

This VM's speed drifts by ~20% between minutes, so the variants are trained alternately (each repetition runs
every variant once, in turn) and compared by median and by paired repetitions. Each variant lives in its own
worker process with its own numba cache folder: the worker sets the constant on ``fastembed.kernels.sgns`` before
any kernel compiles (numba freezes a module global into the machine code at compile time), so no source text is
copied or patched. Only constants the kernels read themselves can be varied this way (``PAD``, ``TILE``,
``ROW_ALIGN``, ``OVERWRITE_MAX_THREADS``, ``NEGATIVE_POWER`` ...), not ones derived at import (``_SIGMOID_SCALE``).

    python bench/kernel_ab.py [--name PAD] [--values 32,8] [--threads 1,2] [--reps 6] [--epochs 2]
    python bench/kernel_ab.py --baseline REV     # the package of git revision REV against the working tree's

``--baseline`` compares whole packages rather than one constant: the baseline worker imports fastembed from a
``git archive`` of that revision, the other worker the working tree.
"""

from __future__ import annotations

import argparse
import ast
import multiprocessing as mp
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from _data import REPO, load_granja, machine


def _worker(conn, root: str, name: str | None, value: str | None) -> None:
    # A fresh process (its NUMBA_CACHE_DIR set by the parent before the start): the constant is set before numba
    # compiles anything.
    sys.path.insert(0, root)
    import fastembed.sgns as sgns  # the old path works in every revision

    if name is not None:
        if not hasattr(sgns, name):
            conn.send(("error", f"fastembed.sgns has no module-level constant {name!r}"))
            return
        setattr(sgns, name, type(getattr(sgns, name))(ast.literal_eval(value)))
    x = load_granja().X.tocsr()
    indptr, indices = x.indptr.astype(np.int64), x.indices.astype(np.int32)
    conn.send(("ready", int(indptr[-1])))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        threads, epochs, warm = msg
        if warm:  # compile (or load) outside the timing
            sgns.train_sgns(
                indptr[:501], indices[: indptr[500]], x.shape[1], epochs=1, threads=threads, progress=False
            )
            conn.send(0.0)
            continue
        r = sgns.train_sgns(
            indptr, indices, x.shape[1], epochs=epochs, threads=threads, seed=1, progress=False
        )
        conn.send(r.words_processed / r.seconds / 1e6)


def _archive(revision: str, folder: Path) -> Path:
    """The package at a git revision, unpacked into ``folder``."""
    try:
        data = subprocess.run(
            ["git", "archive", "--format=tar", revision, "fastembed"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"--baseline {revision}: {err.stderr.decode().strip()}") from None
    tar = folder / "baseline.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as tf:
        tf.extractall(folder / "baseline", filter="data")
    return folder / "baseline"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="PAD")
    parser.add_argument("--values", default="32,8", help="the first is the baseline of the ratios")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--baseline", help="a git revision: its package against the working tree's")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            values = [args.baseline, "working-tree"]
            args.name = "kernel"
            specs = {
                values[0]: (str(_archive(args.baseline, Path(tmp))), None, None),
                values[1]: (str(REPO), None, None),
            }
        else:
            values = args.values.split(",")
            specs = {v: (str(REPO), args.name, v) for v in values}
        workers = {}
        for i, (v, (root, name, value)) in enumerate(specs.items()):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, root, name, value), daemon=True)
            saved = os.environ.get("NUMBA_CACHE_DIR")
            os.environ["NUMBA_CACHE_DIR"] = (
                f"{tmp}/cache{i}"  # numba reads it once, when the worker imports it
            )
            try:
                proc.start()
            finally:
                if saved is None:
                    os.environ.pop("NUMBA_CACHE_DIR")
                else:
                    os.environ["NUMBA_CACHE_DIR"] = saved
            theirs.close()  # the worker's end: a worker that dies then ends recv() with EOFError, not a hang
            try:
                kind, info = ours.recv()
            except EOFError:
                raise SystemExit(
                    f"the worker for {v} died before it was ready (exit code {proc.exitcode})"
                ) from None
            if kind == "error":
                raise SystemExit(info)
            workers[v] = (proc, ours)
        print(f"# kernel A/B of {args.name} in {values} — {machine()}; granja2019, {info} tokens per epoch")
        try:
            for threads in (int(t) for t in args.threads.split(",")):
                for _, conn in workers.values():
                    conn.send((threads, 1, True))
                    conn.recv()
                rates = {v: [] for v in values}
                for _ in range(args.reps):
                    for v, (_, conn) in workers.items():
                        conn.send((threads, args.epochs, False))
                        rates[v].append(conn.recv())
                base = np.array(rates[values[0]])
                for v in values:
                    rv = np.array(rates[v])
                    wins = int(np.sum(rv > base))
                    print(
                        f"threads {threads} | {args.name} = {v}: median {np.median(rv):.3f}M words/s "
                        f"(each: {' '.join(f'{r:.2f}' for r in rv)}) | ratio to {values[0]}: "
                        f"{np.median(rv) / np.median(base):.3f}x, faster in {wins} of {args.reps} repetitions",
                        flush=True,
                    )
        finally:
            for proc, conn in workers.values():
                conn.send(None)
                proc.join(timeout=10)


if __name__ == "__main__":
    main()
