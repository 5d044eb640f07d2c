"""Progress bars that show where users look: a terminal, or a Jupyter notebook; silent in logs and CI."""

from __future__ import annotations

import sys


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

    In a notebook it is a widget bar (``tqdm.notebook``) when ipywidgets is installed, else a text bar on
    stderr, which Jupyter shows; elsewhere a text bar on stderr only if stderr is a terminal, so logs, pipes
    and CI stay quiet. ``TQDM_DISABLE=1`` in the environment turns every bar off.

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
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(total=total, desc=desc, unit=unit)
        except ImportError:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=False)
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal.
    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr)
