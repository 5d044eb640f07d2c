"""annotate_celltypes against a brute-force k-NN vote, on real embeddings of the bundled demo data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from naive import vote_reference
from sklearn.utils.extmath import randomized_svd

import fastembed.annotate as ann
import fastembed.settings as tunables
from fastembed.annotate import annotate_celltypes, annotate_celltypes_table
from fastembed.datasets import load_demo


@pytest.fixture(scope="module")
def split():
    """LSI embeddings (TF-IDF + SVD) of the demo cells, split by donor as reference and query."""
    demo = load_demo()
    X = (demo.X > 0).astype(np.float32)
    idf = np.log1p(X.shape[0] / (1 + np.asarray(X.sum(axis=0)).ravel()))
    tf = X.multiply(1 / np.asarray(X.sum(axis=1))).tocsr().multiply(idf).tocsr()
    u, s, _ = randomized_svd(tf, 21, random_state=0)
    demo.obsm["scembed_X"] = (u * s)[:, 1:].astype(np.float32)
    donor = demo.obs["donor"].astype(str)
    return demo[donor == "D6T1"].copy(), demo[donor == "D5T1"].copy()


@pytest.mark.parametrize("center", [True, False])
def test_matches_bruteforce_vote(split, center):
    ref, query = split[0], split[1].copy()
    got = annotate_celltypes(query, ref, k=10, confidence_key="cell_type_confidence", center=center)
    want, conf = vote_reference(
        ref.obsm["scembed_X"],
        ref.obs["cell_type"].astype(str).to_numpy(),
        query.obsm["scembed_X"],
        10,
        center=center,
    )
    assert (got.astype(str).to_numpy() == want).mean() > 0.995  # float32 vs float64 near-ties may differ
    np.testing.assert_allclose(query.obs["cell_type_confidence"], conf, atol=1e-4)
    assert isinstance(got.dtype, pd.CategoricalDtype)
    assert list(got.index) == list(query.obs_names) and got.name == "cell_type"
    # Real data, real donor shift: far above the majority-class rate.
    truth = query.obs["cell_type"].astype(str).to_numpy()
    majority = ref.obs["cell_type"].value_counts(normalize=True).iloc[0]
    assert (got.astype(str).to_numpy() == truth).mean() > majority + 0.2


def test_centering_ignores_a_shared_offset(split):
    """A component common to every cell (as mean pooling of region vectors produces) must not decide the
    neighbours: with centring the labels do not move when one vector is added to all embeddings; plain cosine
    does move."""
    ref, query = split[0].copy(), split[1].copy()
    base = annotate_celltypes(query, ref, center=True).astype(str).to_numpy()
    plain_base = annotate_celltypes(query, ref, center=False).astype(str).to_numpy()
    offset = 3 * np.abs(ref.obsm["scembed_X"]).max() * np.ones(ref.obsm["scembed_X"].shape[1], np.float32)
    ref.obsm["scembed_X"] = ref.obsm["scembed_X"] + offset
    query.obsm["scembed_X"] = query.obsm["scembed_X"] + offset
    shifted = annotate_celltypes(query, ref, center=True).astype(str).to_numpy()
    assert (shifted == base).mean() > 0.995  # float32 rounding of the offset may flip near-ties
    plain = annotate_celltypes(query, ref, center=False).astype(str).to_numpy()
    assert (plain != plain_base).mean() > 0.05


def test_confidence_only_when_asked(split):
    ref, query = split
    q = query.copy()
    annotate_celltypes(q, ref)
    assert "cell_type_confidence" not in q.obs


def test_pynndescent_path_recall(split, monkeypatch):
    ref, query = split
    r, _ = ann.unit_rows(ref.obsm["scembed_X"])
    q, _ = ann.unit_rows(query.obsm["scembed_X"])
    exact, _ = ann.knn_cosine(r, q, 10)
    monkeypatch.setattr(tunables, "EXACT_SEARCH_PAIRS", 0)
    approx, sim = ann.knn_cosine(r, q, 10, random_state=0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert recall >= 0.98
    assert np.all(np.diff(sim, axis=1) <= 1e-6)  # nearest first
    labels_exact = annotate_celltypes(query, ref)
    monkeypatch.setattr(tunables, "EXACT_SEARCH_PAIRS", 200_000_000)
    assert (annotate_celltypes(query, ref).to_numpy() == labels_exact.to_numpy()).mean() > 0.98


def test_query_order_does_not_matter(split):
    ref, query = split
    base = annotate_celltypes(query, ref)
    perm = np.random.default_rng(0).permutation(query.n_obs)
    shuffled = annotate_celltypes(query[perm].copy(), ref)
    assert list(shuffled.index) == list(query.obs_names[perm])
    pd.testing.assert_series_equal(shuffled.loc[base.index], base)


def test_min_confidence_gives_unknown(split):
    ref, query = split
    q = query.copy()
    labels = annotate_celltypes(q, ref, confidence_key="conf", min_confidence=0.9)
    low = q.obs["conf"].to_numpy() < 0.9
    assert low.any() and (~low).any()
    assert (labels[low] == "unknown").all() and (labels[~low] != "unknown").all()
    assert "unknown" in labels.cat.categories


def test_unknown_label_that_is_a_reference_label_is_refused(split):
    ref, query = split
    taken = str(ref.obs["cell_type"].iloc[0])
    q = query.copy()
    with pytest.raises(ValueError, match=rf"unknown_label '{taken}' is also a label in reference AnnData"):
        annotate_celltypes(q, ref, confidence_key="conf", min_confidence=0.9, unknown_label=taken)
    assert "conf" not in q.obs  # nothing written
    # Without cells to leave unassigned, the label is never used, so it may be anything.
    labels = annotate_celltypes(query, ref, unknown_label=taken)
    assert labels.notna().all()


def test_zero_embeddings_and_missing_labels(split):
    ref, query = split
    ref, q = ref.copy(), query[:30].copy()
    q.obsm["scembed_X"][4] = 0
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(object)
    ref.obs.iloc[:5, ref.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.warns(UserWarning) as record:
        labels = annotate_celltypes(q, ref, confidence_key="conf")
    messages = " ".join(str(w.message) for w in record)
    assert (
        "5 cells of reference AnnData have no label in obs['cell_type'] or an all-zero obsm['scembed_X']"
        in messages
        and "1 cells of query AnnData have an all-zero obsm['scembed_X']" in messages
    )
    assert labels.iloc[4] == "unknown" and q.obs["conf"].iloc[4] == 0


def test_a_query_of_only_zero_embeddings_is_an_error(split, tmp_path):
    # Every cell labelled unknown would look like a result; a zarr store whose obsm chunks are gone reads as zeros.
    ref, query = split
    q = query[:20].copy()
    q.obsm["scembed_X"][:] = 0
    with pytest.raises(ValueError, match=r"query AnnData obsm\['scembed_X'\] is all zeros in all 20 cells"):
        annotate_celltypes(q, ref, confidence_key="conf")
    assert "conf" not in q.obs
    q.write_zarr(tmp_path / "q.zarr")
    with pytest.raises(ValueError, match=r"query '.*q\.zarr' obsm\['scembed_X'\] is all zeros"):
        annotate_celltypes(str(tmp_path / "q.zarr"), ref)


@pytest.mark.parametrize(
    ("mutate", "exc", "pattern"),
    [
        (lambda q, r: q.obsm.pop("scembed_X"), KeyError, r"query AnnData has no obsm\['scembed_X'\]"),
        (lambda q, r: r.obsm.pop("scembed_X"), KeyError, r"reference AnnData has no obsm"),
        (lambda q, r: r.obs.pop("cell_type"), KeyError, r"reference AnnData has no obs\['cell_type'\]"),
        (
            lambda q, r: q.obsm.__setitem__("scembed_X", q.obsm["scembed_X"][:, :5]),
            ValueError,
            r"dimensions differ: query AnnData obsm\['scembed_X'\] has 5 dims, reference AnnData "
            r"obsm\['scembed_X'\] has 20; expected equal dimensions",
        ),
        (lambda q, r: q.obsm["scembed_X"].__setitem__((2, 3), np.nan), ValueError, "NaN or infinite"),
    ],
)
def test_errors(split, mutate, exc, pattern):
    ref, query = split[0].copy(), split[1][:20].copy()
    mutate(query, ref)
    with pytest.raises(exc, match=pattern):
        annotate_celltypes(query, ref)


def test_k_errors(split):
    ref, query = split[0][:8].copy(), split[1][:5].copy()
    with pytest.raises(ValueError, match="k=9 is larger than the 8 usable cells of reference AnnData"):
        annotate_celltypes(query, ref, k=9)
    with pytest.raises(ValueError, match="k must be an integer"):
        annotate_celltypes(query, ref, k=0)
    assert len(annotate_celltypes(query, ref, k=8)) == 5  # k == reference size works
    with pytest.raises(ValueError, match="query AnnData has no cells"):
        annotate_celltypes(query[:0], ref)


# ------------------------------------------------------------------------------------------------
# Blocks and on-disk queries
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact", [True, False])
def test_labels_do_not_depend_on_block_size(split, monkeypatch, exact):
    ref, query = split
    if not exact:  # the pynndescent path, decided once for the whole query
        monkeypatch.setattr(tunables, "EXACT_SEARCH_PAIRS", 0)
    q = query.copy()
    whole = annotate_celltypes(q, ref, confidence_key="conf", batch_cells=1 << 20)
    conf = q.obs["conf"].to_numpy()
    assert query.n_obs % 1024  # the last block is a remainder
    small = annotate_celltypes(q, ref, confidence_key="conf", batch_cells=1024)
    pd.testing.assert_series_equal(small, whole)
    np.testing.assert_array_equal(q.obs["conf"].to_numpy(), conf)


def test_batch_cells_must_be_a_multiple_of_the_query_batch(split):
    with pytest.raises(ValueError, match="batch_cells must be a positive multiple of 1024"):
        annotate_celltypes(split[1], split[0], batch_cells=1000)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_query_from_disk_matches_memory(split, tmp_path, fmt, monkeypatch):
    import warnings

    ref, query = split
    q = query.copy()
    want = annotate_celltypes(q, ref, confidence_key="conf", min_confidence=0.5)
    path = tmp_path / f"query.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        query.write_h5ad(path) if fmt == "h5ad" else query.write_zarr(path)
    reads = []
    real = ann.read_query_block
    monkeypatch.setattr(ann, "read_query_block", lambda *a: reads.append(a[2:]) or real(*a))
    got = annotate_celltypes_table(path, ref, confidence_key="conf", min_confidence=0.5, batch_cells=1024)
    assert isinstance(got, pd.DataFrame) and list(got.columns) == ["cell_type", "conf"]
    pd.testing.assert_series_equal(got["cell_type"], want)
    np.testing.assert_array_equal(got["conf"].to_numpy(), q.obs["conf"].to_numpy())
    assert reads[0] == (0, 1024) and len(reads) == -(-query.n_obs // 1024)  # block by block
    assert isinstance(annotate_celltypes(path, ref), pd.Series)


def test_table_of_an_anndata_query_matches_the_series_and_writes_nothing(split):
    ref, query = split
    q = query.copy()
    want = annotate_celltypes(q, ref, confidence_key="conf", novelty_key="nov", min_confidence=0.5)
    before = list(query.obs.columns)
    table = annotate_celltypes_table(query, ref, confidence_key="conf", novelty_key="nov", min_confidence=0.5)
    assert list(query.obs.columns) == before  # nothing written to the query
    assert list(table.columns) == ["cell_type", "conf", "nov"]
    pd.testing.assert_series_equal(table["cell_type"], want)
    for key in ("conf", "nov"):
        assert table[key].dtype == np.float32
        np.testing.assert_array_equal(table[key].to_numpy(), q.obs[key].to_numpy())


def test_table_needs_a_confidence_column_name(split):
    ref, query = split
    with pytest.raises(
        ValueError, match=r"^confidence_key must be a non-empty str \(a column name\), got None$"
    ):
        annotate_celltypes_table(query, ref, confidence_key=None)


def test_dataframe_from_annotate_celltypes_is_deprecated_but_still_works(split, tmp_path):
    """The old form: a path query with confidence_key= returned a DataFrame; it still does, with a
    DeprecationWarning that names the function to call instead."""
    import warnings

    ref, query = split
    path = tmp_path / "query.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        query.write_h5ad(path)
    want = annotate_celltypes_table(path, ref, confidence_key="conf")
    with pytest.warns(DeprecationWarning, match=r"call annotate_celltypes_table\(\)") as caught:
        old = annotate_celltypes(path, ref, confidence_key="conf")
    pd.testing.assert_frame_equal(old, want)
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, DeprecationWarning))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the Series forms do not warn
        assert isinstance(annotate_celltypes(path, ref), pd.Series)
        assert isinstance(annotate_celltypes(query.copy(), ref, confidence_key="conf"), pd.Series)


def test_query_path_errors(split, tmp_path):
    ref, query = split
    path = tmp_path / "q.zarr"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        query.write_zarr(path)
    with pytest.raises(KeyError, match=r"q.zarr' has no obsm\['X_other'\] \(obsm keys: 'scembed_X'\)"):
        annotate_celltypes(path, ref, embedding_key="X_other")
    with pytest.raises(FileNotFoundError, match="query '.*nope.h5ad' does not exist"):
        annotate_celltypes(tmp_path / "nope.h5ad", ref)
    bad = query.copy()
    bad.obsm["scembed_X"][1500, 2] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad.write_zarr(tmp_path / "bad.zarr")
    with pytest.raises(
        ValueError, match=r"query '.*bad.zarr' obsm\['scembed_X'\] has NaN or infinite .* row 1500"
    ):
        annotate_celltypes(tmp_path / "bad.zarr", ref, batch_cells=1024)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_reference_from_disk_matches_memory(split, tmp_path, fmt):
    """A reference path (as the README and the command line allow) gives the labels of the same reference in
    memory; its counts are not needed, only obs and the embedding."""
    import warnings

    ref, query = split
    want = annotate_celltypes(query.copy(), ref)
    path = tmp_path / f"ref.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.write_h5ad(path) if fmt == "h5ad" else ref.write_zarr(path)
    pd.testing.assert_series_equal(annotate_celltypes(query.copy(), path), want)
    pd.testing.assert_series_equal(annotate_celltypes(query.copy(), str(path)), want)
    other = query.copy()
    other.obsm["X_other"] = other.obsm["scembed_X"]  # the query has the key, the reference not
    with pytest.raises(
        KeyError, match=rf"reference '.*ref.{fmt}' has no obsm\['X_other'\] \(obsm keys: 'scembed_X'\)"
    ):
        annotate_celltypes(other, path, embedding_key="X_other")
    with pytest.raises(KeyError, match=rf"reference '.*ref.{fmt}' has no obs\['celltype'\]"):
        annotate_celltypes(query.copy(), path, label_key="celltype")
    with pytest.raises(FileNotFoundError, match="reference '.*nope.h5ad' does not exist"):
        annotate_celltypes(query.copy(), tmp_path / "nope.h5ad")


def test_sparse_reference_embedding_is_read_as_dense(split):
    import scipy.sparse as sp

    ref, query = split
    want = annotate_celltypes(query.copy(), ref)
    sparse = ref.copy()
    sparse.obsm["scembed_X"] = sp.csr_matrix(sparse.obsm["scembed_X"])
    pd.testing.assert_series_equal(annotate_celltypes(query.copy(), sparse), want)


# ------------------------------------------------------------------------------------------------
# Messages: the query and the reference are named alike, with the path when read from one
# ------------------------------------------------------------------------------------------------
def _without_embedding(a):
    del a.obsm["scembed_X"]
    return a


def _to_3d(a):
    a.obsm["scembed_X"] = a.obsm["scembed_X"][:, :, None].copy()
    return a


def _with_nan(a):
    a.obsm["scembed_X"][3, 2] = np.nan
    return a


@pytest.mark.parametrize("which", ["query", "reference"])
@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "path"])
@pytest.mark.parametrize(
    ("change", "exc", "message"),
    [
        (
            _without_embedding,
            KeyError,
            "{name} has no obsm['scembed_X'] (obsm keys: none); encode it first or pass embedding_key=",
        ),
        (lambda a: a[:0].copy(), ValueError, "{name} has no cells; expected "),
        (_with_nan, ValueError, "{name} obsm['scembed_X'] has NaN or infinite values in 1 cells"),
        (_to_3d, ValueError, "{name} obsm['scembed_X'] must be a numeric 2-d array (cells x dims)"),
    ],
    ids=["no-embedding", "no-cells", "nan", "3d"],
)
def test_query_and_reference_errors_are_worded_alike(split, tmp_path, which, on_disk, change, exc, message):
    """The same problem in either input gives the same message, naming which input it is and, for an input
    read from a path, the file."""
    import warnings

    inputs = {"query": split[1][:40].copy(), "reference": split[0][:200].copy()}
    bad = change(inputs[which])
    name = f"{which} AnnData"
    if on_disk:
        path = tmp_path / f"{which}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bad.write_zarr(path)
        bad, name = path, f"{which} '{path}'"
    inputs[which] = bad
    with pytest.raises(exc) as info:
        annotate_celltypes(inputs["query"], inputs["reference"], batch_cells=1024)
    msg = info.value.args[0]
    assert message.format(name=name) in msg, msg
    other = "reference" if which == "query" else "query"
    assert f"{other} " not in msg, msg  # only the input at fault is named


@pytest.mark.parametrize("which", ["query", "reference"])
def test_a_missing_file_or_a_non_anndata_is_named_alike(split, tmp_path, which):
    inputs = {"query": split[1][:40].copy(), "reference": split[0][:200].copy()}
    missing = dict(inputs, **{which: tmp_path / "nope.zarr"})
    with pytest.raises(FileNotFoundError, match=rf"^{which} '.*nope.zarr' does not exist$"):
        annotate_celltypes(missing["query"], missing["reference"])
    wrong = dict(inputs, **{which: np.zeros((3, 20), dtype=np.float32)})
    with pytest.raises(TypeError, match=rf"^{which} must be an AnnData or an .h5ad/.zarr path, got ndarray$"):
        annotate_celltypes(wrong["query"], wrong["reference"])


def test_dimension_mismatch_names_both_files(split, tmp_path):
    import warnings

    query, ref = split[1][:40].copy(), split[0][:200].copy()
    query.obsm["scembed_X"] = query.obsm["scembed_X"][:, :5].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        query.write_zarr(tmp_path / "q.zarr")
        ref.write_zarr(tmp_path / "r.zarr")
    with pytest.raises(ValueError) as info:
        annotate_celltypes(tmp_path / "q.zarr", tmp_path / "r.zarr")
    assert str(info.value) == (
        f"embedding dimensions differ: query '{tmp_path / 'q.zarr'}' obsm['scembed_X'] has 5 dims, "
        f"reference '{tmp_path / 'r.zarr'}' obsm['scembed_X'] has 20; expected equal dimensions (both from "
        "one model)"
    )


def test_reference_label_column_and_k_name_the_reference_file(split, tmp_path):
    import warnings

    query, ref = split[1][:40].copy(), split[0][:8].copy()
    path = tmp_path / "r.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.write_zarr(path)
    with pytest.raises(KeyError) as info:
        annotate_celltypes(query, path, label_key="celltype")
    assert info.value.args[0].startswith(f"reference '{path}' has no obs['celltype'] (obs columns: ")
    with pytest.raises(ValueError) as info:
        annotate_celltypes(query, path, k=9)
    assert str(info.value).startswith(
        f"k=9 is larger than the 8 usable cells of reference '{path}' (cells with a label in obs['cell_type'] "
        "and a non-zero obsm['scembed_X']); expected k <= 8"
    )
