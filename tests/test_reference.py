"""Reference folders (fastembed.reference) and the novelty score (fastembed.novelty).

A small model is trained on part of the bundled demo data (real granja2019 cells); the planted corpus for
the novelty score is synthetic so that the novel type is known.
"""

from __future__ import annotations

import pickle
import shutil
import sys
import types
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import demo_cells
from naive import novelty_bruteforce

import fastembed as fe
import fastembed.settings as tunables
from fastembed.annotate import annotate_celltypes
from fastembed.cli import main
from fastembed.reference import (
    Reference,
    annotate_with_reference,
    build_reference,
    expected_calibration_error,
    read_reference,
    reference_from_anndata,
)


@pytest.fixture(scope="module")
def cells():
    demo = demo_cells(900, seed=3)
    demo.obs["donor"] = demo.obs["donor"].astype(str)
    ref = demo[demo.obs["donor"] == "D6T1"].copy()
    query = demo[demo.obs["donor"] == "D5T1"].copy()
    return ref, query


@pytest.fixture(scope="module")
def model(cells):
    ref = cells[0]
    uni = fe.Universe.from_arrays(ref.var["chr"], ref.var["start"], ref.var["end"])
    return fe.ScEmbed(embedding_dim=12, seed=0, threads=1).train(
        fe.tokenize_cells(ref, uni), epochs=2, progress=False
    )


@pytest.fixture(scope="module")
def built(model, cells):
    return build_reference(model, cells[0], obs_columns=["donor"], k=5, description="demo slice")


@pytest.fixture(scope="module")
def folder(built, tmp_path_factory):
    return built.save(tmp_path_factory.mktemp("ref") / "reference")


def _files(directory: Path) -> dict:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------------
def test_round_trip_is_bit_identical(built, folder, tmp_path):
    loaded = read_reference(folder)
    np.testing.assert_array_equal(loaded.embeddings, built.embeddings)
    np.testing.assert_array_equal(loaded.neighbour_distance, built.neighbour_distance)
    np.testing.assert_array_equal(loaded.calibration, built.calibration)
    np.testing.assert_array_equal(loaded.model.region_vectors, built.model.region_vectors)
    pd.testing.assert_frame_equal(loaded.obs, built.obs)
    assert (loaded.k, loaded.center, loaded.max_novelty, loaded.quality) == (
        built.k,
        built.center,
        built.max_novelty,
        built.quality,
    )
    again = loaded.save(tmp_path / "again")
    assert _files(again) == _files(folder)


def test_folder_holds_what_the_issue_lists(folder, built):
    names = {p.name for p in folder.iterdir()}
    assert {"model", "embeddings.npy", "obs.parquet", "reference.yaml", "README.md"} <= names
    card = (folder / "README.md").read_text()
    assert "cross-validated accuracy" in card and "demo slice" in card
    for t in built.labels.cat.categories:
        assert f"| {t} |" in card
    # the model subfolder is an ordinary model folder
    assert fe.ScEmbed.from_pretrained(folder / "model").embedding_dim == 12


def test_query_embedded_through_the_model_equals_given_embeddings(folder, cells, model):
    query = cells[1].copy()
    from_peaks = annotate_with_reference(query, folder)
    query.obsm["scembed_X"] = model.encode(query, progress=False)
    from_obsm = annotate_with_reference(query, folder)
    pd.testing.assert_frame_equal(from_peaks, from_obsm)
    assert list(from_peaks.columns) == ["cell_type", "confidence", "vote_share", "novelty"]
    assert from_peaks.index.equals(query.obs_names)


def test_query_paths_give_the_same_table(folder, cells, tmp_path):
    query = cells[1]
    want = annotate_with_reference(query, folder)
    query.write_h5ad(tmp_path / "q.h5ad")
    pd.testing.assert_frame_equal(annotate_with_reference(tmp_path / "q.h5ad", folder), want)
    uni = read_reference(folder).model.universe
    fe.tokenize_cells(query, uni, tmp_path / "q.parquet")
    pd.testing.assert_frame_equal(annotate_with_reference(tmp_path / "q.parquet", folder), want)


