"""tokenize_fragments against a brute-force overlap oracle: hand cases, real data, hypothesis, errors, CLI."""

from __future__ import annotations

import gzip
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import overlapping

import fastembed as fe
from fastembed import fragments as fr
from fastembed import settings as tunables
from fastembed.cli import main
from fastembed.datasets import demo_peaks_path, load_demo
from fastembed.tokens import read_tokens_parquet

# ------------------------------------------------------------------------------------------------
# The naive reference
# ------------------------------------------------------------------------------------------------


def oracle(frags, universe, *, mode="fragment", min_overlap=1, whitelist=None, min_fragments=1):
    """Brute force: (barcodes, token lists, fragments per cell, fragments in universe per cell).

    ``frags``: list of (chrom, start, end, barcode); ``universe``: list of (chrom, start, end).
    """
    u_chr = np.array([u[0] for u in universe], dtype=object)
    u_s = np.array([u[1] for u in universe], dtype=np.int64)
    u_e = np.array([u[2] for u in universe], dtype=np.int64)

    def hits(c, s, e):
        return set(overlapping(c, s, e, u_chr, u_s, u_e, min_overlap).tolist())

    order, tokens, n_frag, n_in = [], {}, {}, {}
    for c, s, e, b in frags:
        if b not in n_frag:
            order.append(b)
            tokens[b], n_frag[b], n_in[b] = set(), 0, 0
        h = hits(c, s, e) if mode == "fragment" else hits(c, s, s + 1) | hits(c, e - 1, e)
        tokens[b] |= h
        n_frag[b] += 1
        n_in[b] += bool(h)
    if whitelist is not None:
        order = list(whitelist)
    else:
        order = [b for b in order if n_frag[b] >= min_fragments]
    return (
        order,
        [sorted(tokens.get(b, ())) for b in order],
        [n_frag.get(b, 0) for b in order],
        [n_in.get(b, 0) for b in order],
    )


def write_fragments(path, frags, *, header=("# id=test", "# reference_path=/x"), comments_at=(), gz=None):
    lines = list(header)
    for i, (c, s, e, b) in enumerate(frags):
        if i in comments_at:
            lines.append("# a comment in the middle")
        lines.append(f"{c}\t{s}\t{e}\t{b}\t1")
    text = ("\n".join(lines) + "\n").encode()
    path = Path(path)
    if gz if gz is not None else path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path


def write_bed(path, regions):
    Path(path).write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in regions))
    return path


def assert_matches(tok, expected):
    order, tokens, n_frag, n_in = expected
    assert list(tok.barcodes) == order
    assert len(tok) == len(order)
    for i, want in enumerate(tokens):
        np.testing.assert_array_equal(tok[i], np.array(want, dtype=np.int32), err_msg=f"cell {order[i]}")
    np.testing.assert_array_equal(tok.stats["fragments_per_cell"], n_frag)
    np.testing.assert_array_equal(tok.stats["fragments_in_universe_per_cell"], n_in)
    assert tok.indices.dtype == np.int32 and tok.indptr.dtype == np.int64


