"""Training speed, thread scaling, memory and embedding quality: fastembed's SGNS vs gensim's word2vec (sg=1).

Usage (from the repository root, in the bench venv that has gensim; see bench/README.md):

    python bench/train_vs_gensim.py [--data DIR] [--granja-epochs 30] [--synthetic-epochs 3] [--repeats 2]
    python bench/train_vs_gensim.py --scaling 1,2,all --scaling-repeats 3 --scaling-only --skip-synthetic
    python bench/train_vs_gensim.py ... --hot-rows-ab 512

``--hot-rows-ab N`` adds ``ours-hot``, ours with ``sgns.PRIVATE_HOT_ROWS = N`` (private per-thread copies of the
most written output rows), beside ``ours`` with it at 0, in the scaling rounds (interleaved) and in the speed and
quality runs at ``--threads``.

Two corpora, the same for both methods:
1. granja2019 (real; ``--data``, ``$FASTEMBED_SHARED_DATA`` or ../shared/data): 14,125 cells; a cell's tokens are its
   nonzero columns of ``matrix.mtx.gz`` (its peaks are the universe), 10,000 tokens, 2.3M tokens per epoch.
2. synthetic scATAC-like: 5,000 cells x 100,000 regions, ~3,500 tokens per cell (power-law region frequencies,
   10 cell types with type-specific regions, a per-cell size factor; no cell over gensim's 10,000-token cap).

Same settings for both: dim 100, window 5, negative 5, sample 0, min_count 1, lr 0.025 -> 1e-4, the same epochs,
2 threads (ours) / 2 workers (gensim). Gensim is run two ways: one ``train()`` call over all epochs (its fastest
mode: the speed reference), and, on granja, one call per epoch with every cell's tokens reshuffled in between and the
learning rate continued linearly (what geniml does, since a cell is a set; the quality reference). Ours reshuffles
every cell every epoch by design. Each run is a separate process, so peak RSS is per method. ``--repeats`` seeds
are run for the granja quality comparison (speed comes from the first seed). Thread scaling (``--scaling``) runs
in ``--scaling-repeats`` interleaved rounds and reports the median of each round's own ratio, because a single run
per thread count on these shared VMs moves by +-0.2x.

Reported: words/s (centre tokens per second of training, JIT warm-up and vocabulary building excluded), our
1 -> 2 thread scaling, peak RSS (whole process) and the RSS added by corpus + training over the process after its
imports, against the size of CSR + two float32 matrices; on granja, mean-pooled cell embeddings are scored by
Leiden ARI at the number of labels (resolution bisected) and by 10-NN label transfer (cosine, similarity-weighted
vote) from donor D6T1 (BMM_R2_*) to D5T1 (BMM_R1_*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS = dict(dim=100, window=5, negative=5, lr=0.025, min_lr=1e-4)


def shared_data(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("FASTEMBED_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


# --- corpora ------------------------------------------------------------------------------------------------
def granja_csr(data: Path) -> tuple[np.ndarray, np.ndarray, int]:
    import scipy.io

    X = scipy.io.mmread(data / "granja2019_bmmc_hg19" / "matrix.mtx.gz").tocsr()
    X.sort_indices()
    return X.indptr.astype(np.int64), X.indices.astype(np.int32), X.shape[1]


def synthetic_csr(n_cells=5000, n_regions=100_000, tokens_per_cell=3500, n_types=10, seed=0):
    """Cells as Bernoulli draws over regions: p = type-specific boost x power-law base x cell size factor."""
    rng = np.random.default_rng(seed)
    base = (rng.permutation(n_regions) + 1.0) ** -0.6
    marks = rng.integers(0, n_types + 1, n_regions)  # the type a region marks; n_types = shared
    cell_type = rng.integers(0, n_types, n_cells)
    size = np.clip(rng.lognormal(-(0.25**2) / 2, 0.25, n_cells), 0.3, 2.5)
    p_type = np.empty((n_types, n_regions), dtype=np.float32)
    for t in range(n_types):
        w = base * np.where(marks == t, 6.0, 1.0)
        lo, hi = 0.0, 1e3
        for _ in range(60):  # scale so that an average cell opens tokens_per_cell regions
            a = (lo + hi) / 2
            lo, hi = (a, hi) if np.minimum(1.0, a * w).sum() < tokens_per_cell else (lo, a)
        p_type[t] = a * w
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    cells = []
    for c in range(n_cells):
        p = np.minimum(np.float32(0.95), p_type[cell_type[c]] * np.float32(size[c]))
        cells.append(np.flatnonzero(rng.random(n_regions, dtype=np.float32) < p).astype(np.int32))
        indptr[c + 1] = indptr[c] + cells[-1].size
    return indptr, np.concatenate(cells), n_regions


# --- worker: one training run in its own process ------------------------------------------------------------
class RssSampler:
    """Largest resident set size seen while active (polled, so a spike shorter than the period can be missed)."""

    def __init__(self, period: float = 0.02):
        import psutil

        self.proc = psutil.Process()
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.period)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    """This process's high-water RSS. Read from /proc rather than getrusage: Linux carries ru_maxrss over
    exec, so a child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_corpus(prefix: str) -> tuple[np.ndarray, np.ndarray, int]:
    # Plain .npy files load straight into their arrays; an .npz member would pass through a temporary copy
    # that inflates the RSS we are trying to measure.
    indptr = np.load(prefix + ".indptr.npy")
    indices = np.load(prefix + ".indices.npy")
    return indptr, indices, int(np.load(prefix + ".vocab.npy"))


