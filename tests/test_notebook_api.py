"""The in-memory Python API as a notebook uses it: AnnData variants, warnings that point at the caller's line,
argument errors that name the argument."""

from __future__ import annotations

import sys
import warnings

import anndata as ad
import numpy as np
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed.datasets import demo_peaks_path


@pytest.fixture(scope="module")
def cells():
    return demo_cells(300, 5)


@pytest.fixture(scope="module")
def model(cells):
    tok = fe.tokenize_cells(cells, demo_peaks_path())
    return fe.ScEmbed(embedding_dim=8, seed=0, threads=1).train(tok, epochs=1, progress=False)


def _caught(fn):
    """(result, warnings) of ``fn``, a one-line lambda; each warning must name that line (the notebook cell's
    call), not a line inside fastembed or above the call."""
    line = sys._getframe(1).f_lineno
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    for w in caught:
        assert (w.filename, w.lineno) == (__file__, line), f"{w.filename}:{w.lineno}: {w.message}"
    return result, caught


# -- AnnData variants --------------------------------------------------------------------------------------
def test_backed_anndata_with_counts_only_in_a_layer(cells, model, tmp_path):
    a = ad.AnnData(obs=cells.obs, var=cells.var, layers={"counts": cells.X})
    a.write_h5ad(tmp_path / "layer.h5ad")
    backed = ad.read_h5ad(tmp_path / "layer.h5ad", backed="r")
    try:
        want = model.encode(cells, progress=False)
        np.testing.assert_array_equal(model.encode(backed, layer="counts", progress=False), want)
        tok = fe.tokenize_cells(backed, demo_peaks_path(), layer="counts")
        assert len(tok) == cells.n_obs
        for call in (
            lambda: model.encode(backed, progress=False),
            lambda: fe.tokenize_cells(backed, demo_peaks_path()),
        ):
            with pytest.raises(ValueError, match=r"no X matrix.*layer=.*'counts'"):
                call()
    finally:
        backed.file.close()


# -- warnings point at the caller's line ------------------------------------------------------------------
def _with_unknown_chromosome(cells):
    var = cells.var.copy()
    var["chr"] = var["chr"].astype(str)
    var.iloc[:50, var.columns.get_loc("chr")] = "chrUn_gl000220"
    return ad.AnnData(cells.X, obs=cells.obs, var=var)


def test_unknown_chromosome_warning_points_at_the_call(cells, model):
    a = _with_unknown_chromosome(cells)
    _, caught = _caught(lambda: fe.tokenize_cells(a, demo_peaks_path()))
    assert any("chromosomes absent" in str(w.message) for w in caught)
    _, caught = _caught(lambda: model.encode(a, progress=False))
    assert any("chromosomes absent" in str(w.message) for w in caught)


def test_unstorable_obs_column_warning_points_at_the_call(cells, model, tmp_path, monkeypatch):
    import anndata.io

    a = cells[:20].copy()
    real = anndata.io.write_elem

    def failing(group, key, value, *args, **kwargs):
        if key == "donor":
            raise TypeError("cannot store this column")
        return real(group, key, value, *args, **kwargs)

    monkeypatch.setattr(anndata.io, "write_elem", failing)
    _, caught = _caught(lambda: model.encode(a, out=tmp_path / "e.zarr", progress=False))
    (msg,) = [str(w.message) for w in caught if "cannot be stored" in str(w.message)]
    assert "'e.zarr'" in msg and ".tmp" not in msg  # the output's name, not its temporary's


def test_other_warnings_point_at_the_call(cells, model, tmp_path):
    # Every warning goes through fastembed._warn, whatever the depth of the helper that raises it.
    a = cells[:30].copy()
    a.obs_names = ["same"] * a.n_obs
    _, caught = _caught(lambda: fe.tokenize_cells(a, demo_peaks_path()))
    assert any("repeat" in str(w.message) or "duplicate" in str(w.message) for w in caught)
    _, caught = _caught(lambda: model.save(tmp_path / "g", format="geniml"))
    assert any("geniml format holds no cell projection" in str(w.message) for w in caught)
    ref = cells[:60].copy()
    ref.obsm["X_e"] = model.encode(ref, progress=False)
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(object)
    ref.obs.iloc[0, ref.obs.columns.get_loc("cell_type")] = None
    query = cells[60:90].copy()
    query.obsm["X_e"] = model.encode(query, progress=False)
    _, caught = _caught(lambda: fe.annotate_celltypes(query, ref, embedding_key="X_e", k=5))
    assert any("left out" in str(w.message) for w in caught)


# -- outputs ------------------------------------------------------------------------------------------------
def test_token_output_must_end_in_parquet(cells, tmp_path):
    # A parquet file named .csv or .h5ad is read as something else by everything downstream (encode takes it for
    # an AnnData): refused before any work, as encode refuses an out= that is not .zarr.
    tok = fe.tokenize_cells(cells[:20], demo_peaks_path())
    for name in ("tokens.csv", "tokens.h5ad", "tokens"):
        with pytest.raises(ValueError, match=r"\.parquet"):
            fe.tokenize_cells(cells[:20], demo_peaks_path(), output=tmp_path / name)
        with pytest.raises(ValueError, match=r"\.parquet"):
            tok.to_parquet(tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_half_precision_dense_matrix(cells, model, tmp_path):
    # float16 is a common way to shrink a dense matrix in a notebook; scipy.sparse has no float16.
    want = model.encode(cells, progress=False)
    half = ad.AnnData(cells.X.toarray().astype(np.float16), obs=cells.obs, var=cells.var)
    np.testing.assert_array_equal(model.encode(half, progress=False), want)
    half.write_h5ad(tmp_path / "half.h5ad")
    np.testing.assert_array_equal(model.encode(tmp_path / "half.h5ad", progress=False), want)


# -- argument errors name the argument ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"k": None}, "k"),
        ({"k": float("nan")}, "k"),
        ({"batch_cells": None}, "batch_cells"),
        ({"min_confidence": "0.5"}, "min_confidence"),
        ({"min_confidence": float("nan")}, "min_confidence"),
        ({"unknown_label": None, "min_confidence": 1.0}, "unknown_label"),
        ({"confidence_key": 3}, "confidence_key"),
    ],
)
def test_annotate_argument_errors_name_the_argument(cells, model, kwargs, field):
    a = cells[:40].copy()
    a.obsm["scembed_X"] = model.encode(a, progress=False)
    with pytest.raises(ValueError, match=rf"^{field} must"):
        fe.annotate_celltypes(a, a, **kwargs)
    assert list(a.obs.columns) == list(cells.obs.columns)  # nothing written to the query


def test_path_arguments_of_the_wrong_type_name_the_argument(cells, model):
    # A forgotten argument (None) or a BED read into pandas: the message names what was expected.
    for bad in (None, cells.var[["chr", "start", "end"]]):
        with pytest.raises(TypeError, match=r"universe.*BED file path.*got (NoneType|DataFrame)"):
            fe.tokenize_cells(cells, bad)
    with pytest.raises(TypeError, match=r"model folder.*got NoneType"):
        fe.ScEmbed.from_pretrained(None)
    with pytest.raises(TypeError, match=r"model folder.*got NoneType"):
        model.save(None)


def test_contract_modules_are_attributes_after_import_fastembed():
    # The README writes fastembed.io.read_tokens_parquet(path); after `import fastembed as fe` alone (a fresh
    # process: here other tests have imported the submodules already) that must not be an AttributeError.
    import subprocess
    import sys

    code = "import fastembed as fe; fe.io.read_tokens_parquet; fe.region2vec.Region2VecDataset; fe.scembed.ScEmbed"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
