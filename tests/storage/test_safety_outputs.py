"""Outputs never destroy inputs or foreign data: input clashes, recognised overwrite, concurrent writers,
permissions, stale temporaries (issue 10, "Data loss")."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed import _atomic
from fastembed._atomic import atomic_dir, atomic_file, check_output_path, current_umask
from fastembed.cli import main
from fastembed.datasets import demo_peaks_path
from fastembed.scembed import ScEmbed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cells():
    return demo_cells(200, 1)


@pytest.fixture
def work(tmp_path, cells):
    """A folder with cells.h5ad, a copy of the universe, tokens.parquet and a user's own notes.txt."""
    cells.write_h5ad(tmp_path / "cells.h5ad")
    (tmp_path / "u.bed.gz").write_bytes(demo_peaks_path().read_bytes())
    fe.tokenize_cells(cells, tmp_path / "u.bed.gz", output=tmp_path / "tokens.parquet")
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    return tmp_path


@pytest.fixture(scope="module")
def model(cells, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tokens.parquet"
    fe.tokenize_cells(cells, demo_peaks_path(), output=path)
    return ScEmbed(embedding_dim=8, seed=0, threads=1).train(path, epochs=1, progress=False)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastembed {command}: error:") and len(err.splitlines()) == 1, err
    assert len(err) < 600
    return err


# -- outputs that are, or hold, inputs ---------------------------------------------------------------
def test_tokenize_output_is_an_input(work, cells):
    before = snapshot(work)
    for out in ("cells.h5ad", "u.bed.gz"):
        with pytest.raises(ValueError, match="is the input") as exc:
            fe.tokenize_cells(work / "cells.h5ad", work / "u.bed.gz", output=work / out, overwrite=True)
        assert str(work / out) in str(exc.value) and len(str(exc.value)) < 500
    # Through a symbolic link and a hard link: files are compared, not names.
    os.symlink(work / "cells.h5ad", work / "link.parquet")
    os.link(work / "u.bed.gz", work / "hard.parquet")
    for out in ("link.parquet", "hard.parquet"):
        with pytest.raises(ValueError, match="is the input"):
            fe.tokenize_cells(work / "cells.h5ad", work / "u.bed.gz", output=work / out, overwrite=True)
    (work / "link.parquet").unlink()
    (work / "hard.parquet").unlink()
    # An AnnData opened in backed mode still reads its file.
    backed = ad.read_h5ad(work / "cells.h5ad", backed="r")
    with pytest.raises(ValueError, match="is the input"):
        fe.tokenize_cells(backed, work / "u.bed.gz", output=work / "cells.h5ad", overwrite=True)
    backed.file.close()
    assert snapshot(work) == before


def test_cli_tokenize_and_annotate_refuse_to_replace_inputs(work, capsys):
    before = snapshot(work)
    for out in ("cells.h5ad", "u.bed.gz"):
        for extra in ([], ["--overwrite"]):
            argv = [
                "tokenize",
                str(work / "cells.h5ad"),
                "--universe",
                str(work / "u.bed.gz"),
                "--output",
                str(work / out),
                *extra,
            ]
            assert main(argv) == 1
            assert "is the input" in one_line_error(capsys, "tokenize")
    for out in ("cells.h5ad", "ref.h5ad"):
        if out == "ref.h5ad":
            (work / "ref.h5ad").write_bytes((work / "cells.h5ad").read_bytes())
            before = snapshot(work)
        argv = [
            "annotate",
            str(work / "cells.h5ad"),
            "--reference",
            str(work / "ref.h5ad"),
            "--output",
            str(work / out),
            "--overwrite",
        ]
        assert main(argv) == 1
        assert "is the input" in one_line_error(capsys, "annotate")
    assert snapshot(work) == before


def test_cli_train_into_folder_holding_its_input(work, capsys):
    before = snapshot(work)
    argv = [
        "train",
        str(work / "tokens.parquet"),
        "--output",
        str(work),
        "--overwrite",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert main(argv) == 1
    err = one_line_error(capsys, "train")
    assert "holds the input" in err and "tokens.parquet" in err
    assert snapshot(work) == before


def test_save_and_encode_refuse_folders_holding_their_inputs(work, cells):
    m = ScEmbed(embedding_dim=8, seed=0, threads=1).train(work / "tokens.parquet", epochs=1, progress=False)
    before = snapshot(work)
    with pytest.raises(ValueError, match="holds the input"):
        m.save(work, overwrite=True)
    m.save(work / "model")
    loaded = ScEmbed.from_pretrained(work / "model")
    before = snapshot(work)
    with pytest.raises(ValueError, match="holds the input"):
        loaded.encode(work / "tokens.parquet", out=work, overwrite=True)
    with pytest.raises(ValueError, match="is the input"):
        loaded.encode(cells, out=work / "model", overwrite=True)
    assert snapshot(work) == before


def test_demo_refuses_the_bundled_data_folder():
    from fastembed.demo import run_demo

    data = demo_peaks_path().parent
    with pytest.raises(ValueError, match="is the input"):
        run_demo(data, quiet=True)
    with pytest.raises(ValueError, match="holds the input"):
        run_demo(data.parent, quiet=True, overwrite=True)


# -- existing outputs and overwrite ------------------------------------------------------------------
def test_tokenize_refuses_existing_output_unless_overwrite(work, cells, capsys):
    out = work / "tokens.parquet"
    with pytest.raises(FileExistsError, match="overwrite"):
        fe.tokenize_cells(cells, work / "u.bed.gz", output=out)
    argv = [
        "tokenize",
        str(work / "cells.h5ad"),
        "--universe",
        str(work / "u.bed.gz"),
        "--output",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 1
    assert "--overwrite" in one_line_error(capsys, "tokenize")
    assert main([*argv, "--overwrite"]) == 0  # our own parquet may be replaced
    assert len(fe.Region2VecDataset(out)) == cells.n_obs


def test_overwrite_refuses_what_fastembed_did_not_write(work, cells):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2]}), work / "theirs.parquet")
    (work / "folder.parquet").mkdir()
    (work / "folder.parquet" / "keep.txt").write_text("keep")
    os.symlink(work / "notes.txt", work / "link.parquet")
    before = snapshot(work)
    for name, reason in (
        ("theirs.parquet", "no fastembed.format"),
        ("folder.parquet", "is a folder"),
        ("notes.txt", "not a parquet file"),
        ("link.parquet", "symbolic link"),
    ):
        with pytest.raises(FileExistsError, match="not a token parquet file written by fastembed") as exc:
            fe.tokenize_cells(cells, work / "u.bed.gz", output=work / name, overwrite=True)
        assert reason in str(exc.value) and name in str(exc.value)
    assert snapshot(work) == before


