"""Crash consistency (issue 35): every output is the complete old version or the complete new one, whatever fails
and whenever; faults are injected AT each step of the publish sequence, not at random times."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastembed import _atomic
from fastembed._atomic import atomic_dir, atomic_file, clean_stale_temporaries, output_lock

REPO = Path(__file__).resolve().parents[1]
HAS_EXCHANGE = bool(_atomic._libc_renameat2())


# --------------------------------------------------------------------------------------------------
# A model folder (what fastembed recognises and may overwrite) in two versions
# --------------------------------------------------------------------------------------------------
def write_model(folder: Path, tag: str) -> None:
    """A folder fastembed recognises as a model folder, every file tagged with ``tag``."""
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(f"fastembed_version: test\ntag: {tag}\n")
    (folder / "universe.bed").write_text(f"chr1\t0\t10\t{tag}\n")
    (folder / "region_vectors.npy").write_bytes(tag.encode() * 1000)


def version(folder: Path) -> str | None:
    """'old' or 'new' when ``folder`` is one complete version, None when absent; fails on a mixture."""
    if not os.path.lexists(folder):
        return None
    tags = {
        (folder / "config.yaml").read_text().split("tag: ")[1].strip(),
        (folder / "universe.bed").read_text().split("\t")[3].strip(),
        (folder / "region_vectors.npy").read_bytes()[:3].decode(),
    }
    assert len(tags) == 1, f"{folder} mixes versions: {tags}"
    assert (folder / "region_vectors.npy").stat().st_size == 3000
    return tags.pop()


def leftovers(folder: Path, keep: str) -> list[str]:
    """Names in ``folder`` other than ``keep``: temporaries, old versions and locks left behind."""
    return sorted(n for n in os.listdir(folder) if n != keep)


def overwrite_model(path: Path) -> None:
    with atomic_dir(path, what="model folder", overwrite=True, kind="model") as tmp:
        write_model(tmp, "new")


@pytest.fixture(params=["exchange", "fallback"])
def mode(request, monkeypatch):
    """Both publish paths: the Linux exchange, and the rename-aside fallback of systems without it."""
    if request.param == "exchange" and not HAS_EXCHANGE:
        pytest.skip("renameat2 is not available here (not Linux or an old libc)")
    if request.param == "fallback":
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    return request.param


# The calls of the publish sequence, in the order a folder overwrite makes them.
STEPS = ["_exchange", "replace", "rename", "_discard"]


def patch_step(monkeypatch, name: str, before=None, after=None) -> None:
    """Wrap the publish call ``name`` (``_atomic._exchange``/``_discard`` or ``os.replace``/``os.rename``)."""
    owner = os if name in ("replace", "rename") else _atomic
    real = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if before:
            before(name)
        out = real(*args, **kwargs)
        if after:
            after(name)
        return out

    monkeypatch.setattr(owner, name, wrapped)


def test_exchange_is_used_on_linux(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux only")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "y").write_text("b")
    assert _atomic._exchange(a, b)
    assert (a / "y").exists() and (b / "x").exists()


def test_reader_sees_old_or_new_at_every_step(tmp_path, monkeypatch, mode):
    """A reader looking at the path before and after every call of the publish sequence."""
    path = tmp_path / "model"
    write_model(path, "old")
    seen = []

    def look(_name):
        seen.append(version(path))

    for name in STEPS:
        patch_step(monkeypatch, name, before=look, after=look)
    overwrite_model(path)
    assert version(path) == "new" and not leftovers(tmp_path, "model")
    assert seen, "the publish calls were not observed"
    if mode == "exchange":
        assert set(seen) <= {"old", "new"}, seen
        # Ordered: once new, never old again.
        assert seen == sorted(seen, key=lambda v: v == "new")
    else:
        # The documented window of the fallback: absent between the two renames, never a mixture.
        assert set(seen) <= {"old", "new", None} and "new" in seen


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_fault_at_each_publish_step(tmp_path, monkeypatch, mode, step, when):
    """A publish call that fails (before it acts, or after it acted) leaves old or new and a clean folder."""
    path = tmp_path / "model"
    write_model(path, "old")

    def fail(_name):
        raise OSError(5, "injected fault")

    patch_step(monkeypatch, step, **{when: fail})
    try:
        overwrite_model(path)
    except OSError as err:
        assert "injected fault" in str(err)
    assert version(path) in ("old", "new")
    assert not leftovers(tmp_path, "model") or step == "_discard"
    # Whatever a failed cleanup left, the next write removes.
    monkeypatch.undo()
    if mode == "fallback":
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    overwrite_model(path)
    assert version(path) == "new" and not leftovers(tmp_path, "model")


# A child that overwrites a model folder and SIGKILLs itself at one call of the publish sequence.
KILLER = textwrap.dedent(
    """
    import os, signal, sys, types
    from pathlib import Path

    # fastembed's package __init__ loads numba and anndata (seconds); the publish machinery needs none of it.
    pkg = types.ModuleType("fastembed")
    pkg.__path__ = [os.path.join(sys.argv[5], "fastembed")]
    sys.modules["fastembed"] = pkg
    from fastembed.storage import atomic as _atomic

    # The model folder registers its kind when fastembed.model.modelfolder is imported (numba, anndata: seconds);
    # the publish steps under test only need the kind to exist.
    _atomic.register_kind("model", "model folder", lambda p: None, folder=True)

    path, step, when, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    if mode == "fallback":
        _atomic._exchange = lambda a, b: False
    owner = os if step in ("replace", "rename") else _atomic
    real = getattr(owner, step)

    def wrapped(*args, **kwargs):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(owner, step, wrapped)
    with _atomic.atomic_dir(path, what="model folder", overwrite=True, kind="model") as tmp:
        (tmp / "config.yaml").write_text("fastembed_version: test\\ntag: new\\n")
        (tmp / "universe.bed").write_text("chr1\\t0\\t10\\tnew\\n")
        (tmp / "region_vectors.npy").write_bytes(b"new" * 1000)
    """
)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_at_each_publish_step(tmp_path, mode, step, when):
    """SIGKILL at each step: the path holds old or new (the fallback may leave the old one aside, put back by
    the next write), and the next write leaves a clean folder."""
    path = tmp_path / "model"
    write_model(path, "old")
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(path), step, when, mode, str(REPO)],
        capture_output=True,
        text=True,
    )
    called = proc.returncode == -signal.SIGKILL
    if not called:
        # The exchange path never calls os.replace/os.rename, the fallback never _exchange's swap.
        assert proc.returncode == 0, proc.stderr
        assert version(path) == "new" and not leftovers(tmp_path, "model")
        return
    now = version(path)
    if mode == "exchange":
        assert now in ("old", "new")
    else:
        assert now in ("old", "new", None)
    # The next writer (or a cleanup under the lock) restores a moved-aside old folder and removes the rest.
    with output_lock(path):
        clean_stale_temporaries(path)
    # What a reader saw stays; only the fallback's window (nothing at the path) is resolved, to the old one.
    assert version(path) == (now or "old")
    assert not leftovers(tmp_path, "model")


@pytest.mark.parametrize("when", ["before", "after"])
def test_file_overwrite_is_one_replace(tmp_path, monkeypatch, when):
    """A file overwrite is one os.replace: a reader sees the whole old or the whole new file around it."""
    path = tmp_path / "t.csv"
    path.write_text("barcode,leiden\nold,1\n")
    seen = []

    def look(_name):
        seen.append(path.read_text())

    patch_step(monkeypatch, "replace", **{when: look})
    with atomic_file(path, overwrite=True, kind="csv") as tmp:
        tmp.write_text("barcode,leiden\nnew,2\n")
    assert seen in (["barcode,leiden\nold,1\n"], ["barcode,leiden\nnew,2\n"])
    assert path.read_text() == "barcode,leiden\nnew,2\n" and not leftovers(tmp_path, "t.csv")


def test_exchange_failure_other_than_unsupported_is_raised(tmp_path):
    if not HAS_EXCHANGE:
        pytest.skip("renameat2 is not available here")
    with pytest.raises(FileNotFoundError):
        _atomic._exchange(tmp_path / "missing", tmp_path / "also-missing")


def test_fallback_restore_names_the_recovered_folder(tmp_path):
    """The fallback's window, as a killed writer leaves it: the old folder aside, nothing at the path."""
    path = tmp_path / "model"
    write_model(path, "old")
    aside = tmp_path / f".model.fastembed-{2**22 + 12345}-abcd.old"
    aside.mkdir()
    shutil.move(path, aside / "x")
    with pytest.warns(UserWarning, match="restored"):
        with output_lock(path):
            clean_stale_temporaries(path)
    assert version(path) == "old" and not leftovers(tmp_path, "model")


