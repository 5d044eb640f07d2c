"""Model folders on disk: fastembed's own layout and the geniml / Hugging Face scEmbed layout.

fastembed layout::

    config.yaml          format: fastembed, embedding_dim, vocab_size, training parameters, versions
    universe.bed         N regions; row i = token i (the 7 special tokens are implied as ids N..N+6)
    region_vectors.npy   float32 (vocab_size, embedding_dim): the input vectors used for encoding
    output_vectors.npy   float32 (vocab_size, embedding_dim), optional
    token_counts.npy     int64 (vocab_size,): cells containing each token in training, optional

geniml layout (what ``geniml``'s ``export`` writes and Hugging Face scEmbed models hold)::

    checkpoint.pt        torch state dict {"projection.weight": float32 (vocab_size, embedding_dim)}
    config.yaml          vocab_size, embedding_dim (legacy: embedding_size), maybe pooling_method
    universe.bed         the regions; legacy exports end with placeholder lines for the special tokens
                         (chrUNK/chrPAD/chrMASK/chrCLS/chrEOS/chrBOS/chrSEP with start = end = 0)

All ``.npy`` files are read with ``allow_pickle=False``; the checkpoint with :mod:`fastembed.checkpoint`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ._atomic import atomic_dir
from ._version import __version__
from .checkpoint import read_torch_state_dict, write_torch_state_dict
from .universe import N_SPECIAL, Universe, read_bed

__all__ = ["ModelFolder", "read_model_folder", "write_model_folder"]

CONFIG = "config.yaml"
UNIVERSE = "universe.bed"
REGION_VECTORS = "region_vectors.npy"
OUTPUT_VECTORS = "output_vectors.npy"
TOKEN_COUNTS = "token_counts.npy"
CHECKPOINT = "checkpoint.pt"
WEIGHT_KEY = "projection.weight"

# gtars wrote special tokens into legacy universe files as these chromosomes (start = end = 0).
_PLACEHOLDER_CHROMS = {"chrunk", "chrpad", "chrmask", "chrcls", "chreos", "chrbos", "chrsep",
                       "<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>"}


@dataclass
class ModelFolder:
    """The contents of a model folder.

    Attributes
    ----------
    config : dict
        ``config.yaml`` as read (``embedding_dim`` always set; the legacy ``embedding_size`` is mapped).
    weights : np.ndarray of float32, shape (vocab_size, embedding_dim)
        Region (input) vectors; rows ``N..N+6`` are the special tokens.
    universe : Universe
        The N regions, token order.
    format : str
        ``"fastembed"`` or ``"geniml"``.
    token_counts : np.ndarray of int64, shape (vocab_size,), or None
    output_weights : np.ndarray of float32, shape (vocab_size, embedding_dim), or None
    """

    config: dict
    weights: np.ndarray
    universe: Universe
    format: str = "fastembed"
    token_counts: np.ndarray | None = None
    output_weights: np.ndarray | None = None


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"model folder '{path.parent}' has no {CONFIG}")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"model config '{path}' is not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model config '{path}' must be a mapping of keys to values")
    return config


def _read_universe(path: Path) -> tuple[Universe, int]:
    """The universe without trailing special-token placeholder lines, and how many were stripped."""
    if not path.is_file():
        raise FileNotFoundError(f"model folder '{path.parent}' has no {UNIVERSE}")
    chroms, starts, ends = read_bed(path, what="universe")
    placeholder = np.array([str(c).lower() in _PLACEHOLDER_CHROMS for c in chroms], dtype=bool)
    n_regions = int(np.argmax(placeholder)) if placeholder.any() else placeholder.size
    if placeholder[n_regions:].size and not placeholder[n_regions:].all():
        raise ValueError(f"universe '{path}': special-token placeholder lines (e.g. chrUNK) must all come after "
                         f"the regions; line {n_regions + 1} is one but a region follows it")
    if n_regions == 0:
        raise ValueError(f"universe '{path}' holds no regions")
    uni = Universe.from_arrays(chroms[:n_regions], starts[:n_regions], ends[:n_regions], source=str(path))
    return uni, int(placeholder.size - n_regions)


def _load_npy(path: Path, *, required: bool) -> np.ndarray | None:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"model folder '{path.parent}' has no {path.name}")
        return None
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"'{path}' is not a plain numpy array file ({err})") from None


def read_model_folder(directory: str | os.PathLike) -> ModelFolder:
    """Read a model folder in fastembed's or geniml's layout (detected from the files present).

    Parameters
    ----------
    directory
        The folder.

    Returns
    -------
    ModelFolder
        Weights of shape ``(len(universe) + 7, embedding_dim)``: a geniml model saved without special-token
        rows gets 7 zero rows appended, so token ids keep their meaning.

    Raises
    ------
    FileNotFoundError
        The folder or one of its required files is missing (the file is named).
    ValueError
        A file disagrees with the others (e.g. weight rows vs ``vocab_size`` in config.yaml, or vs the
        regions of universe.bed); the message names the file and what was expected.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder '{directory}' does not exist")
    config = _read_config(directory / CONFIG)
    universe, n_placeholders = _read_universe(directory / UNIVERSE)
    n = len(universe)
    if (directory / REGION_VECTORS).is_file():
        fmt = "fastembed"
        weights = _load_npy(directory / REGION_VECTORS, required=True)
        output = _load_npy(directory / OUTPUT_VECTORS, required=False)
        counts = _load_npy(directory / TOKEN_COUNTS, required=False)
        weight_file = REGION_VECTORS
    elif (directory / CHECKPOINT).is_file():
        fmt = "geniml"
        tensors = read_torch_state_dict(directory / CHECKPOINT)
        key = WEIGHT_KEY if WEIGHT_KEY in tensors else next((k for k in tensors if k.endswith(WEIGHT_KEY)), None)
        if key is None:
            raise ValueError(f"checkpoint '{directory / CHECKPOINT}' has no '{WEIGHT_KEY}' tensor "
                             f"(tensors: {', '.join(tensors)})")
        weights, output, counts = tensors[key], None, None
        weight_file = CHECKPOINT
    else:
        raise FileNotFoundError(f"model folder '{directory}' has neither {REGION_VECTORS} nor {CHECKPOINT}")

    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise ValueError(f"'{directory / weight_file}': expected a 2-d float matrix (vocab_size x embedding_dim), "
                         f"got {weights.dtype} of shape {weights.shape}")
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    rows, dim = weights.shape
    dim_cfg = config.get("embedding_dim", config.get("embedding_size"))
    if dim_cfg is not None and int(dim_cfg) != dim:
        raise ValueError(f"'{directory / CONFIG}' says embedding_dim {dim_cfg} but '{directory / weight_file}' has "
                         f"vectors of length {dim}")
    vocab_cfg = config.get("vocab_size")
    if vocab_cfg is not None and int(vocab_cfg) != rows:
        raise ValueError(f"'{directory / CONFIG}' says vocab_size {vocab_cfg} but '{directory / weight_file}' has "
                         f"{rows} rows")
    if rows == n:  # no special-token rows (older geniml models): keep ids, specials get zero vectors
        weights = np.vstack([weights, np.zeros((N_SPECIAL, dim), dtype=np.float32)])
    elif rows != n + N_SPECIAL:
        raise ValueError(
            f"'{directory / UNIVERSE}' has {n} regions"
            f"{f' (plus {n_placeholders} special-token lines)' if n_placeholders else ''}, so the weights need "
            f"{n + N_SPECIAL} rows (regions + 7 special tokens), but '{directory / weight_file}' has {rows}"
        )
    for name, extra, shape in ((OUTPUT_VECTORS, output, weights.shape), (TOKEN_COUNTS, counts, (weights.shape[0],))):
        if extra is not None and extra.shape != shape:
            raise ValueError(f"'{directory / name}' has shape {extra.shape}; expected {shape}")
    if output is not None:
        output = np.ascontiguousarray(output, dtype=np.float32)
    if counts is not None:
        counts = np.asarray(counts, dtype=np.int64)
    expected_sha = config.get("universe_sha256")
    if expected_sha and expected_sha != universe.checksum:
        raise ValueError(f"'{directory / UNIVERSE}' does not match the universe checksum recorded in "
                         f"'{directory / CONFIG}'; the folder was modified or mixed up")
    config = dict(config)
    config["embedding_dim"] = dim
    config["vocab_size"] = int(weights.shape[0])
    return ModelFolder(config, weights, universe, fmt, counts, output)


