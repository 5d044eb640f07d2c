"""Embedding quality on granja2019: fastembed vs LSI, gensim Region2Vec (skip-gram and geniml's CBOW) and SnapATAC2.

Usage (from the repository root, in the bench venv of bench/README.md):

    python bench/quality.py [--methods lsi,snapatac2,gensim_sg,gensim_cbow,fastembed] [--epochs 100]
                            [--gensim-epochs 100] [--seeds 0,1,2] [--threads 2]

For each method, in one run: (a) Leiden ARI/AMI (mean of 3 Leiden seeds) with the resolution bisected so the
number of clusters equals the number of labels (16), on a 15-NN graph of the embedding; (b) accuracy and
macro-F1 of 10-NN label transfer from donor D6T1 (reference) to D5T1 (query) with fastembed.annotate_celltypes —
every method's embedding goes through the same k-NN, once with its default cosine around the reference mean and
once with plain cosine; (c) wall time of the embedding step. Methods with seeds report mean ± sd over seeds.

- lsi: binarise, TF-IDF (log1p of tf * idf * 1e4), truncated SVD with 50 components, first component dropped.
- snapatac2: ``snap.pp.select_features`` then ``snap.tl.spectral`` with default parameters (``X_spectral``).
- gensim_sg: gensim Word2Vec sg=1 with fastembed's settings (dim 100, window 5, negative 5, sample=0,
  min_count=1, alpha 0.025, ``--gensim-epochs``), cells as token lists shuffled every epoch, mean-pooled.
- gensim_cbow: what geniml trains: gensim defaults (CBOW, sample 1e-3), dim 100, window 5, min_count 10,
  10 epochs, cells shuffled every epoch, mean-pooled.
- fastembed: ScEmbed defaults (dim 100, window 5, negative 5), ``--epochs``, ``model.encode`` (mean pooling).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
from _data import QUERY_DONOR, REFERENCE_DONOR, load_granja, machine
from _metrics import donor_transfer, leiden_at_n_clusters

warnings.simplefilter("ignore")
logging.getLogger("gensim").setLevel(logging.ERROR)


def cell_tokens(adata):
    X = adata.X.tocsr()
    X.sort_indices()
    return X.indptr.astype(np.int64), X.indices.astype(np.int32)


def mean_pool(indptr, indices, vectors, known):
    from fastembed.pooling import weighted_mean_pool

    out, _ = weighted_mean_pool(indptr, indices, vectors, known.astype(np.float32))
    return out


def run_lsi(adata, seed, args):
    from sklearn.utils.extmath import randomized_svd

    X = adata.X.tocsr().astype(np.float64)
    tf = X.multiply(1.0 / np.asarray(X.sum(axis=1))).tocsr()
    idf = X.shape[0] / np.maximum(np.asarray(X.sum(axis=0)).ravel(), 1)
    tfidf = tf.multiply(idf).tocsr()
    tfidf.data = np.log1p(tfidf.data * 1e4)
    u, s, _ = randomized_svd(tfidf, 51, random_state=seed)
    return (u * s)[:, 1:]


def run_snapatac2(adata, seed, args):
    import snapatac2 as snap

    a = adata.copy()
    snap.pp.select_features(a, verbose=False)
    snap.tl.spectral(a, random_state=seed)
    return np.asarray(a.obsm["X_spectral"])


def _gensim(adata, seed, args, **params):
    from gensim.models import Word2Vec

    indptr, indices = cell_tokens(adata)
    cells = [[str(t) for t in indices[indptr[i] : indptr[i + 1]]] for i in range(adata.n_obs)]
    rng = np.random.default_rng(seed)

    class Shuffled:  # every pass over the corpus sees each cell in a new random order, as geniml does
        def __iter__(self):
            for c in cells:
                yield [c[j] for j in rng.permutation(len(c))]

    model = Word2Vec(Shuffled(), workers=args.threads, seed=seed, **params)
    vocab = adata.n_vars
    vectors = np.zeros((vocab, model.vector_size), dtype=np.float32)
    known = np.zeros(vocab, dtype=bool)
    for key, i in model.wv.key_to_index.items():
        vectors[int(key)] = model.wv.vectors[i]
        known[int(key)] = True
    return mean_pool(indptr, indices, vectors, known)


def run_gensim_sg(adata, seed, args):
    return _gensim(
        adata,
        seed,
        args,
        sg=1,
        vector_size=100,
        window=5,
        negative=5,
        sample=0,
        min_count=1,
        alpha=0.025,
        min_alpha=1e-4,
        epochs=args.gensim_epochs,
    )


def run_gensim_cbow(adata, seed, args):
    return _gensim(adata, seed, args, vector_size=100, window=5, min_count=10, epochs=10)


def run_fastembed(adata, seed, args):
    import fastembed as fe

    uni = fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    tokens = fe.tokenize_cells(adata, uni)
    model = fe.ScEmbed(seed=seed, threads=args.threads).train(tokens, epochs=args.epochs, progress=False)
    return model.encode(tokens)


METHODS = {
    "lsi": (run_lsi, False),
    "snapatac2": (run_snapatac2, False),
    "gensim_sg": (run_gensim_sg, True),
    "gensim_cbow": (run_gensim_cbow, True),
    "fastembed": (run_fastembed, True),
}


def fmt(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f}" if values.size == 1 else f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="lsi,snapatac2,gensim_sg,gensim_cbow,fastembed")
    ap.add_argument("--epochs", type=int, default=100, help="fastembed epochs")
    ap.add_argument("--gensim-epochs", type=int, default=100, help="gensim skip-gram epochs")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds for the trained methods")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    adata = load_granja()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    donor = adata.obs["donor"].astype(str).to_numpy()
    print(
        f"# quality on granja2019 ({adata.n_obs} cells x {adata.n_vars} peaks, {len(np.unique(labels))} labels) "
        f"— {machine()}"
    )
    print(
        f"fastembed epochs {args.epochs}, gensim sg epochs {args.gensim_epochs}, seeds {seeds}, "
        f"threads {args.threads}"
    )
    print(
        "| method | Leiden ARI | Leiden AMI | transfer accuracy | transfer macro-F1 | accuracy, plain cosine "
        "| macro-F1, plain cosine | embedding time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        run, seeded = METHODS[name]
        rows = []
        for seed in seeds if seeded else seeds[:1]:
            t = time.perf_counter()
            try:
                emb = run(adata, seed, args)
            except ImportError as err:
                print(f"| {name} | skipped: {err} | | | | | | |")
                break
            seconds = time.perf_counter() - t
            cl = leiden_at_n_clusters(emb, labels, seed=seed)
            tr = donor_transfer(emb, labels, donor, reference=REFERENCE_DONOR, query=QUERY_DONOR)
            plain = donor_transfer(
                emb, labels, donor, reference=REFERENCE_DONOR, query=QUERY_DONOR, center=False
            )
            rows.append(
                (
                    cl["ari"],
                    cl["ami"],
                    tr["accuracy"],
                    tr["macro_f1"],
                    plain["accuracy"],
                    plain["macro_f1"],
                    seconds,
                )
            )
        if rows:
            cols = list(zip(*rows, strict=True))
            print(
                f"| {name} | {fmt(cols[0])} | {fmt(cols[1])} | {fmt(cols[2])} | {fmt(cols[3])} | "
                f"{fmt(cols[4])} | {fmt(cols[5])} | {np.mean(cols[6]):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
