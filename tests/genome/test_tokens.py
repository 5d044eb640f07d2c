"""The token parquet format's metadata: the format version and the region count are checked on read."""

from __future__ import annotations

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
