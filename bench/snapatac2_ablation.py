"""SnapATAC2's spectral embedding taken apart step by step, beside fastembed's cell representation.

Usage (from the repository root, bench venv or the project's):

    python bench/snapatac2_ablation.py [--datasets forebrain,granja-400,granja-1000,granja-pool-600]
                                       [--draws 4] [--first-draw 0] [--variants ...] [--threads 2]
                                       [--reference spectral] [--out OUT.json]
    python bench/snapatac2_ablation.py --table REFERENCE OUT.json ...   # saved runs' draws merged, one table

SnapATAC2 2.9's ``pp.select_features`` + ``tl.spectral`` (defaults) is, for these data sizes (all cells fit in one
chunk): drop the features held by no cell and the 0.5% most and least accessible ones; weight each region by its
inverse document frequency and scale every cell's row to unit length (``Y``), so that ``Y Y^T`` is the cosine
similarity of the cells; remove the self-similarities and divide by the square roots of the cells' degrees
(``D^-1/2 (Y Y^T - I) D^-1/2``); take the 30 leading eigenvectors (the first, which follows the degree,
included) and scale each by the square root of its eigenvalue (``weighted_by_sd``); downstream, scanpy's neighbours
graph is euclidean. ``spectral`` below is that computation in numpy (``snap`` runs the package itself when it is
installed, to check it), and each ``spec-*`` variant changes one step. The ``fe-*`` variants are fastembed's cell
representation: the defaults trained once per draw (``ScEmbed(seed=draw)``), then pooled in different ways from
the same region vectors, so their differences are the representation's alone. ``ws-*`` pool the spectral warm
start's region vectors (fastembed before any training), to connect the two families. A source ``SOURCE:part``
pools the model's output (context) vectors C beside its input vectors W (``PARTS``: C alone, W + C, or [W, C]).

Quality is the project's protocol (bench/time_to_quality.py): Leiden ARI at the true number of types on the 15-NN
euclidean graph (one Leiden seed), and 10-NN label transfer with ``annotate_celltypes`` (donor D6T1 -> D5T1 on
granja and its variants, 5-fold cross-validation on forebrain, which has no donors), centred and plain cosine, the
one with the higher mean over the draws chosen per dataset and variant. Every variant sees the same draws; the
table gives the mean and, per variant, the paired difference to SnapATAC2 (``spectral``) with its standard error.

Datasets: ``forebrain`` (1,043 cells, rows shuffled by the draw), ``granja-N`` (N cells of granja2019),
``granja-pool-N`` (N cells of the high-coverage variant, ``_data.load_granja_pooled``: 12 cells of one donor and
type merged, ~1,200 peaks per cell).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _data import (
    QUERY_DONOR,
    REFERENCE_DONOR,
    REPO,
    load_forebrain,
    load_granja,
    load_pooled_name,
    machine,
    split_peaks,
)
from _metrics import cv_transfer, donor_transfer, leiden_at_n_clusters

warnings.simplefilter("ignore")


# -- SnapATAC2's steps in numpy -------------------------------------------------------------------------------
def select_features(x: sp.csr_matrix, quantile: float = 0.005) -> np.ndarray:
    """SnapATAC2's default selection: features held by at least one cell, minus the ``quantile`` most and least
    accessible of those (by the number of cells holding them); column indices, sorted."""
    count = np.asarray(x.sum(axis=0)).ravel()
    held = np.flatnonzero(count > 0)
    lo, hi = np.quantile(count[held], [quantile, 1 - quantile])
    return held[(count[held] >= lo) & (count[held] <= hi)]


def idf(x: sp.csr_matrix) -> np.ndarray:
    """SnapATAC2's inverse document frequency: log(n_cells / (1 + cells holding the region))."""
    count = np.asarray(x.sum(axis=0)).ravel()
    return np.log(x.shape[0] / (1.0 + count))


