"""asv suites: paired time_/peakmem_ benchmarks of each pipeline step on the bundled real demo data.

Run from ``bench/`` with fastembed installed in the current environment:

    pip install asv && asv run --python=same --quick --show-stderr

``setup`` runs every kernel once first, so numba compilation is not measured.
"""

from __future__ import annotations

import warnings

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.scembed import annotate_celltypes

warnings.simplefilter("ignore")


class Tokenize:
    def setup(self):
        self.adata = load_demo()
        self.universe = fe.Universe.from_bed(demo_peaks_path())
        fe.tokenize_cells(self.adata[:100], self.universe)

    def time_tokenize(self):
        fe.tokenize_cells(self.adata, self.universe)

    def peakmem_tokenize(self):
        fe.tokenize_cells(self.adata, self.universe)


class TrainOneEpoch:
    timeout = 300

    def setup(self):
        self.tokens = fe.tokenize_cells(load_demo(), demo_peaks_path())
        fe.ScEmbed(embedding_dim=16, seed=0).train(self.tokens, epochs=1, progress=False)

    def time_train_epoch(self):
        fe.ScEmbed(seed=0).train(self.tokens, epochs=1, progress=False)

    def peakmem_train_epoch(self):
        fe.ScEmbed(seed=0).train(self.tokens, epochs=1, progress=False)


class Encode:
    def setup(self):
        self.adata = load_demo()
        self.tokens = fe.tokenize_cells(self.adata, demo_peaks_path())
        self.model = fe.ScEmbed(seed=0).train(self.tokens, epochs=1, progress=False)
        self.model.encode(self.tokens)

    def time_encode_tokens(self):
        self.model.encode(self.tokens)

    def time_encode_anndata(self):
        self.model.encode(self.adata)

    def peakmem_encode_anndata(self):
        self.model.encode(self.adata)


class Annotate:
    def setup(self):
        adata = load_demo()
        tokens = fe.tokenize_cells(adata, demo_peaks_path())
        model = fe.ScEmbed(seed=0).train(tokens, epochs=5, progress=False)
        adata.obsm["scembed_X"] = model.encode(tokens)
        donor = adata.obs["donor"].astype(str).to_numpy()
        self.ref, self.query = adata[donor == "D6T1"].copy(), adata[donor == "D5T1"].copy()
        annotate_celltypes(self.query[:50], self.ref)

    def time_annotate(self):
        annotate_celltypes(self.query, self.ref)

    def peakmem_annotate(self):
        annotate_celltypes(self.query, self.ref)
