"""Progress bars: shown in a notebook (whose stderr is not a terminal), silent in logs and CI."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fastembed._progress import check_progress, in_notebook, progress_bar


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


def test_only_bools_switch_progress(fake_notebook):
    """The one check every public progress= goes through, also for callers that reach progress_bar directly."""
    assert check_progress(True) is True and check_progress(np.False_) is False
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match=f"progress must be True or False, got {bad!r}"):
            check_progress(bad)
        with pytest.raises(TypeError, match="progress must be True or False"):
            progress_bar(3, desc="x", unit="step", enabled=bad)
