"""Model folders: fastembed and geniml layouts, the torch-made geniml fixtures, consistency errors, atomicity."""

from __future__ import annotations

import os
import re
import shutil
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import fastembed.modelfolder as mf
from fastembed._version import __version__
from fastembed.modelfolder import ModelFolder, read_model_folder, write_model_folder
from fastembed.universe import Universe

DATA = Path(__file__).parents[1] / "data"
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
        ("sample: automatic\n", "sample", "'auto', a number in [0, 1) or null"),
        ("sample: 1.5\n", "sample", "'auto', a number in [0, 1) or null"),
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

    src = Path(__file__).parents[1] / "data" / "geniml_model"
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["sample"] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="sample"):
        read_model_folder(folder)


# --------------------------------------------------------------------------------------------------
# Tampered folders: the cell projection against config.yaml, fastembed_version, links and special files,
# the geniml layout's pooling
# --------------------------------------------------------------------------------------------------
def _with_projection(k=3, n_components=None, seed=0):
    """_folder() with a cell projection of k axes, recorded as a model trained by fastembed records it."""
    from fastembed.projection import fit_projection

    folder = _folder(seed=seed)
    folder.token_counts = np.random.default_rng(seed).integers(1, 9, folder.region_vectors.shape[0])
    cells = np.random.default_rng(seed + 1).standard_normal((40, 5)).astype(np.float32)
    folder.cell_projection = fit_projection(cells, k)
    folder.config = {
        "window_size": 5,
        "n_components": k if n_components is None else n_components,
        "training": {"epochs": 3, "n_components": k},
    }
    return folder


def _set_config(d, **changes):
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_projection_round_trip_and_folders_without_one(tmp_path):
    src = _with_projection(k=3)
    back = read_model_folder(write_model_folder(tmp_path / "m", src))
    np.testing.assert_array_equal(back.cell_projection, src.cell_projection)
    assert back.config["n_components"] == 3
    # Never had a projection: no n_components written (even if the config passed in had one), loads.
    src.cell_projection = None
    write_model_folder(tmp_path / "none", src)
    assert "n_components" not in yaml.safe_load((tmp_path / "none" / "config.yaml").read_text())
    assert read_model_folder(tmp_path / "none").cell_projection is None
    assert read_model_folder(DATA / "geniml_model").cell_projection is None


def test_missing_projection_is_an_error(tmp_path):
    d = write_model_folder(tmp_path / "m", _with_projection(k=3))
    (d / "cell_projection.npy").unlink()
    with pytest.raises(FileNotFoundError) as info:
        read_model_folder(d)
    msg = str(info.value)
    assert f"model folder '{d}' has no cell_projection.npy" in msg and "says n_components 3" in msg, msg
    # Removing n_components as well says: use the model with mean pooling.
    _set_config(d, n_components=None)
    assert read_model_folder(d).cell_projection is None


def test_missing_projection_is_an_error_for_scembed(tmp_path):
    from fastembed.scembed import ScEmbed

    d = write_model_folder(tmp_path / "m", _with_projection(k=3))
    assert ScEmbed.from_pretrained(d).default_pooling == "pca"
    (d / "cell_projection.npy").unlink()
    with pytest.raises(FileNotFoundError, match="has no cell_projection.npy"):
        ScEmbed.from_pretrained(d)


