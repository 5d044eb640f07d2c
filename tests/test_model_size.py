"""Model folders sized by the trained tokens, not the universe; the geniml layout stays whole for geniml."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed.checkpoint import read_torch_state_dict
from fastembed.modelfolder import TRAINED_ROWS


def _folder_bytes(path):
    return sum(p.stat().st_size for p in path.iterdir())


def _train(cells, universe, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the low-coverage warning of a foreign universe
        tok = fe.tokenize_cells(cells, universe)
    return fe.ScEmbed(embedding_dim=32, seed=0, threads=1, **kw).train(tok, epochs=1, progress=False), tok


def _check_size_and_round_trip(model, cells, tmp_path):
    trained = int(model.trained_tokens.sum())
    dim = model.embedding_dim
    d = model.save(tmp_path / "m")
    assert (d / TRAINED_ROWS).exists()
    # universe.bed and the per-token counts follow the universe (a few bytes per region); the vectors follow
    # the trained tokens (two float32 matrices of trained rows, three with a small training set's region
    # context) plus the projection.
    matrices = 3 if (d / "region_context.npy").exists() else 2
    assert matrices == (3 if model._region_context is not None else 2)
    budget = (
        (d / "universe.bed").stat().st_size
        + 8 * model.vocab_size
        + matrices * 4 * dim * (trained + 7)
        + 8 * (trained + 7)
        + 4 * dim * (dim + 1)
        + 64 * 1024
    )
    assert _folder_bytes(d) <= budget
    whole = matrices * 4 * dim * model.vocab_size
    assert _folder_bytes(d) < whole / 2
    back = fe.ScEmbed.from_pretrained(d)
    np.testing.assert_array_equal(back.region_vectors, model.region_vectors)
    np.testing.assert_array_equal(back._output_vectors, model._output_vectors)
    np.testing.assert_array_equal(back.encode(cells, progress=False), model.encode(cells, progress=False))
    # the geniml layout keeps every row: geniml builds nn.Embedding(vocab_size, embedding_dim) from it
    g = model.save(tmp_path / "g", format="geniml") if model._projection is None else None
    if g is None:
        with pytest.warns(UserWarning, match="no cell projection"):
            g = model.save(tmp_path / "g", format="geniml")
    weight = read_torch_state_dict(g / "checkpoint.pt")["projection.weight"]
    assert weight.shape == (model.vocab_size, dim)
    np.testing.assert_array_equal(fe.ScEmbed.from_pretrained(g).region_vectors, model.region_vectors)


def test_large_universe_few_trained_tokens_buenrostro(buenrostro_universe, tmp_path):
    """The issue's case: demo cells against the 126,536-region Buenrostro universe train a few thousand tokens."""
    cells = demo_cells(300, 2)
    model, _ = _train(cells, buenrostro_universe)
    assert model.vocab_size > 100_000 and model.trained_tokens.sum() < 0.1 * model.vocab_size
    _check_size_and_round_trip(model, cells, tmp_path)


def test_few_trained_tokens_of_the_demo_universe(tmp_path):
    """Always available: the demo's 10,000 peaks with min_count high enough that few tokens train."""
    from fastembed.datasets import demo_peaks_path

    cells = demo_cells(300, 3)
    model, _ = _train(cells, demo_peaks_path(), min_count=40)
    assert model.trained_tokens.sum() < 0.5 * model.vocab_size
    _check_size_and_round_trip(model, cells, tmp_path)


def test_mostly_trained_model_keeps_the_plain_layout(tmp_path):
    cells = demo_cells(300, 4)
    model, _ = _train(cells, fe.pp.universe_from_peaks(cells[:, np.asarray(cells.X.sum(0)).ravel() > 0]))
    d = model.save(tmp_path / "m")
    assert not (d / TRAINED_ROWS).exists()
    np.testing.assert_array_equal(fe.ScEmbed.from_pretrained(d).region_vectors, model.region_vectors)


def test_bad_trained_rows_are_refused(tmp_path):
    from fastembed.datasets import demo_peaks_path

    cells = demo_cells(200, 5)
    model, _ = _train(cells, demo_peaks_path(), min_count=40)
    d = model.save(tmp_path / "m")
    rows = np.load(d / TRAINED_ROWS)
    np.save(d / TRAINED_ROWS, rows[::-1].copy())
    with pytest.raises(ValueError, match="strictly increasing"):
        fe.ScEmbed.from_pretrained(d)
    np.save(d / TRAINED_ROWS, rows[:-1].copy())
    with pytest.raises(ValueError, match="rows, one per id"):
        fe.ScEmbed.from_pretrained(d)
