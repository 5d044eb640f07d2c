"""The mark fastembed leaves in the AnnData outputs it writes (``uns["fastembed"]``), written in one place.

The mark says which version wrote the file and where the vectors are; the safe-output checks
(:mod:`fastembed.storage.atomic`) look for it before they let ``overwrite`` replace an ``.h5ad`` or zarr store.
"""

from __future__ import annotations

from fastembed._version import __version__

UNS_KEY = "fastembed"
"""The ``uns`` entry that marks an AnnData written by fastembed."""


def mark(adata, embedding_key: str, **extra) -> None:
    """Set ``adata.uns["fastembed"]`` to ``{"version", "embedding_key", **extra}`` (in place).

    ``extra`` holds what the writer adds: the model folder it encoded with (``model=``), the pooling and the
    model config (``pooling=``, ``config=``), all plain values that AnnData can store.
    """
    adata.uns[UNS_KEY] = {"version": __version__, "embedding_key": embedding_key, **extra}


def uns_safe(value):
    """``value`` (a settings dict, nested dicts included) without the None values that AnnData cannot write to
    ``uns``; an absent key reads back as None. Other values are returned as they are."""
    if isinstance(value, dict):
        return {k: uns_safe(v) for k, v in value.items() if v is not None}
    return value
