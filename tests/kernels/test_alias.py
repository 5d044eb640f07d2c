"""Tests of the Vose alias table against the target distribution counts**power."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import ref_probabilities
from scipy import stats

from fastembed.alias import alias_probabilities, alias_sample, build_alias_table

pytestmark = [pytest.mark.kernel, pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def test_table_encodes_exactly_the_target():
    counts = np.array([0, 5, 1, 100, 0, 7, 3, 1000, 2, 40], dtype=np.int64)
    table = build_alias_table(counts)
    assert table.threshold.dtype == np.uint32
    assert table.primary.dtype == np.int32 and table.alias.dtype == np.int32
    assert table.threshold.size == np.count_nonzero(counts)
    np.testing.assert_allclose(alias_probabilities(table, counts.size), ref_probabilities(counts), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=300).filter(
        lambda c: any(c)
    ),
    power=st.sampled_from([0.0, 0.5, 0.75, 1.0]),
)
def test_table_matches_target_for_any_counts(counts, power):
    counts = np.array(counts, dtype=np.int64)
    table = build_alias_table(counts, power)
    p = alias_probabilities(table, counts.size)
    np.testing.assert_allclose(p, ref_probabilities(counts, power), atol=1e-9)
    assert np.all(p[counts == 0] == 0)


def test_draw_frequencies_chi_square():
    counts = np.array([3, 0, 50, 7, 1, 0, 120, 9, 30, 2, 15, 600], dtype=np.int64)
    expected = ref_probabilities(counts)
    draws = alias_sample(build_alias_table(counts), 60_000, seed=12345)
    observed = np.bincount(draws, minlength=counts.size)
    assert observed[counts == 0].sum() == 0
    nz = expected > 0
    result = stats.chisquare(observed[nz], expected[nz] * draws.size)
    assert result.pvalue > 1e-3, result


def test_masked_tokens_are_never_drawn():
    counts = np.array([10, 20, 30, 40], dtype=np.int64)
    mask = counts >= 25
    table = build_alias_table(counts, mask=mask)
    np.testing.assert_allclose(alias_probabilities(table, 4), ref_probabilities(counts, mask=mask), atol=1e-9)
    draws = alias_sample(table, 5000, seed=1)
    assert set(np.unique(draws)) == {2, 3}


def test_same_seed_same_draws():
    table = build_alias_table(np.array([1, 2, 3, 4], dtype=np.int64))
    np.testing.assert_array_equal(alias_sample(table, 100, seed=9), alias_sample(table, 100, seed=9))
    assert not np.array_equal(alias_sample(table, 100, seed=9), alias_sample(table, 100, seed=10))


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (np.zeros(5, dtype=np.int64), "no token"),
        (np.array([1, -1], dtype=np.int64), "non-negative"),
        (np.ones((2, 2), dtype=np.int64), "1-d integer"),
        (np.array([1.0, 2.0]), "1-d integer"),
    ],
)
def test_errors(counts, message):
    with pytest.raises(ValueError, match=message):
        build_alias_table(counts)


def test_mask_can_exclude_everything():
    with pytest.raises(ValueError, match="no token"):
        build_alias_table(np.array([1, 2], dtype=np.int64), mask=np.array([False, False]))
