"""Tests of the counter-based RNG against a pure-Python SplitMix64."""

from __future__ import annotations

import numpy as np
import pytest
from naive import GAMMA, M64, RefRng
from scipy import stats

from fastembed import _rng

pytestmark = [pytest.mark.kernel, pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def test_splitmix64_known_vector():
    # First output of SplitMix64 seeded with 1234567 (the reference implementation by Vigna).
    state = np.array([1234567], dtype=np.uint64)
    assert int(_rng.next_u64(state)) == 6457827717110365317
    assert int(state[0]) == (1234567 + GAMMA) & M64


@pytest.mark.parametrize(
    ("seed", "stream", "block"), [(0, 0, 0), (42, 3, 7), (M64, 99, 123456), (2**63, 0, 1)]
)
def test_stream_matches_reference(seed, stream, block):
    state = _rng.block_state(np.uint64(seed), stream, block)
    ref = RefRng(seed, stream, block)
    assert state.dtype == np.uint64 and state.shape == (1,)
    assert int(state[0]) == ref.s
    for _ in range(20):
        assert int(_rng.next_u64(state)) == ref.next()
    for n in (1, 2, 5, 1000, 2**31 - 1):
        assert int(_rng.randint(state, n)) == ref.randint(n)
    for _ in range(5):
        assert float(_rng.uniform(state)) == ref.uniform()


def test_states_differ_across_streams_and_blocks():
    states = {int(_rng.block_state(np.uint64(7), e, b)[0]) for e in range(10) for b in range(50)}
    assert len(states) == 500
    assert int(_rng.block_state(np.uint64(7), 0, 0)[0]) != int(_rng.block_state(np.uint64(8), 0, 0)[0])


def test_randint_is_uniform():
    state = _rng.block_state(np.uint64(2024), 0, 0)
    n = 7
    draws = np.array([_rng.randint(state, n) for _ in range(7000)])
    assert draws.min() >= 0 and draws.max() < n
    assert stats.chisquare(np.bincount(draws, minlength=n)).pvalue > 1e-3


def test_uniform_range_and_mean():
    state = _rng.block_state(np.uint64(5), 1, 2)
    u = np.array([_rng.uniform(state) for _ in range(4000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02


def test_new_seed():
    assert _rng.new_seed(5) == 5
    assert _rng.new_seed(-1) == M64
    assert _rng.new_seed(np.int64(3)) == 3
    s = _rng.new_seed(None)
    assert 0 <= s <= M64
    for bad in (1.5, "1", True):
        with pytest.raises(ValueError, match="seed"):
            _rng.new_seed(bad)
