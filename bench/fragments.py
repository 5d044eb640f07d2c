"""Fragments-file throughput: fastembed.tokenize_fragments vs a pandas reader + numpy searchsorted, and gtars.

Usage (from the repository root; see bench/README.md for the venv):

    python bench/fragments.py [--fragments 3000000] [--cells 5000] [--regions 200000] [--gtars-python PY]

A synthetic, position-sorted, gzipped 10x-style fragments file (``chrom start end barcode count``, a ``#``
header, 2% of fragments on chrM, which the universe lacks) is written to a temporary folder and tokenized
against a random universe of 500-bp regions on three chromosomes (they may overlap each other; no
duplicates). All methods go from the gzipped file to each barcode's sorted unique tokens:

* fastembed: ``tokenize_fragments`` (pyarrow streaming reader + numba kernels), after a JIT warm-up;
* pandas: ``pd.read_csv`` of the whole file, then per-chromosome ``np.searchsorted`` candidate ranges and
  ``np.unique`` of (cell, token) keys; holds the whole file in memory;
The universe is read and indexed before any timing (gtars builds its tokenizer untimed too).

* gtars: ``gtars.tokenizers.tokenize_fragment_file`` if gtars imports in ``--gtars-python`` (default: this
  interpreter; the peers may live in a separate venv). It emits ``<unk>`` for fragments outside the universe;
  those are dropped before comparing, and its ids are mapped back to regions.

Prints fragments/s of each, the ratios, and whether the token sets agree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _data import machine

import fastembed as fe

CHROM_LEN = 50_000_000


def make_data(folder: Path, n_frags: int, n_cells: int, n_regions: int, seed: int = 0) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    chroms = np.array(["chr1", "chr2", "chr3"])
    u_chr = rng.integers(0, 3, n_regions)
    u_start = rng.integers(0, CHROM_LEN - 500, n_regions)
    key = np.unique(u_chr * CHROM_LEN + u_start)  # no duplicate regions (gtars merges duplicates)
    u_chr, u_start = key // CHROM_LEN, key % CHROM_LEN
    universe = folder / "universe.bed"
    pd.DataFrame({"c": chroms[u_chr], "s": u_start, "e": u_start + 500}).to_csv(
        universe, sep="\t", header=False, index=False
    )
    barcodes = np.array(["".join(x) + "-1" for x in rng.choice(list("ACGT"), (n_cells, 16))])
    names = np.append(chroms, "chrM")
    f_chr = rng.choice(4, n_frags, p=[0.33, 0.33, 0.32, 0.02])
    f_start = rng.integers(0, CHROM_LEN - 1000, n_frags)
    f_start[f_chr == 3] %= 16_000
    f_len = np.minimum(rng.lognormal(5.0, 0.7, n_frags).astype(np.int64) + 20, 900)
    order = np.lexsort((f_start, f_chr))
    f_chr, f_start, f_len = f_chr[order], f_start[order], f_len[order]
    cells = rng.integers(0, n_cells, n_frags)
    table = pa.table(
        {
            "chrom": pa.DictionaryArray.from_arrays(f_chr.astype(np.int32), names),
            "start": f_start,
            "end": f_start + f_len,
            "barcode": pa.DictionaryArray.from_arrays(cells.astype(np.int32), barcodes),
            "count": rng.integers(1, 4, n_frags),
        }
    )
    path = folder / "fragments.tsv.gz"
    buf = pa.BufferOutputStream()
    buf.write(b"# id=synthetic\n# reference_path=none\n")
    pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    # gzip level 1 keeps generation short; decompression speed hardly depends on the level.
    path.write_bytes(gzip.compress(buf.getvalue().to_pybytes(), compresslevel=1))
    return path, universe


def pandas_reference(path: Path, uni: fe.Universe):
    """Whole-file pandas read, numpy searchsorted overlaps, np.unique per (cell, token); CSR in file order."""
    df = pd.read_csv(
        path,
        sep="\t",
        comment="#",
        header=None,
        usecols=[0, 1, 2, 3],
        names=["chrom", "start", "end", "barcode"],
        dtype={"chrom": "category", "start": np.int64, "end": np.int64, "barcode": str},
    )
    cells, barcodes = pd.factorize(df["barcode"])
    s = uni.sorted_index
    lookup = {c: i for i, c in enumerate(uni.chrom_names)}
    codes = df["chrom"].cat.codes.to_numpy()
    code_map = np.array([lookup.get(c, -1) for c in df["chrom"].cat.categories], dtype=np.int64)
    q_chr = code_map[codes]
    qs, qe = df["start"].to_numpy(), df["end"].to_numpy()
    keys = []
    for c in range(len(uni.chrom_names)):
        lo, hi = s.chrom_lo[c], s.chrom_hi[c]
        idx = np.flatnonzero(q_chr == c)
        right = lo + np.searchsorted(s.starts[lo:hi], qe[idx] - 1, side="right")
        left = lo + np.searchsorted(s.max_end[lo:hi], qs[idx] + 1, side="left")
        n = np.maximum(right - left, 0)
        rep = np.repeat(idx, n)
        cand = np.repeat(left - np.cumsum(n) + n, n) + np.arange(n.sum())
        ok = s.ends[cand] > qs[rep]
        keys.append(cells[rep[ok]].astype(np.int64) * uni.vocab_size + s.token[cand[ok]])
    keys = np.unique(np.concatenate(keys))
    cell_of = keys // uni.vocab_size
    indptr = np.zeros(barcodes.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell_of, minlength=barcodes.size), out=indptr[1:])
    return indptr, (keys % uni.vocab_size).astype(np.int32), np.asarray(barcodes, dtype=object)


GTARS_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from gtars.tokenizers import Tokenizer, tokenize_fragment_file
    frag, bed, out = sys.argv[1:4]
    tok = Tokenizer.from_bed(bed)
    t = time.perf_counter()
    res = tokenize_fragment_file(frag, tok)
    seconds = time.perf_counter() - t
    # Map gtars ids back to our token ids (line numbers of the BED), dropping <unk> and other specials.
    line_of = {}
    with open(bed) as fh:
        for i, line in enumerate(fh):
            c, s, e = line.split()[:3]
            line_of[f"{c}:{s}-{e}"] = i
    vocab = tok.get_vocab()
    ours = np.full(max(vocab.values()) + 1, -1, dtype=np.int64)
    for name, i in vocab.items():
        ours[i] = line_of.get(name, -1)
    barcodes = list(res)
    sets = []
    for b in barcodes:
        ids = ours[np.asarray(res[b], dtype=np.int64)]
        sets.append(np.unique(ids[ids >= 0]).tolist())
    json.dump({"seconds": seconds, "barcodes": barcodes, "tokens": sets}, open(out, "w"))
""")