def write_model_folder(directory: str | os.PathLike, folder: ModelFolder, *, format: str = "fastembed",
                       overwrite: bool = False, inputs=()) -> Path:
    """Write a model folder atomically: into a temporary folder beside ``directory``, renamed when complete.

    Parameters
    ----------
    directory
        The folder to create; its parent must exist.
    folder
        What to write. ``weights`` must have ``len(universe) + 7`` rows.
    format : {"fastembed", "geniml"}
        See the module docstring. ``"geniml"`` writes only what geniml reads (no counts or output vectors).
    overwrite
        Replace an existing folder (the old one is removed only after the new one is complete), only if it is a
        model folder fastembed wrote: its own files and nothing else, ``config.yaml`` with ``fastembed_version``.
    inputs : iterable of paths
        Files the model was made from (e.g. the training parquet): ``directory`` may not be, or hold, one.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    if format not in ("fastembed", "geniml"):
        raise ValueError(f"format must be 'fastembed' or 'geniml', got {format!r}")
    directory = Path(directory).expanduser().absolute()
    if not directory.parent.is_dir():
        raise FileNotFoundError(f"model folder '{directory}': folder '{directory.parent}' does not exist")
    weights = np.ascontiguousarray(folder.weights, dtype=np.float32)
    vocab = len(folder.universe) + N_SPECIAL
    if weights.ndim != 2 or weights.shape[0] != vocab:
        raise ValueError(f"weights of shape {weights.shape} do not fit a universe of {len(folder.universe)} "
                         f"regions (need {vocab} rows)")
    config = {k: v for k, v in folder.config.items() if v is not None}
    config.update({"embedding_dim": int(weights.shape[1]), "vocab_size": vocab})
    config.setdefault("fastembed_version", __version__)  # how a later overwrite recognises the folder as ours
    with atomic_dir(directory, what="model folder", overwrite=overwrite, inputs=inputs, kind="model") as tmp:
        folder.universe.write_bed(tmp / UNIVERSE)
        if format == "fastembed":
            config["format"] = "fastembed"
            config["universe_sha256"] = folder.universe.checksum
            np.save(tmp / REGION_VECTORS, weights, allow_pickle=False)
            if folder.output_weights is not None:
                np.save(tmp / OUTPUT_VECTORS, np.ascontiguousarray(folder.output_weights, dtype=np.float32),
                        allow_pickle=False)
            if folder.token_counts is not None:
                np.save(tmp / TOKEN_COUNTS, np.asarray(folder.token_counts, dtype=np.int64), allow_pickle=False)
        else:
            # geniml's loader builds nn.Embedding(vocab_size, embedding_dim) from these two keys and reads
            # pooling_method if present; other keys are ignored by it and kept for provenance.
            config = {"vocab_size": vocab, "embedding_dim": int(weights.shape[1]), "pooling_method": "mean",
                      **{k: v for k, v in config.items() if k not in ("vocab_size", "embedding_dim", "format")}}
            write_torch_state_dict(tmp / CHECKPOINT, {WEIGHT_KEY: weights})
        (tmp / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return directory