# --------------------------------------------------------------------------------------------------
# Every writer: a full disk, a read-only folder, a folder removed mid-write, a concurrent writer
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cells():
    from conftest import demo_cells

    return demo_cells(200, 1)


@pytest.fixture(scope="module")
def inputs(cells, tmp_path_factory):
    """cells.h5ad, its tokens and a small model, in a normal folder (the inputs of every writer below)."""
    import fastembed as fe
    from fastembed.datasets import demo_peaks_path
    from fastembed.scembed import ScEmbed

    folder = tmp_path_factory.mktemp("inputs")
    cells.write_h5ad(folder / "cells.h5ad")
    fe.tokenize_cells(cells, demo_peaks_path(), output=folder / "tokens.parquet")
    model = ScEmbed(embedding_dim=8, seed=0, threads=1).train(
        folder / "tokens.parquet", epochs=1, progress=False
    )
    model.save(folder / "model")
    return folder


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory):
    """A 4 MiB tmpfs: a disk that can be filled, and remounted read-only."""
    mnt = tmp_path_factory.mktemp("tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode:
        pytest.skip(
            f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.decode().strip()}"
        )
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def fs(small_fs):
    """The tmpfs, emptied before each test (and writable again)."""
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    for p in small_fs.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return small_fs


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte with one file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for block in (1 << 16, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * block) < block:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def snapshot(path: Path) -> dict:
    """Names and bytes of ``path`` (a file or every file under a folder)."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# How each writer is run from the command line, its output name, and the output kind.
def writer_args(name: str, inputs: Path, out: Path) -> list[str]:
    common = ["--output", str(out), "--overwrite", "--quiet"]
    return {
        "tokenize": [
            "tokenize",
            str(inputs / "cells.h5ad"),
            "--universe",
            str(inputs / "model" / "universe.bed"),
        ],
        "train": [
            "train",
            str(inputs / "tokens.parquet"),
            "--epochs",
            "1",
            "--embedding-dim",
            "8",
            "--threads",
            "1",
        ],
        "encode-h5ad": ["encode", str(inputs / "cells.h5ad"), "--model", str(inputs / "model")],
        "encode-zarr": ["encode", str(inputs / "cells.h5ad"), "--model", str(inputs / "model")],
    }[name] + common


OUTPUTS = {"tokenize": "t.parquet", "train": "model", "encode-h5ad": "e.h5ad", "encode-zarr": "e.zarr"}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    from fastembed.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("writer", list(OUTPUTS))
def test_full_disk_keeps_the_old_output_and_says_so(writer, inputs, fs, capsys):
    """Overwrite on a full disk: one line naming the path and 'no space left', the old output intact, no
    temporary and no lock left."""
    out = fs / OUTPUTS[writer]
    rc, err = run_cli(writer_args(writer, inputs, out), capsys)
    assert rc == 0, err
    before = snapshot(out)
    fill(fs)
    rc, err = run_cli(writer_args(writer, inputs, out), capsys)
    assert rc == 1
    assert err.count("\n") == 0 and "no space left on device writing" in err and str(out) in err, err
    assert snapshot(out) == before
    assert leftovers(fs, out.name) == ["filler"]


def test_model_save_on_a_full_disk_names_the_disk_and_the_path(inputs, fs):
    """Regression: numpy's '1000700 requested and 200672 written' from model.save."""
    from fastembed.scembed import ScEmbed

    model = ScEmbed.from_pretrained(inputs / "model")
    fill(fs)
    with pytest.raises(OSError, match=r"^no space left on device writing model folder '.*/m'$"):
        model.save(fs / "m")
    assert leftovers(fs, "m") == ["filler"]


