"""Settings in one place: numba compile flags, block sizes, search thresholds and file-layout limits.

Numba compile flags (the dicts below) are applied when a kernel module is imported: every kernel compiles
with one of them instead of spelling out its own flags, so a change of policy (e.g. turning fastmath off to
chase a numerical issue) is one edit; ``tests/test_repo.py`` fails if a kernel hard-codes ``fastmath`` or
omits ``cache``.

* ``SERIAL``: deterministic single-threaded kernels. ``PARALLEL``: kernels with ``prange`` loops.
* ``FASTMATH``: the fast-math flags allowed in float kernels. We allow reassociation and contraction
  (vectorised dot products and FMAs) but not ``nnan``/``ninf``, so NaN inputs stay detectable.
* ``INLINE``/``INLINE_FAST``: small helpers called from hot loops (RNG draws, alias draws, the sigmoid, the
  SGNS centre update). Numba inlines them at its own IR level, so the arrays they take are not
  reference-counted per call (an atomic increment and decrement each, shared by every thread).

The tunables below them are read through the module (``settings.NAME``) when they run, not by copying them at import, so one assignment here (or a test's
``monkeypatch.setattr(settings, ...)``) changes every user. Defaults of public keyword arguments are taken
from here when the function is defined.

"Cells per block" has one name throughout the package, ``batch_cells`` (the keyword of
:meth:`fastembed.ScEmbed.encode`): the number of cells read, tokenized, pooled or searched at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- numba compile flags ------------------------------------------------------------------------------------
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

SERIAL = {"cache": True, "nogil": True}
PARALLEL = {"cache": True, "nogil": True, "parallel": True}
SERIAL_FAST = {**SERIAL, "fastmath": set(FASTMATH)}
INLINE = {**SERIAL, "inline": "always"}
INLINE_FAST = {**SERIAL_FAST, "inline": "always"}
PARALLEL_FAST = {**PARALLEL, "fastmath": set(FASTMATH)}


# -- model defaults shared by the API, the command line and the docs ----------------------------------------
@dataclass(frozen=True)
class ModelDefaults:
    """Defaults of :class:`fastembed.ScEmbed`'s settings (its keyword arguments), in one place: ``ScEmbed``,
    ``fe.tl.scembed`` and ``fastembed train`` take them from here, and ``tests/model/test_defaults.py`` checks
    that the parameters page of the docs states the same values."""

    embedding_dim: int = 100
    window_size: int = 5
    negative_samples: int = 5
    min_count: int = 1
    sample: float | str = "auto"
    n_components: int | str | None = "auto"
    seed: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class TrainDefaults:
    """Defaults of :meth:`fastembed.ScEmbed.train`'s arguments (``epochs=None``: from the data), shared by the
    API and ``fastembed train``."""

    epochs: int | None = None
    batch_size: int = 256
    learning_rate: float = 0.025
    min_learning_rate: float = 1e-4
    init: str = "spectral"


MODEL_DEFAULTS = ModelDefaults()
"""The model's defaults (:class:`ModelDefaults`)."""

TRAIN_DEFAULTS = TrainDefaults()
"""Training's defaults (:class:`TrainDefaults`)."""

DEFAULT_WINDOW_SIZE = MODEL_DEFAULTS.window_size
"""Default context window of :class:`fastembed.ScEmbed` and ``fastembed train`` (see its docstring)."""

EMBEDDING_KEY = "scembed_X"
"""The default ``obsm`` key of the cell vectors: what ``encode`` writes and ``annotate_celltypes``, the command line
and the demo read unless told another."""

BLOCKS_PER_THREAD = 16
"""With several threads, training blocks shrink below ``batch_size`` cells until each thread has at least this
many; the threads take blocks one at a time from a shared counter (see ``sgns._blocks_parallel``)."""

# -- memory per block -------------------------------------------------------------------------------------
MEMORY_BUDGET = 1 << 30
"""Bytes one block of a streaming step may need (tokenizing, encoding, annotating, fragments, Dask tasks, token
row groups): 1 GiB. Blocks are cut by nonzeros against it (:mod:`fastembed.budget`); ``memory=`` and
``--memory`` override it per call. 1 GiB suits a laptop of 8-16 GB: the model (a 1M-region universe at 100
dimensions is 800 MB of float32 vectors) and the OS fit beside it, and a block of 1 GiB still holds ~30 million
nonzeros (10,000 cells of a dense atlas, 100,000 of a typical one), enough for the kernels to run at full
speed; a larger budget buys little speed, a smaller one only more blocks."""

# -- cells per block (``batch_cells``): an upper bound beside the memory budget --------------------------------
TOKENIZE_BATCH_CELLS = 100_000
"""Cells tokenized at a time by :func:`fastembed.tokenize.tokenize_cells` (its ``batch_cells`` default)."""

ENCODE_BATCH_CELLS = 65_536
"""Cells tokenized and pooled at a time by :meth:`fastembed.ScEmbed.encode`, and the zarr chunk length."""

ANNOTATE_BATCH_CELLS = 65_536
"""Query cells read and labelled at a time by :func:`fastembed.annotate.annotate_celltypes`."""

# -- token parquet files -----------------------------------------------------------------------------------
ROW_GROUP_CELLS = 65_536
"""Cells per parquet row group (bounds the memory of one write, and of one read when sampling)."""

ROW_GROUP_TOKENS = 2**27
"""Tokens per parquet row group: list<int32> offsets must stay below 2**31, so a row group is closed early
once it would hold more tokens than this (a 16x margin, about 512 MB of int32)."""

FEW_TOKENS = 10
"""A cell with fewer tokens than this (but at least one) counts as having few tokens in the tokenize
diagnostics: its embedding is the mean of a handful of vectors and is noisy."""

# -- fragments files -----------------------------------------------------------------------------------------
FRAGMENT_BLOCK_BYTES = 16 << 20
"""Bytes of decompressed text per parsed block of a fragments file: ~300k fragments, tens of MB in flight."""

FOLD_PAIRS = 1 << 24
"""Pending (cell, token) pairs of a fragments file are folded into the per-cell result once they exceed both
this and the result's size."""

# -- annotation (k-NN search) --------------------------------------------------------------------------------
EXACT_SEARCH_PAIRS = 200_000_000
"""Up to this many query x reference pairs, exact search (one similarity matrix per block) beats building an
NN-descent index, and is exact; above it, pynndescent."""

EXACT_SEARCH_BLOCK_PAIRS = 50_000_000
"""Query x reference similarities held at once by the exact search (float32: 200 MB)."""

QUERY_BATCH = 1024
"""Query rows per search call. Blocks of query cells are cut into pieces at multiples of this absolute row
number; pynndescent's search restarts its random stream at every call, so each piece, and hence each label,
is the same whatever block size (a multiple of this) splits the query."""

NNDESCENT_MIN_NEIGHBORS = 40
"""Smallest ``n_neighbors`` of the NN-descent graph (pynndescent's default, 15, finds ~85% of the true 10
nearest neighbours on scATAC embeddings; 40 finds ~98% for little extra time)."""

NNDESCENT_NEIGHBORS_PER_K = 3
"""The NN-descent graph has at least this many neighbours per neighbour asked for (``n_neighbors >= 3 k``)."""

NNDESCENT_EPSILON = 0.3
"""Search breadth of a pynndescent query (its default is 0.1; wider finds more of the true neighbours)."""
