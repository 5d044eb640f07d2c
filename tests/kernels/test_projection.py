"""The cell projection fitted at training and applied by encode (pooling="pca"), against a numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed.datasets import demo_peaks_path
from fastembed.projection import apply_projection, fit_projection
from fastembed.scembed import ScEmbed


@pytest.fixture(scope="module")
def tokens():
    return fe.tokenize_cells(demo_cells(600, 1), demo_peaks_path())


@pytest.fixture(scope="module")
def model(tokens):
    return ScEmbed(embedding_dim=16, n_components=5, seed=0, threads=1).train(
        tokens, epochs=3, progress=False
    )


def test_fit_projection_matches_svd():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 12)) * np.linspace(3, 0.1, 12)).astype(np.float32)
    proj = fit_projection(x, 4, power=1.0)
    assert proj.shape == (5, 12) and proj.dtype == np.float32
    np.testing.assert_allclose(proj[0], x.mean(0), atol=1e-6)
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    # Same subspace as numpy's SVD (axes agree up to sign).
    np.testing.assert_allclose(np.abs(proj[1:] @ vt[:4].T), np.eye(4), atol=1e-4)
    # Deterministic sign: the largest coordinate of every axis is positive.
    assert (proj[1:][np.arange(4), np.abs(proj[1:]).argmax(1)] > 0).all()


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
def test_weighted_projection_matches_naive_svd(power):
    """Axis j's scores scaled by (s_1 / s_j)^(1 - power), against numpy's SVD (signs cancel in the output)."""
    from naive import ref_weighted_projection

    rng = np.random.default_rng(1)
    train = (rng.normal(size=(200, 10)) * np.linspace(4, 0.2, 10) + 1.5).astype(np.float32)
    cells = (rng.normal(size=(30, 10)) * 2 + 1.5).astype(np.float32)
    proj = fit_projection(train, 5, power=power)
    block = cells.copy()
    apply_projection(block, proj, np.zeros(30, dtype=bool))
    np.testing.assert_allclose(block, ref_weighted_projection(train, cells, 5, power), rtol=1e-4, atol=1e-4)
    # Orthogonal rows of squared length w_j: 1 for the first axis, growing down the spectrum unless power is 1.
    lengths = np.linalg.norm(proj[1:].astype(np.float64), axis=1)
    assert lengths[0] == pytest.approx(1.0, abs=1e-5)
    assert (np.diff(lengths) >= -1e-5).all() and (power < 1) == (lengths[-1] > 1.01)


def test_fit_projection_refuses_power_outside_0_1():
    with pytest.raises(ValueError, match="power"):
        fit_projection(np.random.default_rng(0).normal(size=(20, 4)), 2, power=1.5)


def test_fit_projection_caps_components_and_needs_two_cells():
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    assert fit_projection(x, 50).shape == (3, 6)  # at most n_cells - 1 axes
    with pytest.raises(ValueError, match="at least 2 cells"):
        fit_projection(x[:1], 2)


def test_apply_projection_keeps_empty_cells_zero():
    proj = fit_projection(np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32), 2)
    block = np.ones((3, 6), np.float32)
    block[1] = 0
    apply_projection(block, proj, np.array([False, True, False]))
    assert (block[1] == 0).all() and np.abs(block[0]).sum() > 0


def test_pca_pooling_is_centred_projection_of_training_cells(model, tokens):
    from naive import ref_weighted_projection

    from fastembed.projection import AXIS_POWER

    mean = model.encode(tokens, pooling="mean")
    oracle = ref_weighted_projection(mean, mean, 5, AXIS_POWER)
    pca = model.encode(tokens)  # the default for a model trained with a projection
    np.testing.assert_allclose(pca, oracle, atol=1e-4)
    assert pca.shape == (600, 16)
    assert model.training_info["n_components"] == 5


def test_projection_survives_save_and_load(model, tokens, tmp_path):
    loaded = ScEmbed.from_pretrained(model.save(tmp_path / "fastembed", format="fastembed"))
    assert loaded.default_pooling == "pca" and loaded.n_components == 5
    np.testing.assert_array_equal(loaded.encode(tokens), model.encode(tokens))
    # geniml's layout has no place for the projection: both tools encode it with mean pooling.
    with pytest.warns(UserWarning, match="geniml format holds no cell projection"):
        folder = model.save(tmp_path / "geniml", format="geniml")
    loaded = ScEmbed.from_pretrained(folder)
    assert loaded.default_pooling == "mean" and loaded.n_components is None
    np.testing.assert_array_equal(loaded.encode(tokens), model.encode(tokens, pooling="mean"))


def test_without_projection_mean_is_the_default(tokens):
    m = ScEmbed(embedding_dim=8, n_components=None, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    assert m.default_pooling == "mean"
    np.testing.assert_array_equal(m.encode(tokens), m.encode(tokens, pooling="mean"))
    with pytest.raises(ValueError, match="projection"):
        m.encode(tokens, pooling="pca")


def test_bad_projection_file_is_refused(model, tmp_path):
    folder = model.save(tmp_path / "m")
    np.save(folder / "cell_projection.npy", np.ones((3, 16), np.float32))  # axes not orthonormal
    with pytest.raises(ValueError, match="cell_projection.npy"):
        ScEmbed.from_pretrained(folder)


def test_folder_with_plain_pca_axes_still_loads(model, tokens, tmp_path):
    """Versions before the weighting wrote orthonormal axes (power 1): such a folder loads and encodes with them."""
    from naive import ref_weighted_projection

    folder = model.save(tmp_path / "old")
    mean = model.encode(tokens, pooling="mean")
    np.save(folder / "cell_projection.npy", fit_projection(mean, 5, power=1.0))
    loaded = ScEmbed.from_pretrained(folder)
    np.testing.assert_allclose(loaded.encode(tokens), ref_weighted_projection(mean, mean, 5, 1.0), atol=1e-4)


def _pooled_demo(group: int, n: int, seed: int = 0):
    """``n`` cells of the demo, each the union of ``group`` demo cells' peaks: a high-coverage dataset."""
    import scipy.sparse as sp

    cells = demo_cells(group * n, seed)
    agg = sp.csr_matrix(
        (np.ones(group * n, np.float32), (np.repeat(np.arange(n), group), np.arange(group * n))),
        shape=(n, group * n),
    )
    pooled = cells[:n].copy()
    pooled.X = (agg @ cells.X.tocsr()).tocsr()
    pooled.X.data[:] = 1
    return pooled


