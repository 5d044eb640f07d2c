"""BED reading: the one-scan path gives what the line-by-line reader gives, or steps aside; duplicates counted as
np.unique counts them."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastembed.genome.universe as universe_mod
from fastembed.genome.universe import Universe, _bed_at_once, read_bed

_FIELD = st.one_of(
    st.integers(0, 10**19).map(str),
    st.text(alphabet="chr1Xtrack#browser _-0", min_size=0, max_size=6),
)
_LINE = st.one_of(
    st.builds(
        lambda c, s, e: f"{c}\t{s}\t{e}",
        st.sampled_from(["chr1", "chrUn_gl1", "1", "#c", "trackX"]),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda c, s, e, x: f"{c}\t{s}\t{e}\t{x}",
        st.sampled_from(["chr2", "HLA-A*01:01"]),
        st.integers(0, 10**19),
        st.integers(0, 10**19),
        st.text(alphabet="ab \t", max_size=4),
    ),
    st.lists(_FIELD, min_size=1, max_size=4).map("\t".join),
    st.lists(_FIELD, min_size=1, max_size=4).map(" ".join),
)


def _line_by_line(path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(universe_mod, "_bed_at_once", lambda text: None)
        try:
            return read_bed(path)
        except ValueError:
            return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, min_size=1, max_size=6), end=st.sampled_from(["", "\n", "\r\n"]))
def test_at_once_equals_line_by_line(tmp_path, monkeypatch, lines, end):
    path = tmp_path / "r.bed"
    path.write_bytes(("\n".join(lines) + end).encode())
    with open(path, encoding="utf-8-sig") as fh:
        fast = _bed_at_once(fh.read())
    if fast is None:
        return  # read_bed takes the line-by-line path itself
    slow = _line_by_line(path, monkeypatch)
    assert slow is not None, lines
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()
    for a, b in zip(read_bed(path), slow, strict=True):
        assert a.tolist() == b.tolist()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "chr1\t1\t2\n\nchr1\t3\t4\n",
        "#h\nchr1\t1\t2\n",
        "track x\tn\t1\n",
        "chr1 1 2\n",
        "chr1\t5\t2\n",
        "chr1\t1\t" + "9" * 19 + "\n",
        "chr1\t 1\t2\n",
    ],
)
def test_at_once_steps_aside(text):
    assert _bed_at_once(text) is None


def test_duplicates_counted_as_np_unique(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    chroms = rng.choice(["chr1", "chr2", "chrX"], n)
    starts = rng.integers(0, 50, n)
    ends = starts + rng.integers(0, 3, n)
    path = tmp_path / "u.bed"
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in zip(chroms, starts, ends, strict=True)))
    key = np.rec.fromarrays([chroms.astype(str), starts, ends])
    expected = int((np.unique(key, return_counts=True)[1] - 1).sum())
    assert expected > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Universe.from_bed(path)
    assert any(f": {expected} regions are exact duplicates" in str(w.message) for w in caught)
