"""Tests of the SGNS trainer against a slow pure-Python SGNS implementing the same algorithm and random stream."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import ref_sgns
from numba import njit, prange

from fastembed import sgns
from fastembed._counter import fetch_add
from fastembed.alias import build_alias_table
from fastembed.sgns import SGNSResult, train_sgns

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

# ------------------------------------------------------------------------------------------------------------


def to_csr(cells):
    indptr = np.zeros(len(cells) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c in cells])
    indices = np.array([t for c in cells for t in c], dtype=np.int32)
    return indptr, indices


def tiny_corpus(n_cells=14, vocab=24, seed=0):
    rng = np.random.default_rng(seed)
    cells = []
    for c in range(n_cells):
        size = int(rng.integers(0, 11))
        pool = np.arange(vocab) if c % 2 else np.arange(vocab // 2)
        cells.append(sorted(rng.choice(pool, size=min(size, pool.size), replace=False).tolist()))
    return cells


def planted_corpus(n_types=4, cells_per_type=80, specific=40, shared=60, per_cell=30, seed=0):
    """Cells of ``n_types`` types: each draws most tokens from its type's own regions, the rest from shared ones."""
    rng = np.random.default_rng(seed)
    vocab = n_types * specific + shared
    cells, labels = [], []
    for t in range(n_types):
        own = np.arange(t * specific, (t + 1) * specific)
        common = np.arange(n_types * specific, vocab)
        for _ in range(cells_per_type):
            a = rng.choice(own, size=per_cell * 2 // 3, replace=False)
            b = rng.choice(common, size=per_cell - a.size, replace=False)
            cells.append(sorted(np.concatenate([a, b]).tolist()))
            labels.append(t)
    order = rng.permutation(len(cells))
    return [cells[i] for i in order], np.array(labels)[order], vocab


PARAMS = dict(
    dim=8, window=3, negative=3, epochs=3, batch_size=4, lr0=0.05, lr_min=0.001, min_count=1, seed=11
)


def run_kernel(cells, vocab, **overrides):
    p = {**PARAMS, **overrides}
    indptr, indices = to_csr(cells)
    return train_sgns(
        indptr,
        indices,
        vocab,
        embedding_dim=p["dim"],
        window_size=p["window"],
        negative_samples=p["negative"],
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        learning_rate=p["lr0"],
        min_learning_rate=p["lr_min"],
        min_count=p["min_count"],
        seed=p["seed"],
        threads=1,
        progress=False,
        sample=p.get("sample", 0.0),
    )


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("min_count", "negative", "add_back"),
    # 3-5 negatives take the six-row path of _train_centre (5 is the default), 1 and 7 the TILE-row one; the
    # output rows are written back by overwrite up to OVERWRITE_MAX_THREADS threads, by adding changes above.
    [(1, 3, False), (3, 3, False), (1, 5, False), (1, 1, False), (1, 7, False), (1, 5, True), (1, 7, True)],
)
def test_kernel_matches_reference(min_count, negative, add_back, monkeypatch):
    cells = tiny_corpus()
    vocab = 26  # two tokens never occur
    if add_back:
        monkeypatch.setattr(sgns, "OVERWRITE_MAX_THREADS", 0)
    result = run_kernel(cells, vocab, min_count=min_count, negative=negative)
    w_in, w_out, counts, trained = ref_sgns(
        cells, vocab, **{**PARAMS, "min_count": min_count, "negative": negative}, add_back=add_back
    )
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_array_equal(result.trained, trained)
    # Same stream and same operations; only the summation order of the dot products differs (vectorised).
    np.testing.assert_allclose(result.w_in, w_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.w_out, w_out, rtol=1e-4, atol=1e-6)
    assert np.abs(result.w_out).max() > 1e-3  # the comparison is not between two untrained models


