"""Shared helpers of the benchmarks: where the real data is, and the granja2019 loader."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REFERENCE_DONOR, QUERY_DONOR = "D6T1", "D5T1"


def shared_data() -> Path:
    """The real data folder: $FASTEMBED_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("FASTEMBED_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_granja():
    """granja2019 (14,125 cells x 10,000 peaks) as an AnnData with binary X and obs cell_type, donor.

    Donor comes from the barcode: BMM_R1_* = D5T1 (query), BMM_R2_* = D6T1 (reference).
    """
    import fastembed as fe

    d = shared_data() / "granja2019_bmmc_hg19"
    if not d.is_dir():
        raise SystemExit(f"granja2019 not found under {shared_data()}; set FASTEMBED_SHARED_DATA")
    adata = fe.read_mtx(d / "matrix.mtx.gz", d / "barcodes.tsv", d / "peaks.bed")
    adata.X.data[:] = 1
    adata.X = adata.X.astype(np.float32)
    labels = pd.read_csv(d / "labels.tsv", sep="\t", header=None, index_col=0)[1]
    adata.obs["cell_type"] = pd.Categorical(labels.loc[adata.obs_names].to_numpy())
    bc = adata.obs_names.to_series()
    adata.obs["donor"] = pd.Categorical(np.where(bc.str.startswith("BMM_R1_"), QUERY_DONOR, REFERENCE_DONOR))
    return adata


def machine() -> str:
    """One line naming the machine, date and main versions, for RESULTS.md."""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (StopIteration, OSError):
        model = platform.processor() or platform.machine()
    import numba

    return (
        f"{time.strftime('%Y-%m-%d')}, {model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}"
    )
