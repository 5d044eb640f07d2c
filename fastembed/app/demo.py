"""``fastembed demo``: the scEmbed workflow end to end on the bundled real data, offline."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

REFERENCE_DONOR, QUERY_DONOR = "D6T1", "D5T1"


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


MIN_DEMO_CELLS = 100
"""Fewest cells the demo runs on: every step (20 principal axes, 10 nearest neighbours in the reference donor,
Leiden, UMAP) has enough cells from about this many on."""


def run_demo(
    output: str | os.PathLike = "fastembed-demo",
    *,
    epochs: int | None = None,
    n_cells: int | None = None,
    threads: int | None = None,
    seed: int = 0,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run read -> tokenize -> train -> encode -> neighbors/leiden/umap -> annotate on the bundled data.

    Parameters
    ----------
    output
        Folder for the outputs (created if missing; its parent must exist).
    epochs
        Training epochs (default: the data-derived count of :meth:`fastembed.ScEmbed.train`).
    n_cells
        Use a random subset of this many cells (for quick checks), at least ``MIN_DEMO_CELLS``; default (or
        more than there are) all 5,000.
    threads
        Numba threads (default: all cores).
    seed
        Seed of the subset, training and clustering.
    quiet
        No progress bars or messages.
    overwrite
        Replace outputs of an earlier run in ``output`` (each only if fastembed recognises it as its own; other
        files in the folder are never touched).

    Returns
    -------
    dict
        The report: paths of every output, ARI/NMI of Leiden clusters against the authors' labels,
        annotation accuracy and macro-F1 of donor D5T1 from donor D6T1, timings in seconds.
    """
    from fastembed.common.progress import check_progress
    from fastembed.common.threads import check_threads
    from fastembed.common.validate import check_positive_int
    from fastembed.datasets import demo_peaks_path
    from fastembed.storage.atomic import check_output_path, output_lock

    # Checked before anything is written: a subset too small for the later steps (a PCA of 20 axes, 10
    # neighbours in each donor) would otherwise fail halfway, after tokens and a model were written; so
    # would training with a bad epoch or thread count.
    if n_cells is not None and (
        isinstance(n_cells, bool) or int(n_cells) != n_cells or n_cells < MIN_DEMO_CELLS
    ):
        raise ValueError(
            f"the demo needs a whole number of at least {MIN_DEMO_CELLS} cells (n_cells, --cells), got {n_cells!r}"
        )
    if epochs is not None:
        check_positive_int("epochs", epochs)
    check_threads(threads)
    quiet = check_progress(quiet, "quiet")
    overwrite = check_progress(overwrite, "overwrite")

    # The bundled data are the demo's inputs: no output may be, or hold, the folder they live in.
    inputs = [demo_peaks_path().parent]
    out = check_output_path(output, what="demo output folder", kind="demo", inputs=inputs)
    # Held for the whole run: a second demo writing into the same folder fails at once.
    with output_lock(out, what="demo output folder"):
        return _run_demo(
            out,
            inputs,
            epochs=epochs,
            n_cells=n_cells,
            threads=threads,
            seed=seed,
            quiet=quiet,
            overwrite=overwrite,
        )


