"""Warnings attributed to the user's line: the first frame outside the fastembed package.

A fixed ``stacklevel`` is right for one call path only; the same helper reached from ``tokenize_cells`` and from
``ScEmbed.encode`` sits at different depths, and a wrong level points a notebook user at fastembed's source or at
IPython's internals instead of their own cell.
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # fastembed/, not common/


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the nearest caller outside fastembed."""
    frame = sys._getframe(1)
    level = 2  # stacklevel=2 names warn()'s caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level - 1 if frame is None else level)
