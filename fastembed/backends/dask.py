"""The Dask backend: a client for the command line and a generic map of task functions over blocks of cells.

The features that run on a ``dask.distributed`` cluster (tokenizing in :mod:`fastembed.genome.tokenize`, encoding
in :mod:`fastembed.scembed`, annotating in :mod:`fastembed.annotation.annotate`) each own their task function and
their payloads (:mod:`fastembed.genome.blocks` for blocks of a peak matrix); :func:`map_blocks` sends the small
shared state once to every worker (the peak-to-token map, the model's vectors, the fitted reference), submits one
task per payload and yields the results as they finish. This module knows none of the features.

Each task sets its own numba thread count (``numba.set_num_threads`` is per calling thread, and a worker's
pool cannot grow past ``numba.config.NUMBA_NUM_THREADS`` once started): the count asked for, or else the
worker's cores divided by its task slots.

A task is retried on a lost worker (``TASK_RETRIES``), so a task's output must be idempotent: the encoder, for
one, writes each block into whole zarr chunks of its own.

Dask is an optional dependency (``pip install 'dask[distributed]'``, or ``pip install '.[dask]'`` in a clone); nothing here imports it at module level.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

__all__ = ["open_client", "task_threads", "map_blocks"]

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


def map_blocks(
    client, task, payloads, *, shared: tuple = (), threads: int | None = None, window: int | None = None
) -> Iterator[tuple]:
    """Run ``task(payload, *shared)`` on the cluster, one task per payload; yield ``(i, result)`` as they finish
    (or, with ``window``, in payload order).

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
        Objects every task needs, sent once to each worker (``scatter(broadcast=True)``, under a fresh key each
        call), not once per task.
    threads : int, optional
        Threads per task (None: the worker's cores shared by its task slots).
    window : int, optional
        Results in payload order, with at most ``window`` tasks submitted and not yet yielded: a consumer that
        writes blocks in order (a parquet file) holds one block, and the cluster at most ``window`` results,
        whatever the number of payloads. ``payloads`` may then be a generator; it is read as tasks are submitted.
        None: every task submitted at once, results as they finish.

    Yields
    ------
    (i, result) : each result is released on the cluster once yielded, so results do not pile up there.
    """
    # hash=False: a fresh key per call. With content-hash keys, encoding twice with one model (a notebook cell run
    # again) scattered the second call's encoder under the key of the first, whose release was still under way:
    # the workers dropped the data the new tasks needed ("lost dependencies").
    shared_futures = tuple(client.scatter(obj, broadcast=True, hash=False) for obj in shared)
    if window is not None:
        yield from _in_order(client, task, threads, payloads, shared_futures, int(window))
        return
    with _blocks_are_the_payload():
        futures = [
            client.submit(
                _run_block, task, threads, payload, shared_futures, pure=False, retries=TASK_RETRIES
            )
            for payload in payloads
        ]
    yield from _gather_in_order(client, futures, list(range(len(futures))))


def _in_order(client, task, threads, payloads, shared_futures: tuple, window: int) -> Iterator[tuple]:
    """``map_blocks`` with a window: submit ahead up to ``window`` tasks, yield the oldest when it finishes."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pending: list = []  # futures in payload order, oldest first
    source = iter(payloads)

    def submit_more() -> None:
        while len(pending) < window:
            try:
                payload = next(source)
            except StopIteration:
                return
            with _blocks_are_the_payload():
                pending.append(
                    client.submit(
                        _run_block, task, threads, payload, shared_futures, pure=False, retries=TASK_RETRIES
                    )
                )

    submit_more()
    i = 0
    while pending:
        future = pending.pop(0)
        result = future.result()
        future.release()
        submit_more()  # before yielding: the cluster works on the next blocks while the consumer writes this one
        yield i, result
        i += 1


@contextlib.contextmanager
def _blocks_are_the_payload():
    """Silence Dask's "Sending large graph ... consider scattering" for our submits: a task's argument is one
    block of cells, sent to the one worker that needs it and bounded by ``batch_cells``; the shared state is
    already scattered once. The advice names Dask internals a user of fastembed cannot act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph")
        yield