def test_annotate_celltypes_takes_a_reference_folder(folder, cells):
    query = cells[1].copy()
    labels = annotate_celltypes(query, folder, k=5, confidence_key="conf", novelty_key="nov")
    table = annotate_with_reference(cells[1], folder)
    pd.testing.assert_series_equal(labels, table["cell_type"], check_names=False)
    np.testing.assert_array_equal(query.obs["nov"].to_numpy(), table["novelty"].to_numpy())
    np.testing.assert_array_equal(query.obs["conf"].to_numpy(), table["confidence"].to_numpy())


def test_annotate_celltypes_table_takes_a_reference_folder_and_a_path_query(folder, cells, tmp_path):
    import warnings

    path = tmp_path / "q.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells[1].write_h5ad(path)
    got = fe.annotate_celltypes_table(path, folder, k=5, confidence_key="conf", novelty_key="nov")
    table = annotate_with_reference(cells[1], folder)
    assert list(got.columns) == ["cell_type", "conf", "nov"]
    pd.testing.assert_series_equal(got["cell_type"], table["cell_type"])
    np.testing.assert_array_equal(got["conf"].to_numpy(), table["confidence"].to_numpy())
    np.testing.assert_array_equal(got["nov"].to_numpy(), table["novelty"].to_numpy())


def test_other_k_recomputes_the_novelty_null(folder, cells):
    ref = read_reference(folder)
    other = annotate_with_reference(cells[1], ref, k=7)
    rebuilt = Reference(**{**ref.__dict__, "k": 7, "neighbour_distance": None})
    from fastembed.annotation.novelty import leave_one_out_distances

    rebuilt.neighbour_distance = leave_one_out_distances(rebuilt.fit(rebuilt.n_cells))
    pd.testing.assert_frame_equal(other, annotate_with_reference(cells[1], rebuilt))


# ------------------------------------------------------------------------------------------------
# Hostile folders: refused like hostile model folders, nothing unpickled
# ------------------------------------------------------------------------------------------------
class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(sys.modules[__name__].__file__).parent / "PWNED_BY_REFERENCE",))


def _pickle_as_npy(path):
    path.write_bytes(pickle.dumps(_Boom()))


def _object_npy(path):
    np.save(path, np.array([_Boom()], dtype=object), allow_pickle=True)


def _short_npy(path):
    data = path.read_bytes()
    path.write_bytes(data[:-40])


def _nan_embeddings(path):
    e = np.load(path)
    e[3, 1] = np.nan
    np.save(path, e)


def _wrong_rows(path):
    np.save(path, np.load(path)[:-1])


def _distance_out_of_range(path):
    d = np.load(path)
    d[0] = 7.0
    np.save(path, d)


def _yaml_list(path):
    path.write_text("- 1\n- 2\n")


def _yaml_huge(path):
    path.write_text("description: " + "x" * (2 << 20) + "\n")


def _yaml_python_tag(path):
    path.write_text(path.read_text() + "evil: !!python/object/apply:os.system ['touch PWNED']\n")


def _yaml_bad_k(path):
    path.write_text(path.read_text().replace("k: 5", "k: 5.5"))


def _obs_rows(path):
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(path).slice(0, 10), path)


def _nan_model(path):
    v = np.load(path)
    v[0, 0] = np.nan
    np.save(path, v)


