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
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[5])
    from fastembed import _atomic
    import test_safety_faults as t

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
    t.overwrite_model(path)
    """
)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_at_each_publish_step(tmp_path, mode, step, when):
    """SIGKILL at each step: the path holds old or new (the fallback may leave the old one aside, put back by
    the next write), and the next write leaves a clean folder."""
    path = tmp_path / "model"
    write_model(path, "old")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(path), step, when, mode, str(REPO / "tests")],
        env=env,
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