@pytest.mark.kernel
@pytest.mark.parametrize("sample", [0.02, "auto"])
def test_subsampling_kernel_matches_reference(sample, monkeypatch):
    """Frequent-token subsampling: the same kept occurrences, drawn from the same stream, as the oracle's
    word2vec formula. THIN_OCCURRENCES is lowered so that "auto" thins some tokens of the tiny corpus."""
    cells = tiny_corpus()
    monkeypatch.setattr(sgns, "THIN_OCCURRENCES", 1)
    result = run_kernel(cells, 26, sample=sample)
    w_in, w_out, counts, trained = ref_sgns(cells, 26, **PARAMS, sample=sample)
    np.testing.assert_allclose(result.w_in, w_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.w_out, w_out, rtol=1e-4, atol=1e-6)
    # Something was thinned, and the threshold reported is the one asked for (or "auto" resolved).
    assert 0.0 < result.kept_share < 1.0
    assert not np.allclose(result.w_in, run_kernel(cells, 26).w_in)
    expected = sgns.THIN_OCCURRENCES / counts[trained].sum() if sample == "auto" else sample
    assert result.sample == pytest.approx(expected)


def test_auto_sample_thins_only_past_a_number_of_occurrences():
    """The "auto" threshold is a count, not a share: a token with fewer than ~2.6 x THIN_OCCURRENCES
    occurrences is always kept, however small the data, and the same count is thinned the same way in a small
    and a large corpus."""
    from fastembed.sgns import THIN_OCCURRENCES, keep_probabilities, resolve_sample

    for scale in (1, 10, 1000):
        # one common token and many rare ones; the common one's count relative to THIN_OCCURRENCES is fixed
        counts = np.array([10 * THIN_OCCURRENCES] + [THIN_OCCURRENCES] * (20 * scale), np.int64)
        trained = np.ones(counts.size, bool)
        keep = keep_probabilities(counts, trained, resolve_sample("auto", counts, trained))
        assert np.all(keep[1:] == 1.0)
        np.testing.assert_allclose(keep[0], np.sqrt(0.1) + 0.1, rtol=1e-6)
    small = np.array([2 * THIN_OCCURRENCES, 5], np.int64)  # below the point where thinning starts
    assert np.all(keep_probabilities(small, small > 0, resolve_sample("auto", small, small > 0)) == 1.0)
    for bad in ("Auto", 1.0, -0.1, True, None):
        with pytest.raises(ValueError, match="sample must be 'auto' or a number"):
            resolve_sample(bad, small, small > 0)


@pytest.mark.kernel
@pytest.mark.parametrize("power", [1.0, 0.0])
def test_kernel_reads_negative_power_when_training_starts(power, monkeypatch):
    """``sgns.NEGATIVE_POWER`` shapes the negatives' distribution (counts^power) and is read at run time, so
    ``bench/quality_ab.py`` and ``bench/kernel_ab.py`` can compare values through module copies or a patch."""
    cells = tiny_corpus()
    default = run_kernel(cells, 26)
    monkeypatch.setattr(sgns, "NEGATIVE_POWER", power)
    result = run_kernel(cells, 26)
    w_in, w_out, _, _ = ref_sgns(cells, 26, **PARAMS, negative_power=power)
    np.testing.assert_allclose(result.w_in, w_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.w_out, w_out, rtol=1e-4, atol=1e-6)
    assert not np.allclose(result.w_out, default.w_out)


