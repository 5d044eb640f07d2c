"""Numba compilation settings, kept in one place.

Every kernel module compiles with these dictionaries instead of spelling out its own flags, so that a
change of policy (e.g. turning fastmath off to chase a numerical issue) is one edit. ``tests/test_repo.py``
fails if a kernel hard-codes ``fastmath`` or omits ``cache``.

* ``SERIAL``: deterministic single-threaded kernels.
* ``PARALLEL``: kernels with ``prange`` loops.
* ``INLINE``/``INLINE_FAST``: small helpers called from hot loops (RNG draws, alias draws, the sigmoid, the
  SGNS centre update). Numba inlines them at its own IR level, so the arrays they take are not reference-counted
  per call (an atomic increment and decrement each, shared by every thread).
* ``FASTMATH``: the fast-math flags allowed in float kernels. We allow reassociation and contraction
  (vectorised dot products and FMAs) but not ``nnan``/``ninf``, so NaN inputs stay detectable.
"""

from __future__ import annotations

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

SERIAL = {"cache": True, "nogil": True}
PARALLEL = {"cache": True, "nogil": True, "parallel": True}
SERIAL_FAST = {**SERIAL, "fastmath": set(FASTMATH)}
INLINE = {**SERIAL, "inline": "always"}
INLINE_FAST = {**SERIAL_FAST, "inline": "always"}
PARALLEL_FAST = {**PARALLEL, "fastmath": set(FASTMATH)}