@pytest.mark.parametrize(
    ("k", "n_components", "write", "pattern"),
    [
        # fewer axes than the training record says (the review's case: 4 axes where config says 16)
        (
            3,
            None,
            lambda p, x: np.save(p, x[:3]),
            r"has shape \(3, 5\); expected \(4, 5\), a centre and 3 axes",
        ),
        # one column short of embedding_dim
        (
            3,
            None,
            lambda p, x: np.save(p, np.ascontiguousarray(x[:, :4])),
            r"has shape \(4, 4\); expected \(4, 5\)",
        ),
        (3, None, lambda p, x: np.save(p, x[0]), r"has shape \(5,\); expected \(4, 5\)"),
        # n_components 2 but 3 axes recorded and written: the config disagrees with itself
        (
            3,
            2,
            lambda p, x: None,
            r"training n_components 3 \(the axes of the cell projection\) must be from 1 to 2",
        ),
    ],
)
def test_projection_shape_is_checked_against_config(tmp_path, k, n_components, write, pattern):
    d = write_model_folder(tmp_path / "m", _with_projection(k=k))
    if n_components is not None:
        _set_config(d, n_components=n_components)
    write(d / "cell_projection.npy", np.load(d / "cell_projection.npy"))
    with pytest.raises(ValueError, match=pattern) as info:
        read_model_folder(d)
    assert str(d / "config.yaml") in str(info.value) and len(str(info.value)) < 500


def test_projection_without_training_record_is_bounded_by_n_components(tmp_path):
    d = write_model_folder(tmp_path / "m", _with_projection(k=3))
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    del cfg["training"]["n_components"]
    cfg["n_components"] = 2
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"has shape \(4, 5\); expected \(k \+ 1, 5\) with 1 <= k <= 2"):
        read_model_folder(d)
    cfg["n_components"] = 20  # asked for 20, got 3 (few cells): fine
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert read_model_folder(d).cell_projection.shape == (4, 5)


@pytest.mark.parametrize("value", [7, 0.7, True, [0, 7], "abc", "", "seven.1"])
def test_fastembed_version_must_be_a_version_string(tmp_path, value):
    d = write_model_folder(tmp_path / "m", _folder())
    _set_config(d, fastembed_version=value)
    with pytest.raises(ValueError, match="fastembed_version must be") as info:
        read_model_folder(d)
    assert str(d / "config.yaml") in str(info.value)


_OURS = [int(x) for x in __version__.split(".")[:2]]


@pytest.mark.parametrize("newer", ["99.0.0", f"{_OURS[0]}.{_OURS[1] + 1}.0", f"{_OURS[0] + 1}.0.0"])
def test_folder_from_a_newer_fastembed_warns(tmp_path, newer):
    d = write_model_folder(tmp_path / "m", _folder())
    _set_config(d, fastembed_version=newer)
    with pytest.warns(
        UserWarning, match=rf"written by fastembed {re.escape(newer)}, newer than the installed"
    ):
        folder = read_model_folder(d)
    np.testing.assert_array_equal(folder.region_vectors, _folder().region_vectors)  # a warning, not an error


@pytest.mark.parametrize(
    "version",
    [f"{_OURS[0]}.{_OURS[1]}.99", __version__, "0.1.0", "v0.0.1", f"{_OURS[0]}.{_OURS[1]}.0.dev3+gabc"],
)
def test_folder_from_this_or_an_older_fastembed_does_not_warn(tmp_path, version):
    d = write_model_folder(tmp_path / "m", _folder())
    _set_config(d, fastembed_version=version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_model_folder(d)


@pytest.mark.parametrize("name", ["universe.bed", "region_vectors.npy", "config.yaml", "cell_projection.npy"])
@pytest.mark.parametrize("relative", [False, True])
def test_symlink_outside_the_folder_is_refused(tmp_path, name, relative):
    d = write_model_folder(tmp_path / "m", _with_projection())
    outside = tmp_path / f"outside_{name}"
    shutil.move(d / name, outside)
    (d / name).symlink_to(Path("..") / outside.name if relative else outside)
    with pytest.raises(ValueError) as info:
        read_model_folder(d)
    msg = str(info.value)
    assert f"model file '{d / name}' (a symbolic link to '" in msg, msg
    assert f"resolves to '{outside.resolve()}', outside the model folder '{d.resolve()}'" in msg, msg


def test_symlink_to_etc_passwd_is_refused(tmp_path):
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd")
    d = write_model_folder(tmp_path / "m", _folder())
    (d / "config.yaml").unlink()
    (d / "config.yaml").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="outside the model folder"):
        read_model_folder(d)