@pytest.mark.kernel
@pytest.mark.parametrize(("negative", "add_back", "merge"), [(3, False, 4), (5, False, 1), (7, True, 10**6)])
def test_private_hot_rows_on_one_lane_match_reference(negative, add_back, merge, monkeypatch):
    """The private hot output rows (PRIVATE_HOT_ROWS), forced on for one thread: the rows are read from and
    written to the private copy, and the merges add the changes back, so one lane trains as the oracle does
    (within float rounding of ``w + (p - w)``). ``merge`` tokens between merges: after every cell, a few times
    per block, only at the end of each block."""
    cells = tiny_corpus()
    monkeypatch.setattr(sgns, "PRIVATE_HOT_MIN_THREADS", 1)
    monkeypatch.setattr(sgns, "PRIVATE_HOT_ROWS", 6)
    monkeypatch.setattr(sgns, "HOT_MERGE_TOKENS", merge)
    if add_back:
        monkeypatch.setattr(sgns, "OVERWRITE_MAX_THREADS", 0)
    result = run_kernel(cells, 26, negative=negative)
    w_in, w_out, _, _ = ref_sgns(cells, 26, **{**PARAMS, "negative": negative}, add_back=add_back)
    np.testing.assert_allclose(result.w_in, w_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.w_out, w_out, rtol=1e-4, atol=1e-6)
    # The copies were used: a single-lane run with them differs from one without in the last bits.
    monkeypatch.setattr(sgns, "PRIVATE_HOT_ROWS", 0)
    assert not np.array_equal(run_kernel(cells, 26, negative=negative).w_out, result.w_out)


@pytest.mark.kernel
def test_one_thread_ignores_private_hot_rows():
    """seed + threads=1 stays bit-identical whatever PRIVATE_HOT_ROWS says (the copies start at two threads)."""
    cells = tiny_corpus(seed=3)
    off = run_kernel(cells, 24)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sgns, "PRIVATE_HOT_ROWS", 8)
        on = run_kernel(cells, 24)
    assert off.w_in.tobytes() == on.w_in.tobytes()
    assert off.w_out.tobytes() == on.w_out.tobytes()


def test_hot_rows_are_the_most_written_trained_rows():
    # Token 3 is held by many cells, token 5 by more but not trained (below min_count in the caller's mask).
    counts = np.array([10, 40, 0, 1000, 5, 5000, 80], np.int64)
    trained = counts > 0
    trained[5] = False
    keep = np.ones(counts.size, np.float32)
    hot = sgns._hot_rows(counts, keep, trained, 5, 3)
    np.testing.assert_array_equal(hot, [1, 3, 6])
    assert hot.dtype == np.int64
    # Thinned occurrences count as fewer writes as a centre (but still as a negative's share).
    keep[6] = 0.01
    np.testing.assert_array_equal(sgns._hot_rows(counts, keep, trained, 0, 3), [0, 1, 3])
    # Never more rows than trained tokens; none asked, none given.
    np.testing.assert_array_equal(sgns._hot_rows(counts, keep, trained, 5, 100), [0, 1, 3, 4, 6])
    assert sgns._hot_rows(counts, keep, trained, 5, 0).size == 0


