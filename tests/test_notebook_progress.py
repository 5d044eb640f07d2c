"""Notebook use, end to end: examples/scanpy_quickstart.ipynb executed twice in one kernel, and its saved outputs
checked (one progress line per bar, with or without ipywidgets; nothing on stderr: no tqdm text bars, no library
warnings)."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
from conftest import REPO

from fastembed._progress import NotebookBar, progress_bar

NOTEBOOK = REPO / "examples" / "scanpy_quickstart.ipynb"


class _Handle:
    def __init__(self, log):
        self.log = log

    def update(self, obj, raw=False):
        self.log.append(("update", obj))


@pytest.fixture
def fake_display(fake_notebook, monkeypatch):
    """fake_notebook plus an IPython.display that records what is shown."""
    log = []
    display_mod = types.ModuleType("IPython.display")

    def display(obj, raw=False, display_id=None):
        log.append(("display", obj))
        return _Handle(log)

    display_mod.display = display
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    return log


def test_notebook_bar_is_one_output_updated_in_place(fake_display):
    bar = progress_bar(40, desc="training", unit="epoch")
    assert isinstance(bar, NotebookBar) and not bar.disable
    for _ in range(40):
        bar.set_postfix(lr="1e-3", refresh=False)
        bar.update(1)
    bar.close()
    bar.close()
    assert [kind for kind, _ in fake_display].count("display") == 1
    final = fake_display[-1][1]
    assert final["text/plain"].startswith("training: 100% 40/40 epoch") and "lr=1e-3" in final["text/plain"]
    assert "<progress value='40' max='40'>" in final["text/html"]
    # refreshes are throttled: far fewer redraws than steps
    assert len(fake_display) < 10


def _execute_twice(path, out):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra")
    pytest.importorskip("ipykernel", reason="ipykernel is in the test extra")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(out.parent)}}
    )
    # The kernel gets the user's environment, less what other tests leave in ours (the command line sets
    # TQDM_DISABLE for --quiet runs in this process).
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    with client.setup_kernel(env=env):
        for _ in range(2):  # a user re-running every cell: no error, results replaced
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
    nbformat.write(nb, out)
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return _execute_twice(NOTEBOOK, tmp_path_factory.mktemp("nb") / "executed.ipynb")


def check_saved_notebook(path):
    """The saved notebook's outputs as a reader sees them; returns the progress lines."""
    nb = json.loads(path.read_text())
    bars = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell["outputs"]:
            assert out["output_type"] != "error", out
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"), "".join(out["text"])
            text = "".join(out.get("data", {}).get("text/plain", ""))
            if out["output_type"] == "display_data" and text.startswith(("training:", "encoding:")):
                bars.append(text)
    return nb, bars


def test_notebook_runs_twice_and_saves_one_line_per_bar(executed):
    nb, bars = check_saved_notebook(executed)
    # fe.tl.scembed trains and encodes (two bars); the query cell encodes (one bar)
    assert [b.split(":")[0] for b in bars] == ["training", "encoding", "encoding"]
    for b in bars:
        assert "\n" not in b.strip() and " 100% " in b
    transfer = nb["cells"][-1]["outputs"][-1]["data"]["text/plain"]
    assert float("".join(transfer)) > 0.5


def test_notebook_renders_to_html_with_one_bar_each(executed):
    nbconvert = pytest.importorskip("nbconvert", reason="nbconvert renders the notebook to HTML")
    body, _ = nbconvert.HTMLExporter().from_filename(str(executed))
    assert body.count("<progress ") == 3  # attributes are reordered by the exporter
    assert body.count("training: 100%") == 1 and body.count("encoding: 100%") == 2
