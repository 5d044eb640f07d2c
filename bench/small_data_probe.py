"""Where fastembed's small-data gap to SnapATAC2 lies, and what does not close it (issue 33, fifth round).

Usage (from the repository root, the bench venv: it needs snapatac2):

    python bench/small_data_probe.py depth   [--datasets granja-400] [--draws 10]
    python bench/small_data_probe.py heldout [--datasets granja-400] [--draws 10]
    python bench/small_data_probe.py pooling [--datasets granja-400,forebrain,granja-1000,granja] [--draws 10]
                                             [--variants fe,context,...]

``depth``: the donor-transfer accuracy (D6T1 -> D5T1, the bench's centred cosine 10-NN) of fastembed's defaults and
of SnapATAC2 2.9's spectral embedding, with the query cells split into five quantiles of their number of regions,
pooled over the draws. It says whether the gap lies in the cells with the fewest regions.

``heldout``: the query donor's cells split at random into halves A and B; fastembed trained on all cells, on all
but A, and on all but B, each encoding every cell. A cell's transductive accuracy comes from the model that saw
it, its inductive accuracy from the model that did not; SnapATAC2 (transductive) on the same halves beside. It
says whether a training cell's own regions help or hurt its embedding (a cell's rare regions were trained on that
cell, so its pooled vector is partly its own echo).

``pooling``: one model of the defaults per draw (``ScEmbed(seed=draw, threads=1)``), its cells pooled otherwise:

- ``rel-C``: each region weighted by ``n / (n + C)`` (``n``: training cells holding it), which shrinks rare,
  poorly trained regions; ``min3``: regions held by fewer than 3 cells left out; ``cnt0.5`` and ``cnt-0.5``:
  weights ``n ** 0.5`` and ``n ** -0.5``.
- ``shrink`` and ``shrink-plain``: each cell's axis scores multiplied by ``S_j / (S_j + N_j / m)`` (``m``: the
  cell's trained regions; ``N_j``: the spread of single region vectors around their cell's mean on axis ``j``;
  ``S_j``: the axis' variance across cells less the average noise ``N_j / m``), a per-cell Wiener filter that
  damps the noisier axes more in cells with few regions; with the default square-root axis weighting and with
  plain PCA scores. ``plain``: plain PCA scores, no filter.
- ``warm-noself``: the model trained from a spectral warm start whose eigenvectors are those of the similarity
  graph without self-loops (``Z Z^T - diag(|z_i|^2)``, as SnapATAC2 removes them), dense, for these sizes only.
- ``hybrid``: fastembed's cells beside SnapATAC2's, each block centred and scaled to unit mean row length.
- ``context`` and ``context-2``: each region pooled as its vector plus once or twice its cell context (the mean
  of the mean vectors of the training cells that hold it), what ``ScEmbed`` does for small training sets
  (``fastembed.kernels.projection.CONTEXT_CELLS``); ``wc-30`` and ``wc-30-context``: the high-coverage
  representation (input and output vectors side by side, 30 axes, unit-length cells) without and with it.
- ``context-alone`` and ``wc-30-context-alone``: each region pooled as its cell context alone, without its
  vector, at low and high coverage (``fastembed.kernels.projection.CONTEXT_ALONE``, below 20 training cells per
  region; RESULTS-archive, "Small data, sixth round"). Any dataset takes a ``+splitK`` suffix (a finer universe).
- ``wc-K-plain-alone`` (K 10, 15, 20, 30) and ``wc-auto-plain-alone``: the high-coverage context alone with plain
  principal-component scores over K axes, or over the axes ``fastembed.kernels.projection.auto_rare_components``
  keeps (one per training cell holding a region, between 10 and 30; RESULTS-archive, "Small data, seventh round").

Quality is bench/snapatac2_ablation.py's (Leiden ARI, 10-NN accuracy centred and plain), paired draw by draw with
the defaults (``fe``). Results: bench/RESULTS-archive.md, "Small data, fifth round".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _data import QUERY_DONOR, REFERENCE_DONOR, REPO, load_granja, machine
from snapatac2_ablation import evaluate, fe_vectors, l2rows, load, pca, print_table, snap_package

from fastembed.kernels.projection import CONTEXT_ALONE, HIGH_COVERAGE_COMPONENTS, auto_rare_components


def knn_correct(emb: np.ndarray, labels: np.ndarray, donor: np.ndarray, query: np.ndarray) -> np.ndarray:
    """bool per ``query`` cell: annotated correctly from the reference donor's cells (centred cosine 10-NN)."""
    import anndata as ad
    import pandas as pd

    from fastembed.annotate import annotate_celltypes

    emb = np.asarray(emb, dtype=np.float32)
    ref_mask = donor == REFERENCE_DONOR
    ref = ad.AnnData(
        obs=pd.DataFrame({"cell_type": pd.Categorical(labels[ref_mask])}), obsm={"e": emb[ref_mask]}
    )
    qry = ad.AnnData(obs=pd.DataFrame(index=np.arange(query.sum()).astype(str)), obsm={"e": emb[query]})
    predicted = annotate_celltypes(qry, ref, embedding_key="e", k=10).astype(str).to_numpy()
    return predicted == labels[query]


