"""ScEmbed: the seed workflow's training call, encode from every input kind, zarr streaming, errors."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.scembed import ScEmbed


@pytest.fixture(scope="module")
def demo_small():
    return demo_cells(1000, 0)


@pytest.fixture(scope="module")
def tokens(demo_small, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokens.parquet"
    return fe.tokenize_cells(demo_small, demo_peaks_path(), output=path)


@pytest.fixture(scope="module")
def model(tokens):
    # The seed's training call (scaled down in epochs and dim to keep the suite fast).
    dataset = fe.Region2VecDataset(tokens)
    m = ScEmbed(embedding_dim=24, window_size=5, negative_samples=5, seed=3, threads=1)
    return m.train(dataset, epochs=5, batch_size=256, learning_rate=0.025, progress=False)


def test_training_records_and_vectors(model, tokens):
    ds = fe.Region2VecDataset(tokens)
    assert model.vocab_size == ds.vocab_size == 10007
    rv = model.region_vectors
    assert rv.shape == (10007, 24) and rv.dtype == np.float32
    assert not rv.flags.writeable
    with pytest.raises(ValueError):
        rv[0, 0] = 1.0
    trained = model.trained_tokens
    assert not trained[10000:].any()  # special tokens are never trained
    seen = np.zeros(model.vocab_size, bool)
    seen[ds.indices] = True
    np.testing.assert_array_equal(trained, seen)
    assert model.training_info["epochs"] == 5 and model.training_info["n_cells"] == 1000


def test_seed_with_one_thread_is_bit_identical(tokens, model):
    again = ScEmbed(embedding_dim=24, window_size=5, seed=3, threads=1).train(
        tokens, epochs=5, progress=False
    )
    np.testing.assert_array_equal(again.region_vectors, model.region_vectors)


def test_encode_inputs_agree(model, demo_small, tokens):
    from_adata = model.encode(demo_small)
    from_parquet = model.encode(tokens)
    from_dataset = model.encode(fe.Region2VecDataset(tokens))
    np.testing.assert_array_equal(from_adata, from_parquet)
    np.testing.assert_array_equal(from_adata, from_dataset)
    assert from_adata.shape == (1000, 24) and from_adata.dtype == np.float32
    # pooling="mean" is the plain mean of the cell's token vectors.
    ds = fe.Region2VecDataset(tokens)
    mean = model.encode(tokens, pooling="mean")
    np.testing.assert_allclose(mean[7], model.region_vectors[ds[7]].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_encode_zarr_equals_memory_and_is_chunked(model, demo_small, tmp_path):
    mem = model.encode(demo_small)
    arr = model.encode(demo_small, out=tmp_path / "e.zarr", batch_cells=300)
    np.testing.assert_array_equal(arr[:], mem)
    assert arr.chunks == (300, 24)
    # The store is an AnnData: anndata opens it, barcodes as obs names, vectors in obsm, config in uns.
    stored = ad.read_zarr(tmp_path / "e.zarr")
    assert list(stored.obs_names) == list(demo_small.obs_names)
    np.testing.assert_array_equal(stored.obsm["scembed_X"], mem)
    assert stored.uns["fastembed"]["config"]["embedding_dim"] == 24
    assert [p.name for p in tmp_path.iterdir()] == ["e.zarr"]  # no temporary store left
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.encode(demo_small, out=tmp_path / "e.zarr")
    model.encode(demo_small[:10], out=tmp_path / "e.zarr", overwrite=True, embedding_key="emb")
    assert ad.read_zarr(tmp_path / "e.zarr").obsm["emb"].shape == (10, 24)


def test_failed_encode_leaves_no_store(model, demo_small, tmp_path, monkeypatch):
    import fastembed.model.encoder as mod

    calls = {"n": 0}
    real = mod.weighted_mean_pool

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated failure in the second chunk")
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "weighted_mean_pool", failing)
    with pytest.raises(MemoryError):
        model.encode(demo_small, out=tmp_path / "e.zarr", batch_cells=300)
    assert list(tmp_path.iterdir()) == []


def test_encode_refuses_cells_that_miss_the_whole_universe(model, demo_small, tmp_path):
    """Peaks of another genome build (here: shifted past every region) would give every cell a zero
    embedding; that is an error naming the input, as in tokenize_cells, and no store is written."""
    a = demo_small[:20].copy()
    a.var["start"] = a.var["start"] + 10**9
    a.var["end"] = a.var["end"] + 10**9
    with pytest.raises(
        ValueError, match="none of the .* peaks of the AnnData overlaps a region of the model"
    ):
        model.encode(a)
    with pytest.raises(ValueError, match="none of the"):
        model.encode(a, out=tmp_path / "e.zarr")
    assert list(tmp_path.iterdir()) == []
    a.var.loc[a.var_names[0], ["start", "end"]] = demo_small.var.iloc[0][["start", "end"]].to_numpy()
    with pytest.warns(UserWarning, match="overlap no region"):  # one peak left in the universe: a warning
        model.encode(a)


def test_cells_without_trained_tokens_get_zeros(model, demo_small):
    a = demo_small[:20].copy()
    X = a.X.tolil()
    X[3, :] = 0
    a.X = X.tocsr()
    with pytest.warns(UserWarning, match="1 of 20 cells have no trained token"):
        emb = model.encode(a)
    assert not emb[3].any() and emb[2].any()


def test_min_count_excludes_rare_tokens(tokens):
    ds = fe.Region2VecDataset(tokens)
    counts = np.bincount(ds.indices, minlength=ds.vocab_size)
    m = ScEmbed(embedding_dim=8, min_count=20, seed=0, threads=1).train(ds, epochs=1, progress=False)
    np.testing.assert_array_equal(m.trained_tokens[:10000], counts[:10000] >= 20)
    emb = m.encode(ds, pooling="mean")
    i = 11
    toks = ds[i][m.trained_tokens[ds[i]]]
    np.testing.assert_allclose(emb[i], m.region_vectors[toks].mean(axis=0), rtol=1e-5, atol=1e-6)


def _check_universe_mismatch(adata, universe):
    """A model on ``universe`` (not the AnnData's peaks) encodes the cells like their pre-tokenized form and
    refuses tokens of another universe, for encoding and for training."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = fe.tokenize_cells(adata, universe)
    model = ScEmbed(embedding_dim=16, seed=0, threads=1).train(tok, epochs=2, progress=False)
    with pytest.warns(UserWarning, match="peaks of the AnnData overlap no region of the model's universe"):
        direct = model.encode(adata)
    np.testing.assert_array_equal(direct, model.encode(tok))
    other = fe.tokenize_cells(
        adata, fe.Universe.from_arrays(adata.var["chr"], adata.var["start"], adata.var["end"])
    )
    with pytest.raises(ValueError, match="another universe"):
        model.encode(other)
    with pytest.raises(ValueError, match="another universe"):
        model.train(other, epochs=1, progress=False)


def test_real_universe_mismatch(granja_dir, buenrostro_universe):
    """Full size: granja cells against the Buenrostro universe."""
    adata = fe.read_mtx(granja_dir / "matrix.mtx.gz", granja_dir / "barcodes.tsv", granja_dir / "peaks.bed")
    _check_universe_mismatch(adata[:1500].copy(), buenrostro_universe)


def test_universe_mismatch_on_demo(demo_other_universe):
    """The same on a fresh clone: the bundled demo's cells against a universe made from, but not equal to, its
    peaks."""

    _check_universe_mismatch(load_demo()[:1500].copy(), demo_other_universe)


def test_parameter_errors(tokens):
    with pytest.raises(ValueError, match="embedding_dim"):
        ScEmbed(embedding_dim=0)
    with pytest.raises(ValueError, match="seed"):
        ScEmbed(seed=-1)
    with pytest.raises(RuntimeError, match="call train"):
        ScEmbed().encode(tokens)
    with pytest.raises(TypeError, match="Region2VecDataset"):
        ScEmbed().train([[1, 2, 3]])
    with pytest.raises(ValueError, match="pooling"):
        ScEmbed(embedding_dim=4, seed=0).train(tokens, epochs=1, progress=False).encode(tokens, pooling="max")


# ------------------------------------------------------------------------------------------------
# Persistence
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["fastembed", "geniml"])
def test_save_from_pretrained_round_trip(model, demo_small, tmp_path, fmt):
    model.save(tmp_path / "m", format=fmt)
    loaded = ScEmbed.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(loaded.region_vectors, model.region_vectors)
    assert loaded.universe.same_as(model.universe)
    if fmt == "fastembed":
        np.testing.assert_array_equal(loaded.encode(demo_small), model.encode(demo_small))
        assert loaded.min_count == model.min_count and loaded.training_info["epochs"] == 5
        assert loaded.sample == model.sample == "auto"
    else:  # geniml folders carry no token counts: every region token counts as trained
        assert loaded.trained_tokens[:10000].all()