def run(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fe.tokenize_fragments(*args, **kwargs)


# A universe with nested and touching regions, and boundary fragments around region [100, 200).
UNIVERSE = [("chr1", 100, 200), ("chr1", 150, 300), ("chr1", 300, 400), ("chr1", 120, 130), ("chr2", 0, 50)]
FRAGS = [
    ("chr1", 50, 100, "A"),  # ends where region 0 starts: no overlap (half-open)
    ("chr1", 50, 101, "A"),  # 1 bp into region 0; insertion end-1=100 inside it
    ("chr1", 199, 260, "B"),  # last base of region 0, inside region 1
    ("chr1", 200, 300, "B"),  # starts at region 0's end: not in it; insertion 299 in region 1
    ("chr1", 300, 301, "C"),  # 1-bp fragment at region 2's start
    ("chr1", 50, 450, "C"),  # spans everything; insertions 50 and 449 hit nothing
    ("chrUn", 10, 20, "C"),  # chromosome absent from the universe
    ("chr2", 49, 60, "D"),
    ("chr1", 125, 127, "A"),  # inside nested region 3 and region 0
    ("chr1", 0, 10, "E"),  # in no region
]


@pytest.mark.parametrize(
    "mode,min_overlap", [("fragment", 1), ("fragment", 2), ("fragment", 50), ("insertion", 1)]
)
def test_hand_cases_match_oracle(tmp_path, mode, min_overlap):
    # Blank lines and a tabbed comment in the header, a comment line in the middle.
    path = write_fragments(
        tmp_path / "fragments.tsv.gz", FRAGS, header=("", "# id=x", "# a\tb\tc\td\te", ""), comments_at=(3,)
    )
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    tok = run(path, uni, mode=mode, min_overlap=min_overlap)
    assert_matches(tok, oracle(FRAGS, UNIVERSE, mode=mode, min_overlap=min_overlap))
    assert tok.stats["n_fragments"] == len(FRAGS)
    assert tok.stats["n_fragments_unknown_chrom"] == 1 and tok.stats["unknown_chroms"] == ["chrUn"]


def test_region_boundaries(tmp_path):
    """The convention spelled out: 0-based half-open fragments; insertions are bases start and end-1."""
    uni = write_bed(tmp_path / "u.bed", [("chr1", 100, 200)])
    cases = {  # (start, end): (token in fragment mode, token in insertion mode)
        (50, 100): (False, False),
        (50, 101): (True, True),
        (199, 250): (True, True),
        (200, 250): (False, False),
        (20, 300): (True, False),
        (120, 180): (True, True),
        (99, 100): (False, False),
        (100, 101): (True, True),
    }
    frags = [("chr1", s, e, f"bc{i}") for i, (s, e) in enumerate(cases)]
    path = write_fragments(tmp_path / "f.tsv", frags)
    for k, mode in enumerate(("fragment", "insertion")):
        tok = run(path, uni, mode=mode)
        got = [len(tok[i]) == 1 for i in range(len(tok))]
        assert got == [v[k] for v in cases.values()], mode


def test_whitelist_file_order_bom_and_stats(tmp_path):
    path = write_fragments(tmp_path / "f.tsv.gz", FRAGS)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    wl = tmp_path / "wl.tsv"
    wl.write_bytes("\ufeffD\textra\r\nZ\tnone\r\nA\r\n\r\n".encode())
    tok = run(path, uni, barcodes=wl)
    assert_matches(tok, oracle(FRAGS, UNIVERSE, whitelist=["D", "Z", "A"]))
    s = tok.stats
    assert s["n_barcodes"] == 5 and s["n_barcodes_kept"] == 3
    assert s["n_barcodes_not_in_whitelist"] == 3  # B, C, E
    assert s["n_fragments_not_in_whitelist"] == sum(f[3] in "BCE" for f in FRAGS)
    assert s["n_whitelist_without_fragments"] == 1 and s["n_empty_cells"] == 1
    assert s["n_fragments_kept"] == sum(f[3] in "AD" for f in FRAGS)
    # A sequence gives the same.
    tok2 = run(path, uni, barcodes=["D", "Z", "A"])
    np.testing.assert_array_equal(tok2.indices, tok.indices)


def test_min_fragments(tmp_path):
    path = write_fragments(tmp_path / "f.tsv", FRAGS)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    tok = run(path, uni, min_fragments=3)
    assert_matches(tok, oracle(FRAGS, UNIVERSE, min_fragments=3))
    assert list(tok.barcodes) == ["A", "C"]
    assert tok.stats["n_barcodes_below_min_fragments"] == 3
    assert tok.stats["n_fragments_below_min_fragments"] == 4


def test_parquet_output(tmp_path):
    path = write_fragments(tmp_path / "f.tsv", FRAGS)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    mem = run(path, uni)
    out = run(path, uni, tmp_path / "t.parquet")
    back = read_tokens_parquet(out)
    np.testing.assert_array_equal(back.indptr, mem.indptr)
    np.testing.assert_array_equal(back.indices, mem.indices)
    assert list(back.barcodes) == list(mem.barcodes) and back.universe.same_as(mem.universe)
    import pyarrow.parquet as pq

    f = pq.ParquetFile(out)
    stats = json.loads(f.schema_arrow.metadata[fr.META_STATS])
    assert stats["n_fragments"] == len(FRAGS) and stats["mode"] == "fragment"
    table = f.read()
    np.testing.assert_array_equal(table.column("n_fragments").to_numpy(), mem.stats["fragments_per_cell"])
    np.testing.assert_array_equal(
        table.column("n_fragments_in_universe").to_numpy(), mem.stats["fragments_in_universe_per_cell"]
    )


# ------------------------------------------------------------------------------------------------
# Real data: demo cells turned into fragments inside their peaks
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_fragments(tmp_path_factory):
    """150 demo cells, 1-2 fragments strictly inside each open peak, sorted by position like 10x writes them,
    gzipped as two members (BGZF-like), plus fragments on a contig the universe lacks."""
    adata = load_demo()[:150].copy()
    rng = np.random.default_rng(1)
    X = adata.X.tocsr()
    chroms, starts, ends, bcs = [], [], [], []
    var = adata.var
    for i in range(adata.n_obs):
        cols = X.indices[X.indptr[i] : X.indptr[i + 1]]
        reps = rng.integers(1, 3, cols.size)
        cols = np.repeat(cols, reps)
        ps, pe = var["start"].to_numpy()[cols], var["end"].to_numpy()[cols]
        s = ps + rng.integers(0, 200, cols.size)
        e = np.minimum(s + rng.integers(1, 300, cols.size), pe)
        chroms += var["chr"].to_numpy()[cols].tolist() + ["chrM"]
        starts += s.tolist() + [5]
        ends += e.tolist() + [80]
        bcs += [adata.obs_names[i]] * (cols.size + 1)
    order = np.lexsort((np.array(starts), np.array(chroms)))
    lines = ["# id=demo"] + [f"{chroms[k]}\t{starts[k]}\t{ends[k]}\t{bcs[k]}\t1" for k in order]
    text = ("\n".join(lines) + "\n").encode()
    path = tmp_path_factory.mktemp("frag") / "demo_fragments.tsv.gz"
    half = len(text) // 2
    path.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    return adata, path


def test_demo_fragments_match_tokenize_cells(demo_fragments):
    adata, path = demo_fragments
    cells = fe.tokenize_cells(adata, demo_peaks_path())
    tok = run(path, demo_peaks_path(), barcodes=list(adata.obs_names))
    np.testing.assert_array_equal(tok.indptr, cells.indptr)
    np.testing.assert_array_equal(tok.indices, cells.indices)
    assert tok.stats["unknown_chroms"] == ["chrM"] and tok.stats["n_fragments_unknown_chrom"] == adata.n_obs
    np.testing.assert_array_equal(
        tok.stats["fragments_in_universe_per_cell"] + 1, tok.stats["fragments_per_cell"]
    )


def test_small_blocks_and_folds_give_identical_results(demo_fragments, monkeypatch):
    _, path = demo_fragments
    ref = run(path, demo_peaks_path())
    monkeypatch.setattr(tunables, "FOLD_PAIRS", 500)  # fold pending pairs many times on the way
    small = run(path, demo_peaks_path(), block_size=4096)
    assert list(small.barcodes) == list(ref.barcodes)
    np.testing.assert_array_equal(small.indptr, ref.indptr)
    np.testing.assert_array_equal(small.indices, ref.indices)
    for k, v in ref.stats.items():
        np.testing.assert_array_equal(small.stats[k], v, err_msg=k)


# ------------------------------------------------------------------------------------------------
# Property test
# ------------------------------------------------------------------------------------------------
CHROMS = ("chr1", "chr2", "chrX")


@st.composite
def fragment_case(draw):
    def interval(chroms, max_len):
        c = draw(st.sampled_from(chroms))
        s = draw(st.integers(0, 150))
        return c, s, s + draw(st.integers(1, max_len))

    universe = [interval(CHROMS[:2], 40) for _ in range(draw(st.integers(1, 12)))]
    frags = [(*interval(CHROMS, 60), draw(st.sampled_from("ABCDE"))) for _ in range(draw(st.integers(1, 60)))]
    mode = draw(st.sampled_from(fr.MODES))
    m = 1 if mode == "insertion" else draw(st.integers(1, 8))
    whitelist = draw(st.none() | st.lists(st.sampled_from("ABCDEZ"), min_size=1, max_size=6, unique=True))
    return universe, frags, mode, m, whitelist


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(fragment_case())
def test_property_matches_oracle(case):
    universe, frags, mode, m, whitelist = case
    if not {f[0] for f in frags} & {u[0] for u in universe}:
        return  # no fragment on a universe chromosome: the "no chromosome in the universe" error, tested below
    if whitelist is not None and not set(whitelist) & {f[3] for f in frags}:
        return  # no whitelisted barcode in the file: an error, tested below
    with tempfile.TemporaryDirectory() as d:
        path = write_fragments(Path(d) / "f.tsv.gz", frags, comments_at=(len(frags) // 2,))
        uni = write_bed(Path(d) / "u.bed", universe)
        tok = run(path, uni, mode=mode, min_overlap=m, barcodes=whitelist, block_size=1024)
        assert_matches(tok, oracle(frags, universe, mode=mode, min_overlap=m, whitelist=whitelist))


def test_fold_pairs_merges_old_rows_and_new_pairs():
    indptr = np.array([0, 2, 2], dtype=np.int64)
    indices = np.array([3, 7], dtype=np.int32)
    cells = np.array([2, 0, 1, 0, 2], dtype=np.int32)
    tokens = np.array([5, 3, 9, 1, 5], dtype=np.int32)
    ip, ix = fr.fold_pairs(indptr, indices, cells, tokens, 3)
    assert ip.tolist() == [0, 3, 4, 5] and ix.tolist() == [1, 3, 7, 9, 5]


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,expect",
    [
        ("chr1\t10\t20\tA", "expected 5 tab-separated fields"),
        ("chr1\tten\t20\tA\t1", "field 2 (start) must be a non-negative integer, got 'ten'"),
        ("chr1\t10\t2x\tA\t1", "field 3 (end) must be a non-negative integer, got '2x'"),
        ("chrom\tstart\tend\tbarcode\tcount", "a header line of column names"),
        ("#chrom\tstart\tend\tbarcode\tcount", "a comment line with 5 tab-separated fields"),
        ("chr1\t10\t20\tA\udce9\t1", "holds bytes that are not UTF-8 text"),  # \udce9: the byte 0xe9
        ("chr1\t30\t20\tA\t1", "start 30 >= end 20"),
        ("chr1\t-5\t20\tA\t1", "field 2 (start) is negative"),
        ("chr1\t10\t20\t\t1", "field 4 (barcode) is empty"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, expect):
    good = [f"chr1\t{i}\t{i + 30}\tA\t1" for i in range(400)]
    lines = ["# header"] + good[:300] + [bad] + good[300:]
    path = tmp_path / "f.tsv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")))
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    out = tmp_path / "t.parquet"
    with pytest.raises(ValueError) as err:
        fe.tokenize_fragments(path, uni, out, block_size=2048)  # the bad line sits in a later block
    msg = str(err.value)
    assert type(err.value) is ValueError  # not pyarrow's ArrowInvalid (a ValueError subclass)
    assert "line 302" in msg and str(path) in msg and expect in msg and len(msg) < 500
    assert sorted(tmp_path.iterdir()) == sorted([path, uni])  # nothing half-written


def write_lines(path, lines, *, gz):
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


GOOD_LINES = [f"chr1\t{i}\t{i + 30}\tBC{i % 3}\t1" for i in range(20)]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "bad,expect",
    [
        ("chr1\tfoo\t20\tA\t1", "line 4: field 2 (start) must be a non-negative integer, got 'foo'"),
        ("chr1\t10\tbar\tA\t1", "line 4: field 3 (end) must be a non-negative integer, got 'bar'"),
        (
            "chr1\t10",
            "line 4: expected 5 tab-separated fields (chrom, start, end, barcode, ...) like the first",
        ),
        ("chr1\tNA\t20\tA\t1", "line 4: field 2 (start) must be a non-negative integer, got 'NA'"),
        ("chr1\t\t20\tA\t1", "line 4: field 2 (start) must be a non-negative integer, got ''"),
        ("chr1\t1_000\t2000\tA\t1", "line 4: field 2 (start) must be a non-negative integer, got '1_000'"),
        ("chr1\t10\t99999999999999999999\tA\t1", "line 4: field 3 (end) 99999999999999999999 is beyond"),
        ("chr1\t10\t4611686018427387905\tA\t1", "line 4: field 3 (end) 4611686018427387905 is beyond"),
        ("chrom\tstart\tend\tbarcode\tcount", "line 4: a header line of column names"),
    ],
)
def test_bad_line_in_first_block_names_file_line_and_field(tmp_path, gz, bad, expect):
    # The first block is parsed and converted inside pyarrow's open_csv, before any batch is asked for.
    lines = ["# id=x"] + GOOD_LINES[:2] + [bad] + GOOD_LINES[2:]
    path = write_lines(tmp_path / ("f.tsv.gz" if gz else "f.tsv"), lines, gz=gz)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    with pytest.raises(ValueError) as err:
        run(path, uni, tmp_path / "t.parquet")
    assert type(err.value) is ValueError  # not pyarrow's ArrowInvalid
    msg = str(err.value)
    assert msg.startswith(f"fragments file '{path}' line 4: ") and expect in msg and "\n" not in msg
    assert sorted(tmp_path.iterdir()) == sorted([path, uni])  # nothing half-written


