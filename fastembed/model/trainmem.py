"""What training needs in memory, checked before it is allocated, with the way out: ``sample_cells``.

Training cannot stream: skip-gram passes over every cell's tokens in every epoch, so all tokens to train on are in
memory at once, with the arrays the trainer and the spectral warm start build over them:

* held throughout: the token ids (int32, 4 bytes a token), the row pointers (16 bytes a cell) and the model
  (input and output vectors, float32, vocabulary x dimension each, and the warm start's result beside them);
* then the larger of the trainer's per-token array (int64, 8 bytes a token) and the spectral warm start's peak
  (:func:`warm_start_bytes`). The warm start's randomized SVD works on dense vocabulary x width blocks (width =
  dimension + 50 oversampled directions), two float32 blocks at once (8 bytes per vocabulary entry and width
  column) plus the float32 result (8 bytes per entry and dimension), e.g. 0.5 GB for a 500,000-region universe at
  dimension 32, whatever the number of cells; and its three sparse cells x regions matrices (the binary one, the
  normalised one and its transpose: 20 bytes a token). On an atlas universe this vocabulary term, not the
  tokens, is most of what training needs.

* More than the memory budget (:data:`fastembed.settings.MEMORY_BUDGET`, ``--memory``): a warning, since the
  budget bounds the streaming steps, and training is the one step that cannot keep to it.
* More than the memory this machine has available: a ``MemoryError`` raised before anything is allocated (for a
  parquet file, before its tokens are read), naming the sample that would fit.

Either way the message steers to ``Region2VecDataset(path, sample_cells=N)`` (``--sample-cells N``): region
vectors converge on a sample of cells, and every cell can be encoded afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastembed import settings
from fastembed.common.budget import format_bytes, resolve_memory
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn

__all__ = [
    "TRAIN_BYTES_PER_TOKEN",
    "training_bytes",
    "warm_start_bytes",
    "available_memory",
    "check_training_memory",
]

TRAIN_BYTES_PER_TOKEN = 4 + 20
"""Bytes training holds per token at its peak, the spectral warm start (see the module docstring)."""

_WARM_BYTES_PER_TOKEN = 20  # the binary, the normalised and the transposed sparse matrix (4 + 8 + 8)
_WARM_BYTES_PER_VOCAB_COLUMN = 8  # two float32 vocabulary x width blocks of the SVD: an operand, its product
_WARM_BYTES_PER_VOCAB_DIM = 8  # the float32 result and the scaled vectors, vocabulary x dimension
_WARM_GRAM_ROWS = 65_536  # fastembed.kernels.warmstart._GRAM_ROWS: rows converted to float64 at a time
_WARM_OVERSAMPLE = 50  # fastembed.kernels.warmstart._OVERSAMPLE: the SVD's width is dimension + 50


def warm_start_bytes(n_tokens: int, n_cells: int, vocab_size: int, embedding_dim: int) -> int:
    """Peak bytes of the spectral warm start (:func:`fastembed.kernels.warmstart.spectral_init`) on ``n_tokens``
    tokens of ``n_cells`` cells over ``vocab_size`` regions, at dimension ``embedding_dim``: its sparse matrices
    (per token), its dense float32 vocabulary x width blocks, width = min(dimension + 50, cells, vocabulary), one
    float64 block of at most 65,536 rows for the Gram matrices, and the result."""
    vocab = int(vocab_size)
    width = min(int(embedding_dim) + _WARM_OVERSAMPLE, int(n_cells), vocab)
    return (
        int(n_tokens) * _WARM_BYTES_PER_TOKEN
        + vocab * width * _WARM_BYTES_PER_VOCAB_COLUMN
        + min(vocab, _WARM_GRAM_ROWS) * width * 8
        + vocab * int(embedding_dim) * _WARM_BYTES_PER_VOCAB_DIM
    )


def training_bytes(n_tokens: int, n_cells: int, vocab_size: int, embedding_dim: int) -> int:
    """Bytes training needs for ``n_tokens`` tokens of ``n_cells`` cells and a model of that size: the tokens,
    row pointers and model held throughout plus the larger of the trainer's per-token array and the warm start's
    peak (:func:`warm_start_bytes`)."""
    return (
        int(n_tokens) * 4
        + int(n_cells) * 16
        + 3 * int(vocab_size) * int(embedding_dim) * 4
        + max(8 * int(n_tokens), warm_start_bytes(n_tokens, n_cells, vocab_size, embedding_dim))
    )


def available_memory() -> int | None:
    """Bytes this machine can give a new allocation now (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def parquet_counts(path) -> tuple[int, int] | None:
    """(cells, tokens) of a token parquet file from its footer alone, or None when it cannot say."""
    if (
        not isinstance(path, str | os.PathLike)
        or not has_suffix(path, ".parquet")
        or not Path(path).is_file()
    ):
        return None
    try:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        col = meta.schema.names.index("tokens") if "tokens" in meta.schema.names else 0
        cells = tokens = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            cells += group.num_rows
            tokens += group.column(col).num_values
        return cells, tokens
    except Exception:  # noqa: BLE001 - the reader that follows reports a bad file with its own message
        return None


def check_training_memory(
    n_cells: int, n_tokens: int, vocab_size: int, embedding_dim: int, source: str, budget=None
) -> None:
    """Warn when training these tokens exceeds the memory budget; MemoryError when it exceeds the machine's
    available memory. ``source`` names the data in the message."""
    need = training_bytes(n_tokens, n_cells, vocab_size, embedding_dim)
    budget = resolve_memory(budget if budget is not None else settings.MEMORY_BUDGET)
    available = available_memory()

    def fitting(limit: int) -> int:
        # What does not shrink with the sample: the model and the warm start's vocabulary blocks.
        fixed = training_bytes(0, max(n_cells, 1), vocab_size, embedding_dim) - max(n_cells, 1) * 16
        per_cell = TRAIN_BYTES_PER_TOKEN * n_tokens / max(n_cells, 1) + 16
        return max(int((limit - fixed) * 0.8 / per_cell), 0)

    what = (
        f"training on {source} ({n_cells} cells, {n_tokens} tokens) needs about {format_bytes(need)} in memory "
        "at once (training cannot stream: every epoch passes over all tokens)"
    )
    if available is not None and need > available:
        raise MemoryError(
            f"{what}, more than the {format_bytes(available)} this machine has available; train on a sample: "
            f"Region2VecDataset(path, sample_cells={fitting(available)}) (or --sample-cells), then encode "
            "every cell"
        )
    if need > budget:
        warn(
            f"{what}, more than the memory budget of {format_bytes(budget)}; if that is more than this machine "
            f"can spare, train on a sample: Region2VecDataset(path, sample_cells={fitting(budget)}) (or "
            "--sample-cells), then encode every cell"
        )
