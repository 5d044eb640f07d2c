"""Write-then-rename helpers, so a failed or interrupted write never leaves a half-written output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def check_output_path(path: str | os.PathLike, *, what: str = "output", overwrite: bool = True) -> Path:
    """Check, before any work is done, that ``path`` can be written.

    Parameters
    ----------
    path
        The file or folder that will be created.
    what
        How the caller names this output in messages (e.g. ``"parquet output"``).
    overwrite
        If False, an existing ``path`` is an error.

    Returns
    -------
    pathlib.Path
        ``path`` as an absolute path.

    Raises
    ------
    FileNotFoundError
        The parent folder does not exist.
    PermissionError
        The parent folder is not writable.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path).expanduser().absolute()
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{what} '{path}': folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} '{path}': folder '{parent}' is not writable")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} '{path}' already exists; pass overwrite=True to replace it")
    return path


def _temp_name(path: Path) -> Path:
    # Same folder as the target, so the final os.replace is a rename on one file system.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    Parameters
    ----------
    path
        Final file path. Its folder must exist (see :func:`check_output_path`).

    Yields
    ------
    pathlib.Path
        Where the caller writes the whole file.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on error it is removed.

    Parameters
    ----------
    path
        Final folder path (e.g. a model folder or a ``.zarr`` store).
    overwrite
        Replace an existing ``path``. The old folder is only removed once the new one is complete.

    Yields
    ------
    pathlib.Path
        An empty folder the caller fills.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
