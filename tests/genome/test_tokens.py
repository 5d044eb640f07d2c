"""The token parquet format's metadata: the format version and the region count are checked on read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastembed.region2vec import Region2VecDataset
from fastembed.tokens import (
    FORMAT_VERSION,
    META_FORMAT,
    META_N_REGIONS,
    TokenizedCells,
    open_tokens_parquet,
    read_tokens_parquet,
)
from fastembed.universe import Universe

UNIVERSE = Universe.from_arrays(["chr1"] * 5, np.arange(5) * 100, np.arange(5) * 100 + 50)


def _tokens() -> TokenizedCells:
    indptr = np.array([0, 2, 2, 5], dtype=np.int64)
    indices = np.array([0, 3, 1, 2, 4], dtype=np.int32)
    return TokenizedCells(indptr, indices, np.array(["a", "b", "c"], dtype=object), UNIVERSE)


def _with_metadata(path, **changes: bytes):
    """Rewrite the parquet file at ``path`` with some metadata values replaced."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta.update({k.encode(): v for k, v in changes.items()})
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


def test_written_files_carry_the_format_version(tmp_path):
    path = _tokens().to_parquet(tmp_path / "t.parquet")
    assert pq.read_schema(path).metadata[META_FORMAT] == FORMAT_VERSION
    back = read_tokens_parquet(path)
    np.testing.assert_array_equal(back.indices, _tokens().indices)


@pytest.mark.parametrize("value", [b"fastembed-tokens/2", b"something-else", b""])
def test_an_unknown_format_version_is_refused(tmp_path, value):
    path = _with_metadata(_tokens().to_parquet(tmp_path / "t.parquet"), **{META_FORMAT.decode(): value})
    pattern = r"t\.parquet': metadata field 'fastembed\.format' is .*expected 'fastembed-tokens/1'"
    with pytest.raises(ValueError, match=pattern):
        read_tokens_parquet(path)
    with pytest.raises(ValueError, match=pattern):
        Region2VecDataset(path)
    with pytest.raises(ValueError, match=pattern):
        Region2VecDataset(path, sample_cells=2, seed=0)  # the row-group reader checks it too


def test_a_file_without_format_key_is_read_as_before(tmp_path):
    # gtars writes only the tokens column and no fastembed metadata: the caller names the universe.
    path = tmp_path / "gtars.parquet"
    pq.write_table(pa.table({"tokens": pa.array([[0, 3], [], [1, 2, 4]], type=pa.list_(pa.int32()))}), path)
    tok = read_tokens_parquet(path, universe=UNIVERSE)
    np.testing.assert_array_equal(tok.indptr, _tokens().indptr)
    np.testing.assert_array_equal(tok.indices, _tokens().indices)


def test_a_region_count_that_disagrees_with_the_universe_is_refused(tmp_path):
    path = _with_metadata(_tokens().to_parquet(tmp_path / "t.parquet"), **{META_N_REGIONS.decode(): b"6"})
    with pytest.raises(
        ValueError, match=r"t\.parquet': metadata field 'fastembed\.universe\.n_regions' is '6' .* 5 regions"
    ):
        read_tokens_parquet(path)


def test_cells_are_indexed_by_one_integer():
    tok = _tokens()
    np.testing.assert_array_equal(tok[np.int64(2)], [1, 2, 4])
    np.testing.assert_array_equal(tok[-1], tok[2])
    assert tok[1].size == 0
    ds = Region2VecDataset(tok)
    for bad in (slice(1, 3), 1.0, True, [0, 1]):
        with pytest.raises(TypeError, match="one integer position"):
            tok[bad]
        with pytest.raises(TypeError, match="one integer position"):
            ds[bad]
    with pytest.raises(IndexError, match="cell 3 out of range for 3 cells"):
        tok[3]


def test_the_universe_is_stored_once(tmp_path):
    """The universe goes into the file's key-value metadata only, not a second time inside the serialized
    Arrow schema (which doubled a token file's size for a large universe), and reads back whole."""
    path = _tokens().to_parquet(tmp_path / "t.parquet")
    meta = pq.ParquetFile(path).metadata.metadata
    assert b"ARROW:schema" not in meta and META_N_REGIONS in meta
    back = read_tokens_parquet(path)
    assert back.universe.same_as(UNIVERSE) and list(back.barcodes) == ["a", "b", "c"]
    np.testing.assert_array_equal(back.indptr, _tokens().indptr)
    assert pq.read_table(path).schema.field("tokens").type == pa.list_(pa.int32())


def test_public_token_file_readers(tmp_path):
    """barcodes_column, tokens_csr, footer_regions and token_obs: what region2vec, scembed and the CLI read."""
    from fastembed.genome.tokens import barcodes_column, footer_regions, token_obs, tokens_csr

    tok = _tokens()
    path = tok.to_parquet(tmp_path / "t.parquet")
    table = pq.read_table(path)
    ip, ix = tokens_csr(table.column("tokens"), path, UNIVERSE)
    assert ip.dtype == np.int64 and ix.dtype == np.int32
    np.testing.assert_array_equal(ip, tok.indptr)
    np.testing.assert_array_equal(ix, tok.indices)
    assert list(barcodes_column(table, path)) == ["a", "b", "c"]
    assert list(barcodes_column(table.drop_columns(["barcode"]), path, 7)) == ["7", "8", "9"]
    assert footer_regions(path) == len(UNIVERSE)
    (tmp_path / "not.parquet").write_text("no parquet here")
    assert footer_regions(tmp_path / "not.parquet") == 0
    assert token_obs(tok) is None and token_obs(path) is None  # no fragment counts in peak tokens
    counted = TokenizedCells(
        tok.indptr,
        tok.indices,
        tok.barcodes,
        UNIVERSE,
        {"fragments_per_cell": [4, 0, 9], "fragments_in_universe_per_cell": [3, 0, 9]},
    )
    obs = token_obs(counted)
    assert list(obs.columns) == ["n_fragments", "n_fragments_in_universe"]
    assert obs["n_fragments"].tolist() == [4, 0, 9] and obs["n_fragments_in_universe"].dtype == np.int64


def test_a_null_barcode_names_the_file_and_the_cell(tmp_path):
    from fastembed.genome.tokens import barcodes_column

    table = pa.table({"barcode": pa.array(["a", None, "c"])})
    with pytest.raises(ValueError, match=r"token file '.*t\.parquet': column 'barcode' is null for cell 1"):
        barcodes_column(table, tmp_path / "t.parquet")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_sampling_a_token_file_does_not_map_it_into_memory(tmp_path):
    # Regression (issue 29, the 1,000,000-cell atlas): the token file was memory-mapped, so sampling 20,000 cells
    # of a 7 GB file read every row group through the mapping and peak RSS reached 8.6 GiB at a 1 GiB budget.
    import fastembed as fe
    from fastembed.datasets import demo_peaks_path, load_demo

    path = fe.tokenize_cells(load_demo()[:300], demo_peaks_path()).to_parquet(tmp_path / "t.parquet")
    pfile, _ = open_tokens_parquet(path)
    pfile.read_row_group(0)
    assert str(path) not in Path("/proc/self/maps").read_text()
    ds = Region2VecDataset(path, sample_cells=100, seed=0)
    assert len(ds) == 100
