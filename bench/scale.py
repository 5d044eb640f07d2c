"""Atlas scale: encode a synthetic on-disk atlas end to end, with peak memory, serially and on local Dask workers.

    python bench/scale.py [--cells 200000] [--peaks-per-cell 2000] [--memory 1GB] [--workers 1,2]
        [--folder /tmp/fastembed-scale]

Density is realistic by default: a cell's regions are log-normal around ``--peaks-per-cell`` (median 2,000,
the spread of log regions per cell fitted to granja2019 and the demo, 0.55; real peak matrices hold 1,000-10,000
regions per cell) over a 500,000-region universe, so one block of cells weighs what it does in an atlas.

1. Writes a synthetic atlas as a zarr AnnData (CSR ``X``, cells x universe regions), block by block with
   anndata's ``append``, so the generator never holds more than one block.
2. Trains a small model on a sample of cells (tokenized in memory).
3. Encodes the whole store to a zarr output, each run in a fresh process so its peak RSS (``VmHWM``) is the
   encode's own: serially, then with a local Dask cluster of 1 and 2 worker processes (driver and worker peaks
   reported separately; the driver's peak also given above its RSS after imports and loading the model).

The data's size is reported as the uncompressed CSR ``X`` (int32 indices + uint8 values + int64 indptr) and as
the store on disk. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

N_TYPES = 12
SIGMA_LOG_REGIONS = 0.55
"""Spread of log(regions per cell) in granja2019 and the bundled demo (bench/_synth.py fit_real)."""


def _rss_mib() -> float:
    """Peak RSS of this process in MiB. VmHWM belongs to the process's own address space; ru_maxrss would
    carry over the parent's peak through fork and exec, and the encode runs are children of the generator."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _universe(n_regions: int) -> pd.DataFrame:
    chroms = np.repeat([f"chr{i}" for i in range(1, 6)], -(-n_regions // 5))[:n_regions]
    within = np.arange(n_regions) - np.searchsorted(chroms, chroms)
    start = 10_000 + within * 1_000
    return pd.DataFrame({"chr": chroms, "start": start, "end": start + 500})


def _block(rng, lo: int, hi: int, n_regions: int, peaks: int) -> sp.csr_matrix:
    """Cells lo:hi: each of N_TYPES cell types opens its own slice of the universe more often than the rest."""
    n = hi - lo
    types = rng.integers(0, N_TYPES, n)
    counts = np.minimum(np.rint(rng.lognormal(np.log(peaks), SIGMA_LOG_REGIONS, n)), n_regions // 10).astype(
        int
    )
    rows = np.repeat(np.arange(n), counts)
    specific = rng.random(rows.size) < 0.6
    width = n_regions // N_TYPES
    cols = np.where(
        specific,
        types[rows] * width + rng.integers(0, width, rows.size),
        rng.integers(0, n_regions, rows.size),
    )
    key = np.unique(rows.astype(np.int64) * n_regions + cols)
    r, c = key // n_regions, (key % n_regions).astype(np.int32)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    return sp.csr_matrix((np.ones(c.size, dtype=np.uint8), c, indptr), shape=(n, n_regions))


def write_atlas(path: Path, n_cells: int, n_regions: int, peaks: int, block: int, seed: int) -> dict:
    import zarr
    from anndata.io import sparse_dataset, write_elem

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    uni = _universe(n_regions)
    var = uni.copy()
    var.index = [f"{c}:{s}-{e}" for c, s, e in zip(uni["chr"], uni["start"], uni["end"], strict=True)]
    nnz = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lo in range(0, n_cells, block):
            x = _block(rng, lo, min(lo + block, n_cells), n_regions, peaks)
            nnz += x.nnz
            if lo == 0:
                write_elem(root, "X", x)
                X = sparse_dataset(root["X"])
            else:
                X.append(x)
        write_elem(root, "obs", pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n_cells)])))
        write_elem(root, "var", var)
        for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(root, name, {})
    return {"nnz": nnz, "x_bytes": nnz * 5 + (n_cells + 1) * 8}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def encode_run(args) -> None:
    """One encode in this (fresh) process; prints a JSON line."""
    import fastembed as fe

    model = fe.ScEmbed.from_pretrained(args.model, threads=args.threads)
    baseline = (
        _rss_mib()
    )  # interpreter, numba, anndata and the model: what any run pays before the first block
    out = Path(args.output)
    t = time.perf_counter()
    worker_rss = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.n_workers:
            from dask.distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=args.n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    env={"NUMBA_NUM_THREADS": str(args.threads or 1)},
                ) as cluster,
                Client(cluster) as client,
            ):
                t = time.perf_counter()  # cluster start-up is not the encode's
                model.encode(
                    args.input,
                    out=out,
                    batch_cells=args.batch_cells,
                    overwrite=True,
                    client=client,
                    memory=args.memory,
                )
                seconds = time.perf_counter() - t
                worker_rss = max(client.run(_rss_mib).values())
        else:
            model.encode(
                args.input, out=out, batch_cells=args.batch_cells, overwrite=True, memory=args.memory
            )
            seconds = time.perf_counter() - t
    print(
        json.dumps(
            {
                "seconds": seconds,
                "driver_rss_mib": _rss_mib(),
                "baseline_rss_mib": baseline,
                "worker_rss_mib": worker_rss,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--regions", type=int, default=500_000)
    p.add_argument("--peaks-per-cell", type=int, default=2_000, help="median regions per cell (log-normal)")
    p.add_argument("--memory", default="1GB", help="the memory budget of the encode")
    p.add_argument("--write-block", type=int, default=10_000)
    p.add_argument("--batch-cells", type=int, default=65_536)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--workers", default="1,2", help="comma-separated local Dask worker counts ('' for none)")
    p.add_argument(
        "--threads", type=int, default=1, help="numba threads of the serial run and of each worker"
    )
    p.add_argument("--folder", default="/tmp/fastembed-scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the atlas and outputs")
    p.add_argument("--reuse", action="store_true", help="reuse an atlas already in --folder (same --cells)")
    # internal: one encode in a fresh process
    p.add_argument("--encode-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input"), p.add_argument("--model"), p.add_argument("--output")
    p.add_argument("--n-workers", type=int, default=0)
    args = p.parse_args()
    if args.encode_run:
        return encode_run(args)

    import anndata as ad

    import fastembed as fe

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    atlas = folder / "atlas.zarr"
    t = time.perf_counter()
    if args.reuse and atlas.exists():
        import zarr

        nnz = int(zarr.open_group(str(atlas), mode="r")["X"]["indptr"][-1])
        size = {"nnz": nnz, "x_bytes": nnz * 5 + (args.cells + 1) * 8}
        how = "reused"
    else:
        size = write_atlas(atlas, args.cells, args.regions, args.peaks_per_cell, args.write_block, args.seed)
        how = f"written in {time.perf_counter() - t:.0f} s (generator peak RSS {_rss_mib():,.0f} MiB)"
    on_disk = _du(atlas)
    print(
        f"atlas: {args.cells:,} cells x {args.regions:,} regions, {size['nnz']:,} nonzeros; X uncompressed "
        f"{size['x_bytes'] / 2**20:,.0f} MiB, store on disk {on_disk / 2**20:,.0f} MiB; {how}",
        flush=True,
    )

    uni = _universe(args.regions)
    bed = folder / "universe.bed"
    uni.to_csv(bed, sep="\t", header=False, index=False)
    sample = _block(np.random.default_rng(args.seed + 1), 0, 5_000, args.regions, args.peaks_per_cell)
    train = ad.AnnData(
        X=sample,
        var=uni.set_index(uni["chr"] + ":" + uni["start"].astype(str) + "-" + uni["end"].astype(str)),
    )
    model = fe.ScEmbed(embedding_dim=args.dim, seed=0, threads=args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(fe.tokenize_cells(train, bed), epochs=1, progress=False)
    model_dir = model.save(folder / "model", overwrite=True)

    runs = [0] + [int(w) for w in args.workers.split(",") if w.strip()]
    rows = []
    for n_workers in runs:
        cmd = [
            sys.executable,
            __file__,
            "--encode-run",
            "--input",
            str(atlas),
            "--model",
            str(model_dir),
            "--output",
            str(folder / "emb.zarr"),
            "--batch-cells",
            str(args.batch_cells),
            "--memory",
            args.memory,
            "--threads",
            str(args.threads),
            "--n-workers",
            str(n_workers),
        ]
        res = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        if res.returncode:
            sys.exit(f"encode run with {n_workers} workers failed:\n{res.stderr[-3000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        label = "serial" if not n_workers else f"dask {n_workers} worker{'s' if n_workers > 1 else ''}"
        rows.append(r)
        extra = f", worker peak RSS {r['worker_rss_mib']:,.0f} MiB" if r["worker_rss_mib"] else ""
        grew = r["driver_rss_mib"] - r["baseline_rss_mib"]
        print(
            f"encode {label}: {r['seconds']:.1f} s, {args.cells / r['seconds']:,.0f} cells/s; driver peak RSS "
            f"{r['driver_rss_mib']:,.0f} MiB, {grew:,.0f} MiB above the {r['baseline_rss_mib']:,.0f} MiB after "
            f"imports ({100 * grew * 2**20 / size['x_bytes']:.1f}% of X){extra}",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