def similarity(x: sp.csr_matrix, kind: str, weights: bool) -> np.ndarray:
    """Dense cell x cell similarity without self-loops: ``cosine`` of the (IDF-weighted) rows, or ``jaccard`` of the
    region sets."""
    if kind == "cosine":
        w = idf(x) if weights else np.ones(x.shape[1])
        y = (x @ sp.diags(w)).tocsr()
        norm = np.sqrt(np.asarray(y.multiply(y).sum(axis=1)).ravel())
        y = sp.diags(1.0 / np.maximum(norm, 1e-12)) @ y
        s = (y @ y.T).toarray()
    elif kind == "jaccard":
        inter = (x @ x.T).toarray()
        n = np.asarray(x.sum(axis=1)).ravel()
        s = inter / np.maximum(n[:, None] + n[None, :] - inter, 1e-12)
    else:
        raise ValueError(kind)
    np.fill_diagonal(s, 0.0)
    return s


def spectral(
    x,
    *,
    n_comps: int = 30,
    select: bool = True,
    kind: str = "cosine",
    weights: bool = True,
    degree: bool = True,
    weight: str = "sqrt",
    drop_first: bool = False,
) -> np.ndarray:
    """The spectral embedding with each of SnapATAC2's steps switchable (see the module docstring)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    if select:
        x = x[:, select_features(x)]
    s = similarity(x, kind, weights)
    if degree:
        d = s.sum(axis=1)
        inv = 1.0 / np.sqrt(np.maximum(d, 1e-12))
        s = s * inv[:, None] * inv[None, :]
    # The leading eigenpairs only (Lanczos, a fixed start vector): a full eigh of a 1,000 x 1,000 matrix is slow
    # on a loaded 2-core machine.
    from scipy.sparse.linalg import eigsh

    k = min(n_comps + 1, s.shape[0] - 2)
    evals, evecs = eigsh(s, k=k, which="LA", v0=np.ones(s.shape[0]) / np.sqrt(s.shape[0]))
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    if drop_first:
        evals, evecs = evals[1:], evecs[:, 1:]
    evals, evecs = evals[:n_comps], evecs[:, :n_comps]
    scale = {"sqrt": np.sqrt(np.maximum(evals, 0)), "eval": evals, "none": np.ones_like(evals)}[weight]
    return evecs * scale


def snap_package(adata, seed):
    import snapatac2 as snap

    a = adata.copy()
    snap.pp.select_features(a, verbose=False)
    snap.tl.spectral(a, random_state=seed)
    return np.asarray(a.obsm["X_spectral"])


# -- fastembed's representation, pooled in different ways from one trained model ----------------------------
def pca(cells: np.ndarray, k: int, weight: str = "plain", l2pre: bool = False) -> np.ndarray:
    """Centre and project onto the top ``k`` principal axes (fastembed's ``pooling="pca"`` is ``plain``, in axis
    coordinates here: the same distances); ``white`` gives every axis unit variance, ``sqrt`` the square root of its
    standard deviation. ``l2pre``: the centred cells scaled to unit length before the axes are fitted."""
    xc = cells - cells.mean(axis=0)
    if l2pre:
        xc = l2rows(xc)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    u, s = u[:, :k], s[:k]
    power = {"plain": 1.0, "white": 0.0, "sqrt": 0.5, "square": 2.0}.get(weight)
    return u * s ** (float(weight) if power is None else power)


def pool(x: sp.csr_matrix, vectors: np.ndarray, how: str) -> np.ndarray:
    """Cells from region vectors: ``mean`` (fastembed), ``idf`` (IDF-weighted mean), ``snap`` (SnapATAC2's weights:
    IDF, the row scaled to unit length, divided by the square root of the cell's cosine degree: ``Z V``)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    if how == "mean":
        w = x
        w = sp.diags(1.0 / np.maximum(np.asarray(w.sum(axis=1)).ravel(), 1)) @ w
    elif how == "idf":
        w = x @ sp.diags(idf(x))
        w = sp.diags(1.0 / np.maximum(np.asarray(w.sum(axis=1)).ravel(), 1e-12)) @ w
    elif how == "unit":  # region vectors scaled to unit length, then the plain mean
        v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        w = sp.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)) @ x
        return np.asarray(w @ v.astype(np.float64))
    elif how in ("snap", "l2idf"):
        y = x @ sp.diags(idf(x))
        norm = np.sqrt(np.asarray(y.multiply(y).sum(axis=1)).ravel())
        y = (sp.diags(1.0 / np.maximum(norm, 1e-12)) @ y).tocsr()
        if how == "snap":
            d = y @ np.asarray(y.sum(axis=0)).ravel() - 1.0
            y = sp.diags(1.0 / np.sqrt(np.maximum(d, 1e-12))) @ y
        w = y
    else:
        raise ValueError(how)
    return np.asarray(w @ vectors.astype(np.float64))