@pytest.mark.parametrize(
    "header",
    [
        ("chrom\tstart\tend\tbarcode\tcount",),
        ("# id=x", "", "Chrom\tStart\tEnd\tBarcode\tCount"),
        ("#chrom\tstart\tend\tbarcode\tcount",),  # a commented header was always skipped
        ("seqnames\tchromStart\tchromEnd\tcell\tduplicates", ""),
        ("chr\tbegin\tstop\tcell_barcode\treads",),
    ],
)
def test_header_line_of_column_names_is_skipped(tmp_path, header):
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    ref = run(write_fragments(tmp_path / "ref.tsv", FRAGS), uni)
    for name in ("f.tsv", "f.tsv.gz"):
        tok = run(write_fragments(tmp_path / name, FRAGS, header=header), uni)
        assert list(tok.barcodes) == list(ref.barcodes)
        np.testing.assert_array_equal(tok.indptr, ref.indptr)
        np.testing.assert_array_equal(tok.indices, ref.indices)
        assert tok.stats["n_fragments"] == len(FRAGS)


@pytest.mark.parametrize(
    "first,expect",
    [
        # Not recognisable as column names: an error on line 1, not a silently dropped line.
        ("chr1\tfoo\tbar\tA\t1", "line 1: field 2 (start) must be a non-negative integer, got 'foo'"),
        ("chr1\tNA\tNA\tA\t1", "line 1: field 2 (start) must be a non-negative integer, got 'NA'"),
        (
            "chrom\tstart\tend",
            "line 1: expected at least 4 tab-separated fields (chrom, start, end, barcode)",
        ),
    ],
)
def test_first_line_that_is_no_header_is_an_error(tmp_path, first, expect):
    path = write_lines(tmp_path / "f.tsv.gz", [first] + GOOD_LINES, gz=True)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    with pytest.raises(ValueError) as err:
        run(path, uni)
    assert type(err.value) is ValueError
    assert str(err.value).startswith(f"fragments file '{path}' {expect}")