def test_h5ad_writer_reports_enospc_without_hdf5_noise(cells, fs):
    """The .h5ad writer on a full disk: an OSError with ENOSPC from Python's write, nothing from HDF5."""
    import errno

    from fastembed.storage.faults import write_h5ad

    fill(fs)
    with pytest.raises(OSError) as info:
        write_h5ad(cells.copy(), fs / "x.h5ad")
    assert info.value.errno == errno.ENOSPC


def test_h5ad_writer_reads_back_as_anndata_writes_it(cells, tmp_path):
    import anndata as ad
    import numpy as np

    from fastembed.storage.faults import write_h5ad

    a = cells.copy()
    a.obsm["v"] = np.arange(a.n_obs * 3, dtype=np.float32).reshape(-1, 3)
    a.uns["fastembed"] = {"version": "x"}
    write_h5ad(a, tmp_path / "ours.h5ad")
    a.write_h5ad(tmp_path / "theirs.h5ad")
    ours, theirs = ad.read_h5ad(tmp_path / "ours.h5ad"), ad.read_h5ad(tmp_path / "theirs.h5ad")
    assert (ours.X != theirs.X).nnz == 0 and np.array_equal(ours.obsm["v"], theirs.obsm["v"])
    assert ours.obs.equals(theirs.obs) and ours.var.equals(theirs.var) and dict(ours.uns) == dict(theirs.uns)


