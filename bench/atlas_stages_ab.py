"""Store -> tokens and store -> embeddings, two checkouts interleaved: where a change to the set-up costs shows.

    python bench/atlas_stages_ab.py --store atlas.zarr --universe universe.bed --model model/ \\
        --before /path/to/old/checkout --after . [--rounds 2] [--threads 1,2] [--out /tmp/fe-ab]

Each measurement is a fresh process with ``PYTHONPATH`` set to one checkout (a ``git archive`` of the commit to
compare against, say): ``tokenize_cells(store, universe, out.parquet)`` or, the model already loaded,
``encode(store, out=out.zarr, progress=False)``, timing the call alone. Each checkout runs both steps once first
(numba's caches compiled). Rounds interleave before and after, so a loaded machine weighs on both alike; the
ratios after / before are printed per round, then whether the outputs of the last round are identical (token
table and metadata; embeddings bit for bit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_ONE = """
import json, shutil, sys, time
import numba
what, threads, out, store, universe, model = sys.argv[1:7]
numba.set_num_threads(int(threads))
shutil.rmtree(out, ignore_errors=True)
if what == "tok":
    from fastembed.genome.tokenize import tokenize_cells
    t = time.perf_counter()
    tokenize_cells(store, universe, out)
else:
    from fastembed import ScEmbed
    m = ScEmbed.from_pretrained(model)
    t = time.perf_counter()
    m.encode(store, out=out, progress=False)
print(json.dumps({"s": time.perf_counter() - t}))
"""


def _run(src: Path, what: str, threads: int, out: Path, args) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    if out.is_file():
        out.unlink()
    cmd = [sys.executable, "-c", _ONE, what, str(threads), str(out), args.store, args.universe, args.model]
    res = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["s"]


def _same(out: Path, threads: int) -> str:
    import anndata as ad
    import numpy as np
    import pyarrow.parquet as pq

    a, b = (out / f"tok_{v}_{threads}.parquet" for v in ("before", "after"))
    tokens = (
        pq.read_table(a).equals(pq.read_table(b))
        and pq.read_metadata(a).metadata == pq.read_metadata(b).metadata
    )
    ea, eb = (ad.read_zarr(out / f"enc_{v}_{threads}.zarr") for v in ("before", "after"))
    emb = all(
        np.array_equal(ea.obsm[k], eb.obsm[k]) and ea.obsm[k].dtype == eb.obsm[k].dtype for k in ea.obsm
    )
    return f"{threads} thread(s): tokens identical {tokens}, embeddings bit-identical {emb}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--store", "--universe", "--model", "--before", "--after"):
        p.add_argument(name, required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out", default="/tmp/fastembed-atlas-ab")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    srcs = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    threads = [int(t) for t in args.threads.split(",")]
    print("load average", os.getloadavg())
    for v, src in srcs.items():  # warm-up: numba caches of each checkout
        for what, ext in (("tok", "parquet"), ("enc", "zarr")):
            _run(src, what, threads[0], out / f"warm_{v}.{ext}", args)
    for r in range(1, args.rounds + 1):
        for th in threads:
            for what, ext in (("tok", "parquet"), ("enc", "zarr")):
                s = {v: _run(src, what, th, out / f"{what}_{v}_{th}.{ext}", args) for v, src in srcs.items()}
                print(
                    f"round {r} {what} threads {th}: before {s['before']:.2f} s, after {s['after']:.2f} s, "
                    f"after / before {s['after'] / s['before']:.2f} (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    for th in threads:
        print(_same(out, th))


if __name__ == "__main__":
    main()