def _run_demo(out, inputs, *, epochs, n_cells, threads, seed, quiet, overwrite) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

    from fastembed.annotation.annotate import annotation_table
    from fastembed.common.progress import progress_bar
    from fastembed.datasets import demo_peaks_path, load_demo
    from fastembed.genome.tokenize import tokenize_cells
    from fastembed.region2vec import Region2VecDataset
    from fastembed.scembed import ScEmbed, annotate_celltypes
    from fastembed.settings import EMBEDDING_KEY
    from fastembed.storage.atomic import atomic_file, check_output_path
    from fastembed.storage.faults import write_h5ad
    from fastembed.storage.marker import mark

    paths = {
        "tokens": out / "tokens.parquet",
        "model": out / "model",
        "zarr": out / "embeddings.zarr",
        "h5ad": out / "embeddings.h5ad",
        "umap": out / "umap.png",
        "clusters": out / "clusters.csv",
        "annotations": out / "annotations.csv",
        "report": out / "report.md",
    }
    kinds = {
        "tokens": "parquet",
        "model": "model",
        "zarr": "zarr",
        "h5ad": "h5ad",
        "umap": "png",
        "clusters": "csv",
        "annotations": "csv",
        "report": "report",
    }
    if out.is_dir():
        # Before a minute of work: every output must be new, or (with overwrite) one of ours.
        for key, p in paths.items():
            check_output_path(
                p, what=f"demo {key} output", overwrite=overwrite, inputs=inputs, kind=kinds[key]
            )
    try:
        out.mkdir(exist_ok=True)
    except OSError as err:  # a full disk or a read-only folder: one message naming the folder
        from fastembed.storage.faults import write_error

        named = write_error(err, out, "demo output folder")
        if named is None:
            raise
        raise named from err

    def write(key):
        return atomic_file(
            paths[key], what=f"demo {key} output", overwrite=overwrite, inputs=inputs, kind=kinds[key]
        )

    timings = {}

    t = time.perf_counter()
    adata = load_demo()
    if n_cells is not None and n_cells < adata.n_obs:
        rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, n_cells, replace=False))
        adata = adata[rows].copy()
    timings["read"] = time.perf_counter() - t
    _say(
        quiet, f"[1/6] read {adata.n_obs} cells x {adata.n_vars} peaks (Granja et al. 2019 bone marrow, hg19)"
    )

    t = time.perf_counter()
    tokenize_cells(adata, demo_peaks_path(), paths["tokens"], overwrite=overwrite)
    timings["tokenize"] = time.perf_counter() - t
    _say(quiet, f"[2/6] tokenized -> {paths['tokens']}")

    t = time.perf_counter()
    model = ScEmbed(embedding_dim=100, window_size=5, negative_samples=5, seed=seed, threads=threads)
    model.train(Region2VecDataset(paths["tokens"]), epochs=epochs, progress=not quiet)
    model.save(paths["model"], overwrite=overwrite)
    timings["train"] = time.perf_counter() - t
    epochs = model.training_info["epochs"]
    _say(quiet, f"[3/6] trained {epochs} epochs in {timings['train']:.1f} s -> {paths['model']}")

    t = time.perf_counter()
    emb = model.encode(adata, out=paths["zarr"], overwrite=overwrite, progress=not quiet)
    adata.obsm[EMBEDDING_KEY] = np.asarray(emb[:])
    timings["encode"] = time.perf_counter() - t
    _say(quiet, f"[4/6] encoded -> {paths['zarr']}")

    t = time.perf_counter()
    # Tens of seconds with no output of its own: one bar step per scanpy call.
    bar = progress_bar(3, desc="clustering", unit="step", enabled=not quiet)
    for step in (
        lambda: sc.pp.neighbors(adata, use_rep=EMBEDDING_KEY, random_state=seed),
        lambda: sc.tl.leiden(
            adata, resolution=0.5, random_state=seed, flavor="igraph", n_iterations=2, directed=False
        ),
        lambda: sc.tl.umap(adata, random_state=seed),
    ):
        step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    sc.pl.umap(adata, color="cell_type", ax=axes[0], show=False, title="cell type (Granja et al. 2019)")
    sc.pl.umap(adata, color="leiden", ax=axes[1], show=False, title="Leiden clusters (fastembed)")
    fig.tight_layout()
    with write("umap") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    with write("clusters") as tmp:
        adata.obs[["leiden"]].rename_axis("barcode").to_csv(tmp)
    timings["cluster_umap"] = time.perf_counter() - t
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    ari = adjusted_rand_score(labels, adata.obs["leiden"])
    nmi = normalized_mutual_info_score(labels, adata.obs["leiden"])
    _say(quiet, f"[5/6] {adata.obs['leiden'].nunique()} Leiden clusters, ARI {ari:.3f} -> {paths['umap']}")

    t = time.perf_counter()
    donor = adata.obs["donor"].astype(str).to_numpy()
    ref, query = adata[donor == REFERENCE_DONOR].copy(), adata[donor == QUERY_DONOR].copy()
    predicted = annotate_celltypes(
        query,
        ref,
        embedding_key=EMBEDDING_KEY,
        k=10,
        label_key="cell_type",
        confidence_key="cell_type_confidence",
    )
    truth = query.obs["cell_type"].astype(str).to_numpy()
    accuracy = float(np.mean(predicted.astype(str).to_numpy() == truth))
    macro_f1 = float(f1_score(truth, predicted.astype(str), average="macro"))
    # The command line's table (annotate --output), plus the authors' labels to compare with.
    table = annotation_table(predicted, query.obs["cell_type_confidence"], "cell_type")
    table.insert(0, "true_cell_type", query.obs["cell_type"].astype(str).to_numpy())
    with write("annotations") as tmp:
        table.to_csv(tmp)
    adata.obs["predicted_cell_type"] = predicted.reindex(adata.obs_names).astype(str)
    mark(adata, EMBEDDING_KEY, model=str(paths["model"]))
    with write("h5ad") as tmp:
        write_h5ad(adata, tmp)  # a full disk is an error here, not a crash of HDF5
    timings["annotate"] = time.perf_counter() - t
    chance = float(np.max(np.unique(ref.obs["cell_type"].astype(str), return_counts=True)[1]) / ref.n_obs)
    _say(
        quiet,
        f"[6/6] annotated {query.n_obs} {QUERY_DONOR} cells from {ref.n_obs} {REFERENCE_DONOR} cells: "
        f"accuracy {accuracy:.3f} (majority class {chance:.3f})",
    )

    report = {
        "cells": int(adata.n_obs),
        "peaks": int(adata.n_vars),
        "epochs": int(epochs),
        "n_clusters": int(adata.obs["leiden"].nunique()),
        "leiden_ari": float(ari),
        "leiden_nmi": float(nmi),
        "annotation_accuracy": accuracy,
        "annotation_macro_f1": macro_f1,
        "majority_class_accuracy": chance,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    lines = [
        "# fastembed demo report",
        "",
        f"Data: {adata.n_obs} cells x {adata.n_vars} peaks of the Granja et al. 2019 bone-marrow scATAC-seq (hg19), "
        "bundled with fastembed.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Leiden clusters (resolution 0.5) | {report['n_clusters']} |",
        f"| Leiden ARI vs authors' labels | {ari:.3f} |",
        f"| Leiden NMI vs authors' labels | {nmi:.3f} |",
        f"| annotation accuracy, {QUERY_DONOR} from {REFERENCE_DONOR} (10-NN) | {accuracy:.3f} |",
        f"| annotation macro-F1 | {macro_f1:.3f} |",
        f"| majority-class accuracy (chance level) | {chance:.3f} |",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        "",
        "```json",
        json.dumps(report, indent=2),
        "```",
        "",
    ]
    with write("report") as tmp:
        tmp.write_text("\n".join(lines))
    if not quiet:
        print(f"\nfastembed demo outputs in {out}:")
        for k, v in paths.items():
            print(f"  {k:12s} {v}")
    return report
