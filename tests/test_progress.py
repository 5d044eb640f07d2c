"""Progress bars: shown in a notebook (whose stderr is not a terminal), silent in logs and CI."""

from __future__ import annotations

import sys
import types

from fastembed._progress import in_notebook, progress_bar


def test_not_a_notebook_and_not_a_terminal_is_silent(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not in_notebook()
    bar = progress_bar(3, desc="x", unit="step")  # pytest's stderr is not a terminal
    assert bar is None or bar.disable


def test_notebook_shows_a_bar(fake_notebook):
    assert in_notebook()
    bar = progress_bar(3, desc="x", unit="step")
    assert bar is not None and not bar.disable
    bar.close()


def test_terminal_ipython_is_not_a_notebook(monkeypatch):
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: type("TerminalInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not in_notebook()


def test_off_switches(fake_notebook, monkeypatch):
    assert progress_bar(3, desc="x", unit="step", enabled=False) is None
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(3, desc="x", unit="step") is None
