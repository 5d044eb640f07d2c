"""Peak memory of the streaming steps against the memory budget, at three densities and two atlas sizes.

    python bench/memory.py [--budget 64MB] [--nnz 5e6,20e6] [--folder /tmp/fastembed-memory]

For each density (100, 2,000 and 10,000 regions per cell, every cell alike) and each atlas size (total nonzeros),
a synthetic on-disk ``.h5ad`` (bench/_synth.py: a 500,000-region universe, region popularity as in granja2019)
is written once. Each measurement runs in a fresh process: imports, the model loaded, a warm-up on a few cells
(numba's cached kernels loaded, anndata's readers imported), then the peak RSS is reset (``/proc/self/clear_refs``)
and the step runs; growth = peak RSS during the step - RSS before it. Steps:

* ``tokenize``: ``tokenize_cells(path.h5ad, universe, out.parquet, memory=budget)``
* ``encode``: ``model.encode(path.h5ad, out=out.zarr, memory=budget)``
* ``annotate``: ``annotate_celltypes(out.zarr, reference, memory=budget)`` on the largest store's embeddings

Growth must stay within the budget plus a constant, and not follow the atlas size. What is not in a block is
reported beside it: the cell names (an index, ~60-100 bytes a cell) that every step reads whole.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _synth  # noqa: E402
from _data import REPO  # noqa: E402

DENSITIES = (100, 2_000, 10_000)


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def run_one(args) -> None:
    """One measured step in this (fresh) process; prints a JSON line."""
    import anndata as ad
    import pandas as pd

    import fastembed as fe
    from fastembed import settings
    from fastembed.annotate import annotate_celltypes

    warnings.simplefilter("ignore")
    model = fe.ScEmbed.from_pretrained(args.model, threads=1)
    if args.step != "annotate":
        small = ad.read_h5ad(args.input, backed="r")[:50].to_memory()
        fe.tokenize_cells(small, args.universe)  # warm-up: kernels and readers loaded
        model.encode(small)
    else:
        # A query large enough that the search is NN-descent, as in the measured run: pynndescent's kernels
        # compile (hundreds of MB of LLVM) here, not during the measurement.
        ref = ad.read_zarr(args.reference)
        reps = -(-settings.EXACT_SEARCH_PAIRS // (ref.n_obs * ref.n_obs)) + 1
        warm = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(reps * ref.n_obs)]))
        warm.obsm["scembed_X"] = np.tile(ref.obsm["scembed_X"], (reps, 1))
        annotate_celltypes(warm, ref)
        del warm
    _reset_peak()
    base = _status("VmRSS:")
    t = time.perf_counter()
    out = Path(args.output)
    if args.step == "tokenize":
        fe.tokenize_cells(args.input, args.universe, out, memory=args.budget, overwrite=True)
    elif args.step == "encode":
        model.encode(args.input, out=out, memory=args.budget, overwrite=True, progress=False)
    else:
        annotate_celltypes(args.input, args.reference, memory=args.budget, confidence_key="c")
    seconds = time.perf_counter() - t
    print(
        json.dumps({"growth_mib": _status("VmHWM:") - base, "base_mib": base, "seconds": seconds}),
        flush=True,
    )


def _measure(step: str, inp: Path, out: Path, common: list[str], extra: list[str] = ()) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--run",
        step,
        "--input",
        str(inp),
        "--output",
        str(out),
        *common,
        *extra,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode:
        raise SystemExit(f"{step} {inp} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    import fastembed as fe
    from fastembed.common.budget import parse_memory

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="64MB")
    p.add_argument("--nnz", default="5e6,20e6", help="atlas sizes in total nonzeros")
    p.add_argument("--densities", default=",".join(map(str, DENSITIES)))
    p.add_argument("--folder", default="/tmp/fastembed-memory")
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)
    for name in ("--input", "--output", "--model", "--universe", "--reference"):
        p.add_argument(name, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run:
        args.step = args.run
        args.budget = parse_memory(args.budget)
        return run_one(args)

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    stats_path = folder / "stats.json"
    if not stats_path.exists():
        _synth.save_stats(_synth.fit_real(), stats_path)
    atlas = _synth.Atlas(_synth.load_stats(stats_path))
    universe = folder / "universe.bed"
    if not universe.exists():
        _synth.write_universe(atlas, universe)
    model_dir = folder / "model"
    if not model_dir.exists():
        train = folder / "train.h5ad"
        _synth.write_store(atlas, train, 2_000, block=2_000, offset=10**8)
        tok = fe.tokenize_cells(train, universe)
        fe.ScEmbed(embedding_dim=32, seed=0, threads=1).train(tok, epochs=1).save(model_dir)
    sizes = [int(float(s)) for s in args.nnz.split(",")]
    densities = [int(d) for d in args.densities.split(",")]
    common = ["--model", str(model_dir), "--universe", str(universe), "--budget", args.budget]
    print(f"budget {args.budget}; steps in fresh processes; growth = peak RSS during the step - RSS before")
    print("| step | regions/cell | cells | nonzeros | CSR MB | growth MiB | seconds |")
    print("|---|---|---|---|---|---|---|")
    largest = None
    for nnz in sizes:
        for d in densities:
            n = max(nnz // d, 1)
            store = folder / f"atlas_{d}_{n}.h5ad"
            if not store.exists():
                _synth.write_store(atlas, store, n, block=max(min(n, 5_000_000 // d), 1), fixed=d)
            emb = folder / f"emb_{d}_{n}.zarr"
            for step, out in (("tokenize", folder / "tokens.parquet"), ("encode", emb)):
                r = _measure(step, store, out, common)
                print(
                    f"| {step} | {d} | {n} | {n * d} | {n * d * 5 / 1e6:.0f} | {r['growth_mib']:.0f} | "
                    f"{r['seconds']:.1f} |",
                    flush=True,
                )
            if largest is None or n > largest[1]:
                largest = (emb, n)
    # Annotate the largest query (most cells) against a labelled reference encoded from other cells.
    ref_store = folder / "reference.h5ad"
    ref_emb = folder / "reference.zarr"
    if not ref_emb.exists():
        _synth.write_store(atlas, ref_store, 10_000, block=10_000, offset=2 * 10**8, fixed=200)
        model = fe.ScEmbed.from_pretrained(model_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.encode(ref_store, out=ref_emb, progress=False)
    r = _measure("annotate", largest[0], folder / "unused", common, ["--reference", str(ref_emb)])
    print(
        f"| annotate | - | {largest[1]} (query) | - | {largest[1] * 32 * 4 / 1e6:.0f} (embeddings) | "
        f"{r['growth_mib']:.0f} | {r['seconds']:.1f} |"
    )
    if os.environ.get("FASTEMBED_MEMORY_CLEAN"):
        shutil.rmtree(folder)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