def test_model_overwrite_only_replaces_a_model_folder_of_ours(model, tmp_path):
    m = tmp_path / "model"
    model.save(m)
    model.save(m, overwrite=True)  # ours: replaced
    model.save(tmp_path / "g", format="geniml")
    model.save(tmp_path / "g", format="geniml", overwrite=True)
    (m / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="notes.txt"):
        model.save(m, overwrite=True)
    geniml = tmp_path / "geniml"
    import shutil

    shutil.copytree(REPO / "tests" / "data" / "geniml_model", geniml)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="not written by fastembed"):
        model.save(geniml, overwrite=True)
    assert snapshot(tmp_path) == before
    # An empty folder holds nothing to lose: it is used without --overwrite.
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")
    assert (tmp_path / "empty" / "config.yaml").is_file()


def test_zarr_overwrite_only_replaces_a_store_of_ours(model, cells, tmp_path):
    z = tmp_path / "e.zarr"
    model.encode(cells, out=z)
    with pytest.raises(FileExistsError, match="overwrite"):
        model.encode(cells, out=z)
    model.encode(cells, out=z, overwrite=True)
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "data.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a zarr store written by fastembed"):
        model.encode(cells, out=other, overwrite=True)
    assert (other / "data.txt").read_text() == "mine"


def test_cli_annotate_and_encode_overwrite(work, model, capsys):
    rng = np.random.default_rng(0)
    adata = ad.AnnData(
        obs=pd.DataFrame({"cell_type": rng.choice(["a", "b"], 40)}, index=[f"c{i}" for i in range(40)])
    )
    adata.obsm["scembed_X"] = rng.normal(size=(40, 4)).astype(np.float32)
    adata.write_h5ad(work / "q.h5ad")
    out = work / "labels.csv"
    argv = [
        "annotate",
        str(work / "q.h5ad"),
        "--reference",
        str(work / "q.h5ad"),
        "--output",
        str(out),
        "-k",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    assert main(argv) == 1
    assert "--overwrite" in one_line_error(capsys, "annotate")
    assert main([*argv, "--overwrite"]) == 0
    assert main([*argv[:5], str(work / "notes.txt"), *argv[6:], "--overwrite"]) == 1
    assert "not a CSV table written by fastembed" in one_line_error(capsys, "annotate")
    assert (work / "notes.txt").read_text() == "the user's own file\n"
    # encode .h5ad: our own output is replaced with --overwrite, someone else's h5ad is not
    model.save(work / "model")
    enc = ["encode", str(work / "tokens.parquet"), "--model", str(work / "model"), "--quiet"]
    assert main([*enc, "--output", str(work / "e.h5ad")]) == 0
    assert main([*enc, "--output", str(work / "e.h5ad"), "--overwrite"]) == 0
    assert main([*enc, "--output", str(work / "q.h5ad"), "--overwrite"]) == 1
    assert "uns['fastembed']" in one_line_error(capsys, "encode")
    os.symlink(work / "model", work / "model.zarr")
    assert main([*enc, "--output", str(work / "model.zarr"), "--overwrite"]) == 1
    assert "is the input" in one_line_error(capsys, "encode")
    assert ScEmbed.from_pretrained(work / "model").embedding_dim == 8


# -- concurrent writers ------------------------------------------------------------------------------
def test_second_writer_fails_while_first_is_writing(tmp_path):
    out = tmp_path / "t.csv"
    inside, release, errors = threading.Event(), threading.Event(), []

    def first():
        with atomic_file(out) as tmp:
            tmp.write_text("barcode,first\n")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    try:
        with (
            pytest.raises(FileExistsError, match="being written by another process"),
            atomic_file(out) as tmp,
        ):
            tmp.write_text("barcode,second\n")
    finally:
        release.set()
        t.join()
    assert not errors and out.read_text() == "barcode,first\n"
    with pytest.raises(FileExistsError, match="already exists"), atomic_file(out) as tmp:
        tmp.write_text("barcode,third\n")
    assert out.read_text() == "barcode,first\n"


def test_output_created_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "t.csv"
    with pytest.raises(FileExistsError, match="created by someone else"), atomic_file(out) as tmp:
        tmp.write_text("barcode,ours\n")
        out.write_text("theirs")  # a writer that does not use fastembed's lock
    assert out.read_text() == "theirs"
    d = tmp_path / "m"
    with pytest.raises(FileExistsError, match="created by someone else"), atomic_dir(d) as tmp:
        (tmp / "config.yaml").write_text("x: 1\n")
        d.mkdir()
        (d / "theirs.txt").write_text("theirs")
    assert snapshot(d) == {"theirs.txt": hashlib.sha256(b"theirs").hexdigest()}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


_HOLD = """
import sys, threading, time
from pathlib import Path
from fastembed._atomic import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "config.yaml").write_text("x: 1\\n")
    Path(sys.argv[2]).write_text("in")
    {tail}
"""


def _python(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if path.exists() or proc.poll() is not None:
            return
        threading.Event().wait(0.05)


def test_two_processes_racing_for_one_model_folder(model, tmp_path):
    out, flag = tmp_path / "model", tmp_path / "flag"
    proc = _python(_HOLD.format(tail="threading.Event().wait()"), out, flag)  # holds until killed
    try:
        _wait_for(flag, proc)
        assert flag.exists()
        with pytest.raises(FileExistsError, match="being written by another process"):
            model.save(out)
    finally:
        proc.kill()
        proc.wait()


_LOCK_AND_WAIT = """
import contextlib, sys, threading
from pathlib import Path
from fastembed._atomic import output_lock
with contextlib.ExitStack() as stack:
    for path in sys.argv[1:-1]:
        stack.enter_context(output_lock(path))
    Path(sys.argv[-1]).write_text("in")
    threading.Event().wait()  # holds the locks until the test kills it
"""


def test_second_command_fails_before_its_work_even_with_overwrite(work, capsys, monkeypatch):
    import fastembed.kernels.sgns as sgns

    out, tokens_out, flag = work / "model", work / "busy.parquet", work / "flag"
    proc = _python(_LOCK_AND_WAIT, out, tokens_out, flag)
    try:
        _wait_for(flag, proc)
        assert flag.exists()
        argv = [
            "train",
            str(work / "tokens.parquet"),
            "--output",
            str(out),
            "--overwrite",
            "--epochs",
            "1000",
            "--quiet",
        ]
        trained = []
        monkeypatch.setattr(sgns, "train_sgns", lambda *a, **k: trained.append(1))
        assert main(argv) == 1
        assert trained == []  # refused before its work: training never started
        assert "being written by another process" in one_line_error(capsys, "train")
        with pytest.raises(FileExistsError, match="being written by another process"):
            fe.tokenize_cells(work / "cells.h5ad", work / "u.bed.gz", output=tokens_out, overwrite=True)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists() and not tokens_out.exists()


def test_lock_is_reentrant_in_its_thread_and_shared_by_every_spelling(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    inside, release = threading.Event(), threading.Event()

    def hold():
        with _atomic.output_lock(tmp_path / "real" / "t.csv"):
            with atomic_file(tmp_path / "real" / "t.csv") as tmp:  # the same thread may take it again
                tmp.write_text("barcode,a\n")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(10)
    try:
        with (
            pytest.raises(FileExistsError, match="being written"),
            atomic_file(tmp_path / "alias" / "t.csv", overwrite=True) as tmp,
        ):
            tmp.write_text("barcode,b\n")
    finally:
        release.set()
        t.join()
    assert (tmp_path / "real" / "t.csv").read_text() == "barcode,a\n"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["t.csv"]  # lock file gone


def test_killed_writer_leaves_nothing_the_next_write_keeps(model, tmp_path):
    out, flag = tmp_path / "model", tmp_path / "flag"
    proc = _python(_HOLD.format(tail="import os; os._exit(9)"), out, flag)
    proc.wait()
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.")]
    assert any(n.endswith(".tmp") for n in stale), stale  # what the killed writer left
    # A temporary of a process that is still running is kept (and reported), not deleted.
    live = subprocess.Popen(
        [sys.executable, "-c", "import threading; threading.Event().wait()"]
    )  # until killed
    try:
        kept = tmp_path / f".model.fastembed-{live.pid}-abcd.tmp"
        kept.mkdir()
        with pytest.warns(UserWarning, match="still running"):
            model.save(out)
        assert kept.is_dir()
    finally:
        live.kill()
        live.wait()
    kept.rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flag", "model"]
    assert ScEmbed.from_pretrained(out).embedding_dim == 8


def test_overwrite_killed_between_renames_restores_the_old_output(model, tmp_path):
    model.save(tmp_path / "model")
    before = snapshot(tmp_path / "model")
    aside = tmp_path / ".model.fastembed-999999999-abcd.old"
    aside.mkdir()
    os.rename(tmp_path / "model", aside / "x")  # what a killed overwrite leaves
    with pytest.warns(UserWarning, match="restored"), pytest.raises(FileExistsError, match="already exists"):
        model.save(tmp_path / "model")
    assert snapshot(tmp_path / "model") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_only_our_temporary_names_are_cleaned(tmp_path):
    for name in (
        ".t.csv.mine.tmp",
        ".other.csv.fastembed-1-x.tmp",
        ".t.csv.fastembed-notapid-x.tmp",
        "t.csv.tmp",
    ):
        (tmp_path / name).write_text("keep")
    (tmp_path / ".t.csv.abcd1234.tmp").write_text("old-style temp of ours")
    with atomic_file(tmp_path / "t.csv") as tmp:
        tmp.write_text("barcode,x\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            ".t.csv.mine.tmp",
            ".other.csv.fastembed-1-x.tmp",
            ".t.csv.fastembed-notapid-x.tmp",
            "t.csv.tmp",
            "t.csv",
        ]
    )


# -- permissions -------------------------------------------------------------------------------------
@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_get_the_umask_permissions(umask, model, cells, tmp_path):
    assert current_umask() == umask
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask

    def mode(p):
        return os.stat(p).st_mode & 0o777

    fe.tokenize_cells(cells, demo_peaks_path(), output=tmp_path / "t.parquet")
    model.save(tmp_path / "m")
    model.save(tmp_path / "g", format="geniml")
    model.encode(cells, out=tmp_path / "e.zarr")
    with atomic_file(tmp_path / "x.csv") as tmp:
        tmp.write_text("barcode,x\n")
    assert mode(tmp_path / "t.parquet") == file_mode
    assert mode(tmp_path / "x.csv") == file_mode
    for d in ("m", "g", "e.zarr"):
        assert mode(tmp_path / d) == dir_mode, d
        for p in (tmp_path / d).rglob("*"):
            assert mode(p) == (dir_mode if p.is_dir() else file_mode), p
    assert current_umask() == umask  # reading it changed nothing


def test_current_umask_without_proc(monkeypatch, umask):
    real_open = open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc"):
            raise OSError("no /proc")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", no_proc)
    assert _atomic.current_umask() == umask
    assert os.umask(umask) == umask


def test_check_output_path_messages_are_short_and_name_the_file(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    for kwargs, exc in (
        ({"overwrite": False}, FileExistsError),
        ({"overwrite": True, "kind": "csv"}, FileExistsError),
        ({"inputs": [tmp_path / "a.csv"]}, ValueError),
    ):
        with pytest.raises(exc) as info:
            check_output_path(tmp_path / "a.csv", what="labels output", **kwargs)
        assert str(tmp_path / "a.csv") in str(info.value) and len(str(info.value)) < 500


def test_overwrite_refuses_a_foreign_table_that_starts_with_barcode(work, capsys):
    """A Cell Ranger ATAC ``singlecell.csv`` (or any cell table) starts with a ``barcode`` column too; it is
    not one of our tables, so --overwrite must not replace it. Our own labels, clusters and annotations are."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(
        obs=pd.DataFrame({"cell_type": rng.choice(["a", "b"], 40)}, index=[f"c{i}" for i in range(40)])
    )
    adata.obsm["scembed_X"] = rng.normal(size=(40, 4)).astype(np.float32)
    adata.write_h5ad(work / "q.h5ad")
    theirs = {
        "singlecell.csv": "barcode,total,duplicate,chimeric,unmapped\nNO_BARCODE,1,2,3,4\n",
        "per_barcode_metrics.csv": "barcode,gex_barcode,atac_barcode,is_cell\nAAAC-1,AAAC-1,GGTA-1,1\n",
        "meta.tsv": "barcode\tcell_type\tconfidence\nAAAC-1\tB\t0.5\n",
    }
    for name, text in theirs.items():
        (work / name).write_text(text)
    argv = ["annotate", str(work / "q.h5ad"), "--reference", str(work / "q.h5ad"), "-k", "3", "--quiet"]
    for name, text in theirs.items():
        assert main([*argv, "--output", str(work / name), "--overwrite"]) == 1
        err = one_line_error(capsys, "annotate")
        assert "not a CSV table written by fastembed" in err and name in err
        assert (work / name).read_text() == text
    # ours: labels in commas or tabs, and the demo's clusters and annotations, are replaced
    for name in ("labels.csv", "labels.tsv"):
        assert main([*argv, "--output", str(work / name)]) == 0
        assert main([*argv, "--output", str(work / name), "--overwrite"]) == 0
    for name, header in (
        ("clusters.csv", "barcode,leiden"),
        ("annotations.csv", "barcode,true_cell_type,predicted_cell_type,confidence"),
    ):
        check_output_path(work / name, what="t", overwrite=False, kind="csv")  # absent: fine
        (work / name).write_text(header + "\nc0,1\n")
        check_output_path(work / name, what="t", overwrite=True, kind="csv")
