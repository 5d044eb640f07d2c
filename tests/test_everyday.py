"""Everyday use: diagnostics, output formats, chromosome naming, embeddings-only output, notebook progress."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import demo_cells

import fastembed as fe
from fastembed.cli import main
from fastembed.datasets import demo_peaks_path
from fastembed.tokens import read_tokens_parquet


@pytest.fixture(scope="module")
def cells():
    return demo_cells(300, 3)


# -- tokenize diagnostics --------------------------------------------------------------------------------
def test_tokenize_stats_count_what_landed_in_the_universe(cells, tmp_path):
    a = cells.copy()
    # Shift a tenth of the peaks far past every region: they map to nothing.
    moved = np.arange(0, a.n_vars, 10)
    a.var["start"] = a.var["start"].astype(np.int64)
    a.var["end"] = a.var["end"].astype(np.int64)
    a.var.iloc[moved, a.var.columns.get_loc("start")] += 10**9
    a.var.iloc[moved, a.var.columns.get_loc("end")] += 10**9
    a.var_names = [f"{c}:{s}-{e}" for c, s, e in zip(a.var["chr"], a.var["start"], a.var["end"], strict=True)]
    tok = fe.tokenize_cells(a, demo_peaks_path())
    s = tok.stats
    assert s["n_peaks_unmapped"] == moved.size
    assert s["fraction_peaks_in_universe"] == pytest.approx(1 - moved.size / a.n_vars)
    X = a.X.tocsr()
    on_moved = np.isin(X.indices, moved) & (X.data != 0)
    assert s["n_counts"] == int(np.count_nonzero(X.data))
    assert s["n_counts_in_universe"] == s["n_counts"] - int(on_moved.sum())
    lengths = np.diff(tok.indptr)
    assert s["n_empty_cells"] == int((lengths == 0).sum())
    assert s["n_few_token_cells"] == int(((lengths > 0) & (lengths < s["few_tokens"])).sum())
    assert s["median_tokens_per_cell"] == float(np.median(lengths))
    # The parquet file carries the same diagnostics, and reading it back restores them.
    path = fe.tokenize_cells(a, demo_peaks_path(), output=tmp_path / "t.parquet")

    meta = json.loads(pq.read_schema(path).metadata[b"fastembed.tokenize.stats"])
    assert meta == pytest.approx(s)
    assert read_tokens_parquet(path).stats["fraction_counts_in_universe"] == pytest.approx(
        s["fraction_counts_in_universe"]
    )


def test_cli_tokenize_prints_the_diagnostics(cells, tmp_path, capsys):
    cells.write_h5ad(tmp_path / "c.h5ad")
    assert (
        main(
            [
                "tokenize",
                str(tmp_path / "c.h5ad"),
                "--universe",
                str(demo_peaks_path()),
                "--output",
                str(tmp_path / "t.parquet"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "peaks (100.0%)" in err and "counts (100.0%) in the universe" in err
    assert "cells with no token" in err and "median" in err


def test_nothing_maps_is_an_error_at_tokenize(cells, tmp_path, capsys):
    with pytest.raises(ValueError, match="min_overlap=100000"):
        fe.tokenize_cells(cells, demo_peaks_path(), min_overlap=100_000)
    cells.write_h5ad(tmp_path / "c.h5ad")
    assert (
        main(
            [
                "tokenize",
                str(tmp_path / "c.h5ad"),
                "--universe",
                str(demo_peaks_path()),
                "--output",
                str(tmp_path / "t.parquet"),
                "--min-overlap",
                "100000",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "--min-overlap 100000 bp" in err and "lower --min-overlap or" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t.parquet").exists()


def test_cells_without_entries_on_mapped_peaks_are_an_error(cells):
    a = cells.copy()
    a.X = a.X.tocsr() * 0
    with warnings.catch_warnings(), pytest.raises(ValueError, match="no cell of .* has a token"):
        warnings.simplefilter("ignore")
        fe.tokenize_cells(a, demo_peaks_path())


# -- chromosome naming -----------------------------------------------------------------------------------
def _ensembl(adata):
    """The same cells with Ensembl-style chromosome names (1, X, MT) in var and var_names."""
    a = adata.copy()
    a.var["chr"] = [c[3:] if c != "chrM" else "MT" for c in a.var["chr"].astype(str)]
    a.var_names = [f"{c}:{s}-{e}" for c, s, e in zip(a.var["chr"], a.var["start"], a.var["end"], strict=True)]
    return a


def test_restyle_chroms_maps_both_ways():
    from fastembed.readers import restyle_chroms

    assert list(restyle_chroms(np.array(["1", "X", "MT", "chr2"], dtype=object), "add-chr")) == [
        "chr1",
        "chrX",
        "chrM",
        "chr2",
    ]
    assert list(restyle_chroms(np.array(["chr1", "chrM", "7"], dtype=object), "strip-chr")) == [
        "1",
        "MT",
        "7",
    ]
    with pytest.raises(ValueError, match="chrom_style must be one of asis, add-chr, strip-chr"):
        restyle_chroms(np.array(["1"], dtype=object), "ucsc")


def test_chrom_style_matches_ensembl_data_to_a_ucsc_universe(cells, tmp_path, capsys):
    ens = _ensembl(cells)
    with pytest.raises(ValueError, match="pass chrom_style='add-chr'"):
        fe.tokenize_cells(ens, demo_peaks_path())
    want = fe.tokenize_cells(cells, demo_peaks_path())
    got = fe.tokenize_cells(ens, demo_peaks_path(), chrom_style="add-chr")
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    # The command line names its flag, and the flag works.
    ens.write_h5ad(tmp_path / "ens.h5ad")
    argv = [
        "tokenize",
        str(tmp_path / "ens.h5ad"),
        "--universe",
        str(demo_peaks_path()),
        "--output",
        str(tmp_path / "t.parquet"),
        "--quiet",
    ]
    assert main(argv) == 1
    assert "pass --chrom-style add-chr to match them" in capsys.readouterr().err
    assert main([*argv, "--chrom-style", "add-chr"]) == 0
    np.testing.assert_array_equal(read_tokens_parquet(tmp_path / "t.parquet").indices, want.indices)


def test_chrom_style_strips_for_an_ensembl_universe(cells, tmp_path):
    import gzip

    lines = gzip.open(demo_peaks_path(), "rt").read().splitlines()
    (tmp_path / "ens.bed").write_text(
        "".join((ln[3:] if ln.startswith("chr") else ln) + "\n" for ln in lines)
    )
    with pytest.raises(ValueError, match="pass chrom_style='strip-chr'"):
        fe.tokenize_cells(cells, tmp_path / "ens.bed")
    got = fe.tokenize_cells(cells, tmp_path / "ens.bed", chrom_style="strip-chr")
    np.testing.assert_array_equal(got.indices, fe.tokenize_cells(cells, demo_peaks_path()).indices)


def test_encode_takes_the_chrom_style_too(cells):
    tok = fe.tokenize_cells(cells, demo_peaks_path())
    model = fe.ScEmbed(8, seed=0, threads=1, n_components=None).train(tok, epochs=1, progress=False)
    with pytest.raises(ValueError, match="add-chr"):
        model.encode(_ensembl(cells))
    np.testing.assert_array_equal(model.encode(_ensembl(cells), chrom_style="add-chr"), model.encode(cells))


# -- smaller items ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model(cells, tmp_path_factory):
    d = tmp_path_factory.mktemp("everyday")
    fe.tokenize_cells(cells, demo_peaks_path(), output=d / "t.parquet")
    model = fe.ScEmbed(8, seed=0, threads=1).train(d / "t.parquet", epochs=1, progress=False)
    model.save(d / "model")
    cells.write_h5ad(d / "cells.h5ad")
    return d


def test_encode_embeddings_only_h5ad(small_model):
    import anndata as ad

    d = small_model
    base = ["encode", str(d / "cells.h5ad"), "--model", str(d / "model"), "--quiet"]
    assert main([*base, "--output", str(d / "full.h5ad")]) == 0
    assert main([*base, "--output", str(d / "emb.h5ad"), "--embeddings-only"]) == 0
    full, emb = ad.read_h5ad(d / "full.h5ad"), ad.read_h5ad(d / "emb.h5ad")
    assert emb.n_vars == 0 and emb.X is None and full.n_vars == 10_000
    np.testing.assert_array_equal(emb.obsm["scembed_X"], full.obsm["scembed_X"])
    assert list(emb.obs.columns) == list(full.obs.columns) and list(emb.obs_names) == list(full.obs_names)
    assert (d / "emb.h5ad").stat().st_size < (d / "full.h5ad").stat().st_size / 2


def test_loaded_model_refuses_another_universe_clearly(small_model, cells, tmp_path):
    import gzip

    model = fe.ScEmbed.from_pretrained(small_model / "model")
    lines = gzip.open(demo_peaks_path(), "rt").read().splitlines()
    (tmp_path / "half.bed").write_text("\n".join(lines[::2]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = fe.tokenize_cells(cells, tmp_path / "half.bed")
    with pytest.raises(
        ValueError,
        match=r"another universe \(5000 regions\) than this model's \(10000 regions.*"
        r"new ScEmbed\(\)",
    ) as exc:
        model.train(other, epochs=1, progress=False)
    assert len(str(exc.value)) < 500
    assert "refuses others" in " ".join(fe.ScEmbed.train.__doc__.split())
    # The same universe trains again, from fresh vectors.
    model.train(small_model / "t.parquet", epochs=1, progress=False)
    assert model.training_info["epochs"] == 1


def test_hub_hint_names_an_installable_distribution(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    with pytest.raises(ImportError) as exc:
        fe.ScEmbed.from_pretrained("someone/some-model")
    msg = str(exc.value)
    assert "pip install huggingface_hub" in msg and "fastembed-sc[hub]" not in msg


# -- progress in notebooks -------------------------------------------------------------------------------
def test_encode_shows_progress_in_a_notebook(fake_notebook, small_model, cells, capsys):
    model = fe.ScEmbed.from_pretrained(small_model / "model")
    model.encode(cells, batch_cells=100)
    err = capsys.readouterr().err
    assert "encoding" in err and "300/300" in err
    model.encode(cells, batch_cells=100, progress=False)
    assert "encoding" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["no", "False", "", 0, 1, None, 1.0, [True]])
def test_progress_takes_only_true_or_false(small_model, cells, bad):
    """A truthy non-bool (progress="no") switched the bars on; train and encode refuse it before any work."""
    model = fe.ScEmbed.from_pretrained(small_model / "model")
    before = model.region_vectors.copy()
    message = re.escape(f"progress must be True or False, got {bad!r}")
    with pytest.raises(TypeError, match=message):
        model.encode(cells, progress=bad)
    with pytest.raises(TypeError, match=message):
        model.train(small_model / "t.parquet", epochs=1, progress=bad)
    np.testing.assert_array_equal(model.region_vectors, before)  # nothing was trained


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_switches_take_only_true_or_false_before_any_work(tmp_path, bad, monkeypatch):
    """train_sgns(progress=) is refused before its warm start, run_demo(quiet=, overwrite=) before writing."""
    from fastembed import sgns
    from fastembed.demo import run_demo

    def no_warm_start(*a, **k):
        raise AssertionError("the warm start ran before progress= was checked")

    monkeypatch.setattr(sgns, "spectral_init", no_warm_start)
    indptr, indices = np.array([0, 3, 6], np.int64), np.array([0, 1, 2, 1, 2, 3], np.int32)
    with pytest.raises(TypeError, match=re.escape(f"progress must be True or False, got {bad!r}")):
        sgns.train_sgns(indptr, indices, 4, init="spectral", progress=bad)
    for name in ("quiet", "overwrite"):
        with pytest.raises(TypeError, match=re.escape(f"{name} must be True or False, got {bad!r}")):
            run_demo(tmp_path / "demo", **{name: bad})
    assert not (tmp_path / "demo").exists()


def test_progress_takes_numpy_bools(small_model, cells, fake_notebook, capsys):
    model = fe.ScEmbed.from_pretrained(small_model / "model")
    emb = model.encode(cells, batch_cells=100, progress=np.False_)
    assert "encoding" not in capsys.readouterr().err
    np.testing.assert_array_equal(model.encode(cells, batch_cells=100, progress=np.True_), emb)
    assert "300/300" in capsys.readouterr().err


def test_demo_long_steps_have_progress(monkeypatch, tmp_path):
    import fastembed._progress as prog
    import fastembed.model.encoder as encoder_mod
    from fastembed.demo import run_demo

    seen = []

    class Bar:
        def __init__(self, total, desc):
            self.total, self.desc, self.n = total, desc, 0

        def update(self, n=1):
            self.n += n

        def close(self):
            seen.append((self.desc, self.n, self.total))

    def fake(total, *, desc, unit, enabled=True):
        return Bar(total, desc) if enabled else None

    monkeypatch.setattr(prog, "progress_bar", fake)
    monkeypatch.setattr(encoder_mod, "progress_bar", fake)
    run_demo(tmp_path / "demo", epochs=1, n_cells=400, threads=1)
    assert ("encoding", 400, 400) in seen and ("clustering", 3, 3) in seen
    seen.clear()
    run_demo(tmp_path / "demo", epochs=1, n_cells=400, threads=1, quiet=True, overwrite=True)
    assert seen == []
