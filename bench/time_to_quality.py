"""Time to quality: embedding quality against wall seconds, fastembed vs gensim skip-gram, LSI and SnapATAC2.

Usage (from the repository root, in the bench venv of bench/README.md):

    python bench/time_to_quality.py [--datasets granja,granja-1000,granja-400,demo] [--seeds 0,1,2]
                                    [--draws 10] [--threads 2] [--methods ...]

Datasets
- ``granja``: granja2019, 14,125 cells x 10,000 peaks, 16 cell types, two donors (../shared/data).
- ``granja-N``: N cells drawn at random from granja2019, ``--draws`` different draws (draw d also seeds the
  methods). A 400-cell draw has ~200 query cells, so one draw's accuracy moves by ~0.03-0.05 with the training
  seed alone and three draws cannot separate methods that differ by a few hundredths; the small datasets are
  cheap, so they get more draws, and the methods are compared draw by draw (paired differences below the table).
- ``demo``: the 5,000-cell slice bundled with the package.
- ``forebrain``: forebrain_preissl2018 (1,043 mouse cells, 8 types, its own peaks as the universe), rows shuffled
  by the seed; it has no donors, so its k-NN accuracy is by 5-fold cross-validation (``_metrics.cv_transfer``).
- ``granja-pool-N``: N cells of a high-coverage variant of granja2019, 12 cells of one donor and type merged into
  one (~1,200 peaks per cell; ``_data.load_granja_pooled``), ``--draws`` draws; ``granja-poolP-N`` merges ``P``
  cells instead (``granja-pool24-400``: ~1,800 peaks per cell, of the 572 such cells there are).
- ``forebrain-poolP``: forebrain's cells merged ``P`` at a time within each type (``forebrain-pool3``: 346 cells,
  ~1,025 peaks per cell; ``_data.load_forebrain_pooled``); no donors, so 5-fold cross-validation as forebrain.
- ``granja-boot-N`` (not in the default run): N cells drawn from granja2019 with replacement, each copy keeping a
  random 80% of its regions; a stand-in for an atlas, for what depends on region counts (see ``load_dataset``).

Every method embeds all cells of a dataset (transductive, as in bench/quality.py); quality is then measured the
same way for all: Leiden ARI at the number of cell types on scanpy's default 15-NN euclidean graph (one Leiden
seed, resolution bisected), and 10-NN label transfer from donor D6T1 to donor D5T1 with
``fastembed.annotate_celltypes`` (accuracy and macro-F1 on the query donor's cells), with centred and with plain
cosine k-NN; every method, fastembed included, is scored with the one of the two that has the higher mean
accuracy over the dataset's seeds or draws (the table's k-NN column). Choosing it draw by draw instead would
credit a method with the luckier of two noisy scores on every small draw. Time is the wall time of the embedding step
(tokenize + train + encode for fastembed, TF-IDF + SVD for LSI, feature selection + spectral for SnapATAC2,
training + pooling for gensim), in one process, one method after another.

On ``granja`` the inductive mode is also measured, which is how scEmbed is meant to be used: fit on the
reference donor's cells only, embed the unseen query donor's cells through the fitted model, transfer labels
(fastembed: train + ``encode``; LSI: IDF and SVD fitted on the reference, query projected onto them).

Output: a markdown table on stdout, ``bench/out/time_to_quality.json`` and the plot
``bench/time_to_quality.png`` (quality against seconds, one panel per dataset and measure).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
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
logging.getLogger("gensim").setLevel(logging.ERROR)


# -- methods: each returns the embedding of all cells of ``adata`` ---------------------------------------------
def _universe(adata):
    import fastembed as fe

    return fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])


def fastembed_method(**params):
    """A fastembed setting: ``params`` split into ScEmbed's, train()'s and encode()'s keywords."""
    model_keys = {"embedding_dim", "window_size", "negative_samples", "min_count", "sample", "n_components"}
    # train() keywords: epochs, init, learning_rate, ...
    encode_keys = {"pooling"}

    def run(adata, seed, args, fit_mask=None):
        import fastembed as fe

        model_kw = {k: v for k, v in params.items() if k in model_keys}
        encode_kw = {k: v for k, v in params.items() if k in encode_keys}
        own = {"axis_power", "input_only", "no_context", "vector_and_context"}
        train_kw = {k: v for k, v in params.items() if k not in model_keys | encode_keys | own}
        uni = _universe(adata)
        tokens = fe.tokenize_cells(adata if fit_mask is None else adata[fit_mask], uni)
        if train_kw.get("epochs") == "0.3":
            train_kw["epochs"] = _epochs_v03(tokens, model_kw.get("window_size", 5))
        model = fe.ScEmbed(seed=seed, threads=args.threads, **model_kw).train(
            tokens, progress=False, **train_kw
        )
        from fastembed.pooling import pooled_vectors
        from fastembed.projection import CONTEXT_ALONE, CONTEXT_CELLS

        if "axis_power" in params:  # the same model with its projection's axes weighted otherwise
            pooled = pooled_vectors(
                model.region_vectors,
                model._output_vectors,
                model._pool_vectors,
                model._region_context,
                context_alone=model._pool_context == CONTEXT_ALONE,
            )
            _refit_projection(model, tokens, pooled, power=params["axis_power"])
        if params.get("input_only") and model._pool_vectors is not None:
            # The high-coverage cells as before pool_vectors (and the cell context): the input vectors alone, same
            # axes and unit length.
            _refit_projection(model, tokens, model.region_vectors)
            model._pool_vectors = model._region_context = model._pool_context = None
        if params.get("no_context") and model._region_context is not None:
            # The same model's cells without the cell context (before ``pool_context``): same vectors and axes.
            _refit_projection(
                model,
                tokens,
                pooled_vectors(model.region_vectors, model._output_vectors, model._pool_vectors),
            )
            model._region_context = model._pool_context = None
        if params.get("vector_and_context") and model._pool_context == CONTEXT_ALONE:
            # The same model's cells as before ``cells-alone``: each token's vector plus its context.
            _refit_projection(
                model,
                tokens,
                pooled_vectors(
                    model.region_vectors, model._output_vectors, model._pool_vectors, model._region_context
                ),
            )
            model._pool_context = CONTEXT_CELLS
        target = tokens if fit_mask is None else fe.tokenize_cells(adata, uni)
        return model.encode(target, **encode_kw)

    return run


