"""Quality A/B of one module constant of ``fastembed.kernels.sgns`` (or one keyword of the model): the defaults trained
with each value, paired by seed.

``kernel_ab.py`` measures what a constant does to words/s; this script measures what it does to the embedding,
with ``time_to_quality.py``'s protocol (fastembed's defaults, PCA-20 pooling, Leiden ARI at the number of cell
types, centred 10-NN transfer from donor D6T1 to D5T1, macro-F1). Each value of a constant is trained in its own
worker process with its own numba cache folder, which sets the constant on ``fastembed.kernels.sgns`` before any
kernel compiles (numba freezes a module global into the machine code), so no source is copied or patched; only
constants the code reads itself can be varied. Every value sees the same seeds and subsample draws, and
the differences to the first value are taken seed by seed (draw by draw): mean ± standard error and how often the
value is ahead. Quality is judged on held-out cells only (the query donor's labels are never used in training).

    python bench/quality_ab.py --name NEGATIVE_POWER --values 0.75,0.5
        [--datasets granja,granja-1000,granja-400,demo] [--seeds 0,1,2] [--draws 20] [--epochs granja=20]

``--keyword`` makes ``--name`` a keyword of ``ScEmbed``, ``train`` or ``encode`` instead (``--name sample --values
0,3e-4 --keyword``; values are Python literals). Each value's embedding seconds (tokenize + train + encode) are
printed beside its quality, as a value that changes the work (sample, window) trades time for quality.

``--epochs granja=20`` trains that dataset for a fixed number of epochs instead of the data-derived default (to ask
whether a setting reaches the same quality in fewer passes). About 2 minutes per value and seed on granja2019,
a few seconds per draw of 400-1,000 cells.
"""

from __future__ import annotations

import argparse
import ast
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np
import time_to_quality as ttq
from _data import machine

MEASURES = ("ari", "accuracy", "macro_f1")


def parse_epochs(text: str, datasets: list[str]) -> dict[str, int]:
    """``"granja=20,demo=30"`` -> ``{"granja": 20, "demo": 30}``; each name must be one of ``datasets``."""
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in datasets or not value.isdigit() or int(value) < 1:
            raise SystemExit(
                f"--epochs: expected DATASET=EPOCHS with DATASET one of {', '.join(datasets)} and EPOCHS a "
                f"positive integer, got {item!r}"
            )
        out[name] = int(value)
    return out


def seeds_of(dataset: str, args) -> list[int]:
    """Training seeds for the whole datasets; draws (which also seed training) for the subsamples."""
    if dataset.startswith("granja-"):
        return list(range(args.draws))
    return [int(s) for s in args.seeds.split(",")]


def paired(scores: dict, value: str, base: str, seeds: list[int]) -> str:
    """``value`` minus ``base``, seed by seed, for each measure: mean ± standard error (ahead in k of n)."""
    parts = []
    for j, key in enumerate(MEASURES):
        d = np.array([scores[value, s][j] - scores[base, s][j] for s in seeds])
        se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
        parts.append(f"{key} {d.mean():+.3f} ± {se:.3f} (ahead in {int((d > 0).sum())} of {d.size})")
    return "; ".join(parts)


def run_value(args, datasets: list[str], epochs: dict, value: str) -> dict:
    """Train and score ``args.name = value`` on every dataset and seed: ``{(dataset, seed): (scores, seconds)}``."""
    if not args.keyword:
        import fastembed.sgns as sgns

        if not hasattr(sgns, args.name):
            raise SystemExit(f"fastembed.sgns has no module-level constant {args.name!r}")
        # before any kernel compiles in this fresh process: the machine code reads the new value
        setattr(sgns, args.name, type(getattr(sgns, args.name))(ast.literal_eval(value)))
    out = {}
    for dataset in datasets:
        params = {"epochs": epochs[dataset]} if dataset in epochs else {}
        method = ttq.fastembed_method(
            **params, **({args.name: ast.literal_eval(value)} if args.keyword else {})
        )
        for seed in seeds_of(dataset, args):
            adata = ttq.load_dataset(dataset, seed)
            t0 = time.perf_counter()
            emb = method(adata, seed, args)
            seconds = time.perf_counter() - t0
            q = ttq.evaluate(emb, adata, centred_only=True)
            out[dataset, seed] = (tuple(q[k] for k in MEASURES), seconds)
            print(
                f"{dataset} seed {seed} {args.name} = {value}: "
                + " / ".join(f"{x:.3f}" for x in out[dataset, seed][0])
                + f" ({seconds:.1f} s)",
                flush=True,
            )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="a module-level constant of fastembed.kernels.sgns")
    parser.add_argument("--keyword", action="store_true", help="--name is a keyword of ScEmbed/train/encode")
    parser.add_argument("--values", required=True, help="comma-separated; the first is the baseline")
    parser.add_argument("--datasets", default="granja,granja-1000,granja-400,demo")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds on granja and the demo")
    parser.add_argument("--draws", type=int, default=20, help="random draws of each subsample size")
    parser.add_argument("--epochs", default="", help="fixed epochs per dataset, e.g. granja=20")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    values = args.values.split(",")
    datasets = args.datasets.split(",")
    epochs = parse_epochs(args.epochs, datasets)
    print(f"# quality A/B of {args.name} in {values} — {machine()}; {args.threads} threads", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(values):
            if args.keyword:
                results[v] = run_value(args, datasets, epochs, v)
                continue
            saved = os.environ.get("NUMBA_CACHE_DIR")
            os.environ["NUMBA_CACHE_DIR"] = f"{tmp}/cache{i}"  # the worker compiles its own kernels
            try:
                with mp.get_context("spawn").Pool(1) as pool:
                    results[v] = pool.apply(run_value, (args, datasets, epochs, v))
            finally:
                if saved is None:
                    os.environ.pop("NUMBA_CACHE_DIR")
                else:
                    os.environ["NUMBA_CACHE_DIR"] = saved
    for dataset in datasets:
        seeds = seeds_of(dataset, args)
        scores = {(v, s): results[v][dataset, s][0] for v in values for s in seeds}
        label = dataset + (f" ({epochs[dataset]} epochs)" if dataset in epochs else "")
        for v in values:
            mean = np.mean([scores[v, s] for s in seeds], axis=0)
            line = (
                f"{label}: {args.name} = {v}: ARI / accuracy / F1 {' / '.join(f'{m:.3f}' for m in mean)}, "
                f"{np.mean([results[v][dataset, s][1] for s in seeds]):.1f} s"
            )
            if v != values[0]:
                line += f"; minus {values[0]}: " + paired(scores, v, values[0], seeds)
            print(line, flush=True)


if __name__ == "__main__":
    main()