@pytest.mark.parametrize("group", [1, 8])
def test_auto_components_follows_coverage(group, tmp_path):
    """The default keeps 20 axes for demo cells (~190 peaks) and 30 for cells pooled 8 at a time (~1,000), fewer
    when those 30 pool their context alone (one per cell holding a region, at least 10): the count is the
    oracle's, recorded at training, written as a number to the folder and read back."""
    from naive import ref_auto_components

    tokens = fe.tokenize_cells(_pooled_demo(group, 60), demo_peaks_path())
    model = ScEmbed(embedding_dim=40, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    want = ref_auto_components(tokens.indptr, tokens.indices, model.trained_tokens)
    assert want == (20 if group == 1 else 30)
    if group > 1 and model.config()["pool_context"] == "cells-alone":
        want = min(30, max(10, int(np.floor(_naive_cells_per_token(model, tokens) + 0.5))))
        assert want < 30  # these 60 merged cells hold each region in a few of them: the rule does reduce
    assert model.n_components == "auto" and model.training_info["n_components"] == want
    # High coverage: cells pool input and output vectors side by side (80 wide), and the projected cells have unit
    # length (cell_norm: l2); low coverage: the input vectors, as projected.
    assert model._projection.shape == (want + 1, 40 if group == 1 else 80)
    assert model.config()["n_components"] == want
    from naive import ref_weighted_projection

    from fastembed.projection import AXIS_POWER, RARE_HIGH_COVERAGE_POWER

    pooled = _naive_pooled(model, tokens, both=group > 1, context=True)
    # High coverage over rare regions (these 60 cells: the context alone) fits plain scores; else AXIS_POWER.
    rare_high = group > 1 and model.config()["pool_context"] == "cells-alone"
    power = RARE_HIGH_COVERAGE_POWER if rare_high else AXIS_POWER
    assert model.training_info["axis_power"] == power
    oracle = ref_weighted_projection(pooled, pooled, want, power)
    got = model.encode(tokens)
    assert got.shape == (60, 40)
    if group > 1:
        oracle /= np.linalg.norm(oracle, axis=1, keepdims=True)
        # The scores of the 80-wide axes, written in 40 columns: the same inner products (so lengths, distances
        # and cosines) as the projection in the pooled space; the columns past the 30 axes are zero.
        np.testing.assert_allclose(got @ got.T, oracle @ oracle.T, atol=1e-4)
        assert not got[:, want:].any()
    else:
        np.testing.assert_allclose(got, oracle, atol=1e-4)
    assert model.config()["cell_norm"] == (None if group == 1 else "l2")
    assert model.config()["pool_vectors"] == (None if group == 1 else "input+output")
    loaded = ScEmbed.from_pretrained(model.save(tmp_path / "m"))
    assert loaded.n_components == want
    np.testing.assert_array_equal(loaded.encode(tokens), model.encode(tokens))


def _naive_pooled(model, tokens, *, both: bool, context: bool = False):
    """Cells mean-pooled by the naive oracle from the input vectors, or from input and output side by side; with
    ``context``, each token's vector plus its cell context over ``tokens`` (the training cells), or that context
    alone when the model recorded ``pool_context: cells-alone``."""
    from naive import pool_reference, region_context_reference

    vectors = model._region_vectors
    if both:
        vectors = np.hstack([model._region_vectors, model._output_vectors])
    weights = model.pooling_weights("mean")
    pooled, empty = pool_reference(tokens.indptr, tokens.indices, vectors, weights)
    if context:
        extra = region_context_reference(tokens.indptr, tokens.indices, pooled, empty, weights)
        alone = model.config()["pool_context"] == "cells-alone"
        pooled, _ = pool_reference(
            tokens.indptr, tokens.indices, extra if alone else vectors + extra, weights
        )
    return pooled


def _naive_cells_per_token(model, tokens) -> float:
    """Mean number of cells holding a pooled token, over the pooled tokens held (a token counted once per cell)."""
    weights = model.pooling_weights("mean")
    holders = {}
    for c in range(len(tokens.indptr) - 1):
        for t in set(tokens.indices[tokens.indptr[c] : tokens.indptr[c + 1]].tolist()):
            if weights[t] > 0:
                holders[t] = holders.get(t, 0) + 1
    return sum(holders.values()) / len(holders)


def _set_config(folder, **changes):
    """Rewrite keys of a saved model folder's config.yaml (as a user editing it would)."""
    import yaml

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg.update(changes)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_pool_vectors_folder_needs_its_output_vectors(tmp_path):
    """A folder whose cells pool both matrices cannot encode without output_vectors.npy: an error naming it; a
    bad pool_vectors is refused naming the key; mean pooling of such a model pools the input vectors."""
    tokens = fe.tokenize_cells(_pooled_demo(8, 60), demo_peaks_path())
    model = ScEmbed(embedding_dim=40, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    np.testing.assert_allclose(
        model.encode(tokens, pooling="mean"), _naive_pooled(model, tokens, both=False), atol=1e-5
    )
    folder = model.save(tmp_path / "m")
    _set_config(folder, pool_vectors="both")
    with pytest.raises(ValueError, match="pool_vectors"):
        ScEmbed.from_pretrained(folder)
    _set_config(folder, pool_vectors="input+output")
    (folder / "output_vectors.npy").unlink()
    with pytest.raises(FileNotFoundError, match="output_vectors.npy"):
        ScEmbed.from_pretrained(folder)


def test_folder_without_cell_norm_encodes_as_projected(tmp_path):
    """A folder written before cell_norm existed (high coverage, 30 axes, no cell_norm key) encodes without the
    unit length, as it did; a bad cell_norm is refused naming the key."""
    import yaml

    tokens = fe.tokenize_cells(_pooled_demo(8, 60), demo_peaks_path())
    model = ScEmbed(embedding_dim=40, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    folder = model.save(tmp_path / "m")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert cfg["cell_norm"] == "l2"
    del cfg["cell_norm"]
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    old = ScEmbed.from_pretrained(folder)
    got = old.encode(tokens)
    wide = mean_projected(_naive_pooled(model, tokens, both=True, context=True), model)
    np.testing.assert_allclose(got @ got.T, wide @ wide.T, atol=1e-4)
    cfg["cell_norm"] = "l1"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="cell_norm"):
        ScEmbed.from_pretrained(folder)


def mean_projected(mean, model):
    from fastembed.projection import apply_projection

    out = np.array(mean, dtype=np.float32)
    apply_projection(out, model._projection, np.zeros(len(out), dtype=bool))
    return out


def test_unit_rows_keeps_empty_cells_zero():
    from fastembed.kernels.projection import unit_rows

    block = np.array([[3.0, 4.0], [0.0, 0.0], [5.0, 5.0]], dtype=np.float32)
    unit_rows(block, np.array([False, False, True]))
    np.testing.assert_allclose(block, [[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    ("tokens", "cells", "want"), [(0, 0, 20), (599, 1, 20), (600, 1, 30), (1199, 2, 20), (1200, 2, 30)]
)
def test_auto_components_threshold(tokens, cells, want):
    from fastembed.kernels.projection import auto_components

    assert auto_components(tokens, cells) == want


@pytest.mark.parametrize("bad", ["20", "Auto", 0, -3, 2.5, True])
def test_n_components_is_checked(bad):
    with pytest.raises(ValueError, match="n_components"):
        ScEmbed(n_components=bad)


def test_project_scores_keeps_the_inner_products_of_apply_projection():
    """Weighted scores in fewer columns than the pooled space: the inner products of the back-projection."""
    from fastembed.projection import project_scores

    rng = np.random.default_rng(3)
    train = rng.normal(size=(200, 16)).astype(np.float32) * np.linspace(3, 0.2, 16, dtype=np.float32)
    projection = fit_projection(train, 5)
    empty = np.zeros(50, dtype=bool)
    empty[[4, 9]] = True
    cells = rng.normal(size=(50, 16)).astype(np.float32)
    back = cells.copy()
    apply_projection(back, projection, empty)
    out = np.full((50, 8), 7.0, dtype=np.float32)
    project_scores(cells, projection, empty, out)
    np.testing.assert_allclose(out @ out.T, back @ back.T, rtol=1e-4, atol=1e-4)
    assert not out[:, 5:].any() and not out[empty].any()
    with pytest.raises(ValueError, match="do not fit"):
        project_scores(cells, projection, empty, np.zeros((50, 4), dtype=np.float32))


def test_high_coverage_folder_from_before_pool_vectors_encodes_as_before(tmp_path):
    """A folder written before pool_vectors existed (30 axes over the input vectors, cell_norm l2, no
    pool_vectors key) keeps encoding from the input vectors alone, as it did."""
    import yaml

    from fastembed.projection import AXIS_POWER, unit_rows

    tokens = fe.tokenize_cells(_pooled_demo(8, 60), demo_peaks_path())
    model = ScEmbed(embedding_dim=40, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    mean = _naive_pooled(model, tokens, both=False).astype(np.float32)
    model._projection = fit_projection(mean, 30, power=AXIS_POWER)  # what the previous version fitted
    model._pool_vectors = model._region_context = None
    model.training_info.update(n_components=30, pool_context=None)
    folder = model.save(tmp_path / "m")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert cfg.pop("pool_vectors", None) is None and cfg["cell_norm"] == "l2"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    old = ScEmbed.from_pretrained(folder)
    want = mean_projected(mean, old)
    unit_rows(want, np.zeros(len(want), dtype=bool))
    np.testing.assert_allclose(old.encode(tokens), want, atol=1e-4)


@pytest.mark.parametrize("threshold", ["default", 0.0, 1e9])
def test_small_training_set_pools_cell_context(threshold, tmp_path, monkeypatch):
    """Fewer than CONTEXT_MAX_CELLS training cells with n_components="auto": each token pools its vector plus its
    cell context, or the context alone when the training cells per token (the naive count) are below
    CONTEXT_ALONE_CELLS_PER_TOKEN; the cells are the naive oracle's; recorded as pool_context with
    region_context.npy and read back bit for bit; mean pooling still pools the input vectors alone."""
    from naive import ref_weighted_projection

    from fastembed.kernels import projection
    from fastembed.projection import AXIS_POWER, CONTEXT_ALONE, CONTEXT_CELLS

    if threshold != "default":
        monkeypatch.setattr(projection, "CONTEXT_ALONE_CELLS_PER_TOKEN", threshold)
    tokens = fe.tokenize_cells(_pooled_demo(1, 80), demo_peaks_path())
    model = ScEmbed(embedding_dim=24, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    per_token = _naive_cells_per_token(model, tokens)
    want = CONTEXT_ALONE if per_token < projection.CONTEXT_ALONE_CELLS_PER_TOKEN else CONTEXT_CELLS
    assert want == {"default": CONTEXT_ALONE, 0.0: CONTEXT_CELLS, 1e9: CONTEXT_ALONE}[threshold]
    assert model.config()["pool_context"] == want == model.training_info["pool_context"]
    pooled = _naive_pooled(model, tokens, both=False, context=True)
    np.testing.assert_allclose(
        model.encode(tokens), ref_weighted_projection(pooled, pooled, 20, AXIS_POWER), atol=1e-4
    )
    np.testing.assert_allclose(
        model.encode(tokens, pooling="mean"), _naive_pooled(model, tokens, both=False), atol=1e-5
    )
    folder = model.save(tmp_path / "m")
    assert (folder / "region_context.npy").is_file()
    loaded = ScEmbed.from_pretrained(folder)
    assert loaded.config()["pool_context"] == want
    np.testing.assert_array_equal(loaded.encode(tokens), model.encode(tokens))


def test_context_alone_rule_reads_the_cells_per_token():
    """auto_context: no context from CONTEXT_MAX_CELLS cells on; below, the context alone exactly when the cells per
    token are below CONTEXT_ALONE_CELLS_PER_TOKEN; the folder reader spells the same values."""
    from fastembed.kernels.projection import (
        CONTEXT_ALONE,
        CONTEXT_ALONE_CELLS_PER_TOKEN,
        CONTEXT_CELLS,
        CONTEXT_MAX_CELLS,
        CONTEXT_MODES,
        auto_context,
    )
    from fastembed.model import modelfolder

    assert modelfolder.CONTEXT_MODES == CONTEXT_MODES and modelfolder.CONTEXT_CELLS == CONTEXT_CELLS
    below, at = np.nextafter(CONTEXT_ALONE_CELLS_PER_TOKEN, 0), CONTEXT_ALONE_CELLS_PER_TOKEN
    assert auto_context(CONTEXT_MAX_CELLS - 1, below) == CONTEXT_ALONE
    assert auto_context(CONTEXT_MAX_CELLS - 1, at) == CONTEXT_CELLS
    assert auto_context(CONTEXT_MAX_CELLS, below) is None
    assert auto_context(10, 1.0) == CONTEXT_ALONE


def test_rare_high_coverage_cells_get_plain_scores():
    """auto_axis_power: plain scores only with the high-coverage axes and the context alone."""
    from fastembed.kernels.projection import (
        AXIS_POWER,
        CONTEXT_ALONE,
        CONTEXT_CELLS,
        HIGH_COVERAGE_COMPONENTS,
        LOW_COVERAGE_COMPONENTS,
        RARE_HIGH_COVERAGE_POWER,
        auto_axis_power,
    )

    assert RARE_HIGH_COVERAGE_POWER != AXIS_POWER
    assert auto_axis_power(HIGH_COVERAGE_COMPONENTS, CONTEXT_ALONE) == RARE_HIGH_COVERAGE_POWER
    for k, context in [
        (HIGH_COVERAGE_COMPONENTS, CONTEXT_CELLS),
        (HIGH_COVERAGE_COMPONENTS, None),
        (LOW_COVERAGE_COMPONENTS, CONTEXT_ALONE),
        (LOW_COVERAGE_COMPONENTS, None),
    ]:
        assert auto_axis_power(k, context) == AXIS_POWER


@pytest.mark.parametrize(
    "per_token, want",
    [(0.5, 10), (5.8, 10), (10.49, 10), (12.5, 13), (12.49, 12), (18.5, 19), (29.6, 30), (80.0, 30)],
)
def test_rare_high_coverage_axes_follow_the_cells_per_token(per_token, want):
    """auto_rare_components: one axis per cell holding a region (rounded half up), between 10 and 30, for the
    high-coverage axes with the context alone; every other choice keeps its axes."""
    from fastembed.kernels.projection import (
        CONTEXT_ALONE,
        CONTEXT_CELLS,
        HIGH_COVERAGE_COMPONENTS,
        LOW_COVERAGE_COMPONENTS,
        auto_rare_components,
    )

    assert auto_rare_components(HIGH_COVERAGE_COMPONENTS, CONTEXT_ALONE, per_token) == want
    for k, context in [
        (HIGH_COVERAGE_COMPONENTS, CONTEXT_CELLS),
        (HIGH_COVERAGE_COMPONENTS, None),
        (LOW_COVERAGE_COMPONENTS, CONTEXT_ALONE),
    ]:
        assert auto_rare_components(k, context, per_token) == k


def test_cells_per_token_counts_pooled_tokens_only():
    """The training's count of cells per token against the naive one: tokens of weight 0 (untrained, special)
    do not count, a token twice in one cell counts once per occurrence as the pooling does."""
    from fastembed.model.training import _cells_per_token

    indices = np.array([0, 1, 2, 0, 2, 2, 3], dtype=np.int32)  # cells [0,1,2], [0,2], [2,3]
    weights = np.array([1, 1, 1, 0], dtype=np.float32)  # token 3 untrained
    assert _cells_per_token(indices, weights, 3) == pytest.approx(6 / 3)
    assert _cells_per_token(indices, np.zeros(4, np.float32), 3) == 3.0


def test_large_training_set_and_explicit_axes_pool_no_context(monkeypatch):
    """From CONTEXT_MAX_CELLS training cells on, and with an explicit n_components, cells pool the vectors alone."""
    from naive import ref_weighted_projection

    from fastembed.model import training
    from fastembed.projection import AXIS_POWER

    tokens = fe.tokenize_cells(_pooled_demo(1, 80), demo_peaks_path())
    monkeypatch.setattr(training, "CONTEXT_MAX_CELLS", 80)
    auto = ScEmbed(embedding_dim=24, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    monkeypatch.undo()
    explicit = ScEmbed(embedding_dim=24, n_components=20, seed=0, threads=1).train(
        tokens, epochs=1, progress=False
    )
    for model in (auto, explicit):
        assert model.config()["pool_context"] is None and model._region_context is None
        pooled = _naive_pooled(model, tokens, both=False)
        np.testing.assert_allclose(
            model.encode(tokens), ref_weighted_projection(pooled, pooled, 20, AXIS_POWER), atol=1e-4
        )


def test_pool_context_folder_needs_its_region_context(tmp_path):
    """A folder whose cells pool the cell context cannot encode without region_context.npy: an error naming it; a
    bad pool_context or a context of the wrong shape is refused naming the key or the file."""
    tokens = fe.tokenize_cells(_pooled_demo(1, 80), demo_peaks_path())
    model = ScEmbed(embedding_dim=24, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    folder = model.save(tmp_path / "m")
    _set_config(folder, pool_context="regions")
    with pytest.raises(ValueError, match="pool_context"):
        ScEmbed.from_pretrained(folder)
    _set_config(folder, pool_context="cells")
    stored = np.load(folder / "region_context.npy")
    np.save(folder / "region_context.npy", stored[:, :-1])
    with pytest.raises(ValueError, match="region_context.npy"):
        ScEmbed.from_pretrained(folder)
    (folder / "region_context.npy").unlink()
    with pytest.raises(FileNotFoundError, match="region_context.npy"):
        ScEmbed.from_pretrained(folder)


def test_folder_from_before_pool_context_encodes_as_before(tmp_path):
    """A small-data folder written before pool_context existed (20 axes over the input vectors, no key, no
    region_context.npy) keeps encoding from the vectors alone, as it did."""
    import yaml

    from fastembed.projection import AXIS_POWER

    tokens = fe.tokenize_cells(_pooled_demo(1, 80), demo_peaks_path())
    model = ScEmbed(embedding_dim=24, seed=0, threads=1).train(tokens, epochs=1, progress=False)
    mean = _naive_pooled(model, tokens, both=False).astype(np.float32)
    model._projection = fit_projection(mean, 20, power=AXIS_POWER)  # what the previous version fitted
    model._region_context = None
    folder = model.save(tmp_path / "m")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert "pool_context" not in cfg and not (folder / "region_context.npy").exists()
    old = ScEmbed.from_pretrained(folder)
    np.testing.assert_allclose(old.encode(tokens), mean_projected(mean, old), atol=1e-4)
