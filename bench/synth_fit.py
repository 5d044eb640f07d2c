"""Fit the planted cell types of bench/_synth.py so the synthetic atlas is as hard as real data.

    nice -n 10 python bench/synth_fit.py [--shares 0.01,0.02,0.04] [--cells 4000] [--median 2000] [--lsi-only]

For each planted-program share (fraction of a cell's regions drawn from its type's program instead of the
background popularity), draws ``--cells`` cells of the atlas (bench/_synth.py: 500,000 regions, 12 types in 4
lineages, programs of 1% of the universe, half of each program its lineage's), embeds them with fastembed's
defaults (and LSI beside it) and scores the planted types as bench/quality.py scores granja2019: Leiden ARI at
the number of types (one Leiden seed) and 10-NN transfer from one half of the cells (the "reference donor") to
the other. The target is granja2019's fastembed quality (Leiden ARI ~0.44, transfer accuracy ~0.75; bench/
RESULTS-archive.md, "Quality on granja2019"): a share whose scores land there is the atlas default
(``Stats.program_share``). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _synth  # noqa: E402
from _metrics import donor_transfer, leiden_at_n_clusters  # noqa: E402


def score(emb: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    donor = np.where(np.arange(labels.size) % 2 == 0, "ref", "query")
    acc = donor_transfer(emb, labels, donor, reference="ref", query="query")["accuracy"]
    ari = leiden_at_n_clusters(emb, labels, leiden_seeds=(0,))["ari"]
    return ari, acc


def lsi(x) -> np.ndarray:
    from sklearn.utils.extmath import randomized_svd

    x = x.astype(np.float64)
    tf = x.multiply(1.0 / np.asarray(x.sum(axis=1))).tocsr()
    idf = x.shape[0] / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1)
    t = tf.multiply(idf).tocsr()
    t.data = np.log1p(t.data * 1e4)
    u, s, _ = randomized_svd(t, 51, random_state=0)
    return (u * s)[:, 1:]


def main() -> None:
    import anndata as ad

    import fastembed as fe

    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shares", default="0.01,0.02,0.04")
    p.add_argument("--cells", type=int, default=4000)
    p.add_argument("--median", type=float, default=2000)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-lsi", action="store_true")
    p.add_argument(
        "--lsi-only",
        action="store_true",
        help="the quick proxy: LSI and a plain cosine 10-NN from even to odd cells, no fastembed, no Leiden",
    )
    args = p.parse_args()
    stats = _synth.fit_real(median_regions=args.median, seed=args.seed)
    stats.lineage_overlap = args.overlap
    if args.lsi_only:
        from sklearn.neighbors import KNeighborsClassifier

        for share in [float(s) for s in args.shares.split(",")]:
            stats.program_share = share
            x, types = _synth.Atlas(stats).cells(0, args.cells)
            e = lsi(x)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            knn = KNeighborsClassifier(10).fit(e[::2], types[::2])
            print(f"share {share}: LSI 10-NN accuracy {np.mean(knn.predict(e[1::2]) == types[1::2]):.3f}")
        return
    print("| share | cells | fastembed ARI | fastembed accuracy | LSI ARI | LSI accuracy | seconds |")
    print("|---|---|---|---|---|---|---|")
    for share in [float(s) for s in args.shares.split(",")]:
        t = time.perf_counter()
        stats.program_share = share
        atlas = _synth.Atlas(stats)
        x, types = atlas.cells(0, args.cells)
        labels = np.array([f"type{t}" for t in types])
        uni = atlas.universe()
        adata = ad.AnnData(x.astype(np.float32), var=uni.set_axis(uni.index.astype(str)))
        universe = fe.Universe.from_arrays(uni["chr"], uni["start"], uni["end"])
        tokens = fe.tokenize_cells(adata, universe)
        emb = fe.ScEmbed(seed=args.seed).train(tokens, progress=False).encode(tokens)
        fa = score(emb, labels)
        la = (float("nan"),) * 2 if args.no_lsi else score(lsi(x), labels)
        print(
            f"| {share} | {args.cells} | {fa[0]:.3f} | {fa[1]:.3f} | {la[0]:.3f} | {la[1]:.3f} | "
            f"{time.perf_counter() - t:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
