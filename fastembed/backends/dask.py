"""Dask tasks: tokenizing, encoding and annotating blocks of cells on a ``dask.distributed`` cluster.

The driver (the process holding the ``Client``) cuts the cells into blocks within the memory budget
(:mod:`fastembed.budget`; at most ``batch_cells`` rows each), sends the
small shared state once to every worker (the peak-to-token map, the model's vectors, the fitted reference) and
submits one task per block. Inputs on disk (``.h5ad``/``.zarr``) are read by the workers themselves, so only
block coordinates travel; in-memory inputs travel block by block.

Each task sets its own numba thread count (``numba.set_num_threads`` is per calling thread, and a worker's
pool cannot grow past ``numba.config.NUMBA_NUM_THREADS`` once started): the count asked for, or else the
worker's cores divided by its task slots.

Encoding to ``out=`` writes every block into one zarr array whose chunks are exactly the blocks, so a task that
is retried (a lost worker) rewrites the same chunk with the same bytes, and no two tasks touch one chunk.
The store is written in a temporary folder beside ``out`` that the workers must see (a shared file system on
a real cluster) and renamed when every block is in.

Dask is an optional dependency (``pip install 'dask[distributed]'``, or ``pip install '.[dask]'`` in a clone); nothing here imports it at module level.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastembed.common.suffix import has_suffix

__all__ = ["open_client", "task_threads", "map_blocks", "tokenize_blocks", "encode_blocks"]

TASK_RETRIES = 2
"""How often the scheduler reruns a block whose worker died; safe because a block's output is idempotent."""


def require_distributed():
    """The ``dask.distributed`` module, or an ImportError that says how to install it."""
    try:
        import dask.distributed
    except ImportError:
        raise ImportError(
            "client= / --scheduler / --workers need Dask, an optional dependency: pip install 'dask[distributed]' "
            "(or pip install '.[dask]' in a fastembed clone)"
        ) from None
    return dask.distributed


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[object]:
    """A Dask client for the command line, or None for the single-machine path.

    Parameters
    ----------
    scheduler
        Address of a running scheduler (``tcp://host:8786``).
    workers
        Start a local cluster of this many worker processes, one task slot each (so each task may use
        all of the cores numba gives it without oversubscribing); ignored with ``scheduler``.

    Yields
    ------
    dask.distributed.Client or None
    """
    if scheduler is None and workers is None:
        yield None
        return
    dd = require_distributed()
    if scheduler is not None:
        try:
            client = dd.Client(scheduler, timeout="30s")
        except OSError as err:
            raise OSError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({err})") from None
        except (ValueError, TypeError) as err:  # e.g. no port: Dask's message would not name the flag
            raise ValueError(
                f"--scheduler {scheduler}: not a Dask scheduler address ({err}); expected e.g. tcp://host:8786"
            ) from None
        with client:
            yield client
        return
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"--workers must be an integer >= 1, got {workers!r}")
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    with local_cluster(int(workers), threads) as cluster, dd.Client(cluster) as client:
        yield client


def local_cluster(workers: int, threads: int):
    """A ``dask.distributed.LocalCluster`` of ``workers`` worker processes, one task slot each, whose numba may
    use ``threads`` threads; the dashboard on any free port, so that two clusters on one machine do not collide.

    distributed gives its event-loop thread 10 s to start and fails with a bare AssertionError otherwise, which a
    loaded 2-core machine was seen to hit (every Dask test of one CI run failed so). Starting once more gets past
    such a stall; a second failure is a RuntimeError that says what happened.
    """
    dd = require_distributed()

    def start():
        return dd.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"NUMBA_NUM_THREADS": str(threads)},
        )

    for _ in range(2):
        try:
            return start()
        except AssertionError:
            continue
    raise RuntimeError(
        "could not start a local Dask cluster: its event loop did not start within Dask's 10 s, twice (an "
        "overloaded machine?); try again, or start a scheduler yourself and pass --scheduler"
    )


