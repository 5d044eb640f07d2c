"""fastembed: fast scEmbed (Region2Vec) cell embeddings for single-cell ATAC-seq, in numba."""

from . import io as io  # the contract's fastembed.io, reachable as fe.io after `import fastembed as fe`
from . import pp as pp  # scanpy-style steps: fe.pp.tokenize, fe.pp.read_fragments
from . import tl as tl  # fe.tl.scembed(adata): embedding into adata.obsm
from ._version import __version__
from .fragments import tokenize_fragments
from .readers import read_10x, read_mtx
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
    "annotate_celltypes",
    "read_10x",
    "read_mtx",
    "tokenize_cells",
    "tokenize_fragments",
]
