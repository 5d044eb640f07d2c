"""fe.pp.read_fragments: counts and QC against a brute-force count, the empty-droplet rule, the whitelist."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import fragments_qc_bruteforce

import fastembed as fe
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.genome.fragments_adata import AUTO_FLOOR, EXPECTED_CELLS, droplet_threshold


def write_fragments(path, frags):
    text = "# id=test\n" + "".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in frags)
    Path(path).write_bytes(gzip.compress(text.encode()))
    return path


def write_bed(path, regions):
    Path(path).write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in regions))
    return path


UNIVERSE = [
    ("chr1", 100, 200),
    ("chr1", 150, 400),
    ("chr1", 1000, 1100),
    ("chr2", 0, 500),
    ("chrM", 0, 16000),
]


def check_against_bruteforce(adata, frags, universe, mode="fragment", min_overlap=1):
    want = fragments_qc_bruteforce(frags, universe, mode=mode, min_overlap=min_overlap)
    X = adata.X.toarray()
    for i, b in enumerate(adata.obs_names):
        w = want.get(b, {"counts": {}, "n_fragments": 0, "n_in": 0, "nfr": 0, "mono": 0, "mito": 0})
        row = np.zeros(len(universe))
        for j, v in w["counts"].items():
            row[j] = v
        np.testing.assert_array_equal(X[i], row)
        o = adata.obs.iloc[i]
        n = w["n_fragments"]
        assert o.n_fragments == n and o.n_fragments_in_universe == w["n_in"]
        assert o.n_regions == len(w["counts"])
        d = max(n, 1)
        assert o.frac_fragments_in_universe == pytest.approx(w["n_in"] / d)
        assert o.frac_nucleosome_free == pytest.approx(w["nfr"] / d)
        assert o.frac_mononucleosome == pytest.approx(w["mono"] / d)
        assert o.frac_fragments_mito == pytest.approx(w["mito"] / d)
        if w["nfr"]:
            assert o.nucleosome_signal == pytest.approx(w["mono"] / w["nfr"])
        else:
            assert np.isnan(o.nucleosome_signal)


@st.composite
def fragment_sets(draw):
    n = draw(st.integers(1, 25))
    frags = []
    for _ in range(n):
        c = draw(st.sampled_from(["chr1", "chr2", "chrM", "chr9"]))
        s = draw(st.integers(0, 1200))
        length = draw(st.integers(1, 400))
        frags.append((c, s, s + length, draw(st.sampled_from(["A", "B", "C"]))))
    return frags


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frags=fragment_sets(), mode=st.sampled_from(["fragment", "insertion"]))
def test_counts_and_qc_match_bruteforce(tmp_path, frags, mode):
    path = write_fragments(tmp_path / "f.tsv.gz", frags)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    if all(c == "chr9" for c, *_ in frags):  # no chromosome in common with the universe: an error, not zeros
        with pytest.raises(ValueError, match="none of the chromosomes"):
            fe.pp.read_fragments(path, uni, min_fragments=1, mode=mode)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = fe.pp.read_fragments(path, uni, min_fragments=1, mode=mode)
    seen = list(dict.fromkeys(b for *_, b in frags))
    assert list(adata.obs_names) == seen
    assert adata.X.dtype == np.float32 and adata.n_vars == len(UNIVERSE)
    check_against_bruteforce(adata, frags, UNIVERSE, mode=mode)


def test_whitelist_wins_over_the_rule(tmp_path):
    frags = [("chr1", 120, 180, "A"), ("chr2", 10, 400, "B"), ("chr1", 120, 180, "X")]
    path = write_fragments(tmp_path / "f.tsv.gz", frags)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    adata = fe.pp.read_fragments(path, uni, barcodes=["B", "Z", "A"])  # 'auto' would keep nobody here
    assert list(adata.obs_names) == ["B", "Z", "A"]
    assert adata.obs.loc["Z", "n_fragments"] == 0 and adata.X[1].nnz == 0
    assert adata.uns["fragments"]["cell_rule"] == "whitelist"
    assert adata.uns["fragments"]["n_barcodes_not_in_whitelist"] == 1
    check_against_bruteforce(adata, [f for f in frags if f[3] != "X"], UNIVERSE)


def test_droplet_threshold_rule():
    # 10x the 99th percentile of the top EXPECTED_CELLS, never below AUTO_FLOOR
    cells = np.full(EXPECTED_CELLS, 5000)
    droplets = np.arange(1, 50_000) % 40
    assert droplet_threshold(np.concatenate([cells, droplets])) == 500
    assert droplet_threshold(np.array([30, 20, 10])) == AUTO_FLOOR
    top = np.arange(1, 1001) * 10  # 99th percentile of 10..10000 (linear) is 9900.1 -> 991
    assert droplet_threshold(top) == int(np.ceil(np.percentile(top, 99) / 10))


@pytest.fixture(scope="module")
def demo_with_droplets(tmp_path_factory):
    """200 demo cells as fragments inside their open peaks (2-4 each), plus 2,000 ambient barcodes with 1-20
    fragments at random positions of those peaks (what empty droplets hold)."""
    adata = load_demo()[:200].copy()
    rng = np.random.default_rng(3)
    X = adata.X.tocsr()
    var = adata.var
    ch, ps, pe = var["chr"].to_numpy(), var["start"].to_numpy(), var["end"].to_numpy()
    frags = []
    for i in range(adata.n_obs):
        cols = np.repeat(
            X.indices[X.indptr[i] : X.indptr[i + 1]], rng.integers(2, 5, X.indptr[i + 1] - X.indptr[i])
        )
        s = ps[cols] + rng.integers(0, 100, cols.size)
        e = np.minimum(s + rng.integers(40, 400, cols.size), pe[cols] + 200)
        frags += [(ch[c], int(a), int(b), adata.obs_names[i]) for c, a, b in zip(cols, s, e, strict=True)]
    for d in range(2000):
        cols = rng.integers(0, adata.n_vars, rng.integers(1, 21))
        frags += [(ch[c], int(ps[c]), int(ps[c]) + 100, f"EMPTY{d}") for c in cols]
    path = write_fragments(tmp_path_factory.mktemp("frag") / "fragments.tsv.gz", frags)
    return adata, frags, path


def test_auto_rule_drops_the_empty_droplets_of_real_cells(demo_with_droplets):
    adata, frags, path = demo_with_droplets
    got = fe.pp.read_fragments(path, demo_peaks_path())
    assert set(got.obs_names) == set(adata.obs_names)  # every cell, no droplet
    info = got.uns["fragments"]
    assert info["cell_rule"] == "auto" and info["n_barcodes_below_min_fragments"] == 2000
    assert info["n_barcodes"] == 2200 and info["n_fragments"] == len(frags)
    assert got.obs.n_fragments.min() >= info["min_fragments"]
    # the counts' nonzero pattern is each cell's peaks (fragments lie inside their peak and may reach the next)
    assert (got.obs.frac_fragments_in_universe == 1).all()
    everything = fe.pp.read_fragments(path, demo_peaks_path(), min_fragments=1)
    assert everything.n_obs == 2200


def test_read_fragments_feeds_scembed(demo_with_droplets):
    _, _, path = demo_with_droplets
    a = fe.pp.read_fragments(path, demo_peaks_path())
    fe.tl.scembed(a, embedding_dim=8, epochs=1, threads=1, progress=False)
    assert a.obsm["scembed_X"].shape == (a.n_obs, 8) and a.uns["scembed"]["universe"]["from_data"] is True


@pytest.mark.parametrize(
    ("kwargs", "expect"),
    [
        ({"min_fragments": "many"}, "'auto' or an integer"),
        ({"min_fragments": 0}, "'auto' or an integer"),
        ({"mode": "reads"}, "mode must be"),
        ({"mode": "insertion", "min_overlap": 5}, "min_overlap must be 1"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, expect):
    path = write_fragments(tmp_path / "f.tsv.gz", [("chr1", 120, 180, "A")])
    with pytest.raises(ValueError, match=expect):
        fe.pp.read_fragments(path, write_bed(tmp_path / "u.bed", UNIVERSE), **kwargs)


def test_nothing_left_says_what_to_pass(tmp_path):
    path = write_fragments(tmp_path / "f.tsv.gz", [("chr1", 120, 180, "A")])
    with pytest.raises(ValueError, match=r"min_fragments=100 .*lower min_fragments= or a whitelist"):
        fe.pp.read_fragments(path, write_bed(tmp_path / "u.bed", UNIVERSE))


# -- messages, the command line's default, counts carried into the embeddings store -----------------------
def test_encode_and_tokenize_refuse_a_fragments_file_saying_tokenize_first(demo_with_droplets, tmp_path):
    _, _, path = demo_with_droplets
    cells = load_demo()[:100].copy()
    model = fe.ScEmbed(embedding_dim=4, seed=0, threads=1).train(
        fe.tokenize_cells(cells, demo_peaks_path()), epochs=1, progress=False
    )
    with pytest.raises(
        ValueError, match=r"fragments file; encode takes an AnnData.*parquet.*Tokenize it first"
    ):
        model.encode(path)
    with pytest.raises(ValueError, match=r"fragments file; tokenize_cells takes .*Tokenize it first"):
        fe.tokenize_cells(str(path), demo_peaks_path())
    model.save(tmp_path / "m")
    from fastembed.cli import main

    assert (
        main(["encode", str(path), "--model", str(tmp_path / "m"), "--output", str(tmp_path / "e.zarr")]) == 1
    )


def test_cli_default_drops_empty_droplets_and_never_speaks_of_an_absent_whitelist(
    demo_with_droplets, tmp_path, capsys
):
    from fastembed.cli import main
    from fastembed.tokens import read_tokens_parquet

    adata, _, path = demo_with_droplets
    out = tmp_path / "t.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["tokenize", str(path), "--universe", str(demo_peaks_path()), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "whitelist" not in err and "dropped 2000 barcodes below --min-fragments" in err
    assert set(read_tokens_parquet(out).barcodes) == set(adata.obs_names)
    wl = tmp_path / "wl.txt"
    wl.write_text("\n".join(adata.obs_names[:5]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = [
            "tokenize",
            str(path),
            "--universe",
            str(demo_peaks_path()),
            "--output",
            str(tmp_path / "w.parquet"),
        ]
        assert main([*args, "--barcodes", str(wl)]) == 0
    err = capsys.readouterr().err
    assert "not in the whitelist" in err and "--min-fragments" not in err


def test_encoding_fragment_tokens_keeps_their_counts_in_the_store(demo_with_droplets, tmp_path):
    import anndata as ad

    _, _, path = demo_with_droplets
    tok = fe.tokenize_fragments(path, demo_peaks_path(), min_fragments="auto")
    assert tok.stats["min_fragments"] >= AUTO_FLOOR and len(tok) == 200
    model = fe.ScEmbed(embedding_dim=4, seed=0, threads=1).train(tok, epochs=1, progress=False)
    written = fe.tokenize_fragments(path, demo_peaks_path(), tmp_path / "t.parquet", min_fragments="auto")
    for source, name in ((tok, "mem"), (written, "file")):
        model.encode(source, out=tmp_path / f"{name}.zarr", progress=False)
        store = ad.read_zarr(tmp_path / f"{name}.zarr")
        np.testing.assert_array_equal(store.obs["n_fragments"].to_numpy(), tok.stats["fragments_per_cell"])
        np.testing.assert_array_equal(
            store.obs["n_fragments_in_universe"].to_numpy(), tok.stats["fragments_in_universe_per_cell"]
        )


def test_cli_unknown_input_lists_what_each_subcommand_takes(tmp_path, capsys):
    from fastembed.cli import main

    odd = tmp_path / "cells.bed"
    odd.write_text("chr1\t1\t2\n")
    assert main(["tokenize", str(odd), "--universe", str(odd), "--output", str(tmp_path / "t.parquet")]) == 1
    err = capsys.readouterr().err
    assert "expected an .h5ad or .zarr AnnData" in err and "fragments file" in err