@pytest.mark.parametrize("writer", ["train", "encode-h5ad", "encode-zarr"])
def test_read_only_folder(writer, inputs, fs, capsys):
    out = fs / OUTPUTS[writer]
    assert run_cli(writer_args(writer, inputs, out), capsys)[0] == 0
    before = snapshot(out)
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    try:
        rc, err = run_cli(writer_args(writer, inputs, out), capsys)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    assert rc == 1 and err.count("\n") == 0 and "not writable" in err and str(fs) in err, err
    assert snapshot(out) == before and not leftovers(fs, out.name)


def test_folder_removed_while_encode_writes_zarr(inputs, tmp_path, monkeypatch):
    """Regression (issue 35.3): the error names the removed folder, and zarr does not re-create it."""
    import anndata as ad

    from fastembed.model.encoder import CellEncoder
    from fastembed.scembed import ScEmbed

    model = ScEmbed.from_pretrained(inputs / "model")
    target = tmp_path / "run" / "sub"
    target.mkdir(parents=True)
    real, calls = CellEncoder.pool, []

    def pool(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            shutil.rmtree(tmp_path / "run")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CellEncoder, "pool", pool)
    with pytest.raises(FileNotFoundError, match=f"folder '{tmp_path / 'run'}' was removed"):
        model.encode(
            ad.read_h5ad(inputs / "cells.h5ad"), out=target / "e.zarr", batch_cells=50, progress=False
        )
    assert not (tmp_path / "run").exists()
    assert os.listdir(tmp_path) == []


def test_folder_removed_while_a_model_is_saved(inputs, tmp_path, monkeypatch):
    from fastembed.scembed import ScEmbed
    from fastembed.universe import Universe

    model = ScEmbed.from_pretrained(inputs / "model")
    (tmp_path / "run").mkdir()
    real = Universe.write_bed

    def write_bed(self, path, *args, **kwargs):
        shutil.rmtree(tmp_path / "run")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Universe, "write_bed", write_bed)
    with pytest.raises(FileNotFoundError, match="was removed while fastembed was writing"):
        model.save(tmp_path / "run" / "model")
    assert os.listdir(tmp_path) == []


