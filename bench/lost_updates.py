"""What the kernel's overwrite write-back could cost on many threads, emulated on this machine's few cores.

Up to ``sgns.OVERWRITE_MAX_THREADS`` threads, a centre's buffered output rows overwrite the shared rows when the
centre ends, so an update another thread wrote to one of those rows during the centre is lost. With ``T``
threads, each other thread writes back about one centre per centre of ours, and that centre holds row ``r``
(as its centre or one of its negatives) with probability ``u_r + negative * q_r``, where ``u`` is the tokens'
frequency and ``q`` the unigram^0.75 negative distribution (``sgns.NEGATIVE_POWER``). So a write-back of row
``r`` is overwritten (lost) with probability about ``p_r = min(1, (T - 1) (u_r + negative q_r))``.

This script trains granja2019 with the defaults (``bench/time_to_quality.py``'s fastembed method) through a
copy of ``fastembed/sgns.py`` whose overwrite drops each write-back of row ``r`` with probability ``p_r`` for
the emulated ``T``, on this machine's threads (which lose almost nothing themselves), and prints the quality
per emulated thread count and its paired difference to ``T = 1`` (no drops).

    python bench/lost_updates.py [--emulate 1,16,48] [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import time_to_quality as ttq
from _data import REPO, machine

WRITE_BACK = """            else:
                for d in range(dim):
                    w_out[r, d] = out[k, d]"""


def dropping_module(folder: Path, drop: np.ndarray, tag: str):
    """Import a copy of fastembed.sgns whose overwrite write-back of row r is skipped with probability drop[r]."""
    src = (REPO / "fastembed" / "sgns.py").read_text()
    if src.count(WRITE_BACK) != 1:
        raise SystemExit("fastembed/sgns.py: the overwrite write-back this script patches has changed")
    src = src.replace(
        WRITE_BACK,
        """            elif np.random.random() >= DROP[r]:
                for d in range(dim):
                    w_out[r, d] = out[k, d]""",
    )
    # numba freezes a global array into the compiled code, so each emulated thread count gets its own module.
    np.save(folder / f"drop_{tag}.npy", drop)
    src = re.sub(
        r"^(TILE = .*)$", rf"\1\nDROP = np.load(r'{folder / f'drop_{tag}.npy'}')", src, count=1, flags=re.M
    )
    name = f"sgns_drop_{tag}"
    (folder / f"{name}.py").write_text(src)
    return importlib.import_module(name)


NEGATIVE = 5
"""The defaults' negatives per centre (``ScEmbed(negative_samples=5)``)."""


def holding_rates(indices: np.ndarray, vocab_size: int) -> np.ndarray:
    """``u_r + NEGATIVE q_r`` of the module docstring: how likely one centre holds token r, float64[vocab_size]."""
    from fastembed.sgns import NEGATIVE_POWER

    counts = np.bincount(indices, minlength=vocab_size).astype(np.float64)
    q = counts**NEGATIVE_POWER
    return counts / counts.sum() + NEGATIVE * q / q.sum()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--emulate", default="1,16,48", help="emulated thread counts; the first is the baseline"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2, help="threads actually used")
    args = parser.parse_args(argv)
    import fastembed as fe
    import fastembed.sgns as sgns

    emulate = [int(t) for t in args.emulate.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    adata = ttq.load_dataset("granja", 0)
    tokens = fe.tokenize_cells(adata, ttq._universe(adata))
    print(f"# lost-update emulation — {machine()}; granja2019, defaults, {args.threads} threads")
    method = ttq.fastembed_method()
    results = {}
    original = sgns.train_sgns
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        for t in emulate:
            held = holding_rates(tokens.indices, tokens.vocab_size)
            drop = np.minimum(1.0, (t - 1) * held).astype(np.float32)
            # A row's write-backs are proportional to how often a centre holds it.
            share = float((drop * held).sum() / held.sum())
            sgns.train_sgns = dropping_module(Path(tmp), drop, str(t)).train_sgns
            try:
                for seed in seeds:
                    q = ttq.evaluate(method(adata, seed, args), adata, centred_only=True)
                    results[t, seed] = (q["ari"], q["accuracy"], q["macro_f1"])
                    print(
                        f"emulated threads {t:3d} (updates lost: {share:.1%} of all, at most {drop.max():.0%} of a "
                        f"row's) seed {seed}: ARI {q['ari']:.3f} accuracy {q['accuracy']:.3f} "
                        f"macro-F1 {q['macro_f1']:.3f}",
                        flush=True,
                    )
            finally:
                sgns.train_sgns = original
    base = np.array([results[emulate[0], s] for s in seeds])
    for t in emulate:
        x = np.array([results[t, s] for s in seeds])
        d = x - base
        se = d.std(axis=0, ddof=1) / np.sqrt(len(seeds)) if len(seeds) > 1 else np.zeros(3)
        print(
            f"emulated threads {t:3d}: mean ARI / accuracy / F1 {' / '.join(f'{v:.3f}' for v in x.mean(0))}; minus "
            f"{emulate[0]} thread(s): "
            + " / ".join(f"{m:+.3f} ± {s:.3f}" for m, s in zip(d.mean(0), se, strict=True))
        )


if __name__ == "__main__":
    main()
