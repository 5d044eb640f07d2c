"""Model folders: fastembed and geniml layouts, the torch-made geniml fixtures, consistency errors, atomicity."""

from __future__ import annotations

import shutil
import tracemalloc
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
    np.testing.assert_array_equal(folder.region_vectors, EXPECTED)
    assert folder.config["embedding_dim"] == 4 and folder.config["vocab_size"] == 17
    assert folder.token_counts is None


def _folder(n=12, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    uni = Universe.from_arrays(["chr2"] * n, np.arange(n) * 1000, np.arange(n) * 1000 + 500)
    return ModelFolder(
        config={"window_size": 5, "training": {"epochs": 3}},
        universe=uni,
        region_vectors=rng.standard_normal((n + 7, dim)).astype(np.float32),
        token_counts=rng.integers(0, 9, n + 7),
        output_vectors=rng.random((n + 7, dim), np.float32),
    )


@pytest.mark.parametrize("fmt", ["fastembed", "geniml"])
def test_round_trip(tmp_path, fmt):
    src = _folder()
    write_model_folder(tmp_path / "m", src, format=fmt)
    back = read_model_folder(tmp_path / "m")
    assert back.format == fmt
    np.testing.assert_array_equal(back.region_vectors, src.region_vectors)
    assert back.universe.same_as(src.universe)
    assert back.config["window_size"] == 5 and back.config["training"] == {"epochs": 3}
    if fmt == "fastembed":
        np.testing.assert_array_equal(back.token_counts, src.token_counts)
        np.testing.assert_array_equal(back.output_vectors, src.output_vectors)
    else:
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
            "checkpoint.pt",
            "config.yaml",
            "universe.bed",
        ]
        cfg = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
        assert cfg["vocab_size"] == 19 and cfg["embedding_dim"] == 5  # the keys geniml's loader reads