def weighted_cells(x: sp.csr_matrix, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """float64 (n_cells, dim): each cell's regions' vectors averaged with per-region ``weights``."""
    y = (x @ sp.diags(weights)).tocsr()
    total = np.asarray(y.sum(axis=1)).ravel()
    return np.asarray(sp.diags(1.0 / np.maximum(total, 1e-12)) @ y @ vectors.astype(np.float64))


def shrunk_scores(
    x: sp.csr_matrix, vectors: np.ndarray, k: int = 20, power: float = 0.5, shrink: bool = True
):
    """The cells' weighted scores on the top ``k`` axes of their mean vectors, each optionally multiplied by the
    per-cell Wiener factor of the module docstring. float64 (n_cells, k)."""
    n = np.asarray(x.sum(axis=1)).ravel()
    mean_op = sp.diags(1.0 / np.maximum(n, 1)) @ x
    cells = np.asarray(mean_op @ vectors.astype(np.float64))
    centre = cells.mean(axis=0)
    lam, vecs = np.linalg.eigh((cells - centre).T @ (cells - centre))
    lam, axes = lam[::-1][:k], vecs[:, ::-1][:, :k]
    per_region = (vectors.astype(np.float64) - centre) @ axes
    scores = np.asarray(mean_op @ per_region)
    spread = np.asarray(mean_op @ per_region**2) - scores**2
    # one region's variance around its cell's mean, per axis
    noise = (spread * n[:, None]).sum(axis=0) / n.sum()
    m = np.maximum(n, 1)[:, None]
    signal = np.maximum(scores.var(axis=0) - (noise / m).mean(axis=0), 1e-12)
    out = scores * (lam[0] / lam) ** ((1.0 - power) / 2.0)
    return out * (signal / (signal + noise / m)) if shrink else out


def unit_block(e: np.ndarray) -> np.ndarray:
    """Centred, scaled to a mean row length of 1."""
    e = e - e.mean(axis=0)
    return e / np.sqrt((e**2).sum(axis=1).mean())


def noself_svd(z, rank, *, seed):
    """Stands in for ``warmstart.truncated_svd``: the leading eigenvectors ``U`` of ``Z Z^T`` without its diagonal
    (dense; small data only), returned so that the warm start's rows are ``Z^T U``."""
    z = sp.csr_matrix(z, dtype=np.float64)
    m = (z @ z.T).toarray()
    np.fill_diagonal(m, 0.0)
    _, u = np.linalg.eigh(m)
    u = u[:, ::-1][:, :rank]
    return np.ones(u.shape[1], dtype=np.float32), np.asarray((z.T @ u).T, dtype=np.float32)


def region_context(x: sp.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    """float64 (n_regions, dim): for each region, the mean of the mean vectors of the cells holding it (0 if none)."""
    cells = weighted_cells(x, vectors, np.ones(x.shape[1]))
    count = np.asarray(x.sum(axis=0)).ravel()
    return np.asarray((x @ sp.diags(1.0 / np.maximum(count, 1))).T @ cells)


def pooled_variants(x, w, c, snap) -> dict:
    count = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    out = {"fe": pca(weighted_cells(x, w, np.ones_like(count)), 20, "sqrt")}
    for shift in (1, 3, 10):
        out[f"rel-{shift}"] = pca(weighted_cells(x, w, count / (count + shift)), 20, "sqrt")
    out["min3"] = pca(weighted_cells(x, w, (count >= 3).astype(np.float64)), 20, "sqrt")
    out["cnt0.5"] = pca(weighted_cells(x, w, np.sqrt(count)), 20, "sqrt")
    out["cnt-0.5"] = pca(weighted_cells(x, w, 1.0 / np.sqrt(np.maximum(count, 1))), 20, "sqrt")
    out["shrink"] = shrunk_scores(x, w)
    out["shrink-plain"] = shrunk_scores(x, w, power=1.0)
    out["plain"] = shrunk_scores(x, w, power=1.0, shrink=False)
    out["hybrid"] = np.hstack([unit_block(out["fe"]), unit_block(snap)])
    out["context"] = pca(weighted_cells(x, w + region_context(x, w), np.ones_like(count)), 20, "sqrt")
    out["context-2"] = pca(weighted_cells(x, w + 2 * region_context(x, w), np.ones_like(count)), 20, "sqrt")
    out["context-alone"] = pca(weighted_cells(x, region_context(x, w), np.ones_like(count)), 20, "sqrt")
    both = np.hstack([w, c])
    out["wc-30-context-alone"] = l2rows(
        pca(weighted_cells(x, region_context(x, both), np.ones_like(count)), 30, "sqrt")
    )
    alone = weighted_cells(x, region_context(x, both), np.ones_like(count))
    # The high-coverage context alone with plain scores; 30 axes was the default before the rule.
    for k in (10, 15, 20, 30):
        out[f"wc-{k}-plain-alone"] = l2rows(pca(alone, k, "plain"))
    k = auto_rare_components(
        HIGH_COVERAGE_COMPONENTS, CONTEXT_ALONE, count.sum() / max(np.count_nonzero(count), 1)
    )
    out["wc-auto-plain-alone"] = l2rows(pca(alone, k, "plain"))
    out["wc-30"] = l2rows(pca(weighted_cells(x, both, np.ones_like(count)), 30, "sqrt"))
    both = both + region_context(x, both)
    out["wc-30-context"] = l2rows(pca(weighted_cells(x, both, np.ones_like(count)), 30, "sqrt"))
    return out


def run_pooling(ds, draw, adata, rows, variants=None, seed_offset=0):
    x, w, _, model = fe_vectors(adata, draw + seed_offset, 1)
    snap = snap_package(adata, draw)
    embs = pooled_variants(x, w, model._output_vectors, snap)
    embs["snap"] = snap
    if not variants or "warm-noself" in variants:
        import fastembed.kernels.warmstart as warmstart

        keep = warmstart.truncated_svd
        warmstart.truncated_svd = noself_svd
        try:
            x2, w2, _, _ = fe_vectors(adata, draw + seed_offset, 1)
        finally:
            warmstart.truncated_svd = keep
        embs["warm-noself"] = pca(weighted_cells(x2, w2, np.ones(x2.shape[1])), 20, "sqrt")
    for name, emb in embs.items():
        if variants and name not in variants:
            continue
        row = {"dataset": ds, "draw": draw, "variant": name}
        row.update(evaluate(np.asarray(emb, dtype=np.float32), adata, "euclidean", draw))
        rows.append(row)


def run_depth(ds, draw, adata, rows, variants=None, seed_offset=0):
    import fastembed as fe

    uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    tokens = fe.tokenize_cells(adata, uni)
    emb = fe.ScEmbed(seed=draw, threads=1).train(tokens, progress=False).encode(tokens)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    donor = adata.obs["donor"].astype(str).to_numpy()
    query = donor == QUERY_DONOR
    regions = np.diff(tokens.indptr)[query]
    for name, e in (("fastembed", emb), ("snap", snap_package(adata, draw))):
        for n, ok in zip(regions, knn_correct(e, labels, donor, query), strict=True):
            rows.append({"dataset": ds, "draw": draw, "method": name, "regions": int(n), "correct": bool(ok)})


def run_heldout(ds, draw, adata, rows, variants=None, seed_offset=0):
    import fastembed as fe

    labels = adata.obs["cell_type"].astype(str).to_numpy()
    donor = adata.obs["donor"].astype(str).to_numpy()
    half = np.random.default_rng(draw).random(adata.n_obs) < 0.5
    a, b = (donor == QUERY_DONOR) & half, (donor == QUERY_DONOR) & ~half
    uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    tokens = fe.tokenize_cells(adata, uni)

    def emb(fit):
        model = fe.ScEmbed(seed=draw, threads=1).train(fe.tokenize_cells(adata[fit], uni), progress=False)
        return model.encode(tokens)

    full, no_a, no_b = emb(np.ones(adata.n_obs, bool)), emb(~a), emb(~b)
    snap = snap_package(adata, draw)
    for name, ea, eb in (("transductive", full, full), ("inductive", no_a, no_b), ("snap", snap, snap)):
        ok = np.concatenate([knn_correct(ea, labels, donor, a), knn_correct(eb, labels, donor, b)])
        rows.append({"dataset": ds, "draw": draw, "method": name, "accuracy": float(ok.mean())})


def print_depth(rows) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    for ds, d in df.groupby("dataset", sort=False):
        d = d.assign(quintile=pd.qcut(d["regions"], 5))
        table = d.pivot_table(
            index="quintile", columns="method", values="correct", aggfunc="mean", observed=True
        )
        table["query cells"] = d[d["method"] == "snap"].groupby("quintile", observed=True).size()
        print(f"\n{ds}: accuracy by the query cell's regions, {d['draw'].nunique()} draws pooled\n")
        print("| regions | " + " | ".join(table.columns) + " |")
        print("|" + "---|" * (len(table.columns) + 1))
        for q, r in table.iterrows():
            print(f"| {q} | " + " | ".join(f"{v:.3f}" for v in r.iloc[:-1]) + f" | {int(r.iloc[-1])} |")


def print_heldout(rows) -> None:
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        by = {}
        for r in rows:
            if r["dataset"] == ds:
                by.setdefault(r["method"], {})[r["draw"]] = r["accuracy"]
        print(
            f"\n{ds} ({len(by['snap'])} draws)\n\n| method | accuracy | minus transductive |\n|---|---|---|"
        )
        for name, d in by.items():
            diff = np.array([d[s] - by["transductive"][s] for s in sorted(d)])
            se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
            print(f"| {name} | {np.mean(list(d.values())):.3f} | {diff.mean():+.3f} ± {se:.3f} |")


PARTS = {
    "depth": (run_depth, print_depth),
    "heldout": (run_heldout, print_heldout),
    "pooling": (run_pooling, None),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--datasets", default="granja-400")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument(
        "--variants",
        help="pooling: the variants to score (default all), comma-separated; the first is the table's reference",
    )
    ap.add_argument("--seed-offset", type=int, default=0, help="pooling: train with seed draw + this")
    ap.add_argument("--out", help="JSON of the rows (default bench/out/small_data_probe_PART.json)")
    args = ap.parse_args(argv)
    run, show = PARTS[args.part]
    print(f"# small-data probe, {args.part} — {machine()}, {args.draws} draws", flush=True)
    granja = load_granja()
    rows = []
    for ds in args.datasets.split(","):
        if args.part != "pooling" and not ds.startswith("granja-"):
            sys.exit(f"{args.part} needs donors: granja-N datasets only, not {ds}")
        for draw in range(args.draws):
            # all of granja2019: the same cells each time, the draw seeding the training
            adata = granja if ds == "granja" else load(ds, draw, granja)
            run(ds, draw, adata, rows, args.variants.split(",") if args.variants else None, args.seed_offset)
            print(f"  {ds} draw {draw} done", flush=True)
    out = Path(args.out or REPO / "bench" / "out" / f"small_data_probe_{args.part}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    if show is None:
        print_table(rows, args.variants.split(",")[0] if args.variants else "fe")
    else:
        show(rows)


if __name__ == "__main__":
    main()
