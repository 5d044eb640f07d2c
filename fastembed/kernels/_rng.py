"""A small counter-based random number generator for numba kernels.

The training kernels need random numbers inside ``prange`` loops, where numba's own ``np.random`` has one
state per thread and therefore makes the draws depend on which thread ran which block. Instead, every work
unit owns an explicit ``uint64[1]`` state array derived from ``(seed, stream, block)``: the same block of
cells sees the same random stream whatever thread runs it and in whatever order.

The generator is SplitMix64 (Steele, Lea & Flood 2014): the state advances by a fixed odd constant and each
output is the state passed through a bijective 64-bit mixer. It passes BigCrush, any 64-bit state is valid
(no zero-state trap as in xorshift), and because the state update is a single add, the CPU can overlap the
mixing of consecutive draws. The same mixer derives block states from the seed.

All arithmetic stays in ``uint64`` on purpose: in numba, mixing ``uint64`` with a signed integer promotes to
``float64``, which would silently destroy the stream. Every constant below is therefore a ``np.uint64``.
With ``NUMBA_DISABLE_JIT=1`` the functions run as plain Python on numpy scalars; numpy then warns about the
(intended) wrap-around of ``uint64`` multiplication.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastembed.settings import INLINE, SERIAL

__all__ = [
    "MASK64",
    "block_state",
    "mix64",
    "new_seed",
    "next_u64",
    "randint",
    "uniform",
]

MASK64 = (1 << 64) - 1
"""Python-side mask for 64-bit seeds."""

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd: the SplitMix64 increment
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(**SERIAL)
def mix64(z):
    """SplitMix64 output mixer: a bijection of ``uint64`` that spreads every input bit over the output.

    Parameters: ``z`` uint64. Returns: uint64.
    """
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**SERIAL)
def block_state(seed, stream, block):
    """A fresh generator state for one work unit.

    Parameters
    ----------
    seed : uint64
        The run's seed (see :func:`new_seed`).
    stream : int64 >= 0
        Which phase of the run draws from it (the training kernels use the epoch number).
    block : int64 >= 0
        Which work unit (block of cells) within the phase.

    Returns
    -------
    uint64[1]
        The state array to pass to :func:`next_u64`, :func:`randint` and :func:`uniform`. Distinct
        ``(stream, block)`` pairs give unrelated streams because each coordinate goes through the mixer.
    """
    h = mix64(np.uint64(seed) + _GAMMA)
    h = mix64(h + np.uint64(stream) * _GAMMA + _GAMMA)
    h = mix64(h + np.uint64(block) * _GAMMA + _GAMMA)
    state = np.empty(1, dtype=np.uint64)
    state[0] = h
    return state


@njit(**INLINE)
def next_u64(state):
    """Advance ``state`` (uint64[1], modified in place) and return the next uint64 draw."""
    s = state[0] + _GAMMA
    state[0] = s
    return mix64(s)


@njit(**INLINE)
def randint(state, n):
    """A uniform integer in ``[0, n)`` for ``1 <= n < 2**32``, as int64.

    Lemire's multiply-shift on the high 32 bits of one draw: no division, and the bias (at most
    ``n / 2**32``) is far below anything SGD can notice.
    """
    hi = next_u64(state) >> _S32
    return np.int64((hi * np.uint64(n)) >> _S32)


@njit(**INLINE)
def uniform(state):
    """A uniform float64 in ``[0, 1)`` with 53 random bits."""
    return np.float64(next_u64(state) >> _S11) * _TWO_M53


def new_seed(seed: int | None) -> int:
    """Turn a user seed into the uint64 the kernels take.

    ``None`` draws fresh entropy from the OS; an int is reduced modulo 2**64 (negative ints included, so every
    Python int is a valid seed). Returns a Python int in ``[0, 2**64)``.
    """
    if seed is None:
        return int(np.random.SeedSequence().entropy) & MASK64
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    return int(seed) & MASK64