def test_symlinks_inside_the_folder_are_followed(tmp_path):
    src = _with_projection()
    d = write_model_folder(tmp_path / "m", src)
    (d / "data").mkdir()
    for name in ("region_vectors.npy", "universe.bed"):
        shutil.move(d / name, d / "data" / name)
        (d / name).symlink_to(Path("data") / name)
    np.testing.assert_array_equal(read_model_folder(d).region_vectors, src.region_vectors)
    (tmp_path / "link").symlink_to(d, target_is_directory=True)  # the folder itself may be a link
    np.testing.assert_array_equal(read_model_folder(tmp_path / "link").region_vectors, src.region_vectors)


def test_hugging_face_cache_snapshot_links_to_its_blobs(tmp_path):
    """snapshot_download gives models--owner--name/snapshots/<rev>/, whose files link to ../../blobs/<hash>."""
    repo = tmp_path / "hub" / "models--databio--m"
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in (DATA / "geniml_model").iterdir():
        shutil.copy(f, repo / "blobs" / f"hash_{f.name}")
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / f"hash_{f.name}")
    np.testing.assert_array_equal(read_model_folder(snap).region_vectors, EXPECTED)
    # ...but not to anywhere else
    shutil.copy(DATA / "geniml_model" / "universe.bed", tmp_path / "elsewhere.bed")
    (snap / "universe.bed").unlink()
    (snap / "universe.bed").symlink_to(tmp_path / "elsewhere.bed")
    with pytest.raises(ValueError, match="outside the model folder"):
        read_model_folder(snap)


def _fifo(path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path.unlink()
    os.mkfifo(path)


def _devzero(path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    path.unlink()
    path.symlink_to("/dev/zero")


def _directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "a named pipe"), (_devzero, "a character device"), (_directory, "a directory")],
)
@pytest.mark.parametrize("name", ["region_vectors.npy", "universe.bed", "config.yaml", "token_counts.npy"])
def test_model_file_that_is_not_a_regular_file(tmp_path, make, kind, name):
    d = write_model_folder(tmp_path / "m", _folder())
    make(d / name)
    with pytest.raises(ValueError) as info:
        read_model_folder(d)  # returns at once: nothing is opened, so a fifo cannot block
    msg = str(info.value)
    assert f"model file '{d / name}'" in msg and f"is not a regular file: it is {kind}" in msg, msg
    assert "neither" not in msg