def test_geniml_fixture_encodes(tmp_path):
    """The torch-made geniml folder loads and encodes: the mean of the listed rows of projection.weight."""
    from pathlib import Path

    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    model = ScEmbed.from_pretrained(Path(__file__).parent / "data" / "geniml_legacy")
    weights = np.arange(17 * 4, dtype=np.float32).reshape(17, 4) / 10
    var = pd.DataFrame(
        {"chr": ["chr1", "chr1", "chr1"], "start": [237600, 713950, 5], "end": [237700, 752600, 6]}
    )
    var.index = ["a", "b", "c"]  # overlaps token 0; tokens 2 and 3; nothing
    adata = ad.AnnData(X=sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32)), var=var)
    with pytest.warns(UserWarning):
        emb = model.encode(adata)
    np.testing.assert_allclose(emb[0], weights[[0, 2, 3]].mean(axis=0), rtol=1e-6)
    assert not emb[1].any()


def test_hub_errors_offline(tmp_path, monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # the extra is not installed
    with pytest.raises(ImportError, match=r"pip install huggingface_hub.*local model folder"):
        ScEmbed.from_pretrained("databio/scembed-pbmc-10k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScEmbed.from_pretrained(tmp_path / "no" / "such" / "folder")

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    fake = types.SimpleNamespace(
        snapshot_download=offline,
        HfApi=lambda token=None: types.SimpleNamespace(create_repo=offline, upload_folder=offline),
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(OSError, match="could not be fetched from the Hugging Face hub.*local path"):
        ScEmbed.from_pretrained("databio/scembed-pbmc-10k")


def test_push_to_hub_offline(model, monkeypatch):
    import sys
    import types

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    fake = types.SimpleNamespace(
        HfApi=lambda token=None: types.SimpleNamespace(create_repo=offline, upload_folder=offline)
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(OSError, match="could not upload .* model.save"):
        model.push_to_hub("someone/model")


def test_interrupted_training_keeps_a_partial_model(tokens, monkeypatch):
    import fastembed.sgns as sg

    real, calls = sg._blocks_serial, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:  # the compile call, epoch 0, then Ctrl-C during epoch 1
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sg, "_blocks_serial", interrupted)
    m = ScEmbed(embedding_dim=8, seed=0, threads=1)
    with pytest.warns(UserWarning, match="interrupted after 1 of 4 epochs"):
        m.train(tokens, epochs=4, progress=False)
    assert m.training_info["partial"] and m.training_info["epochs_completed"] == 1
    assert m.encode(tokens).shape == (1000, 8)  # usable, and can be saved


def test_zarr_store_keeps_obs_columns_and_leaves_out_unstorable_ones(
    model, demo_small, tmp_path, monkeypatch
):
    import warnings

    import anndata.io

    a = demo_small[:30].copy()
    a.obs["depth"] = np.arange(30)
    a.obs["mixed"] = pd.Series([object()] * 30, index=a.obs_names, dtype=object)
    real = anndata.io.write_elem

    def failing(group, key, value, *args, **kwargs):  # a column anndata cannot store, half written
        real(group, key, value, *args, **kwargs)
        if key == "mixed":
            raise TypeError("cannot store this column")

    monkeypatch.setattr(anndata.io, "write_elem", failing)
    with pytest.warns(UserWarning, match=r"obs columns 'mixed' \(TypeError\) cannot be stored"):
        model.encode(a, out=tmp_path / "e.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = ad.read_zarr(tmp_path / "e.zarr")
    assert list(store.obs.columns) == [c for c in a.obs.columns if c != "mixed"]
    np.testing.assert_array_equal(store.obs["depth"], np.arange(30))
    assert list(store.obs["cell_type"].astype(str)) == list(a.obs["cell_type"].astype(str))
    assert list(store.obs_names) == list(a.obs_names)


def test_default_subsampling_leaves_small_data_whole(model):
    """ScEmbed's default sample="auto" thins a region only past ~2.6 x THIN_OCCURRENCES occurrences per pass:
    in 1,000 demo cells none is that common, so every token is trained (the same vectors as sample=0)."""
    from fastembed.sgns import THIN_OCCURRENCES

    info = model.training_info
    assert model.sample == "auto" and info["kept_share"] == 1.0
    assert info["sample_threshold"] == pytest.approx(THIN_OCCURRENCES / info["n_tokens"])


def test_default_subsampling_thins_common_regions_of_larger_data():
    """On the whole 5,000-cell demo the regions open in the most cells are thinned, and only those; sample=0
    turns it off."""
    from fastembed.sgns import THIN_OCCURRENCES

    tok = fe.tokenize_cells(load_demo(), demo_peaks_path())
    auto = ScEmbed(embedding_dim=8, seed=0, threads=1).train(tok, epochs=1, progress=False)
    share = auto.training_info["kept_share"]
    counts = np.bincount(tok.indices, minlength=tok.vocab_size)
    # sqrt(x) + x < 1 for x = THIN_OCCURRENCES / count below 0.382: the tokens "auto" may thin
    common = counts[counts > THIN_OCCURRENCES / 0.382].sum() / counts.sum()
    assert 0.0 < common and 1.0 - common < share < 1.0
    off = ScEmbed(embedding_dim=8, seed=0, threads=1, sample=0).train(tok, epochs=1, progress=False)
    assert off.training_info["kept_share"] == 1.0 and off.training_info["sample_threshold"] == 0.0