def test_hot_merge_adds_every_threads_changes():
    """Two threads' private copies merged one after the other: the shared rows take both changes, and each copy
    is reloaded from the result."""
    rng = np.random.default_rng(0)
    w_out = rng.normal(size=(5, 4)).astype(np.float32)
    hot = np.array([1, 3], np.int64)
    copies = []
    for _ in range(2):
        priv, snap = np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)
        sgns._hot_load(priv, snap, w_out, hot, 4)
        np.testing.assert_array_equal(priv, w_out[hot])
        copies.append((priv, snap))
    before = w_out.copy()
    deltas = [rng.normal(size=(2, 4)).astype(np.float32) for _ in range(2)]
    for (priv, snap), delta in zip(copies, deltas, strict=True):
        priv += delta
        sgns._hot_merge(priv, snap, w_out, hot, 4)
        np.testing.assert_array_equal(priv, w_out[hot])
        np.testing.assert_array_equal(snap, w_out[hot])
    np.testing.assert_allclose(w_out[hot], before[hot] + deltas[0] + deltas[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w_out[[0, 2, 4]], before[[0, 2, 4]])


@pytest.mark.kernel
def test_same_seed_single_thread_is_bit_identical():
    cells = tiny_corpus(seed=3)
    a = run_kernel(cells, 24)
    b = run_kernel(cells, 24)
    assert a.w_in.tobytes() == b.w_in.tobytes()
    assert a.w_out.tobytes() == b.w_out.tobytes()
    c = run_kernel(cells, 24, seed=12)
    assert not np.array_equal(a.w_in, c.w_in)


@pytest.mark.kernel
@pytest.mark.parametrize("dim", [1, 8, 13, 20, 100])
def test_padded_rows_train_exactly_as_plain_rows(dim, monkeypatch):
    """The shared rows' padding (``ROW_ALIGN``) is zero and stays zero, and the products run over the same
    buffer width either way, so one thread gives the same bytes with and without it, at every dimension
    (a multiple of the padding or not, below or above one buffer register)."""
    cells = tiny_corpus(seed=5)
    monkeypatch.setattr(sgns, "ROW_ALIGN", 0)
    plain = run_kernel(cells, 24, dim=dim)
    runs = {}
    for align in (8, 16):
        monkeypatch.setattr(sgns, "ROW_ALIGN", align)
        runs[align] = run_kernel(cells, 24, dim=dim)
    for r in (plain, *runs.values()):
        for m in (r.w_in, r.w_out):
            assert m.shape == (24, dim) and m.dtype == np.float32 and m.flags.c_contiguous
    assert np.abs(plain.w_out).max() > 1e-3
    for r in runs.values():
        assert r.w_in.tobytes() == plain.w_in.tobytes()
        assert r.w_out.tobytes() == plain.w_out.tobytes()


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("dim", [1, 15, 16, 17, 100])
def test_aligned_rows_round_trip(n, dim, monkeypatch):
    monkeypatch.setattr(sgns, "ROW_ALIGN", 16)
    m = np.random.default_rng(dim).standard_normal((n, dim)).astype(np.float32)
    a = sgns._aligned_rows(m)
    assert a.flags.c_contiguous and a.ctypes.data % 64 == 0
    assert a.shape == (n, -(-dim // 16) * 16)
    np.testing.assert_array_equal(a[:, :dim], m)
    assert not a[:, dim:].any()
    back = sgns._unpad_rows(a, dim)
    assert back.flags.c_contiguous and back.shape == (n, dim)
    np.testing.assert_array_equal(back, m)
    monkeypatch.setattr(sgns, "ROW_ALIGN", 0)
    assert sgns._aligned_rows(m) is m and sgns._unpad_rows(m, dim) is m


@pytest.mark.kernel
@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="plain Python stops at int(NaN) in the sigmoid instead")
def test_diverging_training_is_an_error_naming_the_learning_rate():
    """A learning rate far too high overflows the vectors to inf and then NaN; training must stop with an
    error (a ValueError, so the command line prints one line) instead of returning vectors nobody can use."""
    cells = tiny_corpus(seed=2)
    with pytest.raises(sgns.DivergedError, match=r"epoch 1 of 3.*learning_rate=1e\+30") as err:
        run_kernel(cells, 24, lr0=1e30, lr_min=0.0)
    assert isinstance(err.value, ValueError)
    assert np.isfinite(run_kernel(cells, 24).w_in).all()  # the default rate trains as before


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_bad_value(bad):
    m = np.zeros((5, 7), np.float32)
    assert sgns._all_finite(m)
    m[4, 6] = bad
    assert not sgns._all_finite(m)
    assert not sgns._all_finite(m[::-1])  # any layout


@pytest.mark.kernel
def test_result_fields():
    cells = tiny_corpus()
    r = run_kernel(cells, 30)
    assert isinstance(r, SGNSResult)
    assert r.w_in.shape == r.w_out.shape == (30, PARAMS["dim"])
    assert r.w_in.dtype == r.w_out.dtype == np.float32
    assert r.w_in.flags.c_contiguous and r.w_out.flags.c_contiguous
    assert r.counts.dtype == np.int64 and r.trained.dtype == np.bool_
    assert r.words_processed == PARAMS["epochs"] * sum(len(c) for c in cells)
    assert r.seconds >= 0


@pytest.mark.kernel
def test_min_count_tokens_are_untouched():
    cells = tiny_corpus()
    counts = np.bincount(np.concatenate([np.array(c, dtype=np.int64) for c in cells]), minlength=26)
    r = run_kernel(cells, 26, min_count=4)
    rare = counts < 4
    assert rare.any() and (~rare).any()
    np.testing.assert_array_equal(r.trained, ~rare)
    # Not trained: zero input vectors; never a target or a negative: zero output vectors.
    assert not r.w_in[rare].any() and not r.w_out[rare].any()
    assert r.w_out[~rare].any()
    assert r.words_processed == PARAMS["epochs"] * int(counts[~rare].sum())


@pytest.mark.kernel
def test_input_arrays_are_not_modified():
    indptr, indices = to_csr(tiny_corpus())
    before = indices.copy()
    train_sgns(indptr, indices, 24, embedding_dim=4, epochs=2, seed=0, threads=1, progress=False)
    np.testing.assert_array_equal(indices, before)


def test_planted_cell_types_separate():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    metrics = pytest.importorskip("sklearn.metrics")
    cells, labels, vocab = planted_corpus()
    indptr, indices = to_csr(cells)
    r = train_sgns(
        indptr, indices, vocab, embedding_dim=16, epochs=30, batch_size=16, seed=1, threads=1, progress=False
    )
    emb = np.stack([r.w_in[c].mean(axis=0) for c in cells])
    pred = sklearn_cluster.KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(emb)
    assert metrics.adjusted_rand_score(labels, pred) > 0.9


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_parallel_run_restores_threads_and_learns():
    cells, labels, vocab = planted_corpus(seed=2)
    indptr, indices = to_csr(cells)
    before = numba.get_num_threads()
    r = train_sgns(
        indptr, indices, vocab, embedding_dim=16, epochs=20, batch_size=8, seed=1, threads=2, progress=False
    )
    assert numba.get_num_threads() == before
    assert np.isfinite(r.w_in).all() and np.isfinite(r.w_out).all()
    emb = np.stack([r.w_in[c].mean(axis=0) for c in cells])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centroids = np.stack([emb[labels == t].mean(axis=0) for t in range(4)])
    assert (np.argmax(emb @ centroids.T, axis=1) == labels).mean() > 0.95


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("hot_rows", [0, 16])
def test_parallel_run_with_private_hot_rows_learns(hot_rows, monkeypatch):
    """Two threads with and without private copies of the hot output rows (merged often, as on many threads,
    and at the end of each block) learn the planted types."""
    monkeypatch.setattr(sgns, "PRIVATE_HOT_ROWS", hot_rows)
    monkeypatch.setattr(sgns, "HOT_MERGE_TOKENS", 64)
    cells, labels, vocab = planted_corpus(seed=2)
    indptr, indices = to_csr(cells)
    r = train_sgns(
        indptr, indices, vocab, embedding_dim=16, epochs=20, batch_size=8, seed=1, threads=2, progress=False
    )
    assert np.isfinite(r.w_in).all() and np.isfinite(r.w_out).all()
    emb = np.stack([r.w_in[c].mean(axis=0) for c in cells])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centroids = np.stack([emb[labels == t].mean(axis=0) for t in range(4)])
    assert (np.argmax(emb @ centroids.T, axis=1) == labels).mean() > 0.95


@pytest.mark.parametrize(
    ("embedding_dim", "window_size", "negative_samples", "batch_size", "learning_rate"),
    [(50, 3, 5, 128, 0.01), (200, 10, 20, 512, 0.05), (100, 5, 5, 256, 0.025)],
)
def test_seed_workflow_parameter_ranges(
    embedding_dim, window_size, negative_samples, batch_size, learning_rate
):
    cells, _, vocab = planted_corpus(cells_per_type=20)
    indptr, indices = to_csr(cells)
    r = train_sgns(
        indptr,
        indices,
        vocab + 7,  # the special tokens of a real universe: never seen, never trained
        embedding_dim=embedding_dim,
        window_size=window_size,
        negative_samples=negative_samples,
        epochs=2,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=0,
        progress=True,  # stderr is not a terminal under pytest: the bar stays silent
    )
    assert r.w_in.shape == (vocab + 7, embedding_dim)
    assert np.isfinite(r.w_in).all()
    assert not r.trained[vocab:].any() and not r.w_in[vocab:].any()


def test_threads_beyond_numba_limit_is_refused():
    indptr, indices = to_csr(tiny_corpus())
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        train_sgns(
            indptr,
            indices,
            24,
            embedding_dim=4,
            epochs=1,
            threads=numba.config.NUMBA_NUM_THREADS + 1,
            progress=False,
        )


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(epochs=0), "epochs must be >= 1"),
        (dict(epochs=2.5), "epochs must be an integer"),
        (dict(embedding_dim=0), "embedding_dim"),
        (dict(window_size=0), "window_size"),
        (dict(negative_samples=0), "negative_samples"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(min_learning_rate=0.1), "min_learning_rate"),
        (dict(min_learning_rate=-1.0), "min_learning_rate"),
        (dict(min_count=0), "min_count"),
        (dict(min_count=1000), "min_count=1000"),
        (dict(threads=0), "threads"),
        (dict(seed="x"), "seed"),
    ],
)
def test_bad_parameters(kwargs, message):
    indptr, indices = to_csr(tiny_corpus())
    with pytest.raises(ValueError, match=message):
        train_sgns(indptr, indices, 24, progress=False, **kwargs)


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("indptr", "indices", "vocab", "message"),
    [
        (np.array([0]), np.array([], dtype=np.int32), 10, "empty dataset"),
        (np.array([0, 0, 0]), np.array([], dtype=np.int32), 10, "empty dataset"),
        (np.array([0, 2]), np.array([1, 10], dtype=np.int32), 10, "outside the vocabulary"),
        (np.array([0, 2]), np.array([-1, 3], dtype=np.int32), 10, "outside the vocabulary"),
        (np.array([0, 3]), np.array([1, 2], dtype=np.int32), 10, "indptr"),
        (np.array([1, 2]), np.array([1, 2], dtype=np.int32), 10, "indptr"),
        (np.array([0, 2, 1, 2]), np.array([1, 2], dtype=np.int32), 10, "indptr"),
        (np.array([0.0, 2.0]), np.array([1, 2], dtype=np.int32), 10, "indptr"),
        (np.array([0, 2]), np.array([1.0, 2.0]), 10, "indices"),
        (np.array([0, 2]), np.array([1, 2], dtype=np.int32), 0, "vocab_size"),
    ],
)
def test_bad_data(indptr, indices, vocab, message):
    with pytest.raises(ValueError, match=message):
        train_sgns(indptr, indices, vocab, epochs=1, progress=False)


