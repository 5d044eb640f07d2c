"""The flat layout's import paths (before the rooms of issue 30), kept working as the SAME module objects.

``fastembed.sgns``, ``fastembed.annotate``, ``from fastembed import distributed`` ... still import, and each is the
very module that now lives in a room (``fastembed.kernels.sgns`` ...), not a copy: code and tests that set a module
constant through the old name change what the implementation reads. One finder on ``sys.meta_path`` answers for
every old name (no shim file per module), so a moved module is imported once, under its new name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old dotted name -> the module's name in the rooms
OLD_NAMES = {
    "fastembed._threads": "fastembed.common.threads",
    "fastembed._progress": "fastembed.common.progress",
    "fastembed._warn": "fastembed.common.warn",
    "fastembed._suffix": "fastembed.common.suffix",
    "fastembed.sgns": "fastembed.kernels.sgns",
    "fastembed.alias": "fastembed.kernels.alias",
    "fastembed.pooling": "fastembed.kernels.pooling",
    "fastembed.projection": "fastembed.kernels.projection",
    "fastembed.warmstart": "fastembed.kernels.warmstart",
    "fastembed._rng": "fastembed.kernels._rng",
    "fastembed._counter": "fastembed.kernels._counter",
    "fastembed._prefetch": "fastembed.kernels._prefetch",
    "fastembed._atomic": "fastembed.storage.atomic",
    "fastembed.checkpoint": "fastembed.storage.checkpoint",
    "fastembed.universe": "fastembed.genome.universe",
    "fastembed.readers": "fastembed.genome.readers",
    "fastembed.tokens": "fastembed.genome.tokens",
    "fastembed.tokenize": "fastembed.genome.tokenize",
    "fastembed.fragments": "fastembed.genome.fragments",
    "fastembed.modelfolder": "fastembed.model.modelfolder",
    "fastembed.annotate": "fastembed.annotation.annotate",
    "fastembed.distributed": "fastembed.backends.dask",
    "fastembed.cli": "fastembed.app.cli",
    "fastembed.demo": "fastembed.app.demo",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module of its new name."""

    def __init__(self):
        self._own_spec: dict = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in OLD_NAMES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(OLD_NAMES[spec.name])
        self._own_spec[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system has just set __spec__ to the old name's; the module keeps its own (pickling, reload)
        module.__spec__ = self._own_spec.pop(module.__name__, module.__spec__)


_FINDER = _Alias()


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(
            0, _FINDER
        )  # ahead of an editable install's finder, which would find an old checkout


def old_module(name: str):
    """The module an old top-level name ``name`` (``"sgns"``) stands for, imported; ``None`` if not an old name."""
    full = f"fastembed.{name}"
    if full not in OLD_NAMES:
        return None
    return importlib.import_module(full)


install()