def test_header_only_file_holds_no_fragments(tmp_path):
    path = write_lines(tmp_path / "f.tsv", ["# id=x", "chrom\tstart\tend\tbarcode\tcount"], gz=False)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    with pytest.raises(ValueError, match="holds no fragments"):
        run(path, uni)


@pytest.mark.parametrize("block_size", [2048, tunables.FRAGMENT_BLOCK_BYTES])
@pytest.mark.parametrize("keep", [0.5, 0.9, 12])
def test_truncated_gzip(tmp_path, block_size, keep):
    lines = [f"chr1\t{i * 7}\t{i * 7 + 40}\tBC{i % 13}\t{i % 5 + 1}" for i in range(20000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "fragments.tsv.gz"
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    out = tmp_path / "t.parquet"
    with pytest.raises(ValueError) as err:
        run(path, uni, out, block_size=block_size)
    assert type(err.value) is ValueError  # not the OSError 'Truncated compressed stream'
    msg = str(err.value)
    assert msg.startswith(f"fragments file '{path}' is truncated: its gzip stream ends early, ")
    assert sorted(tmp_path.iterdir()) == sorted([path, uni])


def test_corrupt_gzip(tmp_path):
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    # The gzip header, then a deflate block of the reserved type 3.
    path = tmp_path / "fragments.tsv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64)
    with pytest.raises(ValueError) as err:
        run(path, uni)
    assert type(err.value) is ValueError
    assert str(err.value).startswith(f"fragments file '{path}' is not valid gzip (")
    # A valid start, then damage in the middle of the stream (found by pyarrow in a later block).
    lines = [f"chr1\t{i * 7}\t{i * 7 + 40}\tBC{i % 13}\t1" for i in range(20000)]
    data = bytearray(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        run(path, uni, block_size=2048)
    assert type(err.value) is ValueError
    msg = str(err.value)
    assert msg.startswith(f"fragments file '{path}' ") and ("not valid gzip" in msg or "line " in msg)


def test_not_gzip_content_under_a_gz_name(tmp_path):
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    # Gzip is told by the magic bytes, not the name: plain text named .gz reads as plain text.
    plain = write_fragments(tmp_path / "plain.tsv.gz", FRAGS, gz=False)
    assert run(plain, uni).stats["n_fragments"] == len(FRAGS)
    # Binary content (here a zstd magic number and high bytes) named .gz is neither gzip nor text.
    path = tmp_path / "fragments.tsv.gz"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(128, 256)) * 8)
    with pytest.raises(ValueError) as err:
        run(path, uni)
    assert type(err.value) is ValueError
    assert str(err.value) == (
        f"fragments file '{path}' is neither gzip (its name ends in .gz but it does not start with the gzip "
        "magic bytes 1f 8b) nor UTF-8 text (line 1 holds bytes that are not UTF-8)"
    )


def test_missing_files(tmp_path):
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    with pytest.raises(FileNotFoundError, match="fragments file"):
        fe.tokenize_fragments(tmp_path / "nope.tsv.gz", uni)
    path = write_fragments(tmp_path / "f.tsv", FRAGS)
    with pytest.raises(FileNotFoundError, match="whitelist"):
        fe.tokenize_fragments(path, uni, barcodes=tmp_path / "nope.txt")


@pytest.mark.parametrize(
    "kwargs,expect",
    [
        ({"mode": "insertion", "min_overlap": 2}, "min_overlap must be 1 in mode='insertion'"),
        ({"mode": "cutsite"}, "mode must be one of"),
        ({"min_overlap": 0}, "min_overlap must be an integer >= 1"),
        ({"min_fragments": 0}, "min_fragments must be an integer >= 1"),
        ({"barcodes": ["A"], "min_fragments": 2}, "either barcodes= "),
        ({"barcodes": ["A", "A"]}, "'A' is listed more than once"),
        ({"barcodes": ["Q", "R"]}, "none of the 2 whitelisted barcodes"),
        ({"min_fragments": 99}, "no barcode of fragments file"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, expect):
    path = write_fragments(tmp_path / "f.tsv", FRAGS)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    with pytest.raises(ValueError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        run(path, uni, **kwargs)


def test_chromosome_naming_mismatch_and_empty_file(tmp_path):
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    path = write_fragments(tmp_path / "f.tsv", [("1", 100, 150, "A"), ("2", 0, 10, "B")])
    with pytest.raises(ValueError, match="'1'.*'chr1'"):
        run(path, uni)
    empty = write_fragments(tmp_path / "e.tsv", [])
    with pytest.raises(ValueError, match="holds no fragments"):
        run(empty, uni)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def test_cli_tokenizes_fragments(tmp_path, capsys):
    path = write_fragments(tmp_path / "fragments.tsv.gz", FRAGS)
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    wl = tmp_path / "wl.txt"
    wl.write_text("A\nB\n")
    out = tmp_path / "t.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            main(
                [
                    "tokenize",
                    str(path),
                    "--universe",
                    str(uni),
                    "--output",
                    str(out),
                    "--barcodes",
                    str(wl),
                    "--mode",
                    "insertion",
                ]
            )
            == 0
        )
    err = capsys.readouterr().err
    assert "10 fragments" in err and "3 barcodes not in the whitelist" in err
    tok = read_tokens_parquet(out)
    want = oracle(FRAGS, UNIVERSE, mode="insertion", whitelist=["A", "B"])[1]
    assert [tok[i].tolist() for i in range(len(tok))] == want
    # A fragments file under another name needs --fragments; a malformed one exits 1 with one line.
    other = write_fragments(tmp_path / "frags.bed", FRAGS + [("chr1", 9, 3, "A")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            main(
                [
                    "tokenize",
                    str(other),
                    "--universe",
                    str(uni),
                    "--output",
                    str(tmp_path / "u.parquet"),
                    "--fragments",
                ]
            )
            == 1
        )
    err = capsys.readouterr().err
    assert "line 13" in err and err.count("\n") == 1
    assert not (tmp_path / "u.parquet").exists()


def test_cli_knows_fragments_files_by_their_ending_in_any_case(demo_fragments, tmp_path):
    """FRAGMENTS.TSV.GZ is a fragments file without --fragments, as fragments.tsv.gz is."""
    import shutil

    adata, path = demo_fragments
    upper = tmp_path / "DEMO_FRAGMENTS.TSV.GZ"
    shutil.copy(path, upper)
    (tmp_path / "wl.txt").write_text("".join(f"{b}\n" for b in adata.obs_names))
    argv = ["tokenize", str(upper), "--universe", str(demo_peaks_path()), "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "T.PARQUET"), "--barcodes", str(tmp_path / "wl.txt")]) == 0
    want = run(path, demo_peaks_path(), barcodes=list(adata.obs_names))
    got = read_tokens_parquet(tmp_path / "T.PARQUET")
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)


@pytest.mark.parametrize("damage", ["bad start", "truncated"])
def test_cli_failure_mid_file_leaves_nothing(tmp_path, capsys, monkeypatch, damage):
    # Small blocks, so that the error comes after blocks were tokenized and the output lock was taken.
    open_batches = fr._open_batches
    monkeypatch.setattr(
        fr, "_open_batches", lambda path, n_skip, n_cols, _: open_batches(path, n_skip, n_cols, 2048)
    )
    lines = [f"chr1\t{i * 7}\t{i * 7 + 40}\tBC{i % 13}\t1" for i in range(20000)]
    if damage == "bad start":
        lines[15000] = "chr1\tfoo\t20\tBC1\t1"
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "fragments.tsv.gz"
    path.write_bytes(data if damage == "bad start" else data[: len(data) * 3 // 4])
    uni = write_bed(tmp_path / "u.bed", UNIVERSE)
    out = tmp_path / "t.parquet"
    argv = ["tokenize", str(path), "--universe", str(uni), "--output", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fastembed tokenize: error: fragments file '{path}' ")
    if damage == "bad start":
        assert "line 15001: field 2 (start) must be a non-negative integer, got 'foo'" in err
    else:
        assert "is truncated: its gzip stream ends early" in err
    assert sorted(tmp_path.iterdir()) == sorted([path, uni])  # no parquet, temp file or lock left behind


# ------------------------------------------------------------------------------------------------
# Past the budget: the folded tokens go to disk in runs and are merged into the parquet file
# ------------------------------------------------------------------------------------------------
def _parquet_contents(path):
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    table = f.read()
    return (
        table.column("tokens").to_pylist(),
        table.column("barcode").to_pylist(),
        table.column("n_fragments").to_numpy(),
        table.column("n_fragments_in_universe").to_numpy(),
        json.loads(f.schema_arrow.metadata[fr.META_STATS]),
    )


@pytest.fixture
def spied_runs(monkeypatch):
    """Counts the runs written to disk."""
    from fastembed.genome import spill

    written = []
    add = spill.TokenRuns.add

    def spy(self, indptr, indices):
        written.append((self.folder, int(indptr[-1])))
        return add(self, indptr, indices)

    monkeypatch.setattr(spill.TokenRuns, "add", spy)
    return written


@pytest.mark.parametrize("keep", ["all", "min_fragments", "whitelist"])
def test_fragments_past_the_budget_spill_to_disk_and_write_the_same_file(
    demo_fragments, tmp_path, spied_runs, monkeypatch, keep
):
    # Regression (issue 29, the 1,000,000-cell atlas): tokenizing 100,000 cells of fragments to parquet held the
    # whole result several times over (3.4 GiB at a 1 GiB budget); memory followed the file.
    adata, path = demo_fragments
    kwargs = {
        "all": {},
        "min_fragments": {"min_fragments": 150},
        "whitelist": {"barcodes": ["nobody"] + list(adata.obs_names[::-3]), "min_fragments": 1},
    }[keep]
    if keep == "whitelist":
        kwargs.pop("min_fragments")
    whole = run(path, demo_peaks_path(), tmp_path / "whole.parquet", **kwargs)
    assert not spied_runs  # the default budget holds the demo in memory
    monkeypatch.setattr(tunables, "FOLD_PAIRS", 2000)
    spilled = run(path, demo_peaks_path(), tmp_path / "spilled.parquet", memory=64_000, **kwargs)
    assert len(spied_runs) >= 2  # several runs on disk, merged at the end
    a, b = _parquet_contents(whole), _parquet_contents(spilled)
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    assert a[4] == b[4]
    mem = run(path, demo_peaks_path(), **kwargs)  # and the in-memory result
    assert b[1] == list(mem.barcodes)
    assert b[0] == [list(mem[i]) for i in range(len(mem))]
    # Nothing of the runs is left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spilled.parquet", "whole.parquet"]


def test_spill_runs_are_removed_when_the_merge_fails(demo_fragments, tmp_path, spied_runs, monkeypatch):
    _, path = demo_fragments
    from fastembed.genome import spill

    def broken(self, lo, hi):
        raise RuntimeError("injected failure while merging the runs")

    monkeypatch.setattr(spill.TokenRuns, "pairs", broken)
    monkeypatch.setattr(tunables, "FOLD_PAIRS", 2000)
    with pytest.raises(RuntimeError, match="injected"):
        run(path, demo_peaks_path(), tmp_path / "t.parquet", memory=64_000)
    assert spied_runs
    assert list(tmp_path.iterdir()) == []  # no output, no temporary, no runs, no lock


def test_spill_runs_left_by_a_killed_writer_are_removed_by_the_next_write(demo_fragments, tmp_path):
    import os
    import subprocess

    from fastembed.storage import atomic

    _, path = demo_fragments
    out = tmp_path / "t.parquet"
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f"{atomic._temp_prefix(out).replace(str(os.getpid()), str(dead.pid))}abc123.tmp"
    left.mkdir()
    (left / "run0.idx").write_bytes(b"\0" * 16)
    run(path, demo_peaks_path(), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