def run_ours(job: dict) -> dict:
    from fastembed.kernels import sgns
    from fastembed.sgns import train_sgns

    if job.get("hot_rows") is not None:
        sgns.PRIVATE_HOT_ROWS = int(job["hot_rows"])

    threads = job["threads"]
    # Warm-up: compile (or load from numba's cache) both drivers before anything is measured.
    train_sgns(
        np.array([0, 3]),
        np.array([0, 1, 2], dtype=np.int32),
        3,
        embedding_dim=4,
        epochs=1,
        threads=threads,
        progress=False,
    )
    rss0 = rss()
    indptr, indices, vocab = load_corpus(job["corpus"])
    with RssSampler() as sampler:
        t0, c0 = time.perf_counter(), time.process_time()
        r = train_sgns(
            indptr,
            indices,
            vocab,
            embedding_dim=SETTINGS["dim"],
            window_size=SETTINGS["window"],
            negative_samples=SETTINGS["negative"],
            epochs=job["epochs"],
            learning_rate=SETTINGS["lr"],
            min_learning_rate=SETTINGS["min_lr"],
            seed=job["seed"],
            threads=threads,
            progress=False,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if job.get("save"):
        np.save(job["save"], r.w_in)
    return dict(
        words=r.words_processed,
        train_seconds=r.seconds,
        wall_seconds=wall,
        words_per_s=r.words_processed / r.seconds,
        cpu_per_wall=cpu / wall,
        loadavg_1min=os.getloadavg()[0],
        rss_before_mb=rss0 / 2**20,
        added_rss_mb=(sampler.peak - rss0) / 2**20,
        peak_rss_mb=max(peak_rss(), sampler.peak) / 2**20,
    )


def run_gensim(job: dict) -> dict:
    import gc

    from gensim.models import Word2Vec

    rss0 = rss()
    indptr, indices, vocab = load_corpus(job["corpus"])
    names = np.array([str(i) for i in range(vocab)], dtype=object)
    rng = np.random.default_rng(job["seed"])
    # A fixed random order per cell (gensim windows over list order; sorted ids would mean genomic neighbours).
    cells = [
        names[rng.permutation(indices[indptr[c] : indptr[c + 1]])].tolist() for c in range(indptr.size - 1)
    ]
    n_words = int(indices.size)
    del indptr, indices
    gc.collect()
    epochs, reshuffle = job["epochs"], job["reshuffle"]
    lr0, lr1 = SETTINGS["lr"], SETTINGS["min_lr"]
    train_seconds = 0.0
    with RssSampler() as sampler:
        t0, c0 = time.perf_counter(), time.process_time()
        model = Word2Vec(
            vector_size=SETTINGS["dim"],
            window=SETTINGS["window"],
            negative=SETTINGS["negative"],
            sample=0,
            min_count=1,
            sg=1,
            hs=0,
            workers=job["threads"],
            seed=job["seed"],
        )
        model.build_vocab(cells)
        if reshuffle:
            for epoch in range(epochs):
                for cell in cells:
                    rng.shuffle(cell)
                t = time.perf_counter()
                model.train(
                    cells,
                    total_words=n_words,
                    epochs=1,
                    start_alpha=lr0 - (lr0 - lr1) * epoch / epochs,
                    end_alpha=lr0 - (lr0 - lr1) * (epoch + 1) / epochs,
                )
                train_seconds += time.perf_counter() - t
        else:
            t = time.perf_counter()
            model.train(cells, total_words=n_words, epochs=epochs, start_alpha=lr0, end_alpha=lr1)
            train_seconds = time.perf_counter() - t
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if job.get("save"):
        w = np.zeros((vocab, SETTINGS["dim"]), dtype=np.float32)
        w[np.array([int(k) for k in model.wv.index_to_key])] = model.wv.vectors
        np.save(job["save"], w)
    return dict(
        words=n_words * epochs,
        train_seconds=train_seconds,
        wall_seconds=wall,
        words_per_s=n_words * epochs / train_seconds,
        cpu_per_wall=cpu / wall,
        loadavg_1min=os.getloadavg()[0],
        rss_before_mb=rss0 / 2**20,
        added_rss_mb=(sampler.peak - rss0) / 2**20,
        peak_rss_mb=max(peak_rss(), sampler.peak) / 2**20,
    )


def worker(job_json: str) -> None:
    job = json.loads(job_json)
    result = run_ours(job) if job["method"].startswith("ours") else run_gensim(job)
    print("RESULT " + json.dumps(result), flush=True)


def launch(job: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed for {job}:\n{proc.stdout}\n{proc.stderr}")
    return {**job, **json.loads(lines[-1][7:])}


# --- quality ------------------------------------------------------------------------------------------------
def mean_pool(indptr, indices, w):
    import scipy.sparse as sp

    X = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(indptr.size - 1, w.shape[0])
    )
    return np.asarray(X @ w) / np.maximum(np.diff(indptr), 1)[:, None]


def knn_transfer_accuracy(emb, barcodes, labels, k=10):
    from sklearn.neighbors import NearestNeighbors

    ref = np.char.startswith(barcodes.astype(str), "BMM_R2_")
    query = np.char.startswith(barcodes.astype(str), "BMM_R1_")
    dist, idx = (
        NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute")
        .fit(emb[ref])
        .kneighbors(emb[query])
    )
    classes, codes = np.unique(labels[ref], return_inverse=True)
    votes = np.zeros((query.sum(), classes.size))
    rows = np.arange(query.sum())
    for j in range(k):
        np.add.at(votes, (rows, codes[idx[:, j]]), 1.0 - dist[:, j])
    return float((classes[votes.argmax(axis=1)] == labels[query]).mean())


def leiden_ari(emb, labels, seed=0):
    """ARI of Leiden clusters with the resolution bisected until there are as many clusters as labels."""
    import anndata
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    target = np.unique(labels).size
    ad = anndata.AnnData(np.zeros((emb.shape[0], 1), dtype=np.float32))
    ad.obsm["emb"] = emb.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(ad, use_rep="emb", n_neighbors=15, random_state=seed)
        lo, hi, best = 0.01, 5.0, None
        for _ in range(30):
            res = (lo + hi) / 2
            sc.tl.leiden(
                ad, resolution=res, random_state=seed, flavor="igraph", n_iterations=2, directed=False
            )
            n = ad.obs["leiden"].nunique()
            if best is None or abs(n - target) < abs(best[1] - target):
                best = (res, n, adjusted_rand_score(labels, ad.obs["leiden"]))
            if n == target:
                break
            lo, hi = (res, hi) if n < target else (lo, res)
    return dict(ari=float(best[2]), clusters=int(best[1]), resolution=float(best[0]))


# --- driver -------------------------------------------------------------------------------------------------
def machine() -> dict:
    import importlib.metadata as md

    cpu = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = {}
    for pkg in ("numpy", "numba", "gensim", "scanpy", "scikit-learn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "absent"
    return dict(
        nproc=os.cpu_count(),
        cpu=cpu,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        **versions,
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        help="folder holding granja2019_bmmc_hg19 (default: $FASTEMBED_SHARED_DATA or ../shared/data)",
    )
    ap.add_argument("--granja-epochs", type=int, default=30)
    ap.add_argument("--synthetic-epochs", type=int, default=3)
    ap.add_argument(
        "--repeats", type=int, default=1, help="seeds per method for the granja quality comparison"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument(
        "--scaling",
        default="1,2,all",
        help="thread counts for the scaling table on granja ('all' = every CPU; '' skips it)",
    )
    ap.add_argument("--scaling-epochs", type=int, default=5)
    ap.add_argument(
        "--scaling-repeats", type=int, default=3, help="interleaved rounds of the scaling table (median)"
    )
    ap.add_argument("--scaling-only", action="store_true", help="run only the thread-scaling table")
    ap.add_argument(
        "--hot-rows-ab",
        type=int,
        default=None,
        help="also run ours-hot (sgns.PRIVATE_HOT_ROWS = N; ours then runs with 0)",
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "train_vs_gensim.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return

    import pandas as pd

    data = shared_data(args.data)
    if not (data / "granja2019_bmmc_hg19").is_dir():
        sys.exit(f"granja2019_bmmc_hg19 not found under {data}: pass --data or set FASTEMBED_SHARED_DATA")
    info = machine()
    print(f"# {info}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="fe-bench-"))
    corpora = {"granja2019": granja_csr(data)}
    if not args.skip_synthetic:
        corpora["synthetic"] = synthetic_csr()
    for name, (indptr, indices, vocab) in corpora.items():
        for part, array in (("indptr", indptr), ("indices", indices), ("vocab", np.int64(vocab))):
            np.save(tmp / f"{name}.{part}.npy", array)
        lens = np.diff(indptr)
        csr_mb = (indptr.nbytes + indices.nbytes) / 2**20
        model_mb = 2 * vocab * SETTINGS["dim"] * 4 / 2**20
        print(
            f"# {name}: {lens.size} cells, {vocab} tokens, {indices.size} tokens/epoch, "
            f"{lens.mean():.0f} per cell (max {lens.max()}); CSR {csr_mb:.1f} MB + matrices {model_mb:.1f} MB",
            flush=True,
        )

    if args.scaling:
        scaling = thread_scaling(args, tmp / "granja2019")
        print(scaling, flush=True)
        if args.scaling_only:
            return
    T = args.threads
    jobs = []
    for name in corpora:
        epochs = args.granja_epochs if name == "granja2019" else args.synthetic_epochs
        base = dict(corpus=str(tmp / name), dataset=name, epochs=epochs)
        quality = name == "granja2019"  # embeddings are saved and scored only where there are labels
        for rep in range(args.repeats if quality else 1):
            seed = 1 + rep

            def save(tag: str, seed=seed, name=name, quality=quality) -> str | None:
                return str(tmp / f"{name}-{tag}-{seed}.npy") if quality else None

            hot = args.hot_rows_ab
            off = None if hot is None else 0
            jobs.append(
                dict(
                    base, method="ours", threads=T, seed=seed, reshuffle=True, save=save("ours"), hot_rows=off
                )
            )
            if hot is not None:
                jobs.append(
                    dict(
                        base,
                        method="ours-hot",
                        threads=T,
                        seed=seed,
                        reshuffle=True,
                        save=save("ours-hot"),
                        hot_rows=hot,
                    )
                )
            if rep == 0:
                jobs.append(dict(base, method="ours", threads=1, seed=seed, reshuffle=True, save=None))
                jobs.append(
                    dict(base, method="gensim", threads=T, seed=seed, reshuffle=False, save=save("gensim"))
                )
            if quality:
                jobs.append(
                    dict(
                        base,
                        method="gensim",
                        threads=T,
                        seed=seed,
                        reshuffle=True,
                        save=save("gensim-reshuffled"),
                    )
                )
    results = []
    for job in jobs:
        r = launch(job)
        label = f"{r['method']}{' reshuffled' if r['method'] == 'gensim' and r['reshuffle'] else ''} x{r['threads']}"
        print(
            f"{r['dataset']:<11} {label:<22} seed {r['seed']}: {r['words_per_s'] / 1e3:7.0f}k words/s "
            f"({r['train_seconds']:.1f} s, {r['cpu_per_wall']:.2f} cores busy, load {r['loadavg_1min']:.1f}), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, +{r['added_rss_mb']:.0f} MB",
            flush=True,
        )
        results.append(r)

    bc = pd.read_csv(data / "granja2019_bmmc_hg19" / "barcodes.tsv", header=None)[0].to_numpy()
    lab = pd.read_csv(data / "granja2019_bmmc_hg19" / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    labels = lab.loc[bc].to_numpy()
    indptr, indices, _ = corpora["granja2019"]
    for r in results:
        if r.get("save"):
            emb = mean_pool(indptr, indices, np.load(r["save"]))
            r["knn_accuracy"] = knn_transfer_accuracy(emb, bc, labels)
            r.update({f"leiden_{k}": v for k, v in leiden_ari(emb, labels).items()})
            print(
                f"quality {r['method']}{' reshuffled' if r['method'] == 'gensim' and r['reshuffle'] else ''} "
                f"seed {r['seed']}: 10-NN D6T1->D5T1 accuracy {r['knn_accuracy']:.3f}, Leiden ARI {r['leiden_ari']:.3f} "
                f"({r['leiden_clusters']} clusters)",
                flush=True,
            )

    summary = summarize(results, corpora, T)
    print(summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=info, args=vars(args), results=results), indent=1))
    (out.with_suffix(".md")).write_text(summary + "\n")
    print(f"# wrote {out} and {out.with_suffix('.md')}")


def thread_scaling(args, corpus: Path) -> str:
    """Words/s of ours and gensim on granja at each thread count of ``--scaling``, in ``--scaling-repeats``
    rounds.

    A round runs every (thread count, method) once, one after the other, each in a fresh process; the scaling
    of a round is its words/s at ``t`` threads over its own words/s at the smallest count, so a VM that drifts
    between minutes moves both ends of a ratio together. The table gives the median words/s and the median
    (min-max) of the rounds' scalings."""
    counts = sorted({os.cpu_count() if t == "all" else int(t) for t in args.scaling.split(",") if t})
    rows = {}
    for rep in range(args.scaling_repeats):
        methods = ("ours", "gensim") if args.hot_rows_ab is None else ("ours", "ours-hot", "gensim")
        for t in counts:
            # The order of the methods rotates from round to round, so a drift of the machine favours none.
            for method in methods[rep % len(methods) :] + methods[: rep % len(methods)]:
                if method == "ours-hot" and t == 1:
                    continue  # one thread never uses the private rows: ours at 1 thread is its base
                job = dict(
                    corpus=str(corpus),
                    dataset="granja2019",
                    epochs=args.scaling_epochs,
                    method=method,
                    threads=t,
                    seed=1,
                    reshuffle=False,
                    save=None,
                    hot_rows=None
                    if args.hot_rows_ab is None
                    else (args.hot_rows_ab if method == "ours-hot" else 0),
                )
                r = launch(job)
                rows.setdefault((method, t), []).append(r["words_per_s"])
                print(
                    f"scaling round {rep + 1} {method} x{t}: {r['words_per_s'] / 1e3:.0f}k words/s "
                    f"({r['cpu_per_wall']:.2f} cores busy, load {r['loadavg_1min']:.1f})",
                    flush=True,
                )

    def scaling(method: str, t: int) -> str:
        base = rows.get((method, counts[0]), rows.get(("ours", counts[0])))
        ratios = np.array(rows[method, t]) / np.array(base)
        spread = f" ({ratios.min():.2f}-{ratios.max():.2f})" if ratios.size > 1 else ""
        return f"{np.median(ratios):.2f}x{spread}"

    lines = [
        f"{args.scaling_repeats} rounds: median words/s; scaling = median (min-max) of the rounds' own ratios",
        "",
        "| threads | ours words/s | scaling | gensim words/s | scaling | ours / gensim |",
        "|---|---|---|---|---|---|",
    ]
    for t in counts:
        o, g = np.median(rows["ours", t]), np.median(rows["gensim", t])
        lines.append(
            f"| {t} | {o / 1e3:.0f}k | {scaling('ours', t)} | {g / 1e3:.0f}k | {scaling('gensim', t)} | "
            f"{o / g:.2f}x |"
        )
    hot = [t for t in counts if ("ours-hot", t) in rows]
    if hot:
        lines += [
            "",
            f"ours-hot: sgns.PRIVATE_HOT_ROWS = {args.hot_rows_ab} (ours: 0); its scaling is over ours at "
            f"{counts[0]} thread(s)",
            "",
            "| threads | ours-hot words/s | scaling | ours-hot / ours, round by round (ahead in) |",
            "|---|---|---|---|",
        ]
        for t in hot:
            paired = np.array(rows["ours-hot", t]) / np.array(rows["ours", t])
            lines.append(
                f"| {t} | {np.median(rows['ours-hot', t]) / 1e3:.0f}k | {scaling('ours-hot', t)} | "
                f"{np.median(paired):.3f} ({paired.min():.3f}-{paired.max():.3f}; {int((paired > 1).sum())} of "
                f"{paired.size}) |"
            )
    return "\n".join(lines)


def summarize(results, corpora, T) -> str:
    def pick(dataset, method, threads, reshuffle, seed=1):
        for r in results:
            if (r["dataset"], r["method"], r["threads"], r["reshuffle"], r["seed"]) == (
                dataset,
                method,
                threads,
                reshuffle,
                seed,
            ):
                return r
        return None

    lines = [
        f"| corpus | ours x{T} words/s | gensim x{T} words/s | ratio | ours x1 words/s | scaling 1->{T} "
        "| ours peak RSS / added | CSR + 2 matrices | added / (CSR + matrices) | gensim peak RSS / added |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (indptr, indices, vocab) in corpora.items():
        o2, o1, g = pick(name, "ours", T, True), pick(name, "ours", 1, True), pick(name, "gensim", T, False)
        h2 = pick(name, "ours-hot", T, True)
        base_mb = (indptr.nbytes + indices.nbytes + 2 * vocab * SETTINGS["dim"] * 4) / 2**20
        lines.append(
            f"| {name} | {o2['words_per_s'] / 1e3:.0f}k | {g['words_per_s'] / 1e3:.0f}k | {o2['words_per_s'] / g['words_per_s']:.2f}x "
            f"| {o1['words_per_s'] / 1e3:.0f}k | {o2['words_per_s'] / o1['words_per_s']:.2f}x "
            f"| {o2['peak_rss_mb']:.0f} / +{o2['added_rss_mb']:.0f} MB | {base_mb:.0f} MB | {o2['added_rss_mb'] / base_mb:.2f} "
            f"| {g['peak_rss_mb']:.0f} / +{g['added_rss_mb']:.0f} MB |"
        )
        if h2 is not None:
            lines.append(
                f"| {name}, ours-hot | {h2['words_per_s'] / 1e3:.0f}k | | {h2['words_per_s'] / g['words_per_s']:.2f}x "
                f"| | {h2['words_per_s'] / o1['words_per_s']:.2f}x | {h2['peak_rss_mb']:.0f} / +{h2['added_rss_mb']:.0f} MB "
                "| | | |"
            )
    q = [r for r in results if "knn_accuracy" in r]
    if q:
        lines += [
            "",
            "| granja2019 embedding | seed | words/s | 10-NN accuracy D6T1->D5T1 | Leiden ARI (clusters) |",
            "|---|---|---|---|---|",
        ]
        groups: dict[str, list] = {}
        for r in q:
            if r["method"].startswith("ours"):
                name = r["method"]
            else:
                name = "gensim sg, reshuffled per epoch" if r["reshuffle"] else "gensim sg, one call"
            name = f"{name} x{r['threads']}"
            groups.setdefault(name, []).append(r)
            lines.append(
                f"| {name} | {r['seed']} | {r['words_per_s'] / 1e3:.0f}k | {r['knn_accuracy']:.3f} "
                f"| {r['leiden_ari']:.3f} ({r['leiden_clusters']}) |"
            )
        for name, rs in groups.items():
            if len(rs) > 1:
                lines.append(
                    f"| **{name}, mean** | {len(rs)} seeds | {np.mean([r['words_per_s'] for r in rs]) / 1e3:.0f}k "
                    f"| {np.mean([r['knn_accuracy'] for r in rs]):.3f} | {np.mean([r['leiden_ari'] for r in rs]):.3f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