def test_interrupt_keeps_the_epochs_done(monkeypatch):
    """Ctrl-C between kernel calls returns the vectors trained so far, not nothing."""
    indptr, indices = np.array([0, 3, 6, 9], np.int64), np.array([0, 1, 2, 1, 2, 3, 0, 2, 3], np.int32)
    real, calls = sgns._blocks_serial, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 4:  # the compile call, then epochs 0 and 1; Ctrl-C during epoch 2
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sgns, "_blocks_serial", interrupted)
    r = sgns.train_sgns(indptr, indices, 4, embedding_dim=4, epochs=5, seed=0, threads=1, progress=False)
    assert r.epochs_done == 2 and r.words_processed == 2 * 9
    monkeypatch.setattr(sgns, "_blocks_serial", real)
    two = sgns.train_sgns(indptr, indices, 4, embedding_dim=4, epochs=5, seed=0, threads=1, progress=False)
    assert two.epochs_done == 5 and not np.array_equal(two.w_in, r.w_in)


def test_keep_probabilities_follow_word2vec():
    from fastembed.sgns import keep_probabilities

    counts = np.array([1000, 100, 10, 0, 50], np.int64)
    trained = np.array([True, True, True, False, False])
    keep = keep_probabilities(counts, trained, 1e-2)
    f = np.array([1000, 100, 10]) / 1110
    expected = np.minimum(1.0, (np.sqrt(f / 1e-2) + 1) * 1e-2 / f)
    np.testing.assert_allclose(keep[:3], expected, rtol=1e-6)
    assert (
        keep[0] < keep[1] < 1.0 and keep[3] == keep[4] == 1.0
    )  # untrained tokens: never dropped, never used
    np.testing.assert_array_equal(keep_probabilities(counts, trained, 0.0), np.ones(5, np.float32))


