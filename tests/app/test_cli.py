"""The command line: each subcommand on real data slices, and bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import demo_cells

from fastembed.cli import main
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.scembed import annotate_celltypes


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    demo_cells(800, 0).write_h5ad(d / "cells.h5ad")
    return d


@pytest.fixture(scope="module")
def trained(workdir):
    assert (
        main(
            [
                "--quiet",
                "tokenize",
                str(workdir / "cells.h5ad"),
                "--universe",
                str(demo_peaks_path()),
                "--output",
                str(workdir / "tokens.parquet"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(workdir / "tokens.parquet"),
                "--output",
                str(workdir / "model"),
                "--epochs",
                "5",
                "--embedding-dim",
                "16",
                "--seed",
                "1",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    return workdir


def test_tokenize_train_encode_annotate(trained):
    d = trained
    assert (d / "tokens.parquet").is_file() and (d / "model" / "config.yaml").is_file()
    assert (
        main(
            [
                "encode",
                str(d / "cells.h5ad"),
                "--model",
                str(d / "model"),
                "--output",
                str(d / "e.zarr"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "encode",
                str(d / "cells.h5ad"),
                "--model",
                str(d / "model"),
                "--output",
                str(d / "e.h5ad"),
                "--quiet",
            ]
        )
        == 0
    )
    z = ad.read_zarr(d / "e.zarr")
    a = ad.read_h5ad(d / "e.h5ad")
    assert z.obsm["scembed_X"].shape == (800, 16)
    np.testing.assert_array_equal(z.obsm["scembed_X"], a.obsm["scembed_X"])
    assert list(z.obs_names) == list(a.obs_names)
    donor = a.obs["donor"].astype(str)
    a[donor == "D6T1"].write_h5ad(d / "ref.h5ad")
    a[donor == "D5T1"].write_h5ad(d / "query.h5ad")
    assert (
        main(
            [
                "annotate",
                str(d / "query.h5ad"),
                "--reference",
                str(d / "ref.h5ad"),
                "--output",
                str(d / "labels.csv"),
                "-k",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    labels = pd.read_csv(d / "labels.csv", index_col=0)
    assert list(labels.index) == list(a.obs_names[donor == "D5T1"])
    assert list(labels.columns) == ["predicted_cell_type", "confidence"]
    assert labels["confidence"].between(0, 1).all()
    # --no-center reaches annotate_celltypes: its labels are those of the plain-cosine call
    assert (
        main(
            [
                "annotate",
                str(d / "query.h5ad"),
                "--reference",
                str(d / "ref.h5ad"),
                "--output",
                str(d / "plain.csv"),
                "-k",
                "5",
                "--no-center",
                "--quiet",
            ]
        )
        == 0
    )
    plain = pd.read_csv(d / "plain.csv", index_col=0)["predicted_cell_type"].astype(str)
    want = annotate_celltypes(a[donor == "D5T1"].copy(), a[donor == "D6T1"].copy(), k=5, center=False)
    assert (plain.to_numpy() == want.astype(str).to_numpy()).all()


def test_encode_parquet_input(trained):
    d = trained
    assert (
        main(
            [
                "encode",
                str(d / "tokens.parquet"),
                "--model",
                str(d / "model"),
                "--output",
                str(d / "p.h5ad"),
                "--quiet",
            ]
        )
        == 0
    )
    assert ad.read_h5ad(d / "p.h5ad").obsm["scembed_X"].shape == (800, 16)


def test_file_suffixes_match_in_any_case(trained, tmp_path):
    """CELLS.H5AD, M.MTX, TOKENS.PARQUET, E.ZARR or LABELS.TSV are the files their lower-case names are, as
    inputs and as outputs of every command."""
    import shutil

    import scipy.io

    from fastembed.tokens import read_tokens_parquet

    d, t, u = trained, tmp_path, str(demo_peaks_path())
    shutil.copy(d / "cells.h5ad", t / "CELLS.H5AD")
    tokenize = ["tokenize", "--quiet", "--universe", u, "--output"]
    assert main([*tokenize, str(t / "TOKENS.PARQUET"), str(t / "CELLS.H5AD")]) == 0
    want = read_tokens_parquet(d / "tokens.parquet")
    np.testing.assert_array_equal(read_tokens_parquet(t / "TOKENS.PARQUET").indices, want.indices)
    # a MatrixMarket triple of the first 100 cells
    cells = ad.read_h5ad(d / "cells.h5ad")[:100]
    scipy.io.mmwrite(t / "m.mtx", cells.X.T.tocoo())  # scipy appends .mtx to a name without it
    (t / "m.mtx").rename(t / "M.MTX")
    (t / "B.TSV").write_text("".join(f"{b}\n" for b in cells.obs_names))
    shutil.copy(demo_peaks_path(), t / "P.BED.GZ")
    mtx = [str(t / "M.MTX"), "--barcodes", str(t / "B.TSV"), "--peaks", str(t / "P.BED.GZ")]
    assert main([*tokenize, str(t / "M.PARQUET"), *mtx]) == 0
    np.testing.assert_array_equal(read_tokens_parquet(t / "M.PARQUET").indptr, want.indptr[:101])

    encode = ["encode", "--quiet", "--model", str(d / "model"), "--output"]
    assert main([*encode, str(t / "E.ZARR"), str(t / "TOKENS.PARQUET")]) == 0
    assert main([*encode, str(t / "E.H5AD"), str(t / "CELLS.H5AD")]) == 0
    assert main([*encode, str(t / "M.H5AD"), *mtx]) == 0
    z, h = ad.read_zarr(t / "E.ZARR"), ad.read_h5ad(t / "E.H5AD")
    np.testing.assert_array_equal(z.obsm["scembed_X"], h.obsm["scembed_X"])
    assert h.n_vars == cells.n_vars  # the .h5ad output holds the input's var: it was read as an .h5ad
    np.testing.assert_array_equal(ad.read_h5ad(t / "M.H5AD").obsm["scembed_X"], h.obsm["scembed_X"][:100])

    annotate = ["annotate", "--quiet", "-k", "3", str(t / "E.ZARR"), "--reference", str(t / "E.H5AD")]
    assert main([*annotate, "--output", str(t / "LABELS.TSV")]) == 0
    assert (t / "LABELS.TSV").read_text().splitlines()[0] == "barcode\tpredicted_cell_type\tconfidence"
    assert main([*annotate, "--output", str(t / "LABELS.CSV")]) == 0
    assert (t / "LABELS.CSV").read_text().splitlines()[0] == "barcode,predicted_cell_type,confidence"


TOKENIZE_CELLS = ["tokenize", "{d}/cells.h5ad", "--universe", "{u}", "--output", "{d}/t.parquet"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["tokenize", "{d}/missing.h5ad", "--universe", "{u}", "--output", "{d}/t.parquet"],
            "does not exist",
        ),
        (
            ["tokenize", "{d}/cells.h5ad", "--universe", "{d}/cells.h5ad", "--output", "{d}/t.parquet"],
            "not a text BED file",
        ),
        (
            ["tokenize", "{d}/cells.h5ad", "--universe", "{u}", "--output", "{d}/no/such/t.parquet"],
            "does not exist",
        ),
        (["train", "{d}/cells.h5ad", "--output", "{d}/m2"], "is not a parquet file"),
        (["encode", "{d}/cells.h5ad", "--model", "{d}/nomodel", "--output", "{d}/x.zarr"], "nomodel"),
        (
            ["encode", "{d}/cells.h5ad", "--model", "{d}/model", "--output", "{d}/x.csv"],
            "ending in .zarr or .h5ad",
        ),
        (
            ["annotate", "{d}/cells.h5ad", "--reference", "{d}/cells.h5ad", "--output", "{d}/l.csv"],
            "scembed_X",
        ),
        (["tokenize", "{d}/cells.h5ad", "--universe", "{u}", "--output", "{d}/t.csv"], "ending in .parquet"),
        (
            [*TOKENIZE_CELLS, "--barcodes", "{u}"],
            "--barcodes and --peaks apply to a .mtx input",
        ),
        (
            [*TOKENIZE_CELLS, "--min-fragments", "5"],
            "--mode and --min-fragments apply to fragments files",
        ),
        (
            [
                "encode",
                "{d}/tokens.parquet",
                "--model",
                "{d}/model",
                "--output",
                "{d}/x.zarr",
                "--peaks",
                "{u}",
            ],
            "--barcodes and --peaks apply to a .mtx input",
        ),
        (
            ["annotate", "{d}/cells.h5ad", "--reference", "{d}/cells.h5ad", "--output", "{d}/l.txt"],
            "ending in .csv (commas) or .tsv (tabs)",
        ),
        (
            ["annotate", "{d}/cells.h5ad", "--reference", "{d}/tokens.parquet", "--output", "{d}/l.csv"],
            "tokens.parquet': expected an .h5ad file or a .zarr AnnData",
        ),
        (
            ["annotate", "{d}/cells.h5ad", "--reference", "{d}/model", "--output", "{d}/l.csv"],
            "model': expected an .h5ad file or a .zarr AnnData",
        ),
    ],
)
def test_bad_input_exit_1(trained, capsys, argv, message):
    argv = [a.format(d=trained, u=demo_peaks_path()) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastembed {argv[0]}: error:") and message in err
    assert len(err.splitlines()) == 1  # one readable line, no traceback


def test_train_on_a_parquet_without_its_universe(trained, tmp_path, capsys):
    # A token file written by another tool (gtars) carries no universe: train says which flag to pass, then
    # trains with it; a universe that differs from one the file carries is refused.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastembed.tokens import read_tokens_parquet

    tok = read_tokens_parquet(trained / "tokens.parquet")
    lists = [tok.indices[tok.indptr[i] : tok.indptr[i + 1]].tolist() for i in range(len(tok.indptr) - 1)]
    bare = tmp_path / "gtars.parquet"
    pq.write_table(pa.table({"tokens": pa.array(lists, type=pa.list_(pa.int32()))}), bare)
    base = ["train", "--quiet", "--epochs", "1", "--embedding-dim", "8", "--threads", "1"]
    assert main([*base, str(bare), "--output", str(tmp_path / "m0")]) == 1
    err = capsys.readouterr().err
    assert "does not carry its universe" in err and "--universe <" in err and "universe=" not in err
    assert (
        main([*base, str(bare), "--output", str(tmp_path / "m1"), "--universe", str(demo_peaks_path())]) == 0
    )
    assert (tmp_path / "m1" / "universe.bed").is_file()
    other = tmp_path / "other.bed"
    other.write_text("chr1\t0\t100\n")
    argv = [
        *base,
        str(trained / "tokens.parquet"),
        "--output",
        str(tmp_path / "m2"),
        "--universe",
        str(other),
    ]
    assert main(argv) == 1
    assert not (tmp_path / "m2").exists()


def test_train_subsample_flag(trained, tmp_path, capsys):
    """--subsample reaches the model (its config records it); a value outside auto / [0, 1) is a usage error."""
    import yaml

    base = ["train", str(trained / "tokens.parquet"), "--quiet", "--epochs", "1", "--embedding-dim", "8"]
    assert yaml.safe_load((trained / "model" / "config.yaml").read_text())["sample"] == "auto"  # the default
    assert main([*base, "--output", str(tmp_path / "m0"), "--subsample", "0"]) == 0
    assert yaml.safe_load((tmp_path / "m0" / "config.yaml").read_text())["sample"] == 0.0
    assert main([*base, "--output", str(tmp_path / "m1"), "--subsample", "1e-4"]) == 0
    assert yaml.safe_load((tmp_path / "m1" / "config.yaml").read_text())["training"]["kept_share"] < 1.0
    for bad in ("1", "-0.1", "Auto", "nan"):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--output", str(tmp_path / "m2"), "--subsample", bad])
        assert exc.value.code == 2
        assert f"--subsample: expected auto or a number in [0, 1), got '{bad}'" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "x.parquet"])  # --output missing
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "x.parquet", "--output", "m", "--epochs", "many"])
    assert exc.value.code == 2


def test_help_of_every_subcommand():
    for cmd in ("tokenize", "train", "encode", "annotate", "demo"):
        res = subprocess.run(
            [sys.executable, "-m", "fastembed", cmd, "--help"], capture_output=True, text=True
        )
        assert res.returncode == 0 and f"usage: fastembed {cmd}" in res.stdout


def test_debug_shows_traceback(trained):
    with pytest.raises(FileNotFoundError):
        main(
            [
                "--debug",
                "tokenize",
                str(trained / "missing.h5ad"),
                "--universe",
                str(demo_peaks_path()),
                "--output",
                str(trained / "t.parquet"),
            ]
        )


def test_demo_end_to_end(tmp_path, capsys):
    import json

    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--epochs", "40", "--cells", "1500", "--quiet"]) == 0
    for name in (
        "tokens.parquet",
        "embeddings.zarr",
        "embeddings.h5ad",
        "umap.png",
        "clusters.csv",
        "annotations.csv",
        "report.md",
    ):
        assert (out / name).exists(), name
    from fastembed import Region2VecDataset, ScEmbed

    assert len(Region2VecDataset(out / "tokens.parquet")) == 1500
    model = ScEmbed.from_pretrained(out / "model")
    a = ad.read_h5ad(out / "embeddings.h5ad")
    z = ad.read_zarr(out / "embeddings.zarr")
    np.testing.assert_array_equal(z.obsm["scembed_X"], a.obsm["scembed_X"])
    assert a.obsm["scembed_X"].shape == (1500, model.embedding_dim)
    assert {"leiden", "predicted_cell_type"} <= set(a.obs.columns) and "X_umap" in a.obsm
    assert (out / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.md").read_text().split("```json\n")[1].split("```")[0])
    # Label transfer across donors must be far above the majority-class rate (real data, real signal).
    assert report["annotation_accuracy"] > report["majority_class_accuracy"] + 0.25
    ann = pd.read_csv(out / "annotations.csv", index_col=0)
    # The demo's table is the command line's (same column names) plus the authors' labels.
    assert list(ann.columns) == ["true_cell_type", "predicted_cell_type", "confidence"]
    assert np.isclose(
        (ann["true_cell_type"] == ann["predicted_cell_type"]).mean(), report["annotation_accuracy"]
    )
    # A second run refuses to overwrite without --overwrite, and says so in one line.
    assert main(["demo", "--output", str(out), "--epochs", "1", "--cells", "300", "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_train_interrupted_exits_130_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import fastembed.sgns as sg
    from fastembed.tokenize import tokenize_cells

    tokens = tokenize_cells(load_demo()[:200].copy(), demo_peaks_path(), output=tmp_path / "t.parquet")
    real = sg._blocks_parallel

    def interrupted(*args):
        # The compile call passes an empty range (serially (b0, b1, ...) with b1 == 0; in parallel (threads,
        # counter, b1, ...) with b1 == 0); Ctrl-C in the first real epoch.
        end = args[2] if np.ndim(args[1]) else args[1]
        if end > 0:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sg, "_blocks_parallel", interrupted)
    monkeypatch.setattr(sg, "_blocks_serial", interrupted)
    code = main(["train", str(tokens), "--output", str(tmp_path / "model"), "--epochs", "3", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err == ["fastembed train: interrupted; nothing was written"]
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_layer_option_reads_counts_from_a_layer(trained, tmp_path, capsys):
    """An AnnData whose counts sit in a layer (X empty): the error names the command line's --layer, and
    --layer tokenizes and encodes it like the same counts in X."""
    a = ad.read_h5ad(trained / "cells.h5ad")[:60].copy()
    a.layers["counts"] = a.X.copy()
    a.X = None
    a.write_h5ad(tmp_path / "layer.h5ad")
    tok = ["tokenize", str(tmp_path / "layer.h5ad"), "--universe", str(demo_peaks_path()), "--quiet"]
    assert main([*tok, "--output", str(tmp_path / "t.parquet")]) == 1
    err = capsys.readouterr().err
    assert "pass --layer with one of its layers: 'counts'" in err and "layer=" not in err
    assert main([*tok, "--output", str(tmp_path / "t.parquet"), "--layer", "counts"]) == 0
    enc = ["encode", "--model", str(trained / "model"), "--quiet"]
    assert (
        main([*enc, str(tmp_path / "layer.h5ad"), "--output", str(tmp_path / "l.zarr"), "--layer", "counts"])
        == 0
    )
    assert main([*enc, str(tmp_path / "t.parquet"), "--output", str(tmp_path / "t.zarr")]) == 0
    np.testing.assert_array_equal(
        ad.read_zarr(tmp_path / "l.zarr").obsm["scembed_X"],
        ad.read_zarr(tmp_path / "t.zarr").obsm["scembed_X"],
    )


@pytest.mark.parametrize("cells", ["0", "5", "99"])
def test_demo_with_too_few_cells_exits_1_before_writing(tmp_path, capsys, cells):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--cells", cells, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastembed demo: error: the demo needs") and "at least 100 cells" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "flag", "value", "message"),
    [
        ("train", "--embedding-dim", "0", "--embedding-dim must be an integer >= 1, got 0"),
        ("train", "--window-size", "-1", "--window-size must be an integer >= 1, got -1"),
        ("train", "--negative-samples", "0", "--negative-samples must be an integer >= 1, got 0"),
        ("train", "--min-count", "0", "--min-count must be an integer >= 1, got 0"),
        ("train", "--epochs", "0", "--epochs must be an integer >= 1, got 0"),
        ("train", "--batch-size", "-3", "--batch-size must be an integer >= 1, got -3"),
        ("train", "--learning-rate", "-0.5", "--learning-rate must be a finite number > 0, got -0.5"),
        ("train", "--learning-rate", "nan", "--learning-rate must be a finite number > 0, got nan"),
        ("train", "--seed", "-1", "--seed must be a non-negative integer, got -1"),
        ("train", "--sample-cells", "0", "--sample-cells must be an integer >= 1, got 0"),
        ("train", "--threads", "0", "--threads must be an integer from 1 to"),
        ("encode", "--batch-cells", "0", "--batch-cells must be an integer >= 1, got 0"),
        ("tokenize", "--min-overlap", "0", "--min-overlap must be an integer >= 1 bp, got 0"),
        ("annotate", "-k", "0", "-k must be an integer >= 1, got 0"),
        ("annotate", "--min-confidence", "1.5", "--min-confidence must be a number in [0, 1], got 1.5"),
        ("demo", "--epochs", "0", "--epochs must be an integer >= 1, got 0"),
        ("demo", "--threads", "-2", "--threads must be an integer from 1 to"),
    ],
)
def test_out_of_range_flags_are_named_as_typed(trained, tmp_path, capsys, command, flag, value, message):
    """A value the library refuses is reported with the flag the user typed (--embedding-dim, not
    embedding_dim), its value, and without Python's None; nothing is written."""
    d, u = trained, str(demo_peaks_path())
    out = tmp_path / {"train": "model", "encode": "e.h5ad", "tokenize": "t.parquet", "annotate": "l.csv"}.get(
        command, "demo"
    )
    inputs = {
        "train": [str(d / "tokens.parquet")],
        "encode": [str(d / "cells.h5ad"), "--model", str(d / "model")],
        "tokenize": [str(d / "cells.h5ad"), "--universe", u],
        "annotate": [str(d / "cells.h5ad"), "--reference", str(d / "cells.h5ad")],
        "demo": [],
    }[command]
    assert main([command, *inputs, "--output", str(out), flag, value, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastembed {command}: error: {message}") and len(err.splitlines()) == 1, err
    python_name = flag.lstrip("-").replace("-", "_")
    assert f"{python_name} " not in err.replace(flag, "") and "None" not in err, err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_train_that_diverges_exits_1_and_writes_nothing(trained, tmp_path, capsys):
    """A learning rate far too high gives NaN vectors: a one-line error naming the rate, and no model folder
    (one would hold NaN vectors that ``encode`` refuses later)."""
    argv = ["train", str(trained / "tokens.parquet"), "--output", str(tmp_path / "m"), "--epochs", "2"]
    assert main([*argv, "--learning-rate", "1e30", "--threads", "1", "--embedding-dim", "8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastembed train: error: training diverged") and "1e+30" in err
    assert len(err.splitlines()) == 1 and "dataset" not in err
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


# -- the command line speaks command line --------------------------------------------------------------


def _universe_without(tmp_path, chrom: str):
    """The demo universe less one chromosome: tokenizing the demo cells against it warns once."""
    import gzip

    lines = gzip.open(demo_peaks_path(), "rt").read().splitlines()
    path = tmp_path / f"no_{chrom}.bed"
    path.write_text("\n".join(ln for ln in lines if ln.split("\t")[0] != chrom) + "\n")
    return path


def test_warnings_print_as_one_line_each(workdir, tmp_path, capsys):
    uni = _universe_without(tmp_path, "chr1")
    argv = [
        "tokenize",
        str(workdir / "cells.h5ad"),
        "--universe",
        str(uni),
        "--output",
        str(tmp_path / "t.parquet"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warn = [ln for ln in err if "warning:" in ln]
    assert warn and all(ln.startswith("fastembed tokenize: warning: ") for ln in warn)
    assert any("chromosomes absent from universe" in ln for ln in warn)
    assert not any("UserWarning" in ln or "warnings.warn" in ln for ln in err)


def test_quiet_silences_warnings_and_messages(workdir, tmp_path, capsys):
    uni = _universe_without(tmp_path, "chr1")
    assert (
        main(
            [
                "--quiet",
                "tokenize",
                str(workdir / "cells.h5ad"),
                "--universe",
                str(uni),
                "--output",
                str(tmp_path / "t.parquet"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


def test_quiet_does_not_leak_into_the_session(workdir, tmp_path, monkeypatch):
    """Regression: ``--quiet`` set TQDM_DISABLE for the rest of the process, so progress bars of every later call
    in the same interpreter (a notebook, the test session) stayed silent."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    args = ["--quiet", "tokenize", str(workdir / "cells.h5ad"), "--universe", str(demo_peaks_path())]
    assert main([*args, "--output", str(tmp_path / "t.parquet")]) == 0
    assert "TQDM_DISABLE" not in os.environ


def test_debug_shows_warnings_in_python_form(workdir, tmp_path):
    uni = _universe_without(tmp_path, "chr1")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastembed",
            "--debug",
            "tokenize",
            str(workdir / "cells.h5ad"),
            "--universe",
            str(uni),
            "--output",
            str(tmp_path / "t.parquet"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0
    assert "UserWarning" in res.stderr and "fastembed tokenize: warning:" not in res.stderr


def test_version_and_bare_command(capsys):
    from fastembed import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"fastembed {__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastembed") and "tokenize" in out and "annotate" in out


def test_hints_name_flags_not_python_keywords(trained, capsys):
    d = trained
    argv = [
        "tokenize",
        str(d / "cells.h5ad"),
        "--universe",
        str(demo_peaks_path()),
        "--output",
        str(d / "tokens.parquet"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err
    assert (
        main(
            [
                "annotate",
                str(d / "cells.h5ad"),
                "--reference",
                str(d / "cells.h5ad"),
                "--output",
                str(d / "hint.csv"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "pass --embedding-key" in err and "embedding_key=" not in err


def test_cli_message_rewrites_only_known_keywords():
    from fastembed.cli import as_cli_message, build_parser
    from fastembed.common.errors import HintedKeyError, Keyword, ParameterError

    p = build_parser().subparsers["annotate"]
    kws = (
        Keyword("embedding_key"),
        Keyword("overwrite", True),
        Keyword("k", 10),
        Keyword("universe", "<the BED>", placeholder=True),
        Keyword("min_count", 5),
    )
    msg = "no obsm['x']; pass {}, or {}; {} is larger; pass {}; {}; block=10".format(*kws)
    assert as_cli_message(HintedKeyError(msg, keywords=kws), p) == (
        "no obsm['x']; pass --embedding-key, or --overwrite; -k 10 is larger; "
        "pass universe=<the BED>; min_count=5; block=10"
    )
    # range errors: the subject is the flag, and a flag left out is the None
    assert as_cli_message(ParameterError("k", "an integer >= 1", 0), p) == "-k must be an integer >= 1, got 0"
    err = ParameterError("min_confidence", "a number in [0, 1]", 2.0, or_none=True)
    assert str(err) == "min_confidence must be a number in [0, 1] or None, got 2.0"
    assert as_cli_message(err, p) == "--min-confidence must be a number in [0, 1], got 2.0"
    no_flag = ParameterError("min_count", "an integer >= 1", 0, or_none=True)
    assert as_cli_message(no_flag, p) == str(no_flag)  # annotate has no --min-count
    tokenize = build_parser().subparsers["tokenize"]
    insertion = Keyword("mode", "insertion")
    err = ParameterError("min_overlap", f"1 in {insertion} (1 bp)", 3, keywords=(insertion,))
    assert as_cli_message(err, tokenize) == "--min-overlap must be 1 in --mode insertion (1 bp), got 3"


def test_cli_mapping_goes_by_type_not_wording():
    """An untyped error that merely reads like a range error or a hint keeps its words; a typed one is mapped
    whatever its wording (the library may reword its messages without breaking the command line)."""
    from fastembed.cli import as_cli_message, build_parser
    from fastembed.common.errors import HintedValueError, Keyword, OutputExistsError, ParameterError

    p = build_parser().subparsers["train"]
    for text in ("embedding_dim must be an integer >= 1, got 0", "pass overwrite=True to replace it"):
        assert as_cli_message(ValueError(text), p) == text
    assert as_cli_message(ParameterError("embedding_dim", "at least one", 0), p) == (
        "--embedding-dim must be at least one, got 0"
    )
    hint = Keyword("overwrite", True)
    err = OutputExistsError(f"the folder is taken; say {hint} and it goes", "m", keywords=(hint,))
    assert as_cli_message(err, p) == "the folder is taken; say --overwrite and it goes"
    assert isinstance(err, FileExistsError) and err.path == "m"
    # a keyword the error does not carry stays as Python, even when the command has the flag
    err = HintedValueError("lower learning_rate=0.5 or window_size=", keywords=(Keyword("window_size"),))
    assert as_cli_message(err, p) == "lower learning_rate=0.5 or --window-size"


def test_typed_errors_keep_what_they_carry_through_pickling():
    """Dask sends a worker's error back pickled: the CLI must still see its parameter and keywords."""
    import pickle

    from fastembed.common.errors import HintedKeyError, Keyword, ParameterError

    err = pickle.loads(pickle.dumps(ParameterError("k", "an integer >= 1", 0, or_none=True)))
    assert (err.param, err.requirement, err.value, err.or_none) == ("k", "an integer >= 1", 0, True)
    assert str(err) == "k must be an integer >= 1 or None, got 0"
    hint = Keyword("label_key")
    err = pickle.loads(pickle.dumps(HintedKeyError(f"pass {hint}", keywords=(hint,))))
    assert isinstance(err, KeyError) and err.keywords == (hint,) and err.args == ("pass label_key=",)


def test_zarr_store_opens_with_anndata_and_annotates(trained, capsys):
    d = trained
    assert (
        main(
            [
                "encode",
                str(d / "cells.h5ad"),
                "--model",
                str(d / "model"),
                "--output",
                str(d / "k.zarr"),
                "--embedding-key",
                "emb",
                "--quiet",
            ]
        )
        == 0
    )
    store = ad.read_zarr(d / "k.zarr")
    assert store.obsm["emb"].shape == (800, 16) and store.uns["fastembed"]["embedding_key"] == "emb"
    # The store is accepted where embeddings are read: annotate the store against a labelled reference.
    ref = store.copy()
    ref.obs["cell_type"] = ad.read_h5ad(d / "cells.h5ad").obs["cell_type"].astype(str).to_numpy()
    ref.write_h5ad(d / "kref.h5ad")
    assert (
        main(
            [
                "annotate",
                str(d / "k.zarr"),
                "--reference",
                str(d / "kref.h5ad"),
                "--embedding-key",
                "emb",
                "--output",
                str(d / "k.csv"),
                "-k",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(d / "k.csv")) == 800
    assert (
        main(
            [
                "annotate",
                str(d / "missing.zarr"),
                "--reference",
                str(d / "kref.h5ad"),
                "--output",
                str(d / "k2.csv"),
            ]
        )
        == 1
    )
    assert "missing.zarr' does not exist" in capsys.readouterr().err


def test_zarr_store_keeps_obs_and_serves_as_reference(trained, tmp_path, capsys):
    """A store encoded from a labelled AnnData keeps its obs columns (as the .h5ad route does), so it works as
    an annotate reference; a store without the label column is refused with its path in the message."""
    d = trained
    cells = ad.read_h5ad(d / "cells.h5ad")
    enc = ["encode", "--model", str(d / "model"), "--quiet", "--output"]
    assert main([*enc, str(tmp_path / "ref.zarr"), str(d / "cells.h5ad")]) == 0
    store = ad.read_zarr(tmp_path / "ref.zarr")
    pd.testing.assert_frame_equal(store.obs, cells.obs, check_index_type=False)
    ann = ["annotate", str(tmp_path / "ref.zarr"), "-k", "3", "--quiet", "--reference"]
    assert main([*ann, str(tmp_path / "ref.zarr"), "--output", str(tmp_path / "a.csv")]) == 0
    table = pd.read_csv(tmp_path / "a.csv", index_col=0)
    assert list(table.index) == list(cells.obs_names)
    # Each cell is its own nearest reference neighbour, so most labels come back.
    truth = cells.obs["cell_type"].astype(str).to_numpy()
    assert (table["predicted_cell_type"].astype(str).to_numpy() == truth).mean() > 0.8
    assert main([*enc, str(tmp_path / "tok.zarr"), str(d / "tokens.parquet")]) == 0  # tokens: names only
    assert main([*ann, str(tmp_path / "tok.zarr"), "--output", str(tmp_path / "b.csv")]) == 1
    err = capsys.readouterr().err
    assert f"reference '{tmp_path / 'tok.zarr'}' has no obs['cell_type']" in err
    assert not (tmp_path / "b.csv").exists()


def test_annotate_output_follows_the_extension(trained, capsys):
    d = trained
    a = ad.read_h5ad(d / "cells.h5ad")
    a.obsm["scembed_X"] = np.random.default_rng(0).normal(size=(a.n_obs, 4)).astype(np.float32)
    a.write_h5ad(d / "rand.h5ad")
    base = ["annotate", str(d / "rand.h5ad"), "--reference", str(d / "rand.h5ad"), "-k", "3", "--quiet"]
    assert main([*base, "--output", str(d / "x.tsv")]) == 0
    assert (d / "x.tsv").read_text().splitlines()[0] == "barcode\tpredicted_cell_type\tconfidence"
    assert main([*base, "--output", str(d / "x.tsv"), "--overwrite"]) == 0  # our own TSV may be replaced
    assert main([*base, "--output", str(d / "x.csv")]) == 0
    assert (d / "x.csv").read_text().splitlines()[0] == "barcode,predicted_cell_type,confidence"
    help_text = subprocess.run(
        [sys.executable, "-m", "fastembed", "annotate", "--help"], capture_output=True, text=True
    ).stdout
    assert "predicted_<label-key>" in " ".join(help_text.split()) and "confidence" in help_text


def test_seed_with_several_threads_prints_a_note(trained, tmp_path, capsys):
    import numba

    help_text = subprocess.run(
        [sys.executable, "-m", "fastembed", "train", "--help"], capture_output=True, text=True
    ).stdout
    # argparse may wrap the help at the hyphen of "bit-identical"
    assert "bit-identical results need --threads 1" in " ".join(help_text.split()).replace("- ", "-")
    argv = ["train", str(trained / "tokens.parquet"), "--epochs", "1", "--embedding-dim", "8", "--seed", "3"]
    assert main([*argv, "--output", str(tmp_path / "m1"), "--threads", "1"]) == 0
    assert "note:" not in capsys.readouterr().err
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: several threads cannot be asked for")
    assert main([*argv, "--output", str(tmp_path / "m2"), "--threads", "2"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
    assert notes == [
        "fastembed train: note: --seed 3 with 2 threads gives similar but not bit-identical vectors "
        "between runs; add --threads 1 for bit-identical results"
    ]


@pytest.mark.parametrize("key", ["a/b", ""])
def test_encode_refuses_an_embedding_key_an_h5ad_cannot_hold(trained, tmp_path, capsys, key):
    """'a/b' or '' as an obsm key gave an .h5ad that anndata.read_h5ad cannot open; both outputs refuse them."""
    for name in ("e.h5ad", "e.zarr"):
        argv = ["encode", str(trained / "tokens.parquet"), "--model", str(trained / "model")]
        assert main([*argv, "--output", str(tmp_path / name), "--embedding-key", key, "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("fastembed encode: error: --embedding-key") and len(err.splitlines()) == 1
        assert not (tmp_path / name).exists()


def test_errors_name_the_input_read_whole(trained, tmp_path, capsys):
    """A 10x folder, a .mtx file or an .h5ad read whole (encode to .h5ad) is named in errors about its peaks,
    not called 'the AnnData' (the user never typed one)."""
    import scipy.io

    cells = ad.read_h5ad(trained / "cells.h5ad")
    tenx = tmp_path / "my 10x"
    tenx.mkdir()
    scipy.io.mmwrite(tenx / "matrix.mtx", cells.X.T.tocoo())
    (tenx / "barcodes.tsv").write_text("\n".join(cells.obs_names) + "\n")
    (tenx / "peaks.bed").write_text(
        "".join(
            f"{c.removeprefix('chr')}\t{s}\t{e}\n"
            for c, s, e in zip(cells.var.chr, cells.var.start, cells.var.end, strict=True)
        )
    )
    nochr = cells.copy()
    nochr.var["chr"] = nochr.var["chr"].astype(str).str.removeprefix("chr")
    nochr.write_h5ad(tmp_path / "nochr.h5ad")
    model = ["--model", str(trained / "model")]
    for argv, named in (
        (["tokenize", str(tenx), "--universe", str(demo_peaks_path())], str(tenx)),
        (
            [
                "tokenize",
                str(tenx / "matrix.mtx"),
                "--barcodes",
                str(tenx / "barcodes.tsv"),
                "--peaks",
                str(tenx / "peaks.bed"),
                "--universe",
                str(demo_peaks_path()),
            ],
            str(tenx / "matrix.mtx"),
        ),
        (["encode", str(tenx), *model], str(tenx)),
        (["encode", str(tmp_path / "nochr.h5ad"), *model], str(tmp_path / "nochr.h5ad")),
    ):
        out = tmp_path / ("o.parquet" if argv[0] == "tokenize" else "o.h5ad")
        assert main([*argv, "--output", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--chrom-style add-chr" in err
        assert f"'{named}'" in err and "the AnnData" not in err, err
        assert not out.exists()


def test_encode_model_that_is_a_file_says_so(trained, tmp_path, capsys):
    """--model naming an existing file (the model's config.yaml, a token parquet) is not 'does not exist'."""
    for model in (trained / "model" / "config.yaml", trained / "tokens.parquet"):
        argv = ["encode", str(trained / "tokens.parquet"), "--model", str(model)]
        assert main([*argv, "--output", str(tmp_path / "e.zarr"), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(model) in err
        assert "does not exist" not in err and "is a file" in err, err


@pytest.mark.parametrize("flag", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_tokenize_fragments_refuses_dask_flags_it_would_ignore(tmp_path, capsys, flag):
    """A fragments file is streamed by one process: --workers/--scheduler had no effect, silently."""
    (tmp_path / "fragments.tsv").write_text("chr5\t180470203\t180470704\tAAAC-1\t1\n")
    argv = ["tokenize", str(tmp_path / "fragments.tsv"), "--universe", str(demo_peaks_path())]
    assert main([*argv, "--output", str(tmp_path / "t.parquet"), *flag, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag[0] in err and "fragments" in err, err
    assert not (tmp_path / "t.parquet").exists()


def test_malformed_scheduler_address_names_the_flag(trained, tmp_path, capsys):
    pytest.importorskip("distributed")
    argv = ["tokenize", str(trained / "cells.h5ad"), "--universe", str(demo_peaks_path())]
    assert main([*argv, "--output", str(tmp_path / "t.parquet"), "--scheduler", "headnode", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastembed tokenize: error: --scheduler headnode") and len(err.splitlines()) == 1
    assert not (tmp_path / "t.parquet").exists()