def _refit_projection(model, tokens, vectors, **kw) -> None:
    """Fit ``model``'s projection again, as many axes as it has, on ``tokens``' cells pooled from ``vectors``
    (``kw``: :func:`fastembed.projection.fit_projection`'s keywords): the same trained model, represented otherwise."""
    from fastembed.pooling import weighted_mean_pool
    from fastembed.projection import fit_projection

    cells, empty = weighted_mean_pool(tokens.indptr, tokens.indices, vectors, model.pooling_weights("mean"))
    model._projection = fit_projection(cells[~empty], model.training_info["n_components"], **kw)


def _epochs_v03(tokens, window_size: int) -> int:
    """Version 0.3's data-derived epochs: 21,000 context pairs per region, at most 600 per occurrence."""
    counts = np.bincount(tokens.indices, minlength=tokens.vocab_size)
    per_token = counts[counts > 0].mean() * (window_size + 1)
    return int(np.clip(np.ceil(21_000 / per_token), 5, -(-600 // (window_size + 1))))


def lsi(adata, seed, args, fit_mask=None):
    """Binarise, TF-IDF (log1p of tf * idf * 1e4), randomized SVD with 50 components, first one dropped."""
    from sklearn.utils.extmath import randomized_svd

    X = adata.X.tocsr().astype(np.float64)
    X.data[:] = 1.0
    fit = X if fit_mask is None else X[fit_mask]
    idf = fit.shape[0] / np.maximum(np.asarray(fit.sum(axis=0)).ravel(), 1)

    def tfidf(M):
        T = M.multiply(1.0 / np.maximum(np.asarray(M.sum(axis=1)), 1)).multiply(idf).tocsr()
        T.data = np.log1p(T.data * 1e4)
        return T

    _, s, vt = randomized_svd(tfidf(fit), 51, random_state=seed)
    return (tfidf(X) @ vt.T)[:, 1:]


def snapatac2(adata, seed, args, fit_mask=None):
    import snapatac2 as snap

    a = adata.copy()
    snap.pp.select_features(a, verbose=False)
    snap.tl.spectral(a, random_state=seed)
    return np.asarray(a.obsm["X_spectral"])


def snapatac2_numpy(adata, seed, args, fit_mask=None):
    """SnapATAC2 2.9's ``select_features`` + ``spectral`` defaults recomputed in numpy (bench/snapatac2_ablation.py),
    for a machine without the package; it matches the package on forebrain (see RESULTS.md)."""
    from snapatac2_ablation import spectral

    return spectral(adata.X)


def gensim_sg(epochs):
    def run(adata, seed, args, fit_mask=None):
        from gensim.models import Word2Vec

        from fastembed.pooling import weighted_mean_pool

        X = adata.X.tocsr()
        X.sort_indices()
        indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int32)
        cells = [[str(t) for t in indices[indptr[i] : indptr[i + 1]]] for i in range(adata.n_obs)]
        rng = np.random.default_rng(seed)

        class Shuffled:  # a new random order of every cell on every pass, as geniml does
            def __iter__(self):
                for c in cells:
                    yield [c[j] for j in rng.permutation(len(c))]

        model = Word2Vec(
            Shuffled(),
            workers=args.threads,
            seed=seed,
            sg=1,
            vector_size=100,
            window=5,
            negative=5,
            sample=0,
            min_count=1,
            alpha=0.025,
            min_alpha=1e-4,
            epochs=epochs,
        )
        vectors = np.zeros((adata.n_vars, 100), dtype=np.float32)
        known = np.zeros(adata.n_vars, dtype=np.float32)
        for key, i in model.wv.key_to_index.items():
            vectors[int(key)] = model.wv.vectors[i]
            known[int(key)] = 1.0
        return weighted_mean_pool(indptr, indices, vectors, known)[0]

    return run


# Settings compared. "fastembed" is the defaults of this version (spectral warm start, epochs from the data,
# pooling="pca"); "fastembed-mean" the same model encoded with the plain mean; "fastembed-0.5" and
# "fastembed-0.3" the same with the epochs of versions 0.5 (40 up to granja2019's size, where 0.6 gives 20 up
# to 2,000 cells) and 0.3 (16 on granja2019, up to 100 on small data); "fastembed-0.1" the defaults before the
# time-to-quality work (random start, 100 epochs, plain mean pooling), run for the first seed only (slow);
# "fastembed-0.9" the defaults without version 0.10's subsampling of common regions (sample=0);
# "fastembed-0.10" the defaults with version 0.10's projection (plain PCA scores, ``axis_power=1``);
# "fastembed-k20" the defaults with 20 axes whatever the coverage (version 0.11's, before ``n_components="auto"``).
# "fastembed-w" the defaults with high-coverage cells pooling the input vectors alone, no cell context (before
# ``pool_vectors``).
# "fastembed-nc" the defaults with small training sets' cells pooled without their context (before
# ``pool_context``); "fastembed-vc" the defaults with every small training set's tokens pooling their vector plus
# their context (before ``cells-alone``).
# Wider windows were compared in a separate run (bench/RESULTS.md).
METHODS = {
    "fastembed": (fastembed_method(), True, True),
    "fastembed-mean": (fastembed_method(pooling="mean"), True, False),
    "fastembed-0.10": (fastembed_method(axis_power=1.0), True, True),
    "fastembed-k20": (fastembed_method(n_components=20), True, True),
    "fastembed-w": (fastembed_method(input_only=True), True, True),
    "fastembed-nc": (fastembed_method(no_context=True), True, True),
    "fastembed-vc": (fastembed_method(vector_and_context=True), True, True),
    "fastembed-0.3": (fastembed_method(epochs="0.3"), True, False),
    "fastembed-0.5": (fastembed_method(epochs=40), True, False),
    "fastembed-0.9": (fastembed_method(sample=0), True, True),
    "fastembed-0.1": (
        fastembed_method(epochs=100, window_size=5, init="random", n_components=None),
        False,
        True,
    ),
    "gensim_sg-e10": (gensim_sg(10), True, False),
    "lsi": (lsi, True, True),
    "snapatac2": (snapatac2, True, False),
    "snapatac2-numpy": (snapatac2_numpy, True, False),
}
# name -> (function, takes a seed, has an inductive mode)


def warm_up(args) -> None:
    """Compile (or load from numba's cache) every fastembed kernel once, so no timed run pays for the JIT."""
    from fastembed.datasets import load_demo

    a = load_demo()[:300].copy()
    fastembed_method(epochs=1)(a, 0, args)
    fastembed_method(epochs=1, init="random", n_components=None)(a, 0, args)


BOOT_KEEP = 0.8
"""``granja-boot-N``: share of a drawn cell's regions kept, so that the copies of one cell differ."""


def load_dataset(name: str, seed: int):
    """``granja``, ``demo``, ``granja-N`` (N cells drawn without replacement; ``seed`` picks the draw) or
    ``granja-boot-N``: N cells drawn with replacement, each copy keeping a random ``BOOT_KEEP`` of its regions.
    The last stands in for an atlas (no real one is at hand): as many cells as wanted, with granja2019's
    regions, depth and labels, and region counts that grow with N, so that what depends on counts (the
    subsampling of common regions, the data-derived epochs) acts as it would at that size. It holds no more
    information than granja2019 itself. Any name with a ``+splitK`` suffix (``granja-pool-600+split8``) is that
    dataset over a universe ``K`` times finer (``_data.split_peaks``); ``forebrain-poolP`` is forebrain's cells
    merged ``P`` at a time within each type (``_data.load_forebrain_pooled``)."""
    if "+split" in name:
        base, k = name.split("+split", 1)
        return split_peaks(load_dataset(base, seed), int(k), seed)
    if name == "demo":
        from fastembed.datasets import load_demo

        a = load_demo()
        a.X.data[:] = 1
        return a
    if name == "forebrain":
        return load_forebrain(seed)
    if name.startswith(("granja-pool", "forebrain-pool")):
        return load_pooled_name(name, seed)
    adata = load_granja()
    if name == "granja":
        return adata
    if name.startswith("granja-boot-"):
        rng = np.random.default_rng(2000 + seed)
        idx = np.sort(rng.choice(adata.n_obs, size=int(name.rsplit("-", 1)[1]), replace=True))
        boot = adata[idx].copy()
        boot.obs_names = [f"{b}-{i}" for i, b in enumerate(boot.obs_names)]
        x = boot.X.tocsr()
        x.data = x.data * (rng.random(x.nnz) < BOOT_KEEP)
        x.eliminate_zeros()
        boot.X = x
        return boot
    n = int(name.split("-", 1)[1])
    idx = np.sort(np.random.default_rng(1000 + seed).choice(adata.n_obs, size=n, replace=False))
    return adata[idx].copy()


def evaluate(emb, adata, *, centred_only: bool, fit_mask=None) -> dict:
    """Leiden ARI (transductive runs only) and donor-transfer accuracy / macro-F1 of one embedding.

    ``accuracy`` and ``macro_f1`` are those of the centred cosine k-NN (``annotate_celltypes``' default). Unless
    ``centred_only``, the plain cosine k-NN is measured too, as ``accuracy_plain`` and ``macro_f1_plain``; which
    of the two a method is scored with is chosen afterwards for a whole dataset (:func:`choose_knn`), never run
    by run.
    """
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    res = {}
    if fit_mask is None:
        res["ari"] = leiden_at_n_clusters(emb, labels, leiden_seeds=(0,))["ari"]
    for center in (True,) if centred_only else (True, False):
        if "donor" in adata.obs:
            donor = adata.obs["donor"].astype(str).to_numpy()
            tr = donor_transfer(
                emb, labels, donor, reference=REFERENCE_DONOR, query=QUERY_DONOR, center=center
            )
        else:  # no donors (forebrain): 5-fold cross-validation, folds seeded by the draw
            tr = cv_transfer(emb, labels, seed=int(adata.uns.get("draw", 0)), center=center)
        suffix = "" if center else "_plain"
        res.update({k + suffix: v for k, v in tr.items()})
    return res


def choose_knn(rows) -> None:
    """Score each method, on each dataset and mode, with the k-NN (centred or plain cosine) whose mean accuracy
    over its seeds or draws is higher; in place: ``accuracy`` and ``macro_f1`` become the chosen k-NN's, the
    centred ones are kept as ``accuracy_centred`` and ``macro_f1_centred``, and ``knn`` names the choice.

    The choice is made once per dataset, not run by run: picking the better of two scores for every 400-cell draw
    takes the luckier of two noisy measurements of ~100 query cells each time, which raised SnapATAC2's mean
    accuracy there by 0.013 over either k-NN alone (40 draws, bench/RESULTS.md).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["mode"], r["method"]), []).append(r)
    for sel in groups.values():
        for r in sel:
            r.setdefault("accuracy_centred", r["accuracy"])
            r.setdefault("macro_f1_centred", r["macro_f1"])
        plain = all("accuracy_plain" in r for r in sel) and np.mean(
            [r["accuracy_plain"] for r in sel]
        ) > np.mean([r["accuracy_centred"] for r in sel])
        for r in sel:
            r["knn"] = "plain" if plain else "centred"
            r["accuracy"] = r["accuracy_plain" if plain else "accuracy_centred"]
            r["macro_f1"] = r["macro_f1_plain" if plain else "macro_f1_centred"]


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows if r["mode"] == "transductive"))
    measures = [("ari", "Leiden ARI"), ("accuracy", "transfer accuracy"), ("macro_f1", "transfer macro-F1")]
    fig, axes = plt.subplots(len(datasets), 3, figsize=(13, 3.2 * len(datasets)), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = dict(zip(methods, plt.cm.tab10.colors, strict=False))
    for i, ds in enumerate(datasets):
        for j, (key, title) in enumerate(measures):
            ax = axes[i, j]
            for m in methods:
                pts = [
                    (r["seconds"], r[key])
                    for r in rows
                    if r["dataset"] == ds and r["method"] == m and r["mode"] == "transductive"
                ]
                if pts:
                    x, y = zip(*pts, strict=True)
                    ax.scatter(x, y, color=colours[m], label=m, s=18)
                    ax.scatter([np.mean(x)], [np.mean(y)], color=colours[m], marker="D", s=50, edgecolor="k")
            ax.set_xscale("log")
            ax.set_title(f"{ds}: {title}", fontsize=9)
            ax.set_xlabel("wall seconds (log)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="granja,granja-1000,granja-400,demo")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the seeded methods on granja and the demo")
    ap.add_argument(
        "--draws", type=int, default=10, help="random draws (and seeds) of every granja-N subsample"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-inductive", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "time_to_quality.json"))
    ap.add_argument(
        "--plot",
        default=None,
        help="default: bench/time_to_quality.png (the committed plot) for a run with the default datasets, "
        "methods, seeds and draws; bench/out/time_to_quality.png for any other, so a partial run does not "
        "replace the full run's curves",
    )
    args = ap.parse_args(argv)
    if args.plot is None:
        full = all(getattr(args, k) == ap.get_default(k) for k in ("datasets", "methods", "seeds", "draws"))
        args.plot = str(REPO / "bench" / ("" if full else "out") / "time_to_quality.png")
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    print(
        f"# time to quality — {machine()}, threads {args.threads}, seeds {seeds}, {args.draws} draws of every "
        "subsample",
        flush=True,
    )
    warm_up(args)
    rows = []
    for ds in args.datasets.split(","):
        ds_seeds = (
            list(range(args.draws))
            if ds.startswith(("granja-", "forebrain-pool")) or ds.split("+split")[0] == "forebrain"
            else seeds
        )
        for seed in ds_seeds:
            adata = load_dataset(ds, seed)
            adata.uns["draw"] = seed
            for name in methods:
                fn, seeded, inductive = METHODS[name]
                if not seeded and seed != ds_seeds[0]:
                    continue
                modes = [("transductive", None)]
                if ds == "granja" and inductive and not args.no_inductive:
                    modes.append(("inductive", (adata.obs["donor"] == REFERENCE_DONOR).to_numpy()))
                for mode, mask in modes:
                    t = time.perf_counter()
                    try:
                        emb = fn(adata, seed, args, fit_mask=mask)
                    except ImportError as err:
                        print(f"  {name}: skipped ({err})", flush=True)
                        break
                    seconds = time.perf_counter() - t
                    q = evaluate(np.asarray(emb, dtype=np.float32), adata, centred_only=False, fit_mask=mask)
                    row = {"dataset": ds, "method": name, "mode": mode, "seed": seed, "seconds": seconds, **q}
                    rows.append(row)
                    print("  " + json.dumps(row), flush=True)
    choose_knn(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print_table(rows)
    print_paired(rows)
    plot(rows, Path(args.plot))


def print_table(rows) -> None:
    print(
        "\n| dataset | mode | method | seconds | Leiden ARI | transfer accuracy | transfer macro-F1 | k-NN | n |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((r["dataset"], r["mode"], r["method"]) for r in rows))
    for ds, mode, m in keys:
        sel = [r for r in rows if (r["dataset"], r["mode"], r["method"]) == (ds, mode, m)]

        def cell(k, sel=sel):
            v = [r[k] for r in sel if k in r]
            if not v:
                return "—"
            return f"{np.mean(v):.3f}" + (f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "")

        print(
            f"| {ds} | {mode} | {m} | {np.mean([r['seconds'] for r in sel]):.1f} | {cell('ari')} | "
            f"{cell('accuracy')} | {cell('macro_f1')} | {sel[0].get('knn', 'centred')} | {len(sel)} |"
        )
    # The yardstick: fastembed's time against gensim skip-gram's 10 epochs in the same run.
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        fe_t = [
            r["seconds"]
            for r in rows
            if r["dataset"] == ds and r["method"] == "fastembed" and r["mode"] == "transductive"
        ]
        g_t = [r["seconds"] for r in rows if r["dataset"] == ds and r["method"] == "gensim_sg-e10"]
        if fe_t and g_t:
            print(f"{ds}: gensim sg 10 epochs / fastembed defaults = {np.mean(g_t) / np.mean(fe_t):.2f}x")


def paired_differences(rows, method: str, peer: str, dataset: str, key: str) -> tuple[float, float, int, int]:
    """``method`` minus ``peer`` on the same seeds (draws) of one dataset, transductive mode.

    Returns the mean difference, its standard error, the number of seeds where ``method`` is ahead and the number
    of seeds both ran (NaNs where they share fewer than two seeds).
    """

    def by_seed(m):
        return {
            r["seed"]: r[key]
            for r in rows
            if r["dataset"] == dataset and r["method"] == m and r["mode"] == "transductive" and key in r
        }

    a, b = by_seed(method), by_seed(peer)
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return float("nan"), float("nan"), 0, len(common)
    d = np.array([a[s] - b[s] for s in common])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)), int((d > 0).sum()), d.size


def print_paired(rows) -> None:
    """fastembed's defaults against each peer, draw by draw, on every dataset with several seeds."""
    lines = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for peer in dict.fromkeys(r["method"] for r in rows if r["dataset"] == ds):
            if peer == "fastembed":
                continue
            cells = []
            for key in ("accuracy", "accuracy_centred", "ari"):
                mean, se, wins, n = paired_differences(rows, "fastembed", peer, ds, key)
                if n >= 2:
                    cells.append(f"{mean:+.3f} ± {se:.3f} (ahead in {wins} of {n})")
            if len(cells) == 3:
                lines.append(f"| {ds} | {peer} | {' | '.join(cells)} |")
    if lines:
        print(
            "\n| dataset | fastembed minus | transfer accuracy (± standard error) | the same, centred k-NN for both "
            "| Leiden ARI |"
        )
        print("|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
