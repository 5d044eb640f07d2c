"""The universe: BED round trips (plain and gzipped), its checksum, and the sorted view tokenization searches."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastembed.genome.universe import SortedRegions, Universe, is_gzip

CHROMS = ["chr1", "chr2", "chrX", "chr10"]


@st.composite
def universes(draw):
    n = draw(st.integers(1, 40))
    chroms = draw(st.lists(st.sampled_from(CHROMS), min_size=n, max_size=n))
    starts = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 500), min_size=n, max_size=n))
    ends = [s + k for s, k in zip(starts, lengths, strict=True)]
    return Universe.from_arrays(chroms, starts, ends)


@settings(max_examples=40, deadline=None)
@given(uni=universes(), gzipped=st.booleans())
def test_bed_round_trip_keeps_regions_order_and_checksum(uni, gzipped, tmp_path_factory):
    path = tmp_path_factory.mktemp("u") / "universe.bed"
    if gzipped:
        path.write_bytes(gzip.compress(uni.to_bed_text().encode()))
    else:
        uni.write_bed(path)
    with pytest.warns(UserWarning) if _has_duplicates(uni) else _no_warning():
        back = Universe.from_bed(path)
    assert back.same_as(uni) and back.checksum == uni.checksum
    assert Universe.from_bed_text(uni.to_bed_text()).same_as(uni)


@settings(max_examples=60, deadline=None)
@given(uni=universes())
def test_sorted_view_is_the_universe_sorted_with_a_running_max_of_ends(uni):
    view = SortedRegions.build(uni)
    assert sorted(view.token.tolist()) == list(range(len(uni)))  # every region once
    np.testing.assert_array_equal(view.starts, uni.starts[view.token])
    np.testing.assert_array_equal(view.ends, uni.ends[view.token])
    for code, name in enumerate(uni.chrom_names):
        lo, hi = int(view.chrom_lo[code]), int(view.chrom_hi[code])
        # the slice holds exactly this chromosome's regions, by (start, end)
        assert set(view.token[lo:hi].tolist()) == {i for i in range(len(uni)) if uni.chroms[i] == name}
        pairs = list(zip(view.starts[lo:hi].tolist(), view.ends[lo:hi].tolist(), strict=True))
        assert pairs == sorted(pairs)
        running = 0
        for i in range(lo, hi):  # the running maximum, one region at a time
            running = max(running, int(view.ends[i])) if i > lo else int(view.ends[i])
            assert view.max_end[i] == running


def test_gzip_is_told_by_content_not_by_name(tmp_path):
    text = "chr1\t10\t20\nchr1\t30\t40\n"
    plain_named_gz = tmp_path / "plain.bed.gz"
    plain_named_gz.write_text(text)
    gz_named_bed = tmp_path / "packed.bed"
    gz_named_bed.write_bytes(gzip.compress(text.encode()))
    assert not is_gzip(plain_named_gz) and is_gzip(gz_named_bed)
    assert Universe.from_bed(plain_named_gz).same_as(Universe.from_bed(gz_named_bed))


def test_an_invalid_interval_names_the_region():
    with pytest.raises(ValueError, match=r"region 1: invalid interval \[30, 20\)"):
        Universe.from_arrays(["chr1", "chr1"], [0, 30], [10, 20])


def _has_duplicates(uni: Universe) -> bool:
    rows = set(zip(uni.chroms.tolist(), uni.starts.tolist(), uni.ends.tolist(), strict=True))
    return len(rows) < len(uni)


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
