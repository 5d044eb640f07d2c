"""Peak coordinates from var_names: the one-scan path gives what the name-by-name path gives, or steps aside."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastembed.genome.readers import _coord_names_at_once, _coord_names_one_by_one, peak_coordinates

# Names built from the characters the pattern cares about, so matches, near misses and newlines all occur.
_NAME = st.text(alphabet="chr1XY_:-\n \t09", max_size=14)
_GOOD = st.builds(
    lambda c, sep, s, e: f"{c}{sep[0]}{s}{sep[1]}{e}",
    st.text(alphabet="chrUn_gl0-X1", min_size=1, max_size=10),
    st.sampled_from([":-", "--", "__", ":_", "_-"]),
    st.integers(0, 10**18),
    st.integers(0, 10**18),
)


def _one_by_one_or_error(names):
    try:
        return _coord_names_one_by_one(pd.Index(names), "x")
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_NAME, _GOOD), min_size=1, max_size=8))
def test_at_once_equals_one_by_one(names):
    fast = _coord_names_at_once(names)
    slow = _one_by_one_or_error(names)
    if fast is None:
        return  # the caller takes the name-by-name path itself
    assert slow is not None, names
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype
        assert a.tolist() == b.tolist()


@pytest.mark.parametrize(
    "names",
    [
        ["chr1:10-20", "bad"],
        ["chr1:10-20", "chr1:10-20\nchr2:1-2"],
        ["chr1:10-20", ""],
        ["chr1:10-20", "chr1:1-" + "9" * 19],
    ],
)
def test_at_once_steps_aside(names):
    assert _coord_names_at_once(names) is None


def test_peak_coordinates_same_either_way():
    names = ["chr1:100-200", "chrUn_gl000220_5_9", "chrX-7-8", "1:0-0"]
    adata = type("A", (), {"var": pd.DataFrame(index=names), "var_names": pd.Index(names)})()
    chroms, starts, ends = peak_coordinates(adata)
    assert chroms.tolist() == ["chr1", "chrUn_gl000220", "chrX", "1"]
    assert starts.tolist() == [100, 5, 7, 0] and starts.dtype == np.int64
    assert ends.tolist() == [200, 9, 8, 0] and ends.dtype == np.int64