def test_checkpoint_that_is_not_a_regular_file(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    _directory(d / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint.pt' is not a regular file: it is a directory"):
        read_model_folder(d)


def test_broken_symlink_is_named(tmp_path):
    d = write_model_folder(tmp_path / "m", _folder())
    (d / "region_vectors.npy").unlink()
    (d / "region_vectors.npy").symlink_to("gone.npy")
    with pytest.raises(FileNotFoundError, match=r"region_vectors.npy' \(a symbolic link to 'gone.npy'\)"):
        read_model_folder(d)


def test_geniml_format_leaves_out_the_projection_and_says_mean(tmp_path):
    src = _with_projection(k=3)
    with pytest.warns(UserWarning, match="the geniml format holds no cell projection"):
        d = write_model_folder(tmp_path / "g", src, format="geniml")
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint.pt", "config.yaml", "universe.bed"]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["pooling_method"] == "mean" and "n_components" not in cfg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = read_model_folder(d)
        src.cell_projection = None  # nothing to leave out: no warning
        write_model_folder(tmp_path / "plain", src, format="geniml")
    assert back.format == "geniml" and back.cell_projection is None


def test_geniml_folder_with_a_projection_beside_it_is_read_with_mean_pooling(tmp_path):
    """What fastembed 0.7 wrote: checkpoint.pt, pooling_method: mean, and a cell_projection.npy beside them."""
    from fastembed.projection import fit_projection

    d = tmp_path / "g"
    shutil.copytree(DATA / "geniml_model", d)
    _set_config(d, pooling_method="mean", n_components=2, training={"n_components": 2})
    np.save(d / "cell_projection.npy", fit_projection(np.random.default_rng(0).normal(size=(9, 4)), 2))
    with pytest.warns(UserWarning, match=r"geniml layout, .*cell_projection.npy .* is not used"):
        folder = read_model_folder(d)
    assert folder.cell_projection is None


def test_geniml_format_encodes_like_geniml(tmp_path):
    """A geniml-format folder gives the mean-pooled vectors, as geniml computes from it."""
    from fastembed.scembed import ScEmbed
    from fastembed.tokens import TokenizedCells

    src = _with_projection(k=3)
    model = ScEmbed.from_pretrained(write_model_folder(tmp_path / "m", src))
    rng = np.random.default_rng(5)
    cells = [np.sort(rng.choice(12, rng.integers(2, 8), replace=False)) for _ in range(20)]
    tokens = TokenizedCells(
        indptr=np.concatenate([[0], np.cumsum([c.size for c in cells])]).astype(np.int64),
        indices=np.concatenate(cells).astype(np.int32),
        barcodes=np.array([f"c{i}" for i in range(20)], dtype=object),
        universe=model.universe,
    )
    assert model.default_pooling == "pca"
    with pytest.warns(UserWarning, match="geniml format holds no cell projection"):
        model.save(tmp_path / "g", format="geniml")
    geniml = ScEmbed.from_pretrained(tmp_path / "g")
    assert geniml.default_pooling == "mean"
    mean = model.encode(tokens, pooling="mean", progress=False)
    np.testing.assert_array_equal(geniml.encode(tokens, progress=False), mean)
    assert not np.allclose(model.encode(tokens, progress=False), mean)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pooling_method: max\n", "'max' (str)"),  # geniml's other pooling: known, but not fastembed's
        ("pooling_method: Mean\n", "'Mean' (str)"),  # geniml compares exactly, so does fastembed
        ("pooling_method: sum\n", "'sum' (str)"),
        ("pooling_method: ''\n", "'' (str)"),
        ("pooling_method: 3\n", "3 (int)"),
        ("pooling_method: true\n", "True (bool)"),
        ("pooling_method: [mean]\n", "['mean'] (list)"),
    ],
)
@pytest.mark.parametrize("layout", ["geniml", "fastembed"])
def test_pooling_method_fastembed_cannot_honour_is_refused(tmp_path, text, shown, layout):
    """A geniml folder pooled otherwise than by the mean would encode differently in geniml: refused, not
    silently mean-pooled."""
    from fastembed.scembed import ScEmbed

    d = tmp_path / "m"
    if layout == "geniml":
        shutil.copytree(DATA / "geniml_model", d)
    else:
        write_model_folder(d, _folder())
    config = d / "config.yaml"
    config.write_text(config.read_text() + text)
    for load in (read_model_folder, ScEmbed.from_pretrained):
        with pytest.raises(ValueError) as info:
            load(d)
        msg = str(info.value)
        assert f"model config '{config}': pooling_method is {shown}" in msg, msg
        assert "fastembed supports pooling_method 'mean'" in msg and len(msg) < 500 and "\n" not in msg, msg
    if "max" in text:
        assert "'max' pooling is not implemented in fastembed" in msg, msg
    else:
        assert "geniml knows 'mean' and 'max'" in msg, msg


@pytest.mark.parametrize("text", ["pooling_method: mean\n", "pooling_method: null\n", ""])
def test_pooling_method_mean_or_absent_loads_with_mean_pooling(tmp_path, text):
    from fastembed.scembed import ScEmbed

    d = tmp_path / "m"
    shutil.copytree(DATA / "geniml_model", d)
    (d / "config.yaml").write_text((d / "config.yaml").read_text() + text)
    np.testing.assert_array_equal(read_model_folder(d).region_vectors, EXPECTED)
    assert ScEmbed.from_pretrained(d).default_pooling == "mean"
