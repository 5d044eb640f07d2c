"""Progress bars that show where users look: a terminal, or a Jupyter notebook; silent in logs and CI."""

from __future__ import annotations

import html
import sys
import time


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session, where stderr is not a terminal but is shown to the user."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def check_progress(progress, name: str = "progress") -> bool:
    """A ``progress=`` argument (or another on/off switch, called ``name``) as a bool: True or False (numpy's
    bools too), anything else a TypeError.

    The one check of every public ``progress=`` (and of :func:`progress_bar`) and of the demo's ``quiet=``:
    truth-testing would take ``progress="no"`` (or ``"False"``, ``1``) for True and show the bars.
    """
    import numpy as np

    if isinstance(progress, bool | np.bool_):
        return bool(progress)
    raise TypeError(f"{name} must be True or False, got {progress!r}"[:300])


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar, or None when progress is off.

    In a notebook it is a :class:`NotebookBar`, one output updated in place (with or without ipywidgets);
    elsewhere a text bar on stderr only if stderr is a terminal, so logs, pipes and CI stay quiet. ``TQDM_DISABLE=1`` in the environment turns every bar off.

    Parameters
    ----------
    total : int
        Steps (e.g. epochs or cells).
    desc, unit : str
        Label and unit of the bar.
    enabled : bool
        False returns None (the callers' ``progress=False``); not a bool is a TypeError (:func:`check_progress`).
    """
    import os

    if not check_progress(enabled) or os.environ.get("TQDM_DISABLE", "").strip() not in ("", "0"):
        return None
    if in_notebook():
        try:
            return NotebookBar(total, desc=desc, unit=unit)
        except ImportError:  # no IPython.display: tqdm's text bar on stderr
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=False)
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal.
    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr)


class NotebookBar:
    """A progress bar for Jupyter that is one output, updated in place, whose saved form is its final state.

    Why not tqdm's: without ipywidgets its text bar on stderr is saved as one stream output per refresh (dozens
    of lines in a saved or converted notebook); with ipywidgets the widget's saved text fallback is the bar as
    first drawn (0%). This bar is a display output with a ``display_id`` (plain text plus an HTML ``<progress>``)
    that each refresh replaces (``update_display_data``), so the live notebook shows it moving and the saved
    notebook holds one line per bar, at its last state. It needs IPython, not ipywidgets.

    The subset of tqdm's interface the package uses: ``update``, ``set_postfix``, ``refresh``, ``close``,
    ``n``, ``total``, ``disable``.
    """

    def __init__(self, total: int, *, desc: str, unit: str, mininterval: float = 0.5):
        from IPython.display import display

        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = 0
        self.disable = False
        self.mininterval = mininterval
        self._postfix = ""
        self._start = self._last = time.monotonic()
        self._closed = False
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _text(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = self.n / elapsed if elapsed > 0 and self.n else 0.0
        pct = 100 * self.n / self.total if self.total else 100.0
        left = (self.total - self.n) / rate if rate else 0.0
        post = f", {self._postfix}" if self._postfix else ""
        return (
            f"{self.desc}: {pct:3.0f}% {self.n}/{self.total} {self.unit} [{elapsed:.1f} s elapsed"
            f"{f', {left:.1f} s left' if self.n < self.total and rate else ''}, {rate:.3g} {self.unit}/s{post}]"
        )

    def _bundle(self) -> dict:
        text = self._text()
        return {
            "text/plain": text,
            "text/html": f"<progress value='{self.n}' max='{max(self.total, 1)}'></progress> "
            f"<code>{html.escape(text)}</code>",
        }

    def refresh(self) -> None:
        """Redraw now."""
        self._last = time.monotonic()
        self._handle.update(self._bundle(), raw=True)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps; redraw at most every ``mininterval`` seconds (and at the end)."""
        self.n += n
        if self.n >= self.total or time.monotonic() - self._last >= self.mininterval:
            self.refresh()

    def set_postfix(self, refresh: bool = True, **values) -> None:
        """Show ``key=value`` pairs after the counts (as tqdm's ``set_postfix``)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if refresh:
            self.refresh()

    def close(self) -> None:
        """Draw the final state once; later calls do nothing."""
        if not self._closed:
            self._closed = True
            self.refresh()
