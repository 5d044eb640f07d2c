"""fastembed: fast scEmbed (Region2Vec) cell embeddings for single-cell ATAC-seq, in numba."""

from . import io as io  # the contract's fastembed.io, reachable as fe.io after `import fastembed as fe`
from ._version import __version__
from .fragments import tokenize_fragments
from .readers import read_10x, read_mtx
from .reference import Reference, annotate_with_reference, build_reference
from .region2vec import Region2VecDataset
from .scembed import ScEmbed, annotate_celltypes
from .tokenize import tokenize_cells
from .tokens import TokenizedCells
from .universe import Universe

__all__ = [
    "__version__",
    "TokenizedCells",
    "Universe",
    "Region2VecDataset",
    "ScEmbed",
    "Reference",
    "annotate_with_reference",
    "build_reference",
    "annotate_celltypes",
    "read_10x",
    "read_mtx",
    "tokenize_cells",
    "tokenize_fragments",
]