HOLDER = textwrap.dedent(
    """
    import sys
    from fastembed._atomic import atomic_dir
    with atomic_dir(sys.argv[1], what="model folder", overwrite=True, kind="model") as tmp:
        print("writing", flush=True)
        sys.stdin.read()  # until the parent kills us
    """
)


def test_concurrent_writer_then_killed(tmp_path):
    """A second writer fails at once while the first writes; the first, killed, leaves the old folder and
    temporaries that the next write removes."""
    path = tmp_path / "model"
    write_model(path, "old")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        with pytest.raises(FileExistsError, match="being written by another process"):
            overwrite_model(path)
        assert version(path) == "old"
    finally:
        child.kill()
        child.wait()
    assert version(path) == "old"
    overwrite_model(path)
    assert version(path) == "new" and not leftovers(tmp_path, "model")


# --------------------------------------------------------------------------------------------------
# Interrupts: SIGINT at injected points of a real command, in a child process
# --------------------------------------------------------------------------------------------------
INTERRUPTER = textwrap.dedent(
    """
    import os, signal, sys, weakref
    from fastembed import _atomic, cli, tokenize
    from fastembed.storage import zarrstore as _zarrstore

    where, when, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = [0]

    def interrupt():
        count[0] += 1
        if count[0] == n:
            if where == "swallowed":
                # SIGINT handled inside a weakref callback: Python prints "Exception ignored" and goes on.
                class Obj: pass
                o = Obj()
                def cb(ref):
                    os.kill(os.getpid(), signal.SIGINT)
                    for _ in range(10000):
                        pass
                ref = weakref.ref(o, cb)
                del o
            else:
                os.kill(os.getpid(), signal.SIGINT)

    owners = {"_exchange": _atomic, "_discard": _atomic, "_publish_file": _atomic, "link": os,
              "_put": _zarrstore.GuardedStore, "swallowed": tokenize}
    name = "tokenize_summary" if where == "swallowed" else where
    owner = owners[where]
    real = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if when == "before":
            interrupt()
        out = real(*args, **kwargs)
        if when == "after":
            interrupt()
        return out

    setattr(owner, name, wrapped)
    sys.exit(cli.main(sys.argv[4:]))
    """
)


def interrupted_run(where: str, when: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", INTERRUPTER, where, when, str(n), *args],
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "where,when",
    [("_exchange", "before"), ("_exchange", "after"), ("_discard", "before"), ("_discard", "after")],
)
def test_interrupt_at_each_step_of_a_model_overwrite(where, when, inputs, tmp_path):
    """The message matches what is at the path: 'nothing was written' and the old model, or 'after ... was
    written' and the new one; no temporary left."""
    if where == "_exchange" and not HAS_EXCHANGE:
        pytest.skip("renameat2 is not available here")
    out = tmp_path / "model"
    shutil.copytree(inputs / "model", out)
    before = snapshot(out)
    proc = interrupted_run(where, when, 1, writer_args("train", inputs, out))
    assert proc.returncode == 130, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    if "nothing was written" in line and "after" not in line:
        assert snapshot(out) == before
    else:
        assert f"interrupted after '{out}' was written" in line and snapshot(out) != before
    assert not leftovers(tmp_path, "model")


def test_interrupt_while_zarr_writes_in_the_background(inputs, tmp_path):
    """SIGINT raised from zarr's I/O thread, mid-store: the temporary is gone after the command returns."""
    out = tmp_path / "e.zarr"
    for n in (3, 12):
        proc = interrupted_run(
            "_put", "after", n, [*writer_args("encode-zarr", inputs, out), "--batch-cells", "20"]
        )
        assert proc.returncode == 130, proc.stderr
        assert proc.stderr.strip().endswith("interrupted; nothing was written"), proc.stderr
        assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_interrupt_at_the_publish_of_a_new_file(when, inputs, tmp_path):
    out = tmp_path / "t.parquet"
    proc = interrupted_run("link", when, 1, writer_args("tokenize", inputs, out))
    assert proc.returncode == 130, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert out.exists() == ("after" in line), line
    assert not leftovers(tmp_path, "t.parquet")


