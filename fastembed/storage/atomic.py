"""Safe outputs: checks before writing, and write-then-rename helpers that never lose data.

Every output fastembed writes goes through here, so the rules hold everywhere:

- an output that is, or is a folder holding, one of the command's inputs is refused (files are compared by
  device and inode after following links, not by their names);
- an existing output is refused unless ``overwrite`` is set, and even then it is only replaced when it is
  something fastembed wrote and recognises (see :data:`KINDS`);
- a writer holds a lock on the destination (``.NAME.fastembed-lock`` beside it, an ``flock`` the kernel drops
  when the process dies; commands take it for their whole run), so a second writer of the same output fails
  instead of replacing the first; a fresh output is published with an exclusive step (``os.link`` for files,
  ``os.rename`` for folders, which both fail rather than replace existing data);
- an overwrite replaces the output in one step: a file with one ``os.replace``, a folder with one
  ``renameat2(RENAME_EXCHANGE)`` on Linux (the old folder then sits under the temporary's name until it is
  removed), so a reader of the path sees the complete old version or the complete new one at every moment.
  Where the exchange is missing (not Linux, old kernels, file systems that refuse it) the old folder is renamed
  aside first and the path is absent between two renames; a writer killed there leaves the old folder in
  ``.NAME.fastembed-PID-XXXX.old``, put back by the next write of that path (see :func:`_publish_dir`);
- outputs get the permissions the user's umask gives a new file or folder, not the 0600/0700 of temp files;
- temporaries of a killed writer (``.NAME.fastembed-PID-XXXX.tmp``/``.old``) are removed by the next writer
  of the same destination.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fastembed.common.errors import Keyword, OutputExistsError
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn
from fastembed.storage.marker import UNS_KEY

try:
    import fcntl
except ImportError:  # Windows: fall back to an O_EXCL lock file
    fcntl = None

LOCK_SUFFIX = ".fastembed-lock"
_TEMP_TAG = "fastembed"


# --------------------------------------------------------------------------------------------------
# What fastembed recognises as its own
# --------------------------------------------------------------------------------------------------
def _regular_file(path: Path) -> str | None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "it is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    return None


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_file(path: Path) -> str | None:
    return _regular_file(path)


def _is_parquet(path: Path) -> str | None:
    reason = _regular_file(path)
    if reason:
        return reason
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return "it is not a parquet file"
    if b"fastembed.format" not in meta:
        return "its parquet metadata has no fastembed.format entry"
    return None


def _is_h5ad(path: Path) -> str | None:
    reason = _regular_file(path)
    if reason:
        return reason
    if _head(path, 8) != b"\x89HDF\r\n\x1a\n":
        return "it is not an HDF5 file"
    import h5py

    try:
        with h5py.File(path, "r") as f:
            ours = "uns" in f and UNS_KEY in f["uns"]
    except Exception:
        return "it cannot be opened as HDF5"
    return None if ours else "it has no uns['fastembed'] entry"


def _is_csv(path: Path) -> str | None:
    reason = _regular_file(path)
    if reason:
        return reason
    # Our tables (commas or tabs) have one of three headers: labels 'barcode,predicted_<key>,confidence', the
    # demo's annotations (the same with true_cell_type after barcode) and clusters 'barcode,leiden'. A 'barcode'
    # first column alone is not enough: Cell Ranger's singlecell.csv and most cell tables start with one too.
    head = _head(path, 4096).split(b"\n", 1)[0].rstrip(b"\r")
    fields = head.split(b"\t" if head.startswith(b"barcode\t") else b",")
    labels = fields[-2:] if len(fields) == 3 or fields[1:2] == [b"true_cell_type"] else []
    labels = len(labels) == 2 and labels[0].startswith(b"predicted_") and labels[1] == b"confidence"
    if not (fields[0] == b"barcode" and (fields[1:] == [b"leiden"] or (labels and len(fields) <= 4))):
        return (
            "its header is not one fastembed writes ('barcode,predicted_<label>,confidence' or the demo's "
            "'barcode,leiden')"
        )
    return None


def _is_png(path: Path) -> str | None:
    reason = _regular_file(path)
    if reason:
        return reason
    return None if _head(path, 8) == b"\x89PNG\r\n\x1a\n" else "it is not a PNG image"


def _is_report(path: Path) -> str | None:
    reason = _regular_file(path)
    if reason:
        return reason
    return (
        None
        if _head(path, 64).startswith(b"# fastembed demo report")
        else "it is not a fastembed demo report"
    )


def small_yaml(path: Path) -> dict | None:
    """The mapping in a small (< 1 MiB) regular YAML file ``path``, or None if it is not one (never raises)."""
    import yaml

    try:
        if os.lstat(path).st_size > 1 << 20 or not path.is_file() or path.is_symlink():
            return None
        data = yaml.safe_load(path.read_text())
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _real_folder(path: Path) -> str | None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    return None


def folder_entries(path: Path, allowed, foreign_what: str) -> tuple[set, str | None]:
    """The names in folder ``path``, and why it is not a fastembed folder (a link, or a name not in ``allowed``)."""
    """The names in folder ``path`` and why it is not ours: not a real folder, or names outside ``allowed``."""
    reason = _real_folder(path)
    if reason:
        return set(), reason
    names = set(os.listdir(path))
    foreign = sorted(names - set(allowed))
    if foreign:
        return names, f"it holds {foreign_what} ({', '.join(foreign[:3])})"
    return names, None


# The entries of an AnnData zarr store (what encode writes), and of the bare group earlier versions wrote.
_ZARR_TOP = {
    "zarr.json",
    ".zgroup",
    ".zattrs",
    ".zmetadata",
    "obs",
    "var",
    "obsm",
    "varm",
    "obsp",
    "varp",
    "layers",
    "uns",
    "raw",
    "embeddings",
    "barcodes",
}


def _is_zarr(path: Path) -> str | None:
    import json

    _, reason = folder_entries(path, _ZARR_TOP, "entries an embeddings store does not")
    if reason:
        return reason
    attrs = None
    for meta, key in (("zarr.json", "attributes"), (".zattrs", None)):
        f = path / meta
        if f.is_file() and not f.is_symlink() and f.stat().st_size < 1 << 20:
            try:
                doc = json.loads(f.read_text())
            except ValueError:
                return f"its {meta} is not JSON"
            attrs = doc.get(key) if key else doc
            break
    if not isinstance(attrs, dict) or "fastembed_version" not in attrs:
        return "its zarr attributes have no fastembed_version"
    return None


def _is_demo_folder(path: Path) -> str | None:
    # The demo writes its named outputs into the folder and leaves anything else in it alone.
    return _real_folder(path)


#: Output kinds: a description for messages, and a check that returns None when an existing path is something
#: fastembed wrote (and may replace with ``overwrite``), else why not. Plain files ("file") are replaced when
#: they are regular files; a folder or a link is never replaced by a file.
KINDS: dict[str, tuple[str, Callable[[Path], str | None]]] = {
    "file": ("file", _is_file),
    "parquet": ("token parquet file", _is_parquet),
    "h5ad": (".h5ad file", _is_h5ad),
    "csv": ("CSV table", _is_csv),
    "png": ("PNG image", _is_png),
    "report": ("demo report", _is_report),
    "zarr": ("zarr store", _is_zarr),
    "demo": ("demo folder", _is_demo_folder),
}
_FOLDER_KINDS = {"zarr", "demo"}


def register_kind(
    kind: str, description: str, recognise: Callable[[Path], str | None], *, folder: bool = False
) -> None:
    """Add an output kind that :func:`check_output_path` and the atomic writers accept.

    A format that lives above this module (the model folder) registers its own recogniser when it is imported, so
    the safe-output machinery never imports the formats. ``recognise(path)`` returns None when the existing
    ``path`` is one fastembed wrote (and ``overwrite`` may replace it), else why not; ``folder`` marks a kind whose
    output is a folder (an empty real folder is then taken as fresh).
    """
    KINDS[kind] = (description, recognise)
    if folder:
        _FOLDER_KINDS.add(kind)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------
def _input_paths(inputs: Iterable) -> list[Path]:
    out = []
    for item in inputs:
        if item is None:
            continue
        if not isinstance(item, str | os.PathLike):
            # An in-memory AnnData opened in backed mode still reads its file.
            name = getattr(item, "filename", None) if getattr(item, "isbacked", False) else None
            if name is None:
                continue
            item = name
        p = Path(item).expanduser()
        if os.path.lexists(p):
            out.append(p.absolute())
    return out


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _clashing_input(path: Path, inputs: list[Path]) -> Path | None:
    """The first input that ``path`` is, or that lies in the folder ``path`` (links followed both ways)."""
    targets = []
    for p in {path, Path(os.path.realpath(path))}:
        with contextlib.suppress(OSError):
            targets.append(os.stat(p))
        with contextlib.suppress(OSError):
            targets.append(os.lstat(p))
    if not targets:
        return None
    for inp in inputs:
        # The input as named and as resolved: a link inside the output folder is as much at risk as its target.
        for cand in (inp, Path(os.path.realpath(inp))):
            for anc in (cand, *cand.parents):
                try:
                    st = os.stat(anc)
                except OSError:
                    continue
                if any(_same(st, t) for t in targets):
                    return inp
            with contextlib.suppress(OSError):
                if any(_same(os.lstat(cand), t) for t in targets):
                    return inp
    return None


def _empty_real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and not os.listdir(path)
    except OSError:
        return False


def check_output_path(
    path: str | os.PathLike,
    *,
    what: str = "output",
    overwrite: bool = False,
    inputs: Iterable = (),
    kind: str = "file",
) -> Path:
    """Check, before any work is done, that ``path`` may be written.

    Parameters
    ----------
    path
        The file or folder that will be created.
    what
        How the caller names this output in messages (e.g. ``"parquet output"``).
    overwrite
        Allow replacing an existing ``path``, but only one that fastembed wrote and recognises as a ``kind``.
    inputs
        Paths (or backed AnnData objects) the command reads. ``path`` may not be one of them, nor a folder
        holding one; ``None`` and in-memory objects are skipped.
    kind
        A key of :data:`KINDS`: what the output is, so an existing one can be recognised.

    Returns
    -------
    pathlib.Path
        ``path`` as an absolute path (links not resolved).

    Raises
    ------
    FileNotFoundError
        The parent folder does not exist.
    PermissionError
        The parent folder is not writable.
    ValueError
        ``path`` is, or holds, one of ``inputs``.
    FileExistsError
        ``path`` exists and ``overwrite`` is False, or it is not something fastembed wrote.
    """
    path = _check_output_path(path, what=what, overwrite=overwrite, inputs=inputs, kind=kind)
    if kind == "parquet" and not has_suffix(path, ".parquet"):
        # Checked after the rest, so an output that is an input or someone's file is refused as such first.
        # Named otherwise, a token file is read as something else downstream (encode takes it for an AnnData).
        raise ValueError(
            f"{what} '{path}': tokens are written as parquet; expected a path ending in .parquet"
        )
    return path


def _check_output_path(path, *, what: str, overwrite: bool, inputs: Iterable, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not str(path).strip():  # Path("") is the current folder: never what an empty --output meant
        raise ValueError(f"{what}: the path is empty")
    path = Path(path).expanduser().absolute()
    clash = _clashing_input(path, _input_paths(inputs))
    if clash is not None:
        try:
            rel = "is" if os.path.samefile(clash, path) else "holds"
        except OSError:
            rel = "is"
        raise ValueError(
            f"{what} '{path}' {rel} the input '{clash}'; writing it would destroy the input: "
            "choose another output path"
        )
    parent = path.parent
    if not parent.is_dir():
        if os.path.lexists(parent):
            raise NotADirectoryError(f"{what} '{path}': '{parent}' is a file, not a folder")
        raise FileNotFoundError(f"{what} '{path}': folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} '{path}': folder '{parent}' is not writable")
    if not os.path.lexists(path) or kind == "demo":
        if kind == "demo" and os.path.lexists(path) and (reason := _real_folder(path)):
            raise FileExistsError(f"{what} '{path}' exists and {reason}; expected a folder")
        return path
    if kind in _FOLDER_KINDS and _empty_real_folder(path):
        return path  # an empty folder holds nothing to lose
    # Recognised first: telling a user to pass overwrite= for a path that overwrite= will refuse sends them
    # round in a circle.
    desc, recognise = KINDS[kind]
    reason = recognise(path)
    if reason:
        raise FileExistsError(
            f"{what} '{path}' exists and is not a {desc} written by fastembed ({reason}); "
            "refusing to replace it: move it away or choose another path"
        )
    if not overwrite:
        overwrite = Keyword("overwrite", True)
        raise OutputExistsError(
            f"{what} '{path}' already exists; pass {overwrite} to replace it", path, keywords=(overwrite,)
        )
    return path


# --------------------------------------------------------------------------------------------------
# Lock, permissions, temporaries
# --------------------------------------------------------------------------------------------------
def lock_path(path: str | os.PathLike) -> Path:
    """The lock file that guards writes to ``path``: ``.NAME.fastembed-lock`` in its (resolved) folder."""
    path = Path(path).expanduser().absolute()
    # Resolving the folder gives every spelling of the same destination the same lock.
    return Path(os.path.realpath(path.parent)) / f".{path.name}{LOCK_SUFFIX}"


# Locks this process holds: lock file -> [owning thread, depth]. A command takes the lock of its output before
# its work and the writer takes it again at the end; the same thread may re-enter, any other writer fails.
_held: dict[Path, list] = {}
_held_guard = threading.Lock()


def _acquire(lock: Path, busy: Exception) -> int:
    if fcntl is None:
        try:
            return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise busy from None
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy from None
            raise
        # The previous holder may have unlinked the file between our open and flock: then we hold a lock
        # nobody else can see, so start again on the current file.
        try:
            same = _same(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            # Who holds it, for a person looking; the flock is the lock, so a full disk here is no failure.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, what: str = "output") -> Iterator[None]:
    """Hold the write lock of ``path``; raise ``FileExistsError`` at once if another writer holds it.

    With ``fcntl`` the lock is an ``flock`` on ``.NAME.fastembed-lock``: the kernel releases it when the writer
    exits or is killed, so a dead writer never blocks the next one. The thread holding it may take it again
    (a command locks its output for its whole run; the writer inside locks it once more).
    """
    lock = lock_path(path)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(lock)
        if entry is not None and entry[0] == me:
            entry[1] += 1
    if entry is not None and entry[0] == me:
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    busy = FileExistsError(
        f"{what} '{path}' is being written by another process (lock '{lock}'); "
        "wait for it to finish or choose another path"
    )
    try:
        fd = _acquire(lock, busy)
    except OSError as err:  # the lock file cannot be created: a full disk, a read-only folder
        named = _as_write_error(err, Path(path).expanduser().absolute(), what, None)
        if named is err:
            raise
        raise named from err
    with _held_guard:
        _held[lock] = [me, 1]
    try:
        yield
    finally:
        with _held_guard:
            del _held[lock]
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    # Setting and restoring is the only portable way; the window is two system calls.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_TEMP_TAG}-{os.getpid()}-"


def _temp_pattern(path: Path) -> re.Pattern:
    name = re.escape(path.name)
    # Ours (with the writer's PID) and the PID-less names of fastembed 0.x (mkstemp's 8 random characters).
    return re.compile(rf"^\.{name}\.(?:{_TEMP_TAG}-(?P<pid>\d+)-[\w]+|[a-z0-9_]{{8}})\.(?:tmp|old)$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries that killed writers of ``path`` left beside it; call while holding its lock.

    Only names of fastembed's own pattern for this destination are touched. One whose writer's PID is still
    running (another host on a shared file system, or a reused PID) is kept and reported in a warning. An old
    output moved aside by an overwrite that was killed before the new one was published is put back.

    Returns
    -------
    list of pathlib.Path
        The temporaries removed.
    """
    path = Path(path)
    pattern = _temp_pattern(path)
    removed, kept = [], []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        tmp = path.parent / name
        if tmp in _SCRATCH:
            continue  # a scratch folder of this process's writer of path, in use
        if m["pid"] is not None and int(m["pid"]) != os.getpid() and _pid_alive(int(m["pid"])):
            kept.append(tmp)
            continue
        saved = tmp / "x"
        if name.endswith(".old") and os.path.lexists(saved) and not os.path.lexists(path):
            # Killed between moving the old output aside and publishing the new one: the old one is all there is.
            os.rename(saved, path)
            warn(f"restored '{path}' from '{tmp}', left by an interrupted overwrite")
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()
        removed.append(tmp)
    if kept:
        warn(
            f"temporary '{kept[0]}' (and {len(kept) - 1} more) of an earlier write to '{path}' belongs "
            "to a process that is still running; remove it by hand if no fastembed is writing there",
        )
    return removed