def test_geniml_without_special_rows_is_padded(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    from fastembed.checkpoint import write_torch_state_dict

    write_torch_state_dict(d / "checkpoint.pt", {"projection.weight": EXPECTED[:10]})
    (d / "config.yaml").write_text("vocab_size: 10\nembedding_dim: 4\n")
    folder = read_model_folder(d)
    assert folder.region_vectors.shape == (17, 4)
    np.testing.assert_array_equal(folder.region_vectors[:10], EXPECTED[:10])
    assert not folder.region_vectors[10:].any()


@pytest.mark.parametrize(
    ("edit", "exc", "pattern"),
    [
        (
            lambda d: (d / "config.yaml").write_text("vocab_size: 99\nembedding_dim: 4\n"),
            ValueError,
            r"config.yaml' says vocab_size 99 but .*checkpoint.pt' has 17 rows",
        ),
        (
            lambda d: (d / "config.yaml").write_text("vocab_size: 17\nembedding_dim: 8\n"),
            ValueError,
            r"says embedding_dim 8 but .* length 4",
        ),
        (
            lambda d: (d / "universe.bed").write_text("chr1\t1\t2\n" * 3),
            ValueError,
            r"universe.bed' has 3 regions, so the weights need 10 rows .* has 17",
        ),
        (lambda d: (d / "config.yaml").write_text("vocab_size: [unclosed\n"), ValueError, "not valid YAML"),
        (
            lambda d: (d / "checkpoint.pt").unlink(),
            FileNotFoundError,
            "neither region_vectors.npy nor checkpoint.pt",
        ),
        (lambda d: (d / "universe.bed").unlink(), FileNotFoundError, "has no universe.bed"),
        (
            lambda d: (d / "universe.bed").write_text("chr1\t1\t2\nchrUNK\t0\t0\nchr1\t5\t9\n"),
            ValueError,
            "placeholder lines",
        ),
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


def test_config_format_must_name_the_layout_present(tmp_path):
    write_model_folder(tmp_path / "m", _folder(), format="geniml")
    config = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    assert "format" not in config  # geniml's layout: geniml reads no such key
    config["format"] = "fastembed"
    (tmp_path / "m" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        ValueError,
        match=r"config.yaml': format is 'fastembed' but the folder holds checkpoint.pt.*expected format: geniml",
    ):
        read_model_folder(tmp_path / "m")
    write_model_folder(tmp_path / "f", _folder())
    assert read_model_folder(tmp_path / "f").config["format"] == "fastembed"


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
    np.testing.assert_array_equal(
        read_model_folder(tmp_path / "m").region_vectors, _folder(seed=1).region_vectors
    )
    monkeypatch.setattr(mf.np, "save", real_save)
    write_model_folder(tmp_path / "m", _folder(seed=2), overwrite=True)
    np.testing.assert_array_equal(
        read_model_folder(tmp_path / "m").region_vectors, _folder(seed=2).region_vectors
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# --------------------------------------------------------------------------------------------------
# Model files from strangers: config.yaml types, NaN vectors, .npy headers
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("embedding_dim: abc\nvocab_size: 17\n", "embedding_dim", "an integer from 1"),
        ("embedding_dim: [4]\n", "embedding_dim", "an integer"),
        ("embedding_dim: true\n", "embedding_dim", "an integer"),
        ("embedding_dim: 4.0\n", "embedding_dim", "an integer"),
        ("embedding_size: .nan\n", "embedding_size", "an integer"),
        ("vocab_size: -17\n", "vocab_size", "an integer from 1"),
        ("vocab_size: 0\n", "vocab_size", "an integer from 1"),
        ("vocab_size: 100000000000000000000000000000\n", "vocab_size", "an integer from 1 to 2147483647"),
        ("window_size: {a: 1}\n", "window_size", "an integer"),
        ("negative_samples: '5'\n", "negative_samples", "an integer"),
        ("min_count: .inf\n", "min_count", "an integer"),
        ("seed: -1\n", "seed", "a non-negative integer"),
        ("seed: 1.5\n", "seed", "a non-negative integer"),
        ("universe_sha256: 12\n", "universe_sha256", "a string"),
        ("training: [1, 2]\n", "training", "a mapping"),
        ("training: {epochs: 2001-01-01}\n", "training", "a mapping of names to numbers"),
        (
            "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\ntraining: {n: [*b, *b, *b, *b]}\n",
            "training",
            "a mapping",
        ),
    ],
)
def test_config_values_of_the_wrong_type(tmp_path, text, key, expected):
    from fastembed.scembed import ScEmbed

    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    (d / "config.yaml").write_text(text)
    for load in (read_model_folder, ScEmbed.from_pretrained):
        with pytest.raises(ValueError) as info:
            load(d)
        msg = str(info.value)
        assert f"'{d / 'config.yaml'}'" in msg and f"{key} must be {expected}" in msg and len(msg) < 500, msg


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("- 1\n- 2\n", "must be a mapping .* got list"),
        ("", "must be a mapping .* got NoneType"),
        ("just text", "must be a mapping .* got str"),
        ("a: 2001-02-30\n", "not valid YAML .*ValueError"),  # safe_load's date constructor raises ValueError
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
        ("a: !!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
        ("embedding_dim: 4\nembedding_size: 5\n", "embedding_dim 4 and embedding_size 5"),
    ],
)
def test_config_that_is_not_a_usable_mapping(tmp_path, monkeypatch, text, pattern):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    (d / "config.yaml").write_text(text)
    with pytest.raises(ValueError, match=pattern) as info:
        read_model_folder(d)
    assert str(d / "config.yaml") in str(info.value) and len(str(info.value)) < 500
    assert not (tmp_path / "PWNED").exists()


def test_config_with_a_byte_order_mark_and_unknown_keys_loads(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    (d / "config.yaml").write_text(
        "\ufeffvocab_size: 17\nembedding_dim: 4\nsomething_else: [1, x]\nseed: null\n"
    )
    assert read_model_folder(d).config["something_else"] == [1, "x"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_nan_vectors_in_a_checkpoint_are_refused(tmp_path, bad):
    from fastembed.checkpoint import write_torch_state_dict

    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    w = EXPECTED.astype(np.float64)
    w[5, 2] = bad  # 1e300 is finite in float64 but infinite as the float32 fastembed computes with
    write_torch_state_dict(d / "checkpoint.pt", {"projection.weight": w})
    with pytest.raises(ValueError, match=r"checkpoint.pt' holds 1 NaN or infinite values \(first in row 5\)"):
        read_model_folder(d)


@pytest.mark.parametrize("name", ["region_vectors.npy", "output_vectors.npy"])
def test_nan_vectors_in_npy_are_refused(tmp_path, name):
    write_model_folder(tmp_path / "m", _folder())
    w = np.load(tmp_path / "m" / name)
    w[3, 1] = np.nan
    np.save(tmp_path / "m" / name, w)
    with pytest.raises(ValueError, match=rf"{name}' holds 1 NaN or infinite values \(first in row 3\)"):
        read_model_folder(tmp_path / "m")


def _npy_with_header(path, shape, descr="<f4", data=b""):
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


@pytest.mark.parametrize(
    ("name", "write", "pattern"),
    [
        (
            "region_vectors.npy",
            lambda p: np.save(p, np.zeros((19, 5))),
            "expected region vectors of dtype float32",
        ),
        (
            "region_vectors.npy",
            lambda p: np.save(p, np.zeros((19, 5), np.float16)),
            "dtype float32, got float16",
        ),
        ("region_vectors.npy", lambda p: np.save(p, np.zeros((19, 5), np.int32)), "dtype float32, got int32"),
        ("token_counts.npy", lambda p: np.save(p, np.zeros(19, np.float32)), "token counts of dtype int64"),
        ("token_counts.npy", lambda p: np.save(p, -np.ones(19, np.int64)), "holds negative counts"),
        (
            "region_vectors.npy",
            lambda p: _npy_with_header(p, (2**20, 2**12), data=b"\0" * 64),
            r"claims shape \(1048576, 4096\) \(17179869184 bytes\) but the file holds 64",
        ),
        (
            "region_vectors.npy",
            lambda p: _npy_with_header(p, (19, 5), descr="|O"),
            "not a plain numeric type",
        ),
        ("region_vectors.npy", lambda p: _npy_with_header(p, (-1, 0)), r"claims shape \(-1, 0\)"),
        (
            "region_vectors.npy",
            lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\xff\xff{"),
            "not a plain numpy array",
        ),
        ("region_vectors.npy", lambda p: p.write_bytes(b"junk"), "not a plain numpy array"),
        (
            "region_vectors.npy",
            lambda p: np.save(p, np.zeros((19, 6), np.float32)),
            r"config.yaml' says embedding_dim 5 but .*region_vectors.npy' has vectors of length 6",
        ),
        (
            "region_vectors.npy",
            lambda p: np.save(p, np.zeros((20, 5), np.float32)),
            r"config.yaml' says vocab_size 19 but .*region_vectors.npy' has 20 rows",
        ),
        (
            "output_vectors.npy",
            lambda p: np.save(p, np.zeros((19, 4), np.float32)),
            r"output_vectors.npy' has shape \(19, 4\); expected \(19, 5\) to match .*region_vectors.npy'",
        ),
    ],
)
def test_npy_files_are_checked_before_reading(tmp_path, name, write, pattern):
    write_model_folder(tmp_path / "m", _folder())
    write(tmp_path / "m" / name)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=pattern) as info:
            read_model_folder(tmp_path / "m")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(tmp_path / "m" / name) in str(info.value) and len(str(info.value)) < 500
    assert peak < 1 << 20


def test_universe_and_vectors_mismatch_names_both_files(tmp_path):
    write_model_folder(tmp_path / "m", _folder())
    cfg = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    del cfg["universe_sha256"], cfg["vocab_size"]
    (tmp_path / "m" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "m" / "universe.bed").write_text("chr2\t0\t500\n" * 3)
    with pytest.raises(ValueError, match=r"universe.bed' has 3 regions, .*region_vectors.npy' has 19"):
        read_model_folder(tmp_path / "m")


@pytest.mark.parametrize("value", ["abc", -0.1, 1.5, True, [1]])
def test_config_sample_must_be_a_fraction(tmp_path, value):
    import yaml

    from fastembed.modelfolder import read_model_folder

    src = Path(__file__).parent / "data" / "geniml_model"
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["sample"] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="sample"):
        read_model_folder(folder)
