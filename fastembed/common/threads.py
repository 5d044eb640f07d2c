"""Numba thread count for the duration of one call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np

from fastembed.common.errors import ParameterError


def check_threads(threads: int | None) -> int | None:
    """Validate a thread count: None (numba's current setting, ``numba.get_num_threads()``) or
    1..NUMBA_NUM_THREADS. Anything else (a str, a float, a bool) is a ValueError naming ``threads``."""
    if threads is None:
        return None
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or not 1 <= threads <= top:
        raise ParameterError("threads", f"an integer from 1 to {top} (NUMBA_NUM_THREADS)", threads)
    return int(threads)


def resolve_threads(threads: int | None) -> int:
    """The thread count a call will use: ``threads``, or numba's current setting when None."""
    threads = check_threads(threads)
    return numba.get_num_threads() if threads is None else threads


@contextlib.contextmanager
def numba_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` numba threads (None: leave as is); restore the old count after.

    Yields
    ------
    int
        The thread count in effect inside the block.
    """
    threads = check_threads(threads)
    old = numba.get_num_threads()
    if threads is None:
        yield old
        return
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(old)
