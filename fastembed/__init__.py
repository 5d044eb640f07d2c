"""fastembed: fast scEmbed (Region2Vec) cell embeddings for single-cell ATAC-seq, in numba."""

# _aliases, on import: the flat layout's paths (fastembed.sgns, fastembed.annotate ...) keep working;
# io: the contract's fastembed.io, reachable as fe.io after `import fastembed as fe`
from fastembed import _aliases, io  # noqa: F401
from fastembed import pp as pp  # scanpy-style steps: fe.pp.tokenize, fe.pp.read_fragments
from fastembed import tl as tl  # fe.tl.scembed(adata): embedding into adata.obsm
from fastembed._version import __version__
from fastembed.annotation.annotate import annotate_celltypes_table
from fastembed.genome.fragments import tokenize_fragments
from fastembed.genome.readers import read_10x, read_mtx
from fastembed.genome.tokenize import tokenize_cells
from fastembed.genome.tokens import TokenizedCells
from fastembed.genome.universe import Universe
from fastembed.model import modelfolder  # noqa: F401  (registers the "model" output kind before any check)
from fastembed.reference import Reference, annotate_with_reference, build_reference
from fastembed.region2vec import Region2VecDataset
from fastembed.scembed import ScEmbed, annotate_celltypes

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
    "annotate_celltypes_table",
    "read_10x",
    "read_mtx",
    "tokenize_cells",
    "tokenize_fragments",
]


def __getattr__(name: str):
    # ``fastembed.sgns`` after a bare ``import fastembed``: the old flat module, imported on first use
    module = _aliases.old_module(name)
    if module is None:
        raise AttributeError(f"module 'fastembed' has no attribute {name!r}")
    return module