def test_subsampling_is_reproducible_and_changes_training():
    rng = np.random.default_rng(0)
    cells = [np.sort(rng.choice(30, size=12, replace=False)) for _ in range(60)]
    indptr = np.concatenate([[0], np.cumsum([c.size for c in cells])]).astype(np.int64)
    indices = np.concatenate(cells).astype(np.int32)
    kw = dict(embedding_dim=6, epochs=3, seed=4, threads=1, progress=False)
    a = train_sgns(indptr, indices, 30, sample=1e-2, **kw)
    b = train_sgns(indptr, indices, 30, sample=1e-2, **kw)
    plain = train_sgns(indptr, indices, 30, **kw)
    np.testing.assert_array_equal(a.w_in, b.w_in)
    assert not np.array_equal(a.w_in, plain.w_in)
    with pytest.raises(ValueError, match="sample"):
        train_sgns(indptr, indices, 30, sample=1.5, **kw)


def test_kernel_params_are_one_typed_struct():
    """The kernel takes its hyperparameters as one named struct whose field types do not depend on how the
    caller spelled the numbers (Python int vs numpy), so every run reuses one compiled kernel."""
    import numba

    table = build_alias_table(np.array([3, 1, 2], np.int64), 0.75)
    keep = np.ones(3, np.float32)
    plain = dict(
        seed=1,
        window=5,
        negative=5,
        batch_size=256,
        lr0=0.025,
        lr_min=1e-4,
        words_total=10,
        max_len=3,
        dim=100,
        add_back=False,
    )
    typed = dict(
        seed=np.uint64(1),
        window=np.int32(5),
        negative=np.int16(5),
        batch_size=np.int64(256),
        lr0=np.float32(0.025),
        lr_min=np.float64(1e-4),
        words_total=np.int64(10),
        max_len=np.uint8(3),
        dim=np.int32(100),
        add_back=np.True_,
    )
    a = sgns._kernel_params(table, keep, **plain)
    b = sgns._kernel_params(table, keep, **typed)
    assert numba.typeof(a) == numba.typeof(b)
    assert isinstance(a.lr0, np.float64) and isinstance(a.window, np.int64) and isinstance(a.seed, np.uint64)
    assert isinstance(a.add_back, np.bool_) and not a.add_back and b.add_back
    assert a.lr0 == pytest.approx(0.025) and a.lr_min == pytest.approx(1e-4) and a.window == 5


