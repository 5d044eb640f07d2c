"""Quality A/B of one module constant of ``fastembed/sgns.py`` (or one keyword of the model): the defaults trained
with each value, paired by seed.

``kernel_ab.py`` measures what a constant does to words/s; this script measures what it does to the embedding,
with ``time_to_quality.py``'s protocol (fastembed's defaults, PCA-20 pooling, Leiden ARI at the number of cell
types, centred 10-NN transfer from donor D6T1 to D5T1, macro-F1). Each value gets a copy of ``fastembed/sgns.py``
with the constant changed (``kernel_ab.variant_module``); ``ScEmbed.train`` looks ``train_sgns`` up when it runs, so
swapping the module's function trains through the copy. Every value sees the same seeds and subsample draws, and
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
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import time_to_quality as ttq
from _data import machine
from kernel_ab import variant_module

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="a module-level constant of fastembed/sgns.py")
    parser.add_argument("--keyword", action="store_true", help="--name is a keyword of ScEmbed/train/encode")
    parser.add_argument("--values", required=True, help="comma-separated; the first is the baseline")
    parser.add_argument("--datasets", default="granja,granja-1000,granja-400,demo")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds on granja and the demo")
    parser.add_argument("--draws", type=int, default=20, help="random draws of each subsample size")
    parser.add_argument("--epochs", default="", help="fixed epochs per dataset, e.g. granja=20")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import fastembed.sgns as sgns

    values = args.values.split(",")
    datasets = args.datasets.split(",")
    epochs = parse_epochs(args.epochs, datasets)
    print(f"# quality A/B of {args.name} in {values} — {machine()}; {args.threads} threads", flush=True)
    original = sgns.train_sgns

    @contextlib.contextmanager
    def trained_through(v):
        """Train through value ``v``'s copy of the module (constants), or leave the module alone (keywords)."""
        if args.keyword:
            yield
            return
        sgns.train_sgns = modules[v].train_sgns
        try:
            yield
        finally:
            sgns.train_sgns = original

    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        modules = {} if args.keyword else {v: variant_module(Path(tmp), args.name, v) for v in values}
        for dataset in datasets:
            params = {"epochs": epochs[dataset]} if dataset in epochs else {}
            methods = {
                v: ttq.fastembed_method(
                    **params, **({args.name: ast.literal_eval(v)} if args.keyword else {})
                )
                for v in values
            }
            seeds = seeds_of(dataset, args)
            scores = {}
            seconds = {}
            for seed in seeds:
                adata = ttq.load_dataset(dataset, seed)
                for v in values:
                    with trained_through(v):
                        t0 = time.perf_counter()
                        emb = methods[v](adata, seed, args)
                        seconds[v, seed] = time.perf_counter() - t0
                        q = ttq.evaluate(emb, adata, centred_only=True)
                    scores[v, seed] = tuple(q[k] for k in MEASURES)
                    print(
                        f"{dataset} seed {seed} {args.name} = {v}: "
                        + " / ".join(f"{x:.3f}" for x in scores[v, seed])
                        + f" ({seconds[v, seed]:.1f} s)",
                        flush=True,
                    )
            label = dataset + (f" ({epochs[dataset]} epochs)" if dataset in epochs else "")
            for v in values:
                mean = np.mean([scores[v, s] for s in seeds], axis=0)
                line = (
                    f"{label}: {args.name} = {v}: ARI / accuracy / F1 {' / '.join(f'{m:.3f}' for m in mean)}, "
                    f"{np.mean([seconds[v, s] for s in seeds]):.1f} s"
                )
                if v != values[0]:
                    line += f"; minus {values[0]}: " + paired(scores, v, values[0], seeds)
                print(line, flush=True)


if __name__ == "__main__":
    main()