def _as_write_error(err: Exception, path: Path, what: str, tmp: Path | None) -> Exception:
    """``err`` as one message naming ``path`` and the cause (full disk, not writable, removed), or as it is."""
    if isinstance(err, FileExistsError) or getattr(err, "_fastembed_named", False):
        return err  # ours already: a clash found at publishing, or a writer's own message naming the path
    if _in_temporary(path):
        return err  # a file inside a folder being written: the folder's writer names the user's path
    from fastembed.storage.faults import write_error

    out = write_error(err, path, what, tmp)
    if out is None:
        return err
    out._fastembed_named = True  # an enclosing writer (the demo's folder) passes it on unchanged
    return out


# Temporary folders being written now (atomic_dir): a file written inside one is part of that output.
_WRITING: set[Path] = set()


def _in_temporary(path: Path) -> bool:
    return any(path.is_relative_to(t) for t in list(_WRITING))


#: Every output this process published, in order (the command line says which were written when it is
#: interrupted).
PUBLISHED: list[Path] = []


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and raise it at the block's end.

    A publish step and its record, or the removal of a temporary, then either happen whole or not at all. The
    handler is swapped at the Python level, so it holds whichever thread the kernel delivers the signal to;
    outside the main thread (where handlers cannot be changed) the block runs as it is.
    """
    import signal

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # not the main thread, or a handler installed outside Python, which Python cannot restore
        return
    pending = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------------
# Publishing a folder: an exchange in one step where the system has one
# --------------------------------------------------------------------------------------------------
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_renameat2 = None  # the libc function, looked up once; False where libc has none


def _libc_renameat2():
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.x
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _renameat2 = fn
    return _renameat2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the entries ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or the file system has no such call (not Linux,
    a libc without ``renameat2``, a kernel before 3.15, or a file system that refuses the flag: some network
    and FUSE file systems); raises ``OSError`` for any other failure.
    """
    fn = _libc_renameat2()
    if not fn:
        return False
    import ctypes

    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _discard(path: Path) -> None:
    """Remove a temporary (folder or file) if it is there; never raises."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _publish_dir(tmp: Path, path: Path, replace: bool, what: str) -> None:
    """Put the complete folder ``tmp`` at ``path``; the old ``path`` (if ``replace``) ends up at ``tmp``.

    With an exchange (Linux) a reader of ``path`` sees the whole old folder up to one system call and the
    whole new one after it, and a writer killed at any moment leaves the old or the new folder at ``path``
    (the other, under the temporary's name, is removed by the next writer). Without it the old folder is
    renamed aside first: for the time between two renames ``path`` does not exist, and a writer killed in that
    window leaves the old folder in ``.NAME.fastembed-PID-XXXX.old``, which the next write of ``path``, or
    :func:`clean_stale_temporaries`, puts back.
    """
    if not replace:
        try:
            # rename() onto a folder only succeeds if it is empty, so nothing can be lost here.
            os.rename(tmp, path)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(
                    f"{what} '{path}' was created by someone else while fastembed was "
                    f"writing it ({err.strerror}); left it as it is"
                ) from None
            raise
        return
    if _exchange(tmp, path):
        return  # the old folder is now at tmp, which the caller removes
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
    try:
        os.replace(path, old / "x")
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(old / "x") and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.replace(old / "x", path)  # put the old output back rather than lose it
        if os.path.lexists(path):
            _discard(old)  # else it holds the only copy: the next write of path puts it back
        raise
    _discard(old)


def _publish_file(tmp: Path, path: Path, replace: bool, what: str) -> None:
    if replace:
        os.replace(tmp, path)
        return
    try:
        # link() fails if path exists, so a file that appeared meanwhile is never replaced.
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            f"{what} '{path}' was created by someone else while fastembed was writing it; left it as it is"
        ) from None
    except OSError:
        # File systems without hard links: the lock still excludes other fastembed writers.
        if os.path.lexists(path):
            raise FileExistsError(
                f"{what} '{path}' was created by someone else while fastembed was writing it; "
                "left it as it is"
            ) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def held_output(
    output: str | os.PathLike | None, *, what: str, overwrite: bool, inputs: Iterable, kind: str
) -> Iterator[Path | None]:
    """Check an optional output path and hold its lock for a whole run.

    A second writer of the same output then fails at once rather than after the work. ``output`` None (the
    result stays in memory) yields None and holds nothing; otherwise yields the checked absolute path
    (:func:`check_output_path` with the other arguments); the run publishes it with :func:`atomic_file` or
    :func:`atomic_dir`, which take the same lock again (it is re-entrant for its holder).
    """
    if output is None:
        yield None
        return
    out_path = check_output_path(output, what=what, overwrite=overwrite, inputs=inputs, kind=kind)
    with output_lock(out_path, what=what):
        yield out_path


@contextlib.contextmanager
def _write_then_publish(path, what: str, overwrite: bool, inputs: Iterable, kind: str, *, folder: bool):
    """The one write-then-publish sequence behind :func:`atomic_file` (``folder=False``) and :func:`atomic_dir`."""
    path = Path(path).expanduser().absolute()
    inputs = list(inputs)
    check_output_path(path, what=what, overwrite=overwrite, inputs=inputs, kind=kind)
    with output_lock(path, what=what):
        clean_stale_temporaries(path)  # first: it may put back an output a killed overwrite moved aside
        check_output_path(path, what=what, overwrite=overwrite, inputs=inputs, kind=kind)
        # Decided now, under the lock: only what was checked above may be replaced, never an output that appears
        # while we write. An empty real folder (e.g. made by a file manager) is taken over, not swapped.
        replace = os.path.lexists(path) and not (folder and _empty_real_folder(path))
        tmp = None
        try:
            if folder:
                tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
                _WRITING.add(tmp)
            else:
                fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
                os.close(fd)
                tmp = Path(name)
            yield tmp
            os.chmod(tmp, (0o777 if folder else 0o666) & ~current_umask())
            # Publishing and recording it are one step for an interrupt: the command line then says exactly
            # whether the output was written.
            with deferred_interrupt():
                (_publish_dir if folder else _publish_file)(tmp, path, replace, what)
                if not _in_temporary(path):
                    PUBLISHED.append(path)
        except Exception as err:
            named = _as_write_error(err, path, what, tmp)
            if named is err:
                raise
            raise named from err
        finally:
            if tmp is not None:
                _WRITING.discard(tmp)
                with deferred_interrupt():  # a second Ctrl-C must not leave half a temporary behind
                    _discard(tmp)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike,
    *,
    what: str = "output",
    overwrite: bool = False,
    inputs: Iterable = (),
    kind: str = "file",
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on error it is deleted.

    Parameters
    ----------
    path
        Final file path. Its folder must exist.
    what, overwrite, inputs, kind
        As for :func:`check_output_path`, which runs again under the lock before anything is written.

    Yields
    ------
    pathlib.Path
        Where the caller writes the whole file. It is given the umask's permissions before it is published.

    Raises
    ------
    OSError
        As for :func:`atomic_dir`: one message naming ``path`` and the cause; the temporary and lock removed.
    """
    with _write_then_publish(path, what, overwrite, inputs, kind, folder=False) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    what: str = "output",
    overwrite: bool = False,
    inputs: Iterable = (),
    kind: str = "model",
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on error it is removed.

    Parameters
    ----------
    path
        Final folder path (e.g. a model folder or a ``.zarr`` store).
    what, overwrite, inputs, kind
        As for :func:`check_output_path`. With ``overwrite`` the old folder (one fastembed recognises) is
        swapped for the new one in one step once the new one is complete, then removed (see
        :func:`_publish_dir` for systems without the exchange).

    Yields
    ------
    pathlib.Path
        An empty folder the caller fills.

    Raises
    ------
    OSError
        A failure of the writer or of the publish step, as one message naming ``path`` and the cause (see
        :func:`fastembed.storage.faults.write_error`); the temporary and the lock are removed first. Errors that are
        not I/O failures (a bad value, a failed allocation) are raised as they are.
    """
    with _write_then_publish(path, what, overwrite, inputs, kind, folder=True) as tmp:
        yield tmp


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike, *, what: str) -> Iterator[Path]:
    """A temporary folder beside the output ``path`` for a writer's intermediate files.

    Removed when the ``with`` block ends, by an error or Ctrl-C too; one left by a killed writer carries
    fastembed's temporary name for ``path`` (hidden, with the writer's PID), so the next write to ``path``
    removes it (:func:`clean_stale_temporaries`). Call while holding ``path``'s lock.

    Parameters
    ----------
    path : str or os.PathLike
        The output the intermediate files are for; the folder is created in its parent folder.
    what : str
        How messages name the output (``"parquet output"``), when the folder cannot be created.

    Yields
    ------
    pathlib.Path
        The new, empty folder.
    """
    path = Path(path)
    try:
        folder = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _as_write_error(err, path, what, None) from None
    _SCRATCH.add(folder)
    try:
        yield folder
    finally:
        _SCRATCH.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)


# Scratch folders in use by this process (scratch_folder): clean_stale_temporaries leaves them alone.
_SCRATCH: set[Path] = set()