@settings(max_examples=100, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 1000), min_size=1, max_size=80),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 500),
)
def test_block_order_is_a_seeded_permutation_with_its_token_counts(tokens, seed, epoch):
    block_tokens = np.array(tokens, dtype=np.int64)
    order, starts = sgns.block_order(seed, epoch, block_tokens)
    assert order.dtype == np.int64 and starts.dtype == np.int64
    assert sorted(order.tolist()) == list(range(block_tokens.size))
    # What the learning-rate decay counts as done, as properties of the schedule rather than its formula: an
    # epoch starts where the one before ended, each block starts where the block visited before it ended, and the
    # epoch's last block ends where the next epoch starts.
    if epoch:
        prev_order, prev_starts = sgns.block_order(seed, epoch - 1, block_tokens)
        assert starts[0] == prev_starts[-1] + block_tokens[prev_order[-1]]
    else:
        assert starts[0] == 0
    for p in range(1, order.size):
        assert starts[p] == starts[p - 1] + block_tokens[order[p - 1]]
    _, following = sgns.block_order(seed, epoch + 1, block_tokens)
    assert starts[-1] + block_tokens[order[-1]] == following[0]
    again, _ = sgns.block_order(seed, epoch, block_tokens)
    np.testing.assert_array_equal(order, again)


