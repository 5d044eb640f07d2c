"""Region2VecDataset(sample_cells=): a stratified-by-row-group random sample of the cells of a token file."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import fastembed as fe
from fastembed import settings as tunables
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.region2vec import _group_quota


@pytest.fixture(scope="module")
def tokens():
    return fe.tokenize_cells(load_demo()[:1050].copy(), demo_peaks_path())


@pytest.fixture()
def parquet(tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(tunables, "ROW_GROUP_CELLS", 200)  # 6 row groups, the last of 50 cells
    path = tokens.to_parquet(tmp_path / "t.parquet")
    assert pq.ParquetFile(path).metadata.num_row_groups == 6
    return path


def test_quota_is_proportional_and_exact():
    sizes = np.array([200, 200, 200, 200, 200, 50])
    q = _group_quota(sizes, 105)
    assert q.sum() == 105 and list(q) == [20, 20, 20, 20, 20, 5]
    assert _group_quota(np.array([3, 3, 3]), 2).sum() == 2
    assert list(_group_quota(np.array([5, 1]), 6)) == [5, 1]


def test_sample_is_stratified_and_true_to_the_file(tokens, parquet):
    ds = fe.Region2VecDataset(parquet, sample_cells=105, seed=3)
    assert len(ds) == 105
    where = {b: i for i, b in enumerate(tokens.barcodes)}
    rows = np.array([where[b] for b in ds.barcodes])
    assert np.all(np.diff(rows) > 0)  # file order, no repeats
    np.testing.assert_array_equal(np.bincount(rows // 200, minlength=6), [20, 20, 20, 20, 20, 5])
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(ds[i], tokens[r])
    info = ds.sample_info
    assert info["n_cells_total"] == 1050 and info["n_tokens_total"] == tokens.n_tokens
    assert info["fraction_cells_seen"] == 105 / 1050
    assert info["fraction_tokens_seen"] == sum(len(tokens[r]) for r in rows) / tokens.n_tokens
    assert ds.universe.same_as(tokens.universe)


def test_same_seed_same_cells(parquet):
    a = fe.Region2VecDataset(parquet, sample_cells=50, seed=1)
    b = fe.Region2VecDataset(parquet, sample_cells=50, seed=1)
    c = fe.Region2VecDataset(parquet, sample_cells=50, seed=2)
    assert list(a.barcodes) == list(b.barcodes) and list(a.barcodes) != list(c.barcodes)


def test_reads_row_groups_not_the_whole_file(parquet, monkeypatch):
    calls = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(
        pq.ParquetFile, "read_row_group", lambda self, g, **k: calls.append(g) or real(self, g, **k)
    )
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("whole file read"))
    fe.Region2VecDataset(parquet, sample_cells=10, seed=0)
    assert calls == list(range(6))


def test_in_memory_and_oversized_samples(tokens, parquet):
    mem = fe.Region2VecDataset(tokens, sample_cells=100, seed=0)
    assert len(mem) == 100 and mem.sample_info["fraction_cells_seen"] == 100 / 1050
    full = fe.Region2VecDataset(parquet, sample_cells=10_000, seed=0)
    np.testing.assert_array_equal(full.indices, tokens.indices)
    assert full.sample_info["fraction_tokens_seen"] == 1.0
    assert fe.Region2VecDataset(parquet).sample_info["fraction_cells_seen"] == 1.0


def test_training_info_reports_the_fraction_seen(parquet):
    ds = fe.Region2VecDataset(parquet, sample_cells=300, seed=0)
    model = fe.ScEmbed(embedding_dim=8, seed=0, threads=1, n_components=None).train(
        ds, epochs=1, progress=False
    )
    info = model.training_info
    assert info["n_cells"] == 300 and info["n_cells_total"] == 1050
    assert 0 < info["fraction_tokens_seen"] < 1 and info["fraction_cells_seen"] == 300 / 1050


def test_cli_sample_cells(parquet, tmp_path, capsys):
    from fastembed.cli import main

    assert (
        main(
            [
                "train",
                str(parquet),
                "--output",
                str(tmp_path / "m"),
                "--epochs",
                "1",
                "--embedding-dim",
                "8",
                "--sample-cells",
                "210",
                "--seed",
                "0",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "trained on 210 cells (20.0% of 1050 cells" in err


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_sample_cells_errors(parquet, bad):
    with pytest.raises(ValueError, match="sample_cells must be an integer >= 1"):
        fe.Region2VecDataset(parquet, sample_cells=bad)