def test_swallowed_interrupt_is_not_lost(inputs, tmp_path):
    """Regression (issue 35.4): a Ctrl-C raised inside a weakref callback ("Exception ignored ...") still ends
    the command with 130 and says what was written."""
    out = tmp_path / "t.parquet"
    proc = interrupted_run("swallowed", "before", 1, writer_args("tokenize", inputs, out))
    assert proc.returncode == 130, proc.stderr
    assert f"interrupted after '{out}' was written" in proc.stderr
    assert not leftovers(tmp_path, "t.parquet")


# --------------------------------------------------------------------------------------------------
# Failed allocations
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "err,flag",
    [
        (
            MemoryError("Unable to allocate 3.73 GiB for an array with shape (10, 10) and data type float32"),
            None,
        ),
        (RuntimeError("can't start new thread"), "--threads"),
        (OSError("Can't write data (memory allocation failed for raw data chunk)"), None),
    ],
)
def test_memory_failures_are_one_line_naming_the_step_and_the_setting(
    err, flag, inputs, tmp_path, monkeypatch, capsys
):
    from fastembed.model.encoder import CellEncoder

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(CellEncoder, "pool", fail)
    rc, msg = run_cli(writer_args("encode-zarr", inputs, tmp_path / "e.zarr"), capsys)
    assert rc == 1 and msg.count("\n") == 0, msg
    assert msg.startswith("fastembed encode: error: out of memory while encoding")
    assert "--batch-cells" in msg and (flag is None or flag in msg)
    if "3.73 GiB" in str(err):
        assert "an allocation of 3.73 GiB failed" in msg
    assert os.listdir(tmp_path) == []


def test_memory_steps_name_functions_that_exist():
    """Regression (the package layout moved modules into rooms): every step of the failed-allocation table names
    a function at its current path, so a traceback through it is recognised and the message names the step."""
    import importlib

    from fastembed.storage.faults import _COMMAND_STEPS, MEMORY_STEPS

    for key in MEMORY_STEPS:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module("fastembed." + ".".join(parts[:cut]))
            except ImportError:
                continue
            # the module's own name, not an old flat alias of it: tracebacks carry the real name
            assert obj.__name__ == "fastembed." + ".".join(parts[:cut]), key
            for name in parts[cut:]:
                obj = getattr(obj, name)
            assert callable(obj), key
            break
        else:
            raise AssertionError(f"no module for {key}")
    assert set(_COMMAND_STEPS.values()) <= set(MEMORY_STEPS)