def test_block_order_changes_with_the_epoch_and_can_be_turned_off(monkeypatch):
    block_tokens = np.full(50, 7, dtype=np.int64)
    orders = {tuple(sgns.block_order(3, e, block_tokens)[0]) for e in range(5)}
    assert len(orders) == 5 and tuple(range(50)) not in orders
    monkeypatch.setattr(sgns, "SHUFFLE_BLOCKS", False)
    order, starts = sgns.block_order(3, 2, block_tokens)
    assert order.tolist() == list(range(50)) and starts.tolist() == [700 + 7 * p for p in range(50)]


@pytest.mark.kernel
@settings(max_examples=50, deadline=None)
@given(start=st.integers(0, 300), length=st.integers(0, 3000), threads=st.integers(1, 8))
def test_fetch_add_hands_out_every_block_once(start, length, threads):
    # The parallel driver's schedule: threads draw block numbers from one counter; each number is drawn once.
    end = start + length
    counter = np.array([start], dtype=np.int64)
    seen = np.zeros(end + 1, dtype=np.int64)
    _draw_blocks(counter, end, seen, threads)
    assert seen[:start].sum() == 0 and (seen[start:end] == 1).all() and seen[end] == 0
    assert counter[0] == end + threads  # each thread's last draw found nothing left


@njit(parallel=True)
def _draw_blocks(counter, end, seen, threads):
    for _ in prange(threads):
        while True:
            b = fetch_add(counter, 1)
            if b >= end:
                break
            seen[b] += 1


@pytest.mark.kernel
def test_parallel_run_trains_every_block():
    # Every cell has tokens of its own, so a block that no thread ran would leave its tokens' rows untouched.
    sizes = [2 + (c * 7) % 5 for c in range(90)]
    indptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    indices = np.arange(indptr[-1], dtype=np.int32)
    vocab = int(indptr[-1])
    rng = np.random.default_rng(0)
    w_in = rng.normal(size=(vocab, 8)).astype(np.float32)
    w_out = rng.normal(size=(vocab, 8)).astype(np.float32)
    r = train_sgns(
        indptr,
        indices,
        vocab,
        embedding_dim=8,
        epochs=1,
        batch_size=4,
        seed=5,
        threads=2,
        progress=False,
        init=(w_in, w_out),
    )
    assert np.all(np.any(r.w_in != w_in, axis=1))
    assert np.all(np.any(r.w_out != w_out, axis=1))


@pytest.mark.kernel
def test_sigmoid_table_stays_inside_for_nan_and_infinities():
    sig = sgns._sigmoid.py_func if hasattr(sgns._sigmoid, "py_func") else sgns._sigmoid
    if not numba.config.DISABLE_JIT:
        # A NaN score converts to an arbitrary integer; the masked index still reads an entry of the table.
        assert sgns._sigmoid(np.float32(np.nan)) in sgns._SIGMOID
    for f in (sgns._sigmoid, sig):
        assert f(np.float32(np.inf)) == 1.0 and f(np.float32(-np.inf)) == 0.0
        assert f(np.float32(0.0)) == pytest.approx(0.5, abs=0.01)
        assert f(np.float32(6.0)) == 1.0 and f(np.float32(-6.0)) == 0.0