def run_gtars(python: str, path: Path, universe: Path, folder: Path):
    probe = subprocess.run([python, "-c", "import gtars.tokenizers"], capture_output=True)
    if probe.returncode != 0:
        return None
    out = folder / "gtars.json"
    proc = subprocess.run(
        [python, "-c", GTARS_SCRIPT, str(path), str(universe), str(out)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(f"gtars failed: {proc.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def best_of(repeat, fn):
    best, result = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fragments", type=int, default=3_000_000)
    ap.add_argument("--cells", type=int, default=5_000)
    ap.add_argument("--regions", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--gtars-python", default=sys.executable, help="interpreter with gtars installed")
    args = ap.parse_args()
    print(machine())
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        t = time.perf_counter()
        path, universe = make_data(folder, args.fragments, args.cells, args.regions)
        print(
            f"generated {args.fragments:,} fragments, {args.cells:,} cells, {path.stat().st_size / 1e6:.0f} MB "
            f"gzipped in {time.perf_counter() - t:.1f} s"
        )
        # Every method gets its universe ready outside the timing, as gtars builds its tokenizer untimed.
        uni = fe.Universe.from_bed(universe)
        uni.sorted_index  # noqa: B018 (build the cached search index)
        fe.tokenize_fragments(path, uni, block_size=1 << 16)  # JIT warm-up (compiled kernels are cached)
        t_fe, tok = best_of(args.repeat, lambda: fe.tokenize_fragments(path, uni))
        t_pd, (ip, ix, bcs) = best_of(1, lambda: pandas_reference(path, uni))
        same_pd = (
            list(bcs) == list(tok.barcodes)
            and np.array_equal(ip, tok.indptr)
            and np.array_equal(ix, tok.indices)
        )
        g = run_gtars(args.gtars_python, path, universe, folder)
        n = args.fragments
        s = tok.stats
        print(
            f"fragments in universe: {s['n_fragments_in_universe']:,} of {s['n_fragments']:,}; "
            f"{s['n_tokens']:,} unique (cell, token) pairs"
        )
        print("| method | seconds | M fragments/s | fastembed is | same tokens |")
        print("|---|---|---|---|---|")
        print(f"| fastembed `tokenize_fragments` | {t_fe:.2f} | **{n / t_fe / 1e6:.2f}** | - | - |")
        print(
            f"| pandas read_csv + numpy searchsorted | {t_pd:.2f} | {n / t_pd / 1e6:.2f} | {t_pd / t_fe:.1f}x "
            f"faster | {'identical' if same_pd else 'DIFFERENT'} |"
        )
        if g is None:
            print("| gtars `tokenize_fragment_file` | not installed | | | |")
        else:
            ours = {b: tok[i].tolist() for i, b in enumerate(tok.barcodes)}
            agree = np.mean([ours.get(b) == t for b, t in zip(g["barcodes"], g["tokens"], strict=True)])
            print(
                f"| gtars `tokenize_fragment_file` (unknown tokens dropped) | {g['seconds']:.2f} | "
                f"{n / g['seconds'] / 1e6:.2f} | {g['seconds'] / t_fe:.1f}x faster | "
                f"{100 * agree:.1f}% of {len(g['barcodes']):,} barcodes |"
            )


if __name__ == "__main__":
    main()
