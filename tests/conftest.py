"""Shared fixtures: where the real data lives.

The real scATAC data of the project sits beside the repository in ``../shared/data`` (see its README).
``FASTEMBED_SHARED_DATA`` overrides the location. Tests that need it are skipped, with the reason,
when it is absent; the bundled demo data (``fastembed.datasets``) is always available.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def demo_cells(n: int, seed: int):
    """``n`` cells of the bundled demo AnnData drawn without replacement by ``seed``, in file order (a copy)."""
    import numpy as np

    from fastembed.datasets import load_demo

    demo = load_demo()
    rows = np.sort(np.random.default_rng(seed).choice(demo.n_obs, n, replace=False))
    return demo[rows].copy()


def shared_data_dir() -> Path | None:
    env = os.environ.get("FASTEMBED_SHARED_DATA")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if (candidate / "granja2019_bmmc_hg19").is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "real data not found: set FASTEMBED_SHARED_DATA to the folder holding granja2019_bmmc_hg19"
        )
    return path


@pytest.fixture(scope="session")
def granja_dir(shared_data) -> Path:
    return shared_data / "granja2019_bmmc_hg19"


@pytest.fixture(scope="session")
def buenrostro_universe(shared_data) -> Path:
    return shared_data / "universe_buenrostro2018_hg19" / "peaks.bed"


@pytest.fixture(scope="session")
def demo_other_universe(tmp_path_factory) -> Path:
    """A universe BED made from the bundled demo's real peaks that is not those peaks, for fresh clones.

    Every other demo peak gives two regions, ``[start + 100, mid)`` and ``[mid, end + 300)``; the peaks
    in between get none. So a demo peak maps to zero, one or two regions, overlaps are partial (some
    shorter than 250 bp), and token ids differ from column indices, as with a real foreign universe.
    """
    from fastembed.datasets import demo_peaks_path
    from fastembed.universe import read_bed

    chroms, starts, ends = read_bed(demo_peaks_path())
    lines = []
    for c, s, e in zip(chroms[::2], starts[::2].tolist(), ends[::2].tolist(), strict=True):
        mid = (s + e) // 2
        lines.append(f"{c}\t{s + 100}\t{mid}\n{c}\t{mid}\t{e + 300}\n")
    path = tmp_path_factory.mktemp("universe") / "demo_other.bed"
    path.write_text("".join(lines))
    return path


@pytest.fixture
def fake_notebook(monkeypatch):
    """An IPython kernel as tqdm's notebook detection sees it, without widgets (so the bar is text)."""
    import sys
    import types

    shell_cls = type("ZMQInteractiveShell", (), {})
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell_cls()
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
