"""Interleaved A/B of the SGNS kernel with different values of one module constant (default: ``PAD``, the
padding of the thread-local rows), on granja2019: words/s of each variant, their ratio and paired wins.

This VM's speed drifts by ~20% between minutes, so the variants are trained alternately in one process (each
repetition runs every variant once, in turn) and compared by median and by paired repetitions. Each variant is
a copy of ``fastembed/sgns.py`` with the constant changed, imported from a temporary folder; the copies compile
once (outside the timing) and their numba cache stays in that folder.

    python bench/kernel_ab.py [--name PAD] [--values 32,8] [--threads 1,2] [--reps 6] [--epochs 2]
    python bench/kernel_ab.py --baseline REV     # the kernel of git revision REV against the working tree's

``--baseline`` compares whole kernels rather than one constant: the baseline is ``fastembed/sgns.py`` as it is at
that revision (``git show``), the other variant the file as it is now.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _data import REPO, load_granja, machine


def variant_module(folder: Path, name: str, value: str, src: str | None = None):
    """Import a copy of fastembed.sgns (or of the source ``src``) with ``name = value`` (``name`` None: as it
    is); its relative imports point at fastembed."""
    if src is None:
        src = (REPO / "fastembed" / "sgns.py").read_text()
    if name is not None:
        src, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", src, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"fastembed/sgns.py has no module-level constant {name!r}")
    src = re.sub(r"^from \.(\S*) import", r"from fastembed.\1 import", src, flags=re.M)
    module = f"sgns_{str(name).lower()}_{re.sub(r'[^0-9A-Za-z]', '_', value)}"
    (folder / f"{module}.py").write_text(src)
    return importlib.import_module(module)


def kernel_at(revision: str) -> str:
    """The source of fastembed/sgns.py at a git revision."""
    try:
        return subprocess.run(
            ["git", "show", f"{revision}:fastembed/sgns.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"--baseline {revision}: {err.stderr.strip()}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="PAD")
    parser.add_argument("--values", default="32,8", help="the first is the baseline of the ratios")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--baseline", help="a git revision: its kernel against the working tree's")
    args = parser.parse_args(argv)
    values = [args.baseline, "working-tree"] if args.baseline else args.values.split(",")
    if args.baseline:
        args.name = "kernel"
    x = load_granja().X.tocsr()
    indptr, indices = x.indptr.astype(np.int64), x.indices.astype(np.int32)
    vocab = x.shape[1]
    print(f"# kernel A/B of {args.name} in {values} — {machine()}; granja2019, {indptr[-1]} tokens per epoch")
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        if args.baseline:
            mods = {
                values[0]: variant_module(Path(tmp), None, values[0], kernel_at(args.baseline)),
                values[1]: variant_module(Path(tmp), None, values[1]),
            }
        else:
            mods = {v: variant_module(Path(tmp), args.name, v) for v in values}
        for threads in (int(t) for t in args.threads.split(",")):
            for m in mods.values():  # compile (or load) outside the timing
                m.train_sgns(
                    indptr[:501], indices[: indptr[500]], vocab, epochs=1, threads=threads, progress=False
                )
            rates = {v: [] for v in values}
            for _ in range(args.reps):
                for v, m in mods.items():
                    r = m.train_sgns(
                        indptr, indices, vocab, epochs=args.epochs, threads=threads, seed=1, progress=False
                    )
                    rates[v].append(r.words_processed / r.seconds / 1e6)
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


if __name__ == "__main__":
    main()
