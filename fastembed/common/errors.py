"""Error types that carry what a message is about, so that each face can word it for its users.

Library messages speak Python: ``embedding_dim must be an integer >= 1, got 0``, ``pass overwrite=True``. The
command line shows the same problems with its flags (``--embedding-dim must be ...``, ``pass --overwrite``). It
does so from the data these errors carry, never by parsing their text:

* :class:`Keyword`: a keyword argument a message tells the user to set (``overwrite=True``, ``layer=``); it
  formats as Python (``str(kw)``) inside the message, and :meth:`Keyword.as_flag` spells it as a flag.
* :class:`HintedError`: an error naming such keywords (:attr:`HintedError.keywords`). Its subclasses keep the
  built-in types callers catch: :class:`ParameterError` (a ``ValueError``: one argument out of its range, with
  the parameter's name and what it must be), :class:`HintedValueError`, :class:`HintedKeyError` and
  :class:`OutputExistsError` (a ``FileExistsError`` carrying the path).

They survive pickling with what they carry (Dask sends a worker's error back that way).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Keyword",
    "HintedError",
    "HintedValueError",
    "HintedKeyError",
    "ParameterError",
    "OutputExistsError",
]


@dataclass(frozen=True)
class Keyword:
    """A keyword argument named in a message: ``str()`` is its Python spelling, :meth:`as_flag` the flag's.

    ``value``: ``...`` (the default) for a bare ``name=`` whose value is left to the user; True for a switch
    (``overwrite=True``); a str or number for a value to pass. ``placeholder``: the value is a description such
    as ``<the BED file>``, shown as it is on both sides.
    """

    name: str
    value: object = ...
    placeholder: bool = False

    def __str__(self) -> str:
        if self.value is ...:
            return f"{self.name}="
        if self.placeholder or not isinstance(self.value, str):
            return f"{self.name}={self.value}"
        return f"{self.name}={self.value!r}"

    def as_flag(self, flag: str) -> str:
        """The same hint at the command line: ``--overwrite``, ``--layer``, ``--chrom-style add-chr``."""
        if self.value is ... or self.value is True:
            return flag
        return f"{flag} {self.value}"


def _rebuild(cls, args, state):
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class HintedError(Exception):
    """Mixin of errors whose message names keyword arguments the user can set (:attr:`keywords`)."""

    keywords: tuple[Keyword, ...] = ()

    def __init__(self, *args, keywords=()):
        super().__init__(*args)
        self.keywords = tuple(keywords)

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class HintedValueError(HintedError, ValueError):
    """A ``ValueError`` whose message names keywords to set (``pass layer= with one of its layers``)."""


class HintedKeyError(HintedError, KeyError):
    """A ``KeyError`` (a missing column or ``obsm`` key) whose message names keywords to set."""


class OutputExistsError(HintedError, FileExistsError):
    """An output that exists and may be replaced only when asked (``overwrite=True``); ``path`` is the output."""

    def __init__(self, message: str, path, keywords=()):
        super().__init__(message, keywords=keywords)
        self.path = path


class ParameterError(HintedError, ValueError):
    """An argument out of its range: ``{param} must be {requirement}[ or None], got {value!r}``.

    Attributes
    ----------
    param : str
        The Python parameter's name (``embedding_dim``).
    requirement : str
        What it must be (``an integer >= 1``); it may hold :class:`Keyword` hints of its own, in ``keywords``.
    value
        The value given.
    or_none : bool
        The parameter may also be None (left out, at the command line: so a flag's message omits it).
    """

    def __init__(self, param: str, requirement: str, value, *, or_none: bool = False, keywords=()):
        self.param, self.requirement, self.value, self.or_none = param, requirement, value, or_none
        super().__init__(self.worded(param, or_none), keywords=keywords)

    def worded(self, subject: str, or_none: bool | None = None) -> str:
        """The message with ``subject`` for the parameter's name (a flag, at the command line), cut to 300
        characters so that a huge value cannot flood a log."""
        none = self.or_none if or_none is None else or_none
        return f"{subject} must be {self.requirement}{' or None' if none else ''}, got {self.value!r}"[:300]
