"""The bundled demo data is a faithful slice of the real granja2019 data."""

from __future__ import annotations

import numpy as np
import pandas as pd

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo


def test_demo_is_a_slice_of_granja(granja_dir):
    demo = load_demo()
    full = fe.read_mtx(granja_dir / "matrix.mtx.gz", granja_dir / "barcodes.tsv", granja_dir / "peaks.bed")
    assert demo.shape == (5000, 10000)
    assert list(demo.var_names) == list(full.var_names)
    rows = full.obs_names.get_indexer(demo.obs_names)
    assert (rows >= 0).all()
    assert (full.X[rows] != demo.X).nnz == 0
    labels = pd.read_csv(granja_dir / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    assert (labels.loc[demo.obs_names].to_numpy() == demo.obs["cell_type"].astype(str).to_numpy()).all()
    d5 = demo.obs_names.str.startswith("BMM_R1_")
    assert (demo.obs["donor"][d5] == "D5T1").all() and (demo.obs["donor"][~d5] == "D6T1").all()
    assert d5.sum() == 2000


def test_demo_tokenizes_against_its_peaks():
    demo = load_demo()
    tok = fe.tokenize_cells(demo, demo_peaks_path())
    assert tok.stats["n_peaks_unmapped"] == 0
    assert tok.n_tokens == demo.X.nnz
    assert demo.obs["cell_type"].nunique() == 16
    assert np.all(np.diff(tok.indptr) > 0)
