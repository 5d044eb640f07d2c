"""Model folders: fastembed and geniml layouts, the torch-made geniml fixtures, consistency errors, atomicity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import fastembed.modelfolder as mf
from fastembed.modelfolder import ModelFolder, read_model_folder, write_model_folder
from fastembed.universe import Universe

DATA = Path(__file__).parent / "data"
EXPECTED = np.arange(17 * 4, dtype=np.float32).reshape(17, 4) / 10


@pytest.mark.parametrize("name", ["geniml_model", "geniml_legacy"])
def test_reads_geniml_fixture(name):
    folder = read_model_folder(DATA / name)
    assert folder.format == "geniml"
    assert len(folder.universe) == 10  # legacy placeholder lines (chrUNK 0 0, ...) are not regions
    assert folder.universe.chrom_names == ["chr1"] and folder.universe.starts[0] == 237534
    np.testing.assert_array_equal(folder.weights, EXPECTED)
    assert folder.config["embedding_dim"] == 4 and folder.config["vocab_size"] == 17
    assert folder.token_counts is None


def _folder(n=12, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    uni = Universe.from_arrays(["chr2"] * n, np.arange(n) * 1000, np.arange(n) * 1000 + 500)
    return ModelFolder(config={"window_size": 5, "training": {"epochs": 3}}, universe=uni,
                       weights=rng.standard_normal((n + 7, dim)).astype(np.float32),
                       token_counts=rng.integers(0, 9, n + 7), output_weights=rng.random((n + 7, dim), np.float32))


@pytest.mark.parametrize("fmt", ["fastembed", "geniml"])
def test_round_trip(tmp_path, fmt):
    src = _folder()
    write_model_folder(tmp_path / "m", src, format=fmt)
    back = read_model_folder(tmp_path / "m")
    assert back.format == fmt
    np.testing.assert_array_equal(back.weights, src.weights)
    assert back.universe.same_as(src.universe)
    assert back.config["window_size"] == 5 and back.config["training"] == {"epochs": 3}
    if fmt == "fastembed":
        np.testing.assert_array_equal(back.token_counts, src.token_counts)
        np.testing.assert_array_equal(back.output_weights, src.output_weights)
    else:
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["checkpoint.pt", "config.yaml", "universe.bed"]
        cfg = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
        assert cfg["vocab_size"] == 19 and cfg["embedding_dim"] == 5  # the keys geniml's loader reads


def test_geniml_without_special_rows_is_padded(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    from fastembed.checkpoint import write_torch_state_dict

    write_torch_state_dict(d / "checkpoint.pt", {"projection.weight": EXPECTED[:10]})
    (d / "config.yaml").write_text("vocab_size: 10\nembedding_dim: 4\n")
    folder = read_model_folder(d)
    assert folder.weights.shape == (17, 4)
    np.testing.assert_array_equal(folder.weights[:10], EXPECTED[:10])
    assert not folder.weights[10:].any()


@pytest.mark.parametrize(
    ("edit", "exc", "pattern"),
    [
        (lambda d: (d / "config.yaml").write_text("vocab_size: 99\nembedding_dim: 4\n"), ValueError,
         r"config.yaml' says vocab_size 99 but .*checkpoint.pt' has 17 rows"),
        (lambda d: (d / "config.yaml").write_text("vocab_size: 17\nembedding_dim: 8\n"), ValueError,
         r"says embedding_dim 8 but .* length 4"),
        (lambda d: (d / "universe.bed").write_text("chr1\t1\t2\n" * 3), ValueError,
         r"universe.bed' has 3 regions, so the weights need 10 rows .* has 17"),
        (lambda d: (d / "config.yaml").write_text("vocab_size: [unclosed\n"), ValueError, "not valid YAML"),
        (lambda d: (d / "checkpoint.pt").unlink(), FileNotFoundError, "neither region_vectors.npy nor checkpoint.pt"),
        (lambda d: (d / "universe.bed").unlink(), FileNotFoundError, "has no universe.bed"),
        (lambda d: (d / "universe.bed").write_text("chr1\t1\t2\nchrUNK\t0\t0\nchr1\t5\t9\n"), ValueError,
         "placeholder lines"),
    ],
)
def test_inconsistent_folders(tmp_path, edit, exc, pattern):
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    edit(d)
    with pytest.raises(exc, match=pattern):
        read_model_folder(d)


def test_fastembed_folder_errors(tmp_path):
    write_model_folder(tmp_path / "m", _folder())
    np.save(tmp_path / "m" / "token_counts.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"token_counts.npy' has shape \(3,\)"):
        read_model_folder(tmp_path / "m")
    np.save(tmp_path / "m" / "region_vectors.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numpy array file"):
        read_model_folder(tmp_path / "m")


def test_universe_checksum_mismatch(tmp_path):
    write_model_folder(tmp_path / "m", _folder())
    text = (tmp_path / "m" / "universe.bed").read_text().replace("chr2\t0\t500", "chr2\t0\t501")
    (tmp_path / "m" / "universe.bed").write_text(text)
    with pytest.raises(ValueError, match="does not match the universe checksum"):
        read_model_folder(tmp_path / "m")


def test_overwrite_protection_and_atomicity(tmp_path, monkeypatch):
    write_model_folder(tmp_path / "m", _folder(seed=1))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_model_folder(tmp_path / "m", _folder(seed=2))
    real_save = np.save

    def failing_save(path, arr, **kw):
        if str(path).endswith("output_vectors.npy"):
            raise OSError("disk full (simulated)")
        return real_save(path, arr, **kw)

    monkeypatch.setattr(mf.np, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        write_model_folder(tmp_path / "new", _folder())
    with pytest.raises(OSError, match="simulated"):
        write_model_folder(tmp_path / "m", _folder(seed=2), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no partial folder, no temp folder
    np.testing.assert_array_equal(read_model_folder(tmp_path / "m").weights, _folder(seed=1).weights)
    monkeypatch.setattr(mf.np, "save", real_save)
    write_model_folder(tmp_path / "m", _folder(seed=2), overwrite=True)
    np.testing.assert_array_equal(read_model_folder(tmp_path / "m").weights, _folder(seed=2).weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