def task_threads(threads: int | None) -> int:
    """Numba threads for the task running in this thread: ``threads``, or the worker's cores per task slot;
    never more than ``numba.config.NUMBA_NUM_THREADS``."""
    import numba

    top = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        slots = 1
        try:
            from dask.distributed import get_worker

            slots = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        threads = max(1, top // slots)
    return max(1, min(int(threads), top))


def blocks(n: int, size: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` covering ``range(n)`` in steps of ``size``."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


# --------------------------------------------------------------------------------------------------
# What a task reads: a block of a peak matrix (path or rows) or of tokens
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _open_x(path: str, mtime_ns: int):
    # One open file per worker process and input (mtime in the key: a rewritten file is reopened).
    from fastembed.genome.readers import open_element

    return open_element(path, "X")


def _x_payload(adata, path: Path | None, lo: int, hi: int) -> tuple:
    if path is not None:
        return ("path", str(path), os.stat(path).st_mtime_ns, lo, hi)
    from fastembed.genome.readers import _csr_rows

    return ("rows", _csr_rows(adata.X, lo, hi))


def _block_tokens(payload: tuple, mapper) -> tuple[np.ndarray, np.ndarray]:
    kind = payload[0]
    if kind == "tokens":
        return payload[1], payload[2]
    if kind == "path":
        _, path, mtime, lo, hi = payload
        return mapper.tokens(_open_x(path, mtime), lo, hi)
    rows = payload[1]
    return mapper.tokens(rows, 0, rows.shape[0])


def _source_path(data) -> Path | None:
    if isinstance(data, str | os.PathLike) and has_suffix(data, ".h5ad", ".zarr"):
        return Path(data).absolute()
    return None


def _gather_in_order(client, futures: list, keys: list) -> Iterator[tuple[object, object]]:
    """(key, result) as tasks finish; each future is released once read, so results do not pile up."""
    dd = require_distributed()
    by_future = dict(zip(futures, keys, strict=True))
    for future in dd.as_completed(futures):
        yield by_future.pop(future), future.result()
        future.release()


def _run_block(task, threads: int | None, payload, shared: tuple):
    from fastembed.common.threads import numba_threads

    with numba_threads(task_threads(threads)):  # the task's numba code shares the worker's cores
        return task(payload, *shared)


def map_blocks(client, task, payloads, *, shared: tuple = (), threads: int | None = None) -> Iterator[tuple]:
    """Run ``task(payload, *shared)`` on the cluster, one task per payload; yield ``(i, result)`` as they finish.

    The generic map of the Dask backend: each feature owns its task function and its payloads (a block of cells
    to read or the rows themselves), and assembles the results; this module knows none of them.

    Parameters
    ----------
    client : dask.distributed.Client
    task : callable
        A module-level function (workers import it by name), run under ``task_threads(threads)`` numba threads.
    payloads : iterable
        One per task; ``i`` is its position.
    shared : tuple
        Objects every task needs, sent once to each worker (``scatter(broadcast=True)``), not once per task.
    threads : int, optional
        Threads per task (None: the worker's cores shared by its task slots).

    Yields
    ------
    (i, result) : each result is released on the cluster once yielded, so results do not pile up there.
    """
    shared_futures = tuple(client.scatter(obj, broadcast=True) for obj in shared)
    with _blocks_are_the_payload():
        futures = [
            client.submit(
                _run_block, task, threads, payload, shared_futures, pure=False, retries=TASK_RETRIES
            )
            for payload in payloads
        ]
    yield from _gather_in_order(client, futures, list(range(len(futures))))


# --------------------------------------------------------------------------------------------------
# Tokenize
# --------------------------------------------------------------------------------------------------
def _tokenize_task(payload: tuple, mapper, threads: int | None):
    from fastembed.common.threads import numba_threads

    # A shallow copy with its own counters: the entries counted for the tokenize diagnostics are this block's
    # alone, whatever else the worker runs on its copy of the mapper.
    local = copy.copy(mapper)
    local.n_counts = local.n_counts_in_universe = 0
    with numba_threads(task_threads(threads)):
        ip, ix = _block_tokens(payload, local)
    return ip, ix, local.n_counts, local.n_counts_in_universe


@contextlib.contextmanager
def _blocks_are_the_payload():
    """Silence Dask's "Sending large graph ... consider scattering" for our submits: a task's argument is one
    block of cells, sent to the one worker that needs it and bounded by ``batch_cells``; the shared state is
    already scattered once. The advice names Dask internals a user of fastembed cannot act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph")
        yield


def tokenize_blocks(client, adata, source, mapper, spans, threads: int | None = None) -> list:
    """Token blocks of every cell of ``adata``, each block ``(lo, hi)`` of ``spans`` a task:
    ``[(indptr int64, indices int32), ...]`` in cell order (what :meth:`fastembed.tokenize._PeakMapper.tokens`
    gives for each block). The blocks' entry counts are added to ``mapper.n_counts`` and
    ``mapper.n_counts_in_universe``."""
    spans = list(spans)
    path = _source_path(source)
    shared = client.scatter(mapper, broadcast=True)
    with _blocks_are_the_payload():
        futures = [
            client.submit(
                _tokenize_task,
                _x_payload(adata, path, lo, hi),
                shared,
                threads,
                pure=False,
                retries=TASK_RETRIES,
            )
            for lo, hi in spans
        ]
    out: list = [None] * len(spans)
    for i, (ip, ix, n_counts, n_in_universe) in _gather_in_order(client, futures, list(range(len(spans)))):
        out[i] = (ip, ix)
        mapper.n_counts += n_counts  # the caller's mapper reports the whole dataset, as in the serial path
        mapper.n_counts_in_universe += n_in_universe
    return out


# --------------------------------------------------------------------------------------------------
# Encode
# --------------------------------------------------------------------------------------------------
def _encode_task(
    payload: tuple,
    model,
    mapper,
    pooling: str,
    weights: np.ndarray,
    lo: int,
    hi: int,
    store: str | None,
    threads: int | None,
):
    from fastembed.common.threads import numba_threads

    with numba_threads(task_threads(threads)):
        ip, ix = _block_tokens(payload, mapper)
        block = np.zeros((hi - lo, model.embedding_dim), dtype=np.float32)
        n_empty = model._pool(ip, ix, weights, pooling, block, f"cells {lo}:{hi}")
    if store is None:
        return block, n_empty
    from pathlib import Path

    import zarr

    from fastembed.storage.zarrstore import GuardedStore

    # Guarded: a worker's write never re-creates the temporary (or its folder) after it was removed.
    emb = zarr.open_array(GuardedStore(Path(store)), mode="r+")
    if lo % emb.chunks[0] or (hi % emb.chunks[0] and hi != emb.shape[0]):
        raise ValueError(
            f"zarr output '{store}': chunks of {emb.chunks[0]} cells do not match the block "
            f"{lo}:{hi}; a retried block would not rewrite exactly its own chunks"
        )
    emb[lo:hi] = block  # whole chunks of its own: a rerun writes the same bytes
    return None, n_empty


def encode_blocks(
    client,
    model,
    n_cells: int,
    mapper,
    payloads,
    pooling: str,
    weights: np.ndarray,
    spans,
    store: Path | None,
) -> tuple[np.ndarray | None, int]:
    """Encode every cell of ``data`` as one task per block ``(lo, hi)`` of ``spans``.

    Parameters
    ----------
    client : dask.distributed.Client
    model : ScEmbed
        Trained; a copy without its output vectors is sent to each worker once.
    n_cells, mapper, payloads
        From ``ScEmbed._encode_inputs``: the cell count, the peak-to-token map (None for token inputs) and
        one payload per block.
    pooling, weights
        Resolved by ``encode``.
    spans : list of (lo, hi)
        The blocks, one task each; with ``store``, each starts and ends on its chunk boundaries.
    store : pathlib.Path, optional
        The ``embeddings`` array of a zarr store already created, chunked so that every block is whole chunks;
        the tasks write into it. None: the blocks come back and are assembled here.

    Returns
    -------
    embeddings : np.ndarray of float32, shape (n_cells, embedding_dim), or None (written to ``store``)
    n_empty : int
        Cells without a trained token.
    """
    light = copy.copy(model)
    light._output_vectors = None  # not needed to encode; halves what each worker receives
    shared_model = client.scatter(light, broadcast=True)
    shared_mapper = client.scatter(mapper, broadcast=True) if mapper is not None else None
    store_arg = None if store is None else str(store)
    spans = list(spans)
    with _blocks_are_the_payload():
        futures = [
            client.submit(
                _encode_task,
                payload,
                shared_model,
                shared_mapper,
                pooling,
                weights,
                lo,
                hi,
                store_arg,
                model.threads,
                pure=False,
                retries=TASK_RETRIES,
            )
            for (lo, hi), payload in zip(spans, payloads, strict=True)
        ]
    result = np.zeros((n_cells, model.embedding_dim), dtype=np.float32) if store is None else None
    n_empty = 0
    for (lo, hi), (block, empty) in _gather_in_order(client, futures, spans):
        n_empty += empty
        if result is not None:
            result[lo:hi] = block
    return result, n_empty
