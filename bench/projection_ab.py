"""The cell projection's axis weighting (``fastembed.projection.AXIS_POWER``) A/B on the same trained models.

    python bench/projection_ab.py [--datasets granja] [--seeds 0,1] [--powers 1.0,0.5] [--threads 2]

Each seed trains fastembed's defaults once per mode (transductive: all cells; inductive on ``granja``: the
reference donor D6T1 only, the query donor encoded through the model), then refits the projection from the same
training cells with each power and encodes, so the differences are the weighting's alone. Quality is
``time_to_quality.evaluate`` (Leiden ARI at the number of types, transductive only; 10-NN transfer D6T1 -> D5T1,
centred and plain cosine, or 5-fold cross-validation without donors). Prints one JSON row per run and the paired
differences to the first power.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import time_to_quality as ttq
from _data import REFERENCE_DONOR, machine


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="granja")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--powers", default="1.0,0.5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import fastembed as fe
    from fastembed.pooling import weighted_mean_pool
    from fastembed.projection import fit_projection

    powers = [float(p) for p in args.powers.split(",")]
    print(f"# projection A/B — {machine()}, powers {powers}", flush=True)
    rows = []
    for ds in args.datasets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            adata = ttq.load_dataset(ds, seed)
            adata.uns["draw"] = seed
            modes = [("transductive", None)]
            if "donor" in adata.obs and ds == "granja":
                modes.append(("inductive", (adata.obs["donor"] == REFERENCE_DONOR).to_numpy()))
            uni = ttq._universe(adata)
            every = fe.tokenize_cells(adata, uni)
            for mode, mask in modes:
                train = every if mask is None else fe.tokenize_cells(adata[mask], uni)
                model = fe.ScEmbed(seed=seed, threads=args.threads).train(train, progress=False)
                cells, empty = weighted_mean_pool(
                    train.indptr, train.indices, model.region_vectors, model.pooling_weights("mean")
                )
                for p in powers:
                    model._projection = fit_projection(cells[~empty], model.n_components, power=p)
                    emb = model.encode(every)
                    q = ttq.evaluate(emb, adata, centred_only=False, fit_mask=mask)
                    row = {"dataset": ds, "mode": mode, "seed": seed, "power": p, **q}
                    rows.append(row)
                    print("  " + json.dumps(row), flush=True)
    print(
        "\n| dataset | mode | power | ARI | accuracy (centred) | accuracy (plain) | minus power "
        f"{powers[0]}: ARI | centred | plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for ds, mode in dict.fromkeys((r["dataset"], r["mode"]) for r in rows):
        base = {r["seed"]: r for r in rows if (r["dataset"], r["mode"], r["power"]) == (ds, mode, powers[0])}
        for p in powers:
            sel = {r["seed"]: r for r in rows if (r["dataset"], r["mode"], r["power"]) == (ds, mode, p)}
            cells, diffs = [], []
            for key in ("ari", "accuracy", "accuracy_plain"):
                v = [r[key] for r in sel.values() if key in r]
                cells.append(f"{np.mean(v):.3f}" if v else "—")
                d = [sel[s][key] - base[s][key] for s in sel if key in sel[s]]
                diffs.append(
                    "—"
                    if not d or p == powers[0]
                    else f"{np.mean(d):+.3f}"
                    + (f" ± {np.std(d, ddof=1) / np.sqrt(len(d)):.3f}" if len(d) > 1 else "")
                )
            print(f"| {ds} | {mode} | {p} | {' | '.join(cells)} | {' | '.join(diffs)} |")


if __name__ == "__main__":
    main()
