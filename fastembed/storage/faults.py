"""Faults while writing, as one clear message: a full disk, a folder that is not writable or was removed, a
failed allocation; and an ``.h5ad`` writer that reports a full disk instead of crashing the interpreter.

Every fastembed output is written through :func:`fastembed._atomic.atomic_file` or
:func:`fastembed._atomic.atomic_dir`, which pass any failure of the writer through :func:`write_error`; the
command line prints the result as one line. :func:`memory_error` is the one place that maps a failed allocation
to the setting that lowers the memory a step needs.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

# Below this many free bytes a failed write is taken to be the full disk, whatever the library said (numpy's
# "1000700 requested and 200672 written", HDF5's "file write failed", zarr's KeyError after a short write).
_FULL_BELOW = 1 << 20

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _errno_in_chain(err: BaseException | None) -> int | None:
    """The first errno of ``err`` or the exceptions it was raised from (h5py and pyarrow wrap the OS's)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code = getattr(err, "errno", None)
        if isinstance(code, int) and code:
            return code
        text = str(err)
        # HDF5 reports the OS error inside its message: "... errno = 28, error message = 'No space left ...'"
        for code in (*_NO_SPACE, *_NOT_WRITABLE):
            if f"errno = {code}," in text or os.strerror(code) in text:
                return code
        err = err.__cause__ or err.__context__
    return None


def _error(cls: type[OSError], code: int | None, message: str) -> OSError:
    """``cls(message)`` with ``errno`` set: printed as the message alone, without "[Errno N]"."""
    err = cls(message)
    err.errno = code
    return err


def _io_like(err: BaseException) -> bool:
    """Whether ``err`` may be a short write in disguise (not a bad value, which is reported as it is)."""
    module = type(err).__module__.split(".")[0]
    return isinstance(err, OSError | RuntimeError | KeyError) or module in (
        "h5py",
        "zarr",
        "pyarrow",
        "numcodecs",
    )


def _about_output(name, path: Path, tmp: Path | None) -> bool:
    """Whether the file ``name`` of an error is the output, its folder, its temporary or its lock."""
    try:
        named = {Path(os.path.abspath(os.fsdecode(name))), Path(os.path.realpath(os.fsdecode(name)))}
    except (TypeError, ValueError):
        return False
    folders = {path.parent, Path(os.path.realpath(path.parent))}
    for p in named:
        if p in folders or any(p.is_relative_to(q) for q in (path, tmp) if q is not None):
            return True
        if p.parent in folders and p.name.startswith(f".{path.name}."):
            return True  # .NAME.fastembed-lock, .NAME.fastembed-PID-*.tmp/.old
    return False


def write_error(err: BaseException, path: Path, what: str, tmp: Path | None = None) -> OSError | None:
    """One ``OSError`` naming ``path`` and the cause, for a writer of ``path`` that failed with ``err``.

    Parameters
    ----------
    err
        What the writer raised: an ``OSError`` or a library's I/O failure (h5py, zarr, pyarrow, numpy).
    path
        The output the user named (not the temporary).
    what
        How messages name the output (``"model folder"``).
    tmp
        The temporary being written, if any: its disappearance means someone removed it or its folder.

    Returns
    -------
    OSError or None
        ``FileNotFoundError`` when the output's folder (or the temporary) was removed while writing, an
        ``OSError`` with ``ENOSPC`` for a full disk (also when the library's message does not say so but the
        file system has less than 1 MiB free), ``PermissionError`` for a folder that is not writable, any other
        ``OSError`` as "could not write"; None for an error that is not an I/O failure (a bug or a bad value
        is raised as it is).
    """
    if is_memory_failure(err):
        return None  # not the disk's fault: the command line names the step and the setting that lowers it
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        gone = parent  # the topmost folder that is missing: the one the user removed
        for p in parent.parents:
            if p.is_dir():
                break
            gone = p
        return _error(
            FileNotFoundError,
            errno.ENOENT,
            f"{what} '{path}': folder '{gone}' was removed while fastembed was writing into it; "
            "nothing was written",
        )
    code = _errno_in_chain(err)
    if tmp is not None and code in (None, errno.ENOENT) and not os.path.lexists(tmp):
        return _error(
            FileNotFoundError,
            errno.ENOENT,
            f"{what} '{path}': its temporary '{tmp.name}' was removed by someone else while fastembed was "
            "writing it; nothing was written",
        )
    free = _free_bytes(parent)
    # An error about another file (an input the writer was still reading, even one in the same folder) is not
    # about the output.
    name = getattr(err, "filename", None)
    ours = name is None or _about_output(name, path, tmp)
    short = code is None and _io_like(err) and free is not None and free < _FULL_BELOW
    if code in _NO_SPACE or short:
        return _error(OSError, errno.ENOSPC, f"no space left on device writing {what} '{path}'")
    if not ours:
        return None
    if code in _NOT_WRITABLE:
        why = "is on a read-only file system" if code == errno.EROFS else "is not writable"
        return _error(
            PermissionError, code, f"{what} '{path}': folder '{parent}' {why} ({os.strerror(code)})"
        )
    # Any other failure is the output's only when it names the output, its folder, temporary or lock (an input
    # beside the output that cannot be read keeps its own message).
    if isinstance(err, OSError) and name is not None:
        text = str(err).strip()
        cause = err.strerror or (text.splitlines()[0] if text else type(err).__name__)
        return _error(OSError, code or err.errno, f"could not write {what} '{path}': {cause}")
    return None


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` as ``.h5ad`` such that a full disk raises ``OSError`` (ENOSPC).

    HDF5 writing a file itself reports a failed write with dozens of error lines and, on some paths (closing
    a file whose metadata could not be flushed), crashes the interpreter. Here the whole HDF5 image is built in
    memory (h5py's core driver with ``backing_store=False``: nothing touches the disk) and then written with
    Python's file I/O, which raises on ENOSPC like any other write. The cost is the file's size in memory,
    twice at the moment the image is copied out (see bench/RESULTS-archive.md, "h5ad on a full disk").

    Parameters
    ----------
    adata : anndata.AnnData
        In memory (not backed).
    path
        The file to create (a temporary, in fastembed's writers).
    """
    import h5py
    from anndata.io import write_elem

    if getattr(adata, "isbacked", False):
        raise ValueError("write_h5ad writes an in-memory AnnData; load a backed one with .to_memory() first")
    # What anndata.write_h5ad does to string columns first, so the file reads back the same.
    adata.strings_to_categoricals()
    if adata.raw is not None:
        adata.strings_to_categoricals(adata.raw.var)
    name = f"fastembed-{os.getpid()}-{id(adata)}.h5ad"  # a label for HDF5's messages; never a file
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        write_elem(f, "/", adata)
        f.flush()
        image = f.id.get_file_image()
    with open(path, "wb") as fh:
        view = memoryview(image)
        for lo in range(0, len(view), 1 << 26):
            fh.write(view[lo : lo + (1 << 26)])
        fh.flush()
        os.fsync(fh.fileno())
    del image


# --------------------------------------------------------------------------------------------------
# Failed allocations
# --------------------------------------------------------------------------------------------------
#: What lowers the memory of each step: the step's name in messages and the settings, as
#: (command-line flag, Python parameter). Keyed by the fastembed function (module.function) that was running;
#: the deepest match in the traceback wins. Extend it here when a setting (a memory budget) is added.
_BUDGET = ("--memory", "memory")  # the memory budget (settings.MEMORY_BUDGET) bounds one streaming block
MEMORY_STEPS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    # keys: the module's path below ``fastembed.`` and the function's qualified name, as in a traceback
    "genome.tokenize.tokenize_cells": ("tokenizing", (_BUDGET,)),
    "genome.fragments.tokenize_fragments": ("tokenizing fragments", (_BUDGET,)),
    "region2vec.Region2VecDataset.__init__": ("reading the tokens", (("--sample-cells", "sample_cells"),)),
    "scembed.ScEmbed.train": ("training", (("--sample-cells", "sample_cells"),)),
    "scembed.ScEmbed.encode": ("encoding", (_BUDGET, ("--batch-cells", "batch_cells"))),
    "annotation.annotate.annotate_celltypes": ("annotating", (_BUDGET,)),
    "annotation.annotate.annotate_celltypes_table": ("annotating", (_BUDGET,)),
    "genome.readers.read_h5ad": ("reading the input", ()),
    "storage.faults.write_h5ad": (
        "writing the .h5ad",
        (("--embeddings-only", "an .h5ad of obs and obsm only"),),
    ),
    "model.modelfolder.write_model_folder": ("saving the model", ()),
}
_COMMAND_STEPS = {
    "tokenize": "genome.tokenize.tokenize_cells",
    "train": "scembed.ScEmbed.train",
    "encode": "scembed.ScEmbed.encode",
    "annotate": "annotation.annotate.annotate_celltypes",
}
_NEEDED = re.compile(r"[Uu]nable to allocate ([\d.]+ [KMGTPE]?i?B)")


def is_memory_failure(err: BaseException) -> bool:
    """Whether ``err`` is a failed allocation: ``MemoryError``, a thread that cannot start, or HDF5's."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    if isinstance(err, RuntimeError) and "can't start new thread" in text:
        return True
    if isinstance(err, OSError | RuntimeError) or type(err).__module__.startswith("h5py"):
        # HDF5's and numpy's wording of a failed allocation
        return any(
            w in text for w in ("unable to allocate", "memory allocation failed", "can't allocate", "realloc")
        )
    return False


def _step_of(err: BaseException, command: str | None) -> str | None:
    found = None
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith("fastembed."):
            short = module[len("fastembed.") :]
            for key in (f"{short}.{code.co_qualname}", f"{short}.{code.co_name}"):
                if key in MEMORY_STEPS:
                    found = key
        tb = tb.tb_next
    return found or _COMMAND_STEPS.get(command or "")


def memory_error(err: BaseException, command: str | None = None, *, cli: bool = True) -> str:
    """One line for a failed allocation: the step, the memory it needed if known, and what lowers it.

    Parameters
    ----------
    err
        The exception (see :func:`is_memory_failure`).
    command
        The command that ran (``"train"``): the step when the traceback names none of :data:`MEMORY_STEPS`.
    cli
        Name the settings as command-line flags (True) or as Python parameters.

    Returns
    -------
    str
        E.g. ``"out of memory while encoding (needed 3.7 GiB more); lower --batch-cells"``.
    """
    key = _step_of(err, command)
    step, settings = MEMORY_STEPS.get(key, (f"running {command}" if command else "this step", ()))
    text = str(err)
    if isinstance(err, RuntimeError) and "can't start new thread" in text.lower():
        what = f"out of memory while {step}: a thread could not be started"
        settings = (("--threads", "threads"), *settings)
    else:
        what = f"out of memory while {step}"
        m = _NEEDED.search(text)
        if m:
            what += f" (an allocation of {m.group(1)} failed)"
    if settings:
        names = " or ".join(flag if cli else param for flag, param in settings)
        what += f"; lower the memory it needs with {names}"
    else:
        what += "; free memory or use a machine with more"
    available = _available()
    return f"{what} ({available})" if available else what


def _available() -> str:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB available now"
    except (OSError, ValueError, IndexError):
        pass
    return ""