def test_memory_error_inside_tokenize_names_the_budget(inputs, tmp_path, monkeypatch, capsys):
    from fastembed.genome import tokenize as tok

    def fail(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.00 GiB for an array with shape (1,) and data type int32")

    monkeypatch.setattr(tok, "peak_matrix_blocks", fail)
    rc, msg = run_cli(writer_args("tokenize", inputs, tmp_path / "t.parquet"), capsys)
    assert rc == 1 and msg.count("\n") == 0, msg
    assert msg.startswith("fastembed tokenize: error: out of memory while tokenizing"), msg
    assert "--memory" in msg
    assert os.listdir(tmp_path) == []


def test_real_memory_error_names_its_allocation():
    import numpy as np

    from fastembed.storage.faults import is_memory_failure, memory_error

    try:
        np.empty(1 << 60, dtype=np.uint8)
    except MemoryError as err:
        assert is_memory_failure(err)
        msg = memory_error(err, "train")
        assert msg.startswith("out of memory while training (an allocation of") and "--sample-cells" in msg
    else:
        pytest.skip("this system granted an exabyte")


def test_concurrent_reader_never_finds_nothing_or_a_mixture(tmp_path):
    """A reader thread looking up the folder while it is overwritten again and again (exchange): every lookup
    finds one complete version. (It opens the folder once per look; a version swapped out while it reads is
    removed, so files it had not opened yet are gone, never replaced by the other version's.)"""
    if not HAS_EXCHANGE:
        pytest.skip("renameat2 is not available here")
    import threading

    path = tmp_path / "model"
    write_model(path, "old")
    seen, errors, stop = set(), [], threading.Event()

    def read_folder() -> str | None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # the lookup of the path: must never fail
        try:
            texts = []
            for name in ("config.yaml", "universe.bed", "region_vectors.npy"):
                try:
                    with open(name, "rb", opener=lambda n, flags: os.open(n, flags, dir_fd=fd)) as fh:
                        texts.append(fh.read())
                except FileNotFoundError:
                    # Allowed only for a version that was swapped out and removed after this reader looked.
                    assert os.fstat(fd).st_ino != os.stat(path).st_ino
                    return None
        finally:
            os.close(fd)
        tags = {
            texts[0].decode().split("tag: ")[1].strip(),
            texts[1].decode().split("\t")[3].strip(),
            texts[2][:3].decode(),
        }
        assert len(tags) == 1 and len(texts[2]) == 3000, tags
        return tags.pop()

    def reader():
        while not stop.is_set():
            try:
                seen.add(read_folder() or "swapped out while read")
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(repr(err))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            tag = "new" if i % 2 == 0 else "old"
            with atomic_dir(path, what="model folder", overwrite=True, kind="model") as tmp:
                write_model(tmp, tag)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    assert seen & {"old", "new"} and seen <= {"old", "new", "swapped out while read"}
    assert not leftovers(tmp_path, "model")


def test_an_input_error_inside_a_writer_is_not_blamed_on_the_output(tmp_path):
    """An input that vanishes while a writer still reads it keeps its own message (it names the input)."""
    with pytest.raises(FileNotFoundError) as info:
        with atomic_file(tmp_path / "t.csv", kind="csv") as tmp:
            tmp.write_text("barcode,leiden\n")
            open(tmp_path.parent / "no-such-input.h5ad", "rb")  # noqa: SIM115 - the failing read is the point
    assert "no-such-input.h5ad" in str(info.value) and "could not write" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_write_error_wording(tmp_path):
    import errno

    from fastembed.storage.faults import write_error

    out = tmp_path / "m"
    full = write_error(OSError("1000700 requested and 200672 written"), out, "model folder")
    # On a disk with room the short write is reported as it is; ENOSPC itself always names the disk.
    assert full is None or str(full).startswith("no space left")
    enospc = write_error(OSError(errno.ENOSPC, "No space left on device", str(out)), out, "model folder")
    assert str(enospc) == f"no space left on device writing model folder '{out}'"
    rofs = write_error(OSError(errno.EROFS, "Read-only file system", str(out)), out, "model folder")
    assert isinstance(rofs, PermissionError) and "read-only file system" in str(rofs)
    gone = write_error(OSError(errno.ENOENT, "x"), tmp_path / "a" / "b" / "m", "model folder")
    assert f"folder '{tmp_path / 'a'}' was removed" in str(gone)
    assert write_error(ValueError("bad value"), out, "model folder") is None


def test_an_unreadable_input_beside_the_output_keeps_its_own_message(tmp_path):
    """An input in the output's own folder that cannot be read is not reported as the output's folder."""
    import errno

    from fastembed.storage.faults import write_error

    out = tmp_path / "e.h5ad"
    err = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cells.h5ad"))
    assert write_error(err, out, "h5ad output") is None
    err = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "cells.h5ad"))
    assert write_error(err, out, "h5ad output") is None
    lock = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".e.h5ad.fastembed-lock"))
    assert "is not writable" in str(write_error(lock, out, "h5ad output"))