def _link_outside(path):
    outside = path.parent.parent / "outside.npy"
    shutil.copy(path, outside)
    path.unlink()
    path.symlink_to(outside)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("embeddings.npy", _pickle_as_npy, "not a plain numpy array file"),
        ("embeddings.npy", _object_npy, "not a plain numpy array file"),
        ("embeddings.npy", _short_npy, "header claims shape"),
        ("embeddings.npy", _nan_embeddings, "NaN or infinite"),
        ("embeddings.npy", _wrong_rows, "expected"),
        ("embeddings.npy", _link_outside, "outside the model folder"),
        ("neighbour_distance.npy", _object_npy, "not a plain numpy array file"),
        ("neighbour_distance.npy", _distance_out_of_range, r"in \[0, 2\]"),
        ("calibration.npy", _pickle_as_npy, "not a plain numpy array file"),
        ("reference.yaml", _yaml_python_tag, "not valid YAML"),
        # The model folder's safe config reader serves reference folders too (they had a copy of it).
        ("reference.yaml", _yaml_list, "reference config .* must be a mapping .* got list"),
        ("reference.yaml", _yaml_huge, "reference config .* a reference config is far smaller"),
        ("reference.yaml", _yaml_bad_k, "k must be an integer"),
        ("obs.parquet", _obs_rows, "expected n_cells"),
        ("model/region_vectors.npy", _nan_model, "NaN or infinite"),
    ],
)
def test_hostile_reference_folder_is_refused(folder, tmp_path, name, damage, message):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    damage(bad / name)
    with pytest.raises(ValueError, match=message) as err:
        read_reference(bad)
    assert str(bad) in str(err.value)
    assert not (Path(__file__).parent / "PWNED_BY_REFERENCE").exists()
    assert not Path("PWNED").exists()


def test_missing_parts_are_named(folder, tmp_path):
    for name in ("embeddings.npy", "model", "obs.parquet"):
        bad = tmp_path / name.replace(".", "_")
        shutil.copytree(folder, bad)
        target = bad / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        with pytest.raises(FileNotFoundError, match=name.split(".")[0]):
            read_reference(bad)


def test_save_refuses_to_replace_what_is_not_a_reference(built, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a reference folder"):
        built.save(tmp_path / "x", overwrite=True)
    assert (tmp_path / "x" / "precious.txt").read_text() == "keep"
    built.save(tmp_path / "y")
    with pytest.raises(FileExistsError, match="overwrite"):
        built.save(tmp_path / "y")
    built.save(tmp_path / "y", overwrite=True)


# ------------------------------------------------------------------------------------------------
# Hub, offline
# ------------------------------------------------------------------------------------------------
def test_from_pretrained_reads_a_hub_cache_snapshot(folder, tmp_path, monkeypatch):
    """snapshot_download returns models--o--n/snapshots/<rev>/ whose files (also in model/) link to blobs."""

    def snapshot_download(repo_id, revision=None):
        repo = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--"))
        snap = repo / "snapshots" / "abc123"
        (repo / "blobs").mkdir(parents=True)
        for i, f in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
            rel = f.relative_to(folder)
            shutil.copy(f, repo / "blobs" / f"h{i}")
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            up = Path(*[".."] * (len(rel.parts) + 1))
            (snap / rel).symlink_to(up / "blobs" / f"h{i}")
        return str(snap)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download)
    )
    got = Reference.from_pretrained("someone/bmmc-reference")
    np.testing.assert_array_equal(got.embeddings, read_reference(folder).embeddings)


