"""What each entry point accepts, said once, and the refusal of a fragments file where cells x peaks are needed.

A fragments file handed to ``encode`` or ``tokenize_cells`` used to fail deep in an AnnData reader with a message
naming neither what is accepted nor the step that was skipped; these messages name both.
"""

from __future__ import annotations

import os

from fastembed.common.suffix import has_suffix

FRAGMENT_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bgz")

ENCODE_ACCEPTS = (
    "an AnnData of cells x peaks (in memory, or an .h5ad or .zarr path), a token parquet (.parquet, from "
    "tokenize), a TokenizedCells or a Region2VecDataset"
)
TOKENIZE_ACCEPTS = "an AnnData of cells x peaks (in memory, or an .h5ad or .zarr path)"


def refuse_fragments(data, what: str, accepts: str) -> None:
    """Raise a ValueError naming the accepted inputs and the step to run first when ``data`` is a fragments file.

    Parameters
    ----------
    data
        The input as given (anything; only a path with a fragments file ending is refused).
    what : str
        The call that was given it (e.g. ``"encode"``).
    accepts : str
        What that call accepts, for the message.
    """
    if (
        isinstance(data, str | os.PathLike)
        and has_suffix(data, *FRAGMENT_SUFFIXES)
        and not os.path.isdir(data)
    ):
        raise ValueError(
            f"'{os.fspath(data)}' is a fragments file; {what} takes {accepts}. Tokenize it first: "
            "fe.tokenize_fragments(path, universe) (command line: fastembed tokenize FRAGMENTS --universe BED "
            "--output tokens.parquet) and pass the tokens, or read it as a cells x regions AnnData with "
            "fe.pp.read_fragments(path, universe)"
        )