def l2rows(e: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.maximum(n, 1e-12)


def fe_vectors(adata, seed, threads, epochs=None, **model_kw):
    """Region vectors of fastembed's defaults trained on all cells (transductive, as the bench does), and the
    spectral warm start's vectors of the same cells; ``epochs`` and ``model_kw`` (ScEmbed's keywords) change the
    training."""
    import fastembed as fe
    from fastembed.warmstart import spectral_init

    uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    tokens = fe.tokenize_cells(adata, uni)
    model = fe.ScEmbed(seed=seed, threads=threads, **model_kw).train(tokens, epochs=epochs, progress=False)
    trained = model.trained_tokens
    warm = spectral_init(
        tokens.indptr, tokens.indices, tokens.vocab_size, model.embedding_dim, trained=trained, seed=seed
    )
    # Token ids are the universe's order, which is the var order here (the peaks are the universe).
    x = sp.csr_matrix(
        (np.ones(tokens.indices.size), tokens.indices, tokens.indptr), shape=(len(tokens), tokens.vocab_size)
    )
    return x, model._region_vectors.copy(), warm, model


VARIANTS = {
    # SnapATAC2 and one step changed at a time
    "snap": None,
    "spectral": dict(),
    "spec-noselect": dict(select=False),
    "spec-noidf": dict(weights=False),
    "spec-jaccard": dict(kind="jaccard"),
    "spec-nodegree": dict(degree=False),
    "spec-dropfirst": dict(drop_first=True),
    "spec-k10": dict(n_comps=10),
    "spec-k20": dict(n_comps=20),
    "spec-k50": dict(n_comps=50),
    "spec-unweighted": dict(weight="none"),
    "spec-evalweight": dict(weight="eval"),
    "spec-cosleiden": "l2",
    # the spectral region vectors, pooled fastembed's way (each row scaled to length 1.5, plain mean, PCA-20)
    "ws-snappool": ("warm", "snap", None),
    "ws-mean-pca20": ("warm", "mean", 20),
    # fastembed's trained region vectors
    "fe-default": ("fe", "mean", 20),
    "fe-mean": ("fe", "mean", None),
    "fe-pca10": ("fe", "mean", 10),
    "fe-pca30": ("fe", "mean", 30),
    "fe-pca50": ("fe", "mean", 50),
    "fe-pca20-white": ("fe", "mean", 20, "white"),
    "fe-pca20-sqrt": ("fe", "mean", 20, "sqrt"),
    "fe-idf-pca20": ("fe", "idf", 20),
    "fe-l2idf-pca20": ("fe", "l2idf", 20),
    "fe-snappool-pca20": ("fe", "snap", 20),
    "fe-snappool-pca30": ("fe", "snap", 30),
    "fe-pca20-s0.25": ("fe", "mean", 20, "0.25"),
    "fe-pca20-s0.75": ("fe", "mean", 20, "0.75"),
    "fe-pca30-sqrt": ("fe", "mean", 30, "sqrt"),
    "fe-pca50-sqrt": ("fe", "mean", 50, "sqrt"),
    "fe-idf-pca20-sqrt": ("fe", "idf", 20, "sqrt"),
    "fe-idf-pca30-sqrt": ("fe", "idf", 30, "sqrt"),
    "fe-snappool-pca20-sqrt": ("fe", "snap", 20, "sqrt"),
    "fe-snappool-pca30-sqrt": ("fe", "snap", 30, "sqrt"),
    "fe-pca20-sqrt-cosleiden": ("fe", "mean", 20, "sqrt", "l2"),
    "fe-idf-pca30-sqrt-cosleiden": ("fe", "idf", 30, "sqrt", "l2"),
    "ws-mean-pca20-sqrt": ("warm", "mean", 20, "sqrt"),
    "fe-default-cosleiden": ("fe", "mean", 20, "plain", "l2"),
    "fe-snappool-pca30-cosleiden": ("fe", "snap", 30, "plain", "l2"),
    # issue 33, second round: cosine geometry and the number of axes on top of the square-root weighting
    "fe-pca20-sqrt-l2": ("fe", "mean", 20, "sqrt", "l2all"),
    "fe-l2pre-pca20-sqrt": ("fe", "mean", 20, "sqrt", "l2pre"),
    "fe-l2pre-pca20-sqrt-l2": ("fe", "mean", 20, "sqrt", "l2pre+l2all"),
    "fe-unit-pca20-sqrt": ("fe", "unit", 20, "sqrt"),
    "fe-pca10-sqrt": ("fe", "mean", 10, "sqrt"),
    "fe-pca15-sqrt": ("fe", "mean", 15, "sqrt"),
    "fe-pca30-sqrt-l2": ("fe", "mean", 30, "sqrt", "l2all"),
    "fe-pca20-s0.25-l2": ("fe", "mean", 20, "0.25", "l2all"),
    "fe-idf-pca20-sqrt-l2": ("fe", "idf", 20, "sqrt", "l2all"),
    "ws-mean-pca20-sqrt-l2": ("warm", "mean", 20, "sqrt", "l2all"),
    # the training changed (a model trained again per draw; see SOURCES), pooled the default way
    "fe-e10-pca20-sqrt": ("fe-e10", "mean", 20, "sqrt"),
    "fe-e40-pca20-sqrt": ("fe-e40", "mean", 20, "sqrt"),
    "fe-w10-pca20-sqrt": ("fe-w10", "mean", 20, "sqrt"),
    "fe-n10-pca20-sqrt": ("fe-n10", "mean", 20, "sqrt"),
    "fe-seed2-pca20-sqrt": ("fe-seed2", "mean", 20, "sqrt"),
    "fe-d50-pca20-sqrt": ("fe-d50", "mean", 20, "sqrt"),
    # issue 33, small-data training: each training variant with a second training seed
    "fe-e40-seed2-pca20-sqrt": ("fe-e40-seed2", "mean", 20, "sqrt"),
    "fe-w10-seed2-pca20-sqrt": ("fe-w10-seed2", "mean", 20, "sqrt"),
    "fe-e40w10-pca20-sqrt": ("fe-e40w10", "mean", 20, "sqrt"),
    "fe-e40w10-seed2-pca20-sqrt": ("fe-e40w10-seed2", "mean", 20, "sqrt"),
    "fe-e20w10-pca20-sqrt": ("fe-e20w10", "mean", 20, "sqrt"),
    "fe-e20w10-seed2-pca20-sqrt": ("fe-e20w10-seed2", "mean", 20, "sqrt"),
    # issue 33, small data: the output (context) vectors C beside the input vectors W of the same model (a
    # source's ``:part``, see source_vectors), and half the embedding dimension
    "fe-wc-pca20-sqrt": ("fe:w+c", "mean", 20, "sqrt"),
    "fe-wcat-pca20-sqrt": ("fe:w|c", "mean", 20, "sqrt"),
    "fe-c-pca20-sqrt": ("fe:c", "mean", 20, "sqrt"),
    "fe-wc-pca30-sqrt-l2": ("fe:w+c", "mean", 30, "sqrt", "l2all"),
    "fe-wcat-pca30-sqrt-l2": ("fe:w|c", "mean", 30, "sqrt", "l2all"),
    "fe-d50-wc-pca20-sqrt": ("fe-d50:w+c", "mean", 20, "sqrt"),
    "fe-seed2-wc-pca20-sqrt": ("fe-seed2:w+c", "mean", 20, "sqrt"),
    "fe-seed2-pca30-sqrt-l2": ("fe-seed2", "mean", 30, "sqrt", "l2all"),
    "fe-seed2-wc-pca30-sqrt-l2": ("fe-seed2:w+c", "mean", 30, "sqrt", "l2all"),
    "fe-seed2-wcat-pca20-sqrt": ("fe-seed2:w|c", "mean", 20, "sqrt"),
    "fe-seed2-wcat-pca30-sqrt-l2": ("fe-seed2:w|c", "mean", 30, "sqrt", "l2all"),
}

SOURCES = {
    "fe-e10": dict(epochs=10),
    "fe-e40": dict(epochs=40),
    "fe-w10": dict(window_size=10),
    "fe-n10": dict(negative_samples=10),
    "fe-seed2": dict(seed_offset=1000),
    "fe-d50": dict(embedding_dim=50),
    "fe-e40-seed2": dict(epochs=40, seed_offset=1000),
    "fe-w10-seed2": dict(window_size=10, seed_offset=1000),
    "fe-e40w10": dict(epochs=40, window_size=10),
    "fe-e40w10-seed2": dict(epochs=40, window_size=10, seed_offset=1000),
    "fe-e20w10": dict(epochs=20, window_size=10),
    "fe-e20w10-seed2": dict(epochs=20, window_size=10, seed_offset=1000),
}
"""Region vectors trained otherwise than by the defaults, keyed by the ``fe-*`` source of a variant:
``fe_vectors``' keywords (``seed_offset``: the same defaults with another training seed, for the seed's noise)."""

PARTS = {"w": "input vectors W", "c": "output vectors C", "w+c": "W + C", "w|c": "[W, C], concatenated"}
"""What a variant's source ``SOURCE:part`` pools of the model trained as ``SOURCE`` (no part: ``w``)."""


def source_vectors(source: str, adata, cache: dict, seed: int) -> np.ndarray:
    """The region vectors a variant's source names: ``fe``, ``warm`` or a key of ``SOURCES``, optionally followed by
    ``:part`` (``PARTS``; the warm start has input vectors only). A model is trained once per draw and source; its
    input vectors are kept as ``cache[source]``, its output vectors as ``cache[source + ":c"]``."""
    train, _, part = source.partition(":")
    part = part or "w"
    if part not in PARTS:
        raise ValueError(f"{source}: the part must be one of {', '.join(PARTS)}")
    if train not in cache:
        kw = dict(SOURCES[train])
        seed = seed + kw.pop("seed_offset", 0)
        _, cache[train], _, model = fe_vectors(adata, seed, cache["threads"], **kw)
        cache[train + ":c"] = model._output_vectors.copy()
    w = cache[train]
    if part == "w":
        return w
    if train + ":c" not in cache:
        raise ValueError(f"{source}: {train} has no output vectors")
    c = cache[train + ":c"]
    if part == "c":
        return c
    return w + c if part == "w+c" else np.hstack([w, c])


CORE = [
    "snap",
    "spectral",
    "spec-noselect",
    "spec-noidf",
    "spec-jaccard",
    "spec-nodegree",
    "spec-dropfirst",
    "spec-k20",
    "spec-k50",
    "spec-unweighted",
    "spec-evalweight",
    "spec-cosleiden",
    "ws-mean-pca20",
    "fe-default",
    "fe-pca30",
    "fe-pca20-white",
    "fe-pca20-sqrt",
    "fe-pca30-sqrt",
    "fe-idf-pca20",
    "fe-snappool-pca20",
    "fe-default-cosleiden",
    "fe-pca20-sqrt-cosleiden",
    "fe-idf-pca30-sqrt-cosleiden",
]
"""The variants of the default run (``--variants`` picks any of ``VARIANTS``)."""


def embed(name, adata, cache, seed):
    spec = VARIANTS[name]
    if spec is None:
        return snap_package(adata, seed)
    if isinstance(spec, dict):
        return spectral(adata.X, **spec)
    if spec == "l2":
        return spectral(adata.X), "l2"
    source, how, k, *rest = spec
    weight = rest[0] if rest else "plain"
    cells = pool(cache["x"], source_vectors(source, adata, cache, seed), how)
    geometry = rest[1] if len(rest) > 1 else ""
    emb = cells if k is None else pca(cells, k, weight, l2pre="l2pre" in geometry)
    if "l2all" in geometry:  # unit rows for the k-NN and the Leiden graph alike
        return l2rows(emb)
    return (emb, "l2") if geometry == "l2" else emb


def evaluate(emb, adata, leiden_on, seed) -> dict:
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    res = {
        "ari": leiden_at_n_clusters(l2rows(emb) if leiden_on == "l2" else emb, labels, leiden_seeds=(0,))[
            "ari"
        ]
    }
    for center in (True, False):
        if "donor" in adata.obs:
            donor = adata.obs["donor"].astype(str).to_numpy()
            tr = donor_transfer(
                emb, labels, donor, reference=REFERENCE_DONOR, query=QUERY_DONOR, center=center
            )
        else:
            tr = cv_transfer(emb, labels, seed=seed, center=center)
        res["acc_centred" if center else "acc_plain"] = tr["accuracy"]
    return res


def load(ds: str, draw: int, granja):
    if "+split" in ds:
        base, k = ds.split("+split", 1)
        return split_peaks(load(base, draw, granja), int(k), draw)
    if ds == "forebrain":
        return load_forebrain(draw)
    if ds.startswith(("granja-pool", "forebrain-pool")):
        return load_pooled_name(ds, draw, granja)
    n = int(ds.rsplit("-", 1)[1])
    idx = np.sort(np.random.default_rng(1000 + draw).choice(granja.n_obs, size=n, replace=False))
    return granja[idx].copy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="forebrain,granja-400,granja-1000,granja-pool-600")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--first-draw", type=int, default=0, help="draws first_draw .. first_draw + draws - 1")
    ap.add_argument("--variants", default=",".join(CORE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--reference", default="spectral", help="the variant the table's differences are paired with"
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "snapatac2_ablation.json"))
    args = ap.parse_args(argv)
    variants = args.variants.split(",")
    print(f"# SnapATAC2 ablation — {machine()}, {args.draws} draws", flush=True)
    granja = load_granja()
    rows = []
    for ds in args.datasets.split(","):
        for draw in range(args.first_draw, args.first_draw + args.draws):
            adata = load(ds, draw, granja)
            cache = {"threads": args.threads}
            if any(isinstance(VARIANTS[v], tuple) for v in variants):
                cache["x"], cache["fe"], cache["warm"], model = fe_vectors(adata, draw, args.threads)
                cache["fe:c"] = model._output_vectors.copy()
            for v in variants:
                t = time.perf_counter()
                try:
                    out = embed(v, adata, cache, draw)
                except ImportError as err:
                    print(f"  {v}: skipped ({err})", flush=True)
                    continue
                emb, leiden_on = out if isinstance(out, tuple) else (out, "euclidean")
                row = {"dataset": ds, "draw": draw, "variant": v, "seconds": time.perf_counter() - t}
                row.update(evaluate(np.asarray(emb, dtype=np.float32), adata, leiden_on, draw))
                rows.append(row)
                print("  " + json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print_table(rows, args.reference)


def print_table(rows, reference: str = "spectral") -> None:
    """Per dataset: each variant's mean ARI and accuracy (the k-NN with the higher mean over the draws), and its
    paired difference to ``reference`` draw by draw (mean ± standard error)."""
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sel = [r for r in rows if r["dataset"] == ds]
        by = {}
        for r in sel:
            by.setdefault(r["variant"], {})[r["draw"]] = r
        knn = {
            v: max(("acc_centred", "acc_plain"), key=lambda k, d=d: np.mean([r[k] for r in d.values()]))
            for v, d in by.items()
        }
        print(f"\n{ds} ({len(next(iter(by.values())))} draws)\n")
        print(f"| variant | Leiden ARI | minus {reference} | 10-NN accuracy | minus {reference} | k-NN |")
        print("|---|---|---|---|---|---|")
        ref = by.get(reference, {})
        for v, d in by.items():
            cells = []
            for key in ("ari", "acc"):
                k = knn[v] if key == "acc" else key
                kr = knn.get(reference, "acc_plain") if key == "acc" else key
                cells.append(f"{np.mean([r[k] for r in d.values()]):.3f}")
                common = sorted(set(d) & set(ref))
                if len(common) >= 2 and v != reference:
                    diff = np.array([d[s][k] - ref[s][kr] for s in common])
                    cells.append(f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.3f}")
                else:
                    cells.append("")
            print(f"| {v} | {' | '.join(cells)} | {knn[v].split('_')[1]} |")


TRAININGS = {"default": "fe", "e40": "fe-e40", "w10": "fe-w10", "e40w10": "fe-e40w10", "e20w10": "fe-e20w10"}
"""Issue 33's small-data trainings: each is ``{source}-pca20-sqrt`` with the first training seed and
``{source}-seed2-pca20-sqrt`` with the second (``fe-seed2`` for the default)."""


def print_trainings(rows) -> None:
    """Per dataset and measure: each training of ``TRAININGS`` averaged over its two training seeds, and its paired
    difference draw by draw to the default (also averaged over two seeds) and to SnapATAC2 (``snap``), mean ±
    standard error over the draws where all of them ran."""

    def name(source, second):
        if source == "fe":
            return "fe-seed2-pca20-sqrt" if second else "fe-pca20-sqrt"
        return f"{source}{'-seed2' if second else ''}-pca20-sqrt"

    for ds in dict.fromkeys(r["dataset"] for r in rows):
        by = {(r["variant"], r["draw"]): r for r in rows if r["dataset"] == ds}
        draws = sorted({d for _, d in by})
        for key in ("acc_centred", "acc_plain", "ari"):
            print(f"\n{ds}, {key}\n")
            print("| training | draws | mean | minus default | ahead | minus SnapATAC2 |")
            print("|---|---|---|---|---|---|")
            for label, source in TRAININGS.items():
                ours, diff, snap = [], [], []
                for d in draws:
                    need = [name(source, 0), name(source, 1), name("fe", 0), name("fe", 1), "snap"]
                    if any((v, d) not in by for v in need):
                        continue
                    m = np.mean([by[(name(source, s), d)][key] for s in (0, 1)])
                    base = np.mean([by[(name("fe", s), d)][key] for s in (0, 1)])
                    ours.append(m)
                    diff.append(m - base)
                    snap.append(m - by[("snap", d)][key])
                if len(ours) < 2:
                    continue
                diff, snap = np.array(diff), np.array(snap)

                def se(a):
                    return a.std(ddof=1) / np.sqrt(a.size)

                print(
                    f"| {label} | {len(ours)} | {np.mean(ours):.3f} | {diff.mean():+.3f} ± {se(diff):.3f} | "
                    f"{int((diff > 0).sum())} of {diff.size} | {snap.mean():+.3f} ± {se(snap):.3f} |"
                )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--trainings":
        # Summarise saved runs (--out files of any datasets and draws) by training: the issue 33 table.
        print_trainings([r for f in sys.argv[2:] for r in json.loads(Path(f).read_text())["rows"]])
    elif len(sys.argv) > 3 and sys.argv[1] == "--table":
        # --table REFERENCE OUT.json ...: the table of saved runs (draws of several runs merged), paired with
        # REFERENCE.
        print_table([r for f in sys.argv[3:] for r in json.loads(Path(f).read_text())["rows"]], sys.argv[2])
    else:
        main()
