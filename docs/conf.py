"""Sphinx configuration of the fastembed documentation (Sphinx + MyST markdown + napoleon for numpy docstrings).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``. Nothing is executed here: the tutorials'
code runs in ``tests/test_docs.py``, so the build stays fast and needs no data beyond the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout, not an installed copy

from fastembed._version import __version__  # noqa: E402

project = "fastembed"
author = "fastembed developers"
copyright = "2026, fastembed developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: one generated page per public name, members in source order, no private names.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "member-order": "bysource", "undoc-members": False}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # class "Attributes" as fields, so autodoc does not describe each attribute twice

html_theme = "furo"
html_title = f"fastembed {release}"
html_static_path: list[str] = []
# The class page without a second, bare copy of __init__ (its parameters are in the class docstring).
templates_path = ["_templates"]

# Type fields such as "np.ndarray of int64, shape (n_cells + 1,)" make Sphinx try to link each word; a word
# like n_cells matches attributes of several classes and warns "more than one target". Those links are noise.
suppress_warnings = ["ref.python"]
