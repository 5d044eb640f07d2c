"""A zarr store for fastembed's temporaries: it never re-creates a folder someone removed, and it can be closed.

zarr's ``LocalStore`` creates every missing folder above a key it writes (and its own root when opened), so a
user who removes the output's folder while ``encode`` writes a store finds it back, holding a half-written
temporary. Its writes also run on zarr's own I/O thread: an interrupt in the main thread leaves them running,
and they can write into a temporary after it was removed. :class:`GuardedStore` writes only inside a root that
exists (folders are made one level at a time, so a removed root or parent is an error, never re-created), and
:func:`guarded_store` closes it on the way out: new writes are refused and those in flight are waited for,
before the caller removes the temporary.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from zarr.abc.store import Store
from zarr.storage import LocalStore

try:  # zarr 3's write-then-rename of one key (a reader never sees half a chunk)
    from zarr.storage._local import _atomic_write
except ImportError:  # pragma: no cover - a later zarr that moved it: write in place
    _atomic_write = None


class _Guard:
    """Writes in flight, and whether new ones are still allowed (shared by a store's read-only twin)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.inflight = 0
        self.closed = False

    @contextlib.contextmanager
    def writing(self, root: Path) -> Iterator[None]:
        with self.cond:
            if self.closed:
                raise FileNotFoundError(errno.ENOENT, "the store was closed after a failure", str(root))
            self.inflight += 1
        try:
            yield
        finally:
            with self.cond:
                self.inflight -= 1
                self.cond.notify_all()

    def close(self, timeout: float) -> bool:
        with self.cond:
            self.closed = True
            return self.cond.wait_for(lambda: self.inflight == 0, timeout)


class GuardedStore(LocalStore):
    """A ``zarr.storage.LocalStore`` that writes only inside its existing root folder, and can be closed.

    Parameters
    ----------
    root
        An existing folder (fastembed's temporary); it is never created, nor any folder above it.
    read_only
        As for ``LocalStore``.
    """

    def __init__(self, root: Path | str, *, read_only: bool = False, _guard: _Guard | None = None) -> None:
        super().__init__(root, read_only=read_only)
        self._guard = _guard or _Guard()

    def with_read_only(self, read_only: bool = False) -> GuardedStore:
        return type(self)(self.root, read_only=read_only, _guard=self._guard)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(errno.ENOENT, "removed while it was being written", str(self.root))

    async def _open(self, *, mode=None) -> None:
        self._check_root()  # LocalStore would create it (and every missing folder above it)
        await Store._open(self)

    def _ensure_open_sync(self) -> None:
        if not self._is_open:
            self._check_root()
            self._is_open = True

    async def clear(self) -> None:
        self._check_writable()
        for entry in os.scandir(self.root):  # its contents, never the root itself
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    async def delete_dir(self, prefix: str) -> None:
        if prefix.strip("/") in ("", "."):
            await self.clear()  # opening with mode="w" empties the store; LocalStore removes the root itself
            return
        await super().delete_dir(prefix)

    def _put(self, key: str, value, exclusive: bool = False) -> int:
        with self._guard.writing(self.root):
            folder = self.root
            for part in key.split("/")[:-1]:
                folder = folder / part
                # One level at a time: mkdir fails if the folder above is gone instead of re-creating it.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder)
            view = value.as_buffer_like()
            path = self.root / key
            if _atomic_write is None:
                with open(path, "xb" if exclusive else "wb") as fh:
                    return fh.write(view)
            with _atomic_write(path, "wb", exclusive=exclusive) as fh:
                return fh.write(view)

    def set_sync(self, key: str, value) -> None:
        self._ensure_open_sync()
        self._check_writable()
        self._put(key, value)

    async def _set(self, key: str, value, exclusive: bool = False) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(self._put, key, value, exclusive)

    def close_and_wait(self, timeout: float = 120.0) -> bool:
        """Refuse new writes and wait for those in flight; False if some still run after ``timeout`` s."""
        return self._guard.close(timeout)


@contextlib.contextmanager
def guarded_store(root: Path) -> Iterator[GuardedStore]:
    """A :class:`GuardedStore` on the existing folder ``root``, closed (writes drained) on the way out."""
    store = GuardedStore(root)
    try:
        yield store
    finally:
        if not store.close_and_wait():
            from fastembed.common.warn import warn

            warn(
                f"zarr writes into '{root}' were still running after 120 s; its temporary may be left behind"
            )
