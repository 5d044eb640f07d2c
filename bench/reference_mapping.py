"""Reference mapping that knows what it does not know: novel-type detection and calibrated confidence.

Usage (from the repository root):

    PYTHONPATH=$PWD python bench/reference_mapping.py [--cache DIR] [--threads 2] [--seed 0] [--out bench/]

1. granja2019, leave one type out: a model is trained on donor D6T1 (all of its cells, unlabelled; cached in
   ``--cache``) and encodes both donors. For each of the 16 types, the reference is D6T1 without that type; the
   query is all of D5T1. Reported per type and on average: the AUROC of the novelty score for the dropped
   type's query cells against the other query cells, and the same for the vote share (1 - vote share as the
   score: today's baseline); at the default threshold (``fastembed.annotation.novelty.DEFAULT_MAX_NOVELTY``) the share of
   the dropped type called unknown and the accuracy on the remaining types (a cell called unknown counts as
   wrong); for the vote share, a threshold giving the same unknown rate on the remaining types, so the two
   scores are compared at the same cost.
2. A planted-type synthetic corpus (Gaussian types in 32 dims, donor shift between reference and query), leave
   one type out the same way: the answer is known.
3. forebrain (Preissl 2018), 5-fold: a model per fold trained on the other four folds, then leave one type out
   within the fold; pooled over folds. Checks that the default threshold is not granja-only.
4. The threshold sweep behind the default: for each threshold, the mean over dropped types of the novel
   recall and of the accuracy on the remaining types, on granja and forebrain.
6. Batches (``--parts harmony``, needs harmonypy and snapatac2: run it in the bench venv): scanpy's
   ``sc.external.pp.harmony_integrate`` on the fastembed embedding of both donors, and SnapATAC2's spectral
   embedding with the same harmony call; iLISI of the donors (k=30, scaled to [0, 1]) and D6T1 -> D5T1 label
   transfer (10-NN, fastembed.annotate_celltypes) with and without.
5. Calibration on D6T1 -> D5T1: expected calibration error (10 bins) of the vote share and of the calibrated
   confidence that ``build_reference`` fits by 5-fold cross-validation on D6T1; a reliability plot
   (``reliability_granja.png``).

The model is trained on all reference cells, the dropped type's included (training uses no labels; only the
reference labels lose the type). A reference whose model never saw the type is a harder case not measured
here.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _data import QUERY_DONOR, REFERENCE_DONOR, load_granja, machine, shared_data

warnings.simplefilter("ignore")

THRESHOLDS = (0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def auroc(score, positive) -> float:
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def score_query(ref_emb, ref_labels, query_emb, k=10):
    """Labels, vote share and novelty of query cells against an in-memory reference (exact/approximate as
    fastembed decides)."""
    import anndata as ad

    from fastembed.reference import annotate_with_reference, reference_from_anndata

    ref = ad.AnnData(
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(ref_labels)}, index=[f"r{i}" for i in range(len(ref_labels))]
        ),
        obsm={"scembed_X": np.asarray(ref_emb, dtype=np.float32)},
    )
    query = ad.AnnData(
        obs=pd.DataFrame(index=[f"q{i}" for i in range(len(query_emb))]),
        obsm={"scembed_X": np.asarray(query_emb, dtype=np.float32)},
    )
    reference = reference_from_anndata(ref, k=k)
    table = annotate_with_reference(query, reference, max_novelty=None)
    return (
        table["cell_type"].astype(str).to_numpy(),
        table["vote_share"].to_numpy(),
        table["novelty"].to_numpy(),
    )


def leave_one_type_out(ref_emb, ref_labels, query_emb, query_labels, types, threshold, k=10):
    """Per dropped type: AUROCs, novel recall and accuracy on the rest at ``threshold``, and the sweep."""
    rows, sweep = [], {t: [] for t in THRESHOLDS}
    for t in types:
        keep = ref_labels != t
        if not (query_labels == t).any():
            continue
        pred, share, nov = score_query(ref_emb[keep], ref_labels[keep], query_emb, k)
        novel = query_labels == t
        known = ~novel
        correct = pred == query_labels
        called = nov > threshold
        # the vote-share threshold with the same unknown rate on the remaining types
        rate = called[known].mean()
        vs_cut = np.quantile(share[known], rate) if rate > 0 else -1.0
        vs_called = share < vs_cut
        rows.append(
            {
                "dropped": t,
                "n_dropped": int(novel.sum()),
                "auroc_novelty": auroc(nov, novel),
                "auroc_vote_share": auroc(-share, novel),
                "novel_called_unknown": float(called[novel].mean()),
                "accuracy_rest": float((correct & ~called)[known].mean()),
                "accuracy_rest_no_threshold": float(correct[known].mean()),
                "vote_share_novel_called_unknown": float(vs_called[novel].mean()),
                "vote_share_accuracy_rest": float((correct & ~vs_called)[known].mean()),
            }
        )
        for thr in THRESHOLDS:
            c = nov > thr
            sweep[thr].append((float(c[novel].mean()), float((correct & ~c)[known].mean())))
    return pd.DataFrame(rows), {
        thr: {
            "novel_called_unknown": float(np.mean([a for a, _ in v])),
            "accuracy_rest": float(np.mean([b for _, b in v])),
        }
        for thr, v in sweep.items()
    }


def granja_embeddings(cache: Path, threads: int, seed: int):
    import fastembed as fe

    adata = load_granja()
    model_dir = cache / "granja_model"
    if model_dir.is_dir():
        model = fe.ScEmbed.from_pretrained(model_dir, threads=threads)
    else:
        ref = adata[adata.obs["donor"] == REFERENCE_DONOR].copy()
        uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
        model = fe.ScEmbed(seed=seed, threads=threads).train(fe.tokenize_cells(ref, uni), progress=False)
        model.save(model_dir)
    emb = model.encode(adata, progress=False)
    return adata, model, emb


def load_forebrain():
    import fastembed as fe

    d = shared_data() / "forebrain_preissl2018_mouse_nocoords"
    adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
    labels = pd.read_csv(d / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    adata.obs["cell_type"] = labels.loc[adata.obs_names].astype(str).to_numpy()
    return adata


def forebrain_folds(cache: Path, threads: int, seed: int, n_folds: int = 5):
    """Per fold: (train rows, test rows, embeddings of all cells from the fold's model)."""
    import fastembed as fe

    adata = load_forebrain()
    rng = np.random.default_rng(seed)
    fold = np.empty(adata.n_obs, dtype=np.int64)
    fold[rng.permutation(adata.n_obs)] = np.arange(adata.n_obs) % n_folds  # cells come sorted by label
    uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    out = []
    for f in range(n_folds):
        path = cache / f"forebrain_fold{f}_seed{seed}.npy"
        train = fold != f
        if path.exists():
            emb = np.load(path)
        else:
            model = fe.ScEmbed(seed=seed, threads=threads).train(
                fe.tokenize_cells(adata[train].copy(), uni), progress=False
            )
            emb = model.encode(adata, progress=False)
            np.save(path, emb)
        out.append((train, ~train, emb))
    return adata.obs["cell_type"].to_numpy(), out


def planted_corpus(seed: int, n_types: int = 8, dim: int = 32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(n_types, dim))
    shift = rng.normal(0, 0.3, size=dim)  # a donor effect shared by all query cells

    def draw(n_per, offset):
        sizes = rng.integers(n_per // 3, n_per, size=n_types)
        lab = np.repeat(np.arange(n_types), sizes)
        return centres[lab] + offset + rng.normal(0, 1.0, size=(lab.size, dim)), lab.astype(str)

    re, rl = draw(400, 0.0)
    qe, ql = draw(200, shift)
    return re, rl, qe, ql


def calibration(adata, model, emb, out_png: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastembed.reference import annotate_with_reference, build_reference, expected_calibration_error

    ref_rows = (adata.obs["donor"] == REFERENCE_DONOR).to_numpy()
    ref = adata[ref_rows].copy()
    ref.obsm["scembed_X"] = emb[ref_rows]
    query = adata[~ref_rows].copy()
    query.obsm["scembed_X"] = emb[~ref_rows]
    t = time.perf_counter()
    reference = build_reference(model, ref)
    build_s = time.perf_counter() - t
    table = annotate_with_reference(query, reference, max_novelty=None)
    correct = table["cell_type"].astype(str).to_numpy() == query.obs["cell_type"].astype(str).to_numpy()
    share, conf = table["vote_share"].to_numpy(), table["confidence"].to_numpy()
    result = {
        "accuracy": float(correct.mean()),
        "ece_vote_share": expected_calibration_error(share, correct),
        "ece_calibrated": expected_calibration_error(conf, correct),
        "mean_vote_share": float(share.mean()),
        "mean_calibrated": float(conf.mean()),
        "build_seconds": build_s,
        "reference_cv": reference.quality,
    }
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    edges = np.linspace(0, 1, 11)
    for values, name in ((share, "vote share"), (conf, "calibrated confidence")):
        bins = np.minimum((values * 10).astype(int), 9)
        xs, ys, ns = [], [], []
        for b in range(10):
            m = bins == b
            if m.sum() >= 10:
                xs.append(values[m].mean())
                ys.append(correct[m].mean())
                ns.append(m.sum())
        ece = expected_calibration_error(values, correct)
        ax.plot(xs, ys, "o-", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    ax.set_xticks(edges[::2])
    ax.set_xlabel("reported confidence (bin mean)")
    ax.set_ylabel("fraction of labels right")
    ax.set_title("granja2019 D6T1 -> D5T1, 10-NN")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return result


def ilisi(emb: np.ndarray, batch: np.ndarray, k: int = 30) -> float:
    """Mean integration LISI, scaled to [0, 1]: for each cell, the inverse Simpson index of the batches among
    its ``k`` nearest neighbours (cosine around the mean, self excluded, equal weights), minus 1, divided by
    (batches - 1). 0: neighbours all from the cell's own batch; 1: batches mixed as evenly as they can be."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    cats, codes = np.unique(batch, return_inverse=True)
    share = np.stack([(codes[idx] == c).mean(axis=1) for c in range(len(cats))], axis=1)
    simpson = 1.0 / (share**2).sum(axis=1)
    return float(((simpson - 1.0) / (len(cats) - 1)).mean())


def harmony_integrate(a, basis: str, adjusted: str, seed: int) -> None:
    """``sc.external.pp.harmony_integrate(a, key="donor", basis=basis, adjusted_basis=adjusted)``.

    scanpy 1.11.5's wrapper stores ``Z_corr.T``, written for harmonypy < 2, whose ``Z_corr`` was dims x cells;
    harmonypy 2.x returns cells x dims and the wrapper fails (obsm of the wrong shape). Where it does, this calls
    harmonypy.run_harmony exactly as the wrapper does and stores the result the right way round.
    """
    import scanpy as sc

    try:
        sc.external.pp.harmony_integrate(
            a, key="donor", basis=basis, adjusted_basis=adjusted, random_state=seed, verbose=False
        )
    except ValueError:
        import harmonypy

        z = harmonypy.run_harmony(
            a.obsm[basis].astype(np.float64), a.obs, "donor", random_state=seed, verbose=False
        ).Z_corr
        a.obsm[adjusted] = np.asarray(z if z.shape[0] == a.n_obs else z.T)


def harmony(adata, emb, seed: int):
    """Batch mixing and label transfer with and without scanpy's harmony integration, for fastembed and
    SnapATAC2 (spectral embedding + its harmony wrapper); both donors are integrated together."""
    import snapatac2 as snap
    from _metrics import donor_transfer

    labels = adata.obs["cell_type"].astype(str).to_numpy()
    donor = adata.obs["donor"].astype(str).to_numpy()
    rows = []

    def measure(name, x, seconds):
        tr = donor_transfer(x, labels, donor, reference=REFERENCE_DONOR, query=QUERY_DONOR)
        rows.append(
            {
                "embedding": name,
                "iLISI (donor, k=30)": ilisi(x, donor),
                "transfer accuracy": tr["accuracy"],
                "transfer macro-F1": tr["macro_f1"],
                "seconds": seconds,
            }
        )

    a = adata.copy()
    a.obsm["X_fastembed"] = np.asarray(emb, dtype=np.float32)
    measure("fastembed", a.obsm["X_fastembed"], float("nan"))
    t = time.perf_counter()
    harmony_integrate(a, "X_fastembed", "X_fastembed_harmony", seed)
    measure("fastembed + harmony", np.asarray(a.obsm["X_fastembed_harmony"]), time.perf_counter() - t)
    b = adata.copy()
    t = time.perf_counter()
    snap.pp.select_features(b, verbose=False)
    snap.tl.spectral(b, random_state=seed)
    measure("SnapATAC2 spectral", np.asarray(b.obsm["X_spectral"]), time.perf_counter() - t)
    t = time.perf_counter()
    harmony_integrate(b, "X_spectral", "X_spectral_harmony", seed)
    measure("SnapATAC2 spectral + harmony", np.asarray(b.obsm["X_spectral_harmony"]), time.perf_counter() - t)
    return pd.DataFrame(rows)


def fmt_table(df: pd.DataFrame) -> str:
    cols = [
        "dropped",
        "n_dropped",
        "auroc_novelty",
        "auroc_vote_share",
        "novel_called_unknown",
        "vote_share_novel_called_unknown",
        "accuracy_rest",
        "vote_share_accuracy_rest",
        "accuracy_rest_no_threshold",
    ]
    mean = df[cols[2:]].mean()
    lines = [
        "| dropped type | cells | AUROC novelty | AUROC vote share | novel -> unknown (novelty) | novel -> unknown "
        "(vote share, same cost) | accuracy rest (novelty) | accuracy rest (vote share) | accuracy rest, no threshold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in df.iterrows():
        lines.append(
            "| "
            + " | ".join([str(r["dropped"]), str(r["n_dropped"])] + [f"{r[c]:.3f}" for c in cols[2:]])
            + " |"
        )
    lines.append("| **mean** | | " + " | ".join(f"**{mean[c]:.3f}**" for c in cols[2:]) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/tmp/fastembed-bench/reference_mapping")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent))
    ap.add_argument("--parts", default="granja,planted,forebrain,calibration")
    args = ap.parse_args(argv)
    from fastembed.annotation.novelty import DEFAULT_MAX_NOVELTY

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    parts = set(args.parts.split(","))
    report: dict = {"machine": machine(), "threshold": DEFAULT_MAX_NOVELTY}
    t0 = time.perf_counter()
    if parts & {"granja", "calibration", "harmony"}:
        adata, model, emb = granja_embeddings(cache, args.threads, args.seed)
        labels = adata.obs["cell_type"].astype(str).to_numpy()
        donor = adata.obs["donor"].astype(str).to_numpy()
        r, q = donor == REFERENCE_DONOR, donor == QUERY_DONOR
    if "granja" in parts:
        df, sweep = leave_one_type_out(
            emb[r], labels[r], emb[q], labels[q], sorted(set(labels)), DEFAULT_MAX_NOVELTY
        )
        print("## granja2019 leave-one-type-out (D6T1 reference, D5T1 query)\n")
        print(fmt_table(df), "\n")
        report["granja"] = {"table": df.to_dict("records"), "sweep": sweep}
    if "planted" in parts:
        re, rl, qe, ql = planted_corpus(args.seed)
        df, sweep = leave_one_type_out(re, rl, qe, ql, sorted(set(rl)), DEFAULT_MAX_NOVELTY)
        print("## planted synthetic corpus, leave-one-type-out\n")
        print(fmt_table(df), "\n")
        report["planted"] = {"table": df.to_dict("records"), "sweep": sweep}
    if "forebrain" in parts:
        fl, folds = forebrain_folds(cache, args.threads, args.seed)
        frames, sweeps = [], []
        for train, test, femb in folds:
            df, sweep = leave_one_type_out(
                femb[train], fl[train], femb[test], fl[test], sorted(set(fl)), DEFAULT_MAX_NOVELTY
            )
            frames.append(df)
            sweeps.append(sweep)
        allf = pd.concat(frames)
        df = allf.groupby("dropped", as_index=False).agg(
            {**{c: "mean" for c in allf.columns if c not in ("dropped", "n_dropped")}, "n_dropped": "sum"}
        )
        sweep = {
            thr: {key: float(np.mean([s[thr][key] for s in sweeps])) for key in sweeps[0][thr]}
            for thr in THRESHOLDS
        }
        print("## forebrain 5-fold leave-one-type-out (means over folds)\n")
        print(fmt_table(df), "\n")
        report["forebrain"] = {"table": df.to_dict("records"), "sweep": sweep}
    if any(k in report for k in ("granja", "forebrain", "planted")):
        print("## threshold sweep (mean over dropped types): novel called unknown / accuracy on the rest\n")
        names = [k for k in ("granja", "forebrain", "planted") if k in report]
        print(
            "| max_novelty | "
            + " | ".join(f"{n}: novel->unknown | {n}: acc rest | {n}: mean" for n in names)
            + " |"
        )
        print("|---:|" + "---:|" * (3 * len(names)))
        for thr in THRESHOLDS:
            cells = []
            for n in names:
                s = report[n]["sweep"][thr]
                cells += [
                    f"{s['novel_called_unknown']:.3f}",
                    f"{s['accuracy_rest']:.3f}",
                    f"{(s['novel_called_unknown'] + s['accuracy_rest']) / 2:.3f}",
                ]
            print(f"| {thr} | " + " | ".join(cells) + " |")
        print()
    if "calibration" in parts:
        cal = calibration(adata, model, emb, out / "reliability_granja.png")
        print("## calibration, D6T1 -> D5T1\n")
        print(json.dumps({k: v for k, v in cal.items() if k != "reference_cv"}, indent=1), "\n")
        report["calibration"] = cal
    if "harmony" in parts:
        df = harmony(adata, emb, args.seed)
        print("## batches: harmony on the embedding of both donors (granja2019)\n")
        print("| " + " | ".join(df.columns) + " |\n|---|" + "---:|" * (len(df.columns) - 1))
        for _, row in df.iterrows():
            print("| " + " | ".join([row.iloc[0]] + [f"{v:.3f}" for v in row.iloc[1:]]) + " |")
        print()
        report["harmony"] = df.to_dict("records")
    report["seconds"] = time.perf_counter() - t0
    (cache / "reference_mapping.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"total {report['seconds']:.0f} s; {report['machine']}")


if __name__ == "__main__":
    main()