def test_hub_errors_and_push_offline(built, monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    uploaded = {}

    def upload_folder(folder_path, repo_id, commit_message):
        uploaded.update(_files(Path(folder_path)))
        return types.SimpleNamespace(commit_url=f"https://hub/{repo_id}/commit/1")

    fake = types.SimpleNamespace(
        snapshot_download=offline,
        HfApi=lambda token=None: types.SimpleNamespace(
            create_repo=lambda *a, **k: None, upload_folder=upload_folder
        ),
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(OSError, match="could not be fetched from the Hugging Face hub.*local path"):
        Reference.from_pretrained("someone/ref")
    assert built.push_to_hub("someone/ref") == "https://hub/someone/ref/commit/1"
    assert {"reference.yaml", "embeddings.npy", "model/config.yaml", "README.md"} <= set(uploaded)
    fake.HfApi = lambda token=None: types.SimpleNamespace(create_repo=offline, upload_folder=offline)
    with pytest.raises(OSError, match="could not upload .* reference.save"):
        built.push_to_hub("someone/ref")
    with pytest.raises(FileNotFoundError, match="not a hub id"):
        Reference.from_pretrained(tmp_path / "no" / "such")


# ------------------------------------------------------------------------------------------------
# Unknown label
# ------------------------------------------------------------------------------------------------
def test_unknown_label_never_collides_with_a_reference_label(cells, model):
    ref = cells[0].copy()
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(str)
    ref.obs.loc[ref.obs_names[:60], "cell_type"] = "unknown"
    r = build_reference(model, ref, k=5, calibrate=False)
    with pytest.raises(ValueError, match="unknown_label 'unknown' is also a label"):
        annotate_with_reference(cells[1], r, max_novelty=0.0)
    got = annotate_with_reference(cells[1], r, max_novelty=0.0, unknown_label="not in reference")
    assert set(got["cell_type"].cat.categories) == {*r.labels.cat.categories, "not in reference"}
    assert (got["cell_type"] == "not in reference").sum() > 0
    # no cell called unknown: no clash to report, and every label is a reference label
    kept = annotate_with_reference(cells[1], r, max_novelty=None)
    assert set(kept["cell_type"].astype(str)) <= set(r.labels.cat.categories)


# ------------------------------------------------------------------------------------------------
# Novelty: brute force, exact and approximate search on a planted corpus
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    """Five known types and, in the query only, a sixth (planted) one: Gaussian clusters in 16 dims."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 1.6, size=(6, 16))

    def draw(types_, n):
        lab = np.repeat(types_, n)
        return (centres[lab] + rng.normal(0, 1.0, size=(lab.size, 16))).astype(np.float32), lab

    re, rl = draw(np.arange(5), 150)
    qe, ql = draw(np.arange(6), 60)
    ref = ad.AnnData(
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical([f"t{i}" for i in rl])}, index=[f"r{i}" for i in range(rl.size)]
        ),
        obsm={"scembed_X": re},
    )
    query = ad.AnnData(obs=pd.DataFrame(index=[f"q{i}" for i in range(ql.size)]), obsm={"scembed_X": qe})
    return ref, query, ql == 5


def _auroc(score, positive):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(positive, score)


def test_exact_novelty_matches_brute_force(planted):
    ref, query, novel = planted
    q = query.copy()
    labels = annotate_celltypes(q, ref, k=10, novelty_key="novelty")
    codes = pd.Categorical(labels.astype(str), categories=ref.obs["cell_type"].cat.categories).codes
    want = novelty_bruteforce(
        ref.obsm["scembed_X"], ref.obs["cell_type"].cat.codes, query.obsm["scembed_X"], codes, 10
    )
    got = q.obs["novelty"].to_numpy()
    # float32 vs float64 distances may order a tie the other way: one step of 1/(1 + 150) at most, rarely
    assert np.abs(got - want).max() <= 1.0 / 151 + 1e-6
    assert np.mean(np.abs(got - want) > 1e-6) < 0.02
    assert _auroc(got, novel) > 0.95


# Stated tolerance: approximate (pynndescent) neighbours are the exact ones or slightly farther, for the query
# and the leave-one-out null alike, so the scores agree closely; a cell whose approximate vote flips to another
# type is ranked against another type's null and may differ a lot, so the bound is on the mean and on 98% of
# the cells: mean |difference| <= 0.02, and |difference| <= 0.05 for 98% of the cells.
APPROX_MEAN_TOL, APPROX_CELL_TOL, APPROX_SHARE = 0.02, 0.05, 0.98


def test_approximate_novelty_agrees_with_exact(planted, monkeypatch):
    ref, query, novel = planted
    exact, approx = query.copy(), query.copy()
    annotate_celltypes(exact, ref, k=10, novelty_key="novelty")
    monkeypatch.setattr(tunables, "EXACT_SEARCH_PAIRS", 0)
    annotate_celltypes(approx, ref, k=10, novelty_key="novelty")
    diff = np.abs(exact.obs["novelty"].to_numpy() - approx.obs["novelty"].to_numpy())
    assert diff.mean() <= APPROX_MEAN_TOL
    assert np.mean(diff <= APPROX_CELL_TOL) >= APPROX_SHARE
    assert _auroc(approx.obs["novelty"].to_numpy(), novel) > 0.95


def test_max_novelty_calls_the_planted_type_unknown(planted):
    ref, query, novel = planted
    labels = annotate_celltypes(query.copy(), ref, k=10, max_novelty=0.99)
    called = (labels == "unknown").to_numpy()
    assert called[novel].mean() > 0.75 and called[~novel].mean() < 0.1
    # without max_novelty an AnnData reference behaves as before: no unknowns
    assert "unknown" not in set(annotate_celltypes(query.copy(), ref, k=10).astype(str))


def test_reference_from_anndata_null_is_leave_one_out(planted):
    ref = reference_from_anndata(planted[0], k=10)
    emb = ref.embeddings.astype(np.float64)
    unit = emb - emb.mean(axis=0)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    want = (1 - np.sort(sims, axis=1)[:, ::-1][:, :10]).mean(axis=1)
    np.testing.assert_allclose(ref.neighbour_distance, want, atol=1e-5)


def test_expected_calibration_error_by_hand():
    conf = np.array([0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    # bins: [0.0,0.1) acc 0 conf 0.05; [0.1,0.2) acc 0 conf 0.15; [0.9,1.0] acc 0.75 conf 0.95
    want = (1 * 0.05 + 1 * 0.15 + 4 * 0.2) / 6
    assert expected_calibration_error(conf, correct) == pytest.approx(want)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def test_cli_build_and_annotate(model, cells, tmp_path, capsys):
    model.save(tmp_path / "model")
    cells[0].write_h5ad(tmp_path / "ref.h5ad")
    cells[1].write_h5ad(tmp_path / "query.h5ad")
    rc = main(
        [
            "reference",
            "build",
            str(tmp_path / "ref.h5ad"),
            "--model",
            str(tmp_path / "model"),
            "--output",
            str(tmp_path / "reference"),
            "-k",
            "5",
            "--obs-columns",
            "donor",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert read_reference(tmp_path / "reference").obs.columns.tolist() == ["cell_type", "donor"]
    rc = main(
        [
            "annotate",
            str(tmp_path / "query.h5ad"),
            "--reference",
            str(tmp_path / "reference"),
            "--output",
            str(tmp_path / "labels.csv"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "labels.csv", index_col=0)
    assert table.columns.tolist() == ["predicted_cell_type", "confidence", "vote_share", "novelty"]
    want = annotate_with_reference(cells[1], tmp_path / "reference")
    np.testing.assert_array_equal(
        table["predicted_cell_type"].to_numpy(), want["cell_type"].astype(str).to_numpy()
    )
    rc = main(
        [
            "annotate",
            str(tmp_path / "query.h5ad"),
            "--reference",
            str(tmp_path / "reference"),
            "--output",
            str(tmp_path / "labels2.csv"),
            "--max-novelty",
            "2",
        ]
    )
    assert rc == 1 and "--max-novelty must be" in capsys.readouterr().err


def test_reference_build_has_help():
    import subprocess

    res = subprocess.run(
        [sys.executable, "-m", "fastembed", "reference", "build", "--help"], capture_output=True, text=True
    )
    assert (
        res.returncode == 0
        and "usage: fastembed reference build" in res.stdout
        and "--obs-columns" in res.stdout
    )


def test_dask_client_with_a_reference_folder_is_refused_clearly(folder, cells):
    with pytest.raises(ValueError, match="client= is not supported with a reference folder"):
        annotate_celltypes(cells[1].copy(), folder, client=object())
