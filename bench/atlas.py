"""An atlas end to end: a synthetic atlas fitted to real data, through every step an atlas user runs.

    nice -n 10 python bench/atlas.py [--cells 1000000] [--fragment-cells 100000] [--reference-cells 50000]
        [--sample-cells 20000] [--median 2000] [--memory 1GB] [--workers 2] [--folder /tmp/fastembed-atlas]

Data (bench/_synth.py; written once into --folder, reused by later runs with the same sizes): a 500,000-region
universe; regions per cell log-normal (spread fitted to granja2019 and the demo, median --median); region
popularity as observed in granja2019; 12 planted cell-type programs. On disk: the atlas as an AnnData zarr store
(--cells cells, labels in obs), a labelled reference of other cells (.zarr), and the first --fragment-cells cells
of the atlas as a 10x fragments.tsv.gz.

Stages, each in a fresh process (its peak RSS is its own: VmHWM), with the memory budget --memory:

1. fragments -> tokens (tokenize_fragments)
2. store -> tokens (tokenize_cells, parquet written block by block); serial and on a --workers LocalCluster
3. train on a sample (Region2VecDataset(tokens, sample_cells=)), 1 thread per core
4. encode every cell to zarr; serial and on the LocalCluster
5. encode the reference, then annotate every atlas cell (the query) against it; serial and on the LocalCluster
6. quality of the planted types: Leiden ARI on a 10,000-cell subsample, transfer accuracy on every cell

Printed per stage: seconds, throughput, peak RSS (MiB). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _synth  # noqa: E402
from _data import REPO  # noqa: E402


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stage(args) -> dict:
    """Run one stage in this process; returns what it measured."""
    import fastembed as fe
    from fastembed import settings
    from fastembed.annotate import annotate_celltypes
    from fastembed.distributed import local_cluster

    warnings.simplefilter("ignore")
    f = Path(args.folder)
    client = cluster = None
    if args.dask:
        from dask.distributed import Client

        cluster = local_cluster(args.workers, max(1, (os.cpu_count() or 1) // args.workers))
        client = Client(cluster)
    t = time.perf_counter()
    info: dict = {}
    try:
        if args.stage == "fragments":
            tok = fe.tokenize_fragments(
                f / "fragments.tsv.gz",
                f / "universe.bed",
                f / "frag_tokens.parquet",
                overwrite=True,
                memory=args.memory,
            )
            import pyarrow.parquet as pq

            s = json.loads(pq.ParquetFile(tok).schema_arrow.metadata[b"fastembed.fragments.stats"])
            info = {"cells": s["n_barcodes_kept"], "units": s["n_fragments"], "unit": "fragments"}
        elif args.stage == "tokenize":
            out = fe.tokenize_cells(
                f / "atlas.zarr",
                f / "universe.bed",
                f / "tokens.parquet",
                overwrite=True,
                client=client,
                memory=args.memory,
            )
            import pyarrow.parquet as pq

            # The stats from the footer: reading every token back is not part of the stage.
            meta = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"fastembed.tokenize.stats"])
            info = {"cells": meta["n_cells"], "units": meta["n_counts"], "unit": "nonzeros"}
        elif args.stage == "train":
            settings.MEMORY_BUDGET = args.memory  # what the training check compares against
            ds = fe.Region2VecDataset(f / "tokens.parquet", sample_cells=args.sample_cells, seed=0)
            epochs = args.epochs or None  # 0: the default, from the data
            model = fe.ScEmbed(embedding_dim=args.dim, seed=0).train(ds, epochs=epochs, progress=False)
            model.save(f / "model", overwrite=True)
            info = {"cells": len(ds), "units": ds.n_tokens, "unit": "tokens"}
        elif args.stage == "encode":
            model = fe.ScEmbed.from_pretrained(f / "model")
            name = "reference" if args.reference else "atlas"
            emb = model.encode(
                f / f"{name}.zarr",
                out=f / f"{name}_emb.zarr",
                overwrite=True,
                client=client,
                memory=args.memory,
                progress=False,
            )
            info = {"cells": emb.shape[0], "units": emb.shape[0], "unit": "cells"}
        elif args.stage == "annotate":
            table = annotate_celltypes(
                f / "atlas_emb.zarr",
                f / "reference_emb.zarr",
                confidence_key="confidence",
                client=client,
                memory=args.memory,
            )
            from fastembed.readers import read_obs

            truth = read_obs(f / "atlas.zarr", index=False)["cell_type"].astype(str).to_numpy()
            acc = float(np.mean(table["cell_type"].astype(str).to_numpy() == truth))
            info = {"cells": len(table), "units": len(table), "unit": "cells", "transfer_accuracy": acc}
        elif args.stage == "leiden":
            import zarr
            from _metrics import leiden_at_n_clusters

            from fastembed.readers import read_obs

            emb = zarr.open_group(str(f / "atlas_emb.zarr"), mode="r")["obsm"]["scembed_X"]
            n = emb.shape[0]
            pick = np.sort(np.random.default_rng(0).choice(n, min(10_000, n), replace=False))
            x = emb.oindex[pick, :]
            truth = read_obs(f / "atlas.zarr", index=False)["cell_type"].astype(str).to_numpy()[pick]
            q = leiden_at_n_clusters(x, truth, leiden_seeds=(0,))
            info = {"cells": len(pick), "units": len(pick), "unit": "cells", "leiden_ari": q["ari"]}
    finally:
        if client is not None:
            client.close()
            cluster.close()
    info["seconds"] = time.perf_counter() - t
    info["peak_rss_mib"] = _peak_mib()
    return info


def _run(name: str, args, *extra: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--folder",
        args.folder,
        "--memory",
        args.memory,
        "--sample-cells",
        str(args.sample_cells),
        "--epochs",
        str(args.epochs),
        "--dim",
        str(args.dim),
        "--workers",
        str(args.workers),
        *extra,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode:
        print(f"stage {name} {' '.join(extra)} FAILED:\n{res.stderr[-3000:]}", flush=True)
        return {}
    r = json.loads(res.stdout.strip().splitlines()[-1])
    label = name + (f" (Dask, {args.workers} workers)" if "--dask" in extra else "")
    label += " (reference)" if "--reference" in extra else ""
    rate = r["units"] / r["seconds"] if r["seconds"] else float("nan")
    quality = ", ".join(f"{k} {r[k]:.3f}" for k in ("transfer_accuracy", "leiden_ari") if k in r)
    print(
        f"| {label} | {r['cells']} | {r['seconds']:.1f} | {rate:,.0f} {r['unit']}/s | {r['peak_rss_mib']:.0f} | "
        f"{quality} |",
        flush=True,
    )
    return r


def generate(args) -> None:
    f = Path(args.folder)
    f.mkdir(parents=True, exist_ok=True)
    key = {
        "cells": args.cells,
        "fragment_cells": args.fragment_cells,
        "reference_cells": args.reference_cells,
        "median": args.median,
        "share": args.share,
        "generator": 2,
    }
    done = f / "generated.json"
    if done.exists() and json.loads(done.read_text()) == key:
        print(f"reusing the atlas in {f}")
        return
    stats = _synth.fit_real(median_regions=args.median)
    stats.program_share = args.share
    _synth.save_stats(stats, f / "stats.json")
    print(
        f"fitted: sigma(log regions per cell) {stats.sigma_log_regions:.3f} (granja2019 + demo), granja median "
        f"{stats.real_median_regions:.0f} of {stats.real_n_peaks} peaks; atlas median {args.median}, "
        f"{stats.n_regions} regions",
        flush=True,
    )
    atlas = _synth.Atlas(stats)
    _synth.write_universe(atlas, f / "universe.bed")
    r = _synth.write_store(atlas, f / "atlas.zarr", args.cells)
    print(
        f"atlas.zarr: {args.cells} cells, {r['nnz']} nonzeros, {r['seconds']:.0f} s "
        f"({r['nnz'] / r['seconds'] / 1e6:.2f} M nonzeros/s)",
        flush=True,
    )
    r = _synth.write_store(atlas, f / "reference.zarr", args.reference_cells, offset=10**9)
    print(f"reference.zarr: {args.reference_cells} cells, {r['seconds']:.0f} s", flush=True)
    r = _synth.write_fragments(atlas, f / "fragments.tsv.gz", args.fragment_cells)
    print(
        f"fragments.tsv.gz: {args.fragment_cells} cells, {r['fragments']} fragments, {r['seconds']:.0f} s "
        f"({r['fragments'] / r['seconds'] / 1e6:.2f} M lines/s)",
        flush=True,
    )
    done.write_text(json.dumps(key))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=1_000_000)
    p.add_argument("--fragment-cells", type=int, default=100_000)
    p.add_argument("--reference-cells", type=int, default=50_000)
    p.add_argument("--sample-cells", type=int, default=20_000)
    p.add_argument("--median", type=float, default=2_000)
    p.add_argument("--share", type=float, default=_synth.Stats.program_share, help="planted-program share")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=0, help="training epochs (0: the default, from the data)")
    p.add_argument(
        "--stages",
        default="fragments,tokenize,train,encode,reference,annotate,leiden",
        help="which stages to run (a rerun reuses what earlier stages wrote)",
    )
    p.add_argument("--memory", default="1GB")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--folder", default="/tmp/fastembed-atlas")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--dask", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(stage(args)))
        return
    import platform

    t = time.perf_counter()
    generate(args)
    print(f"generated in {time.perf_counter() - t:.0f} s; {platform.node()}, load {os.getloadavg()[0]:.1f}")
    print("| stage | cells | seconds | throughput | peak RSS MiB | quality |")
    print("|---|---|---|---|---|---|")
    dask = [] if args.no_dask else [("--dask",)]
    todo = set(args.stages.split(","))
    if "fragments" in todo:
        _run("fragments", args)
    for extra in [(), *dask] if "tokenize" in todo else []:
        _run("tokenize", args, *extra)
    if "train" in todo:
        _run("train", args)
    for extra in [(), *dask] if "encode" in todo else []:
        _run("encode", args, *extra)
    if "reference" in todo:
        _run("encode", args, "--reference")
    for extra in [(), *dask] if "annotate" in todo else []:
        _run("annotate", args, *extra)
    if "leiden" in todo:
        _run("leiden", args)


if __name__ == "__main__":
    main()
