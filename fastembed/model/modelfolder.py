"""Model folders on disk: fastembed's own layout and the geniml / Hugging Face scEmbed layout.

fastembed layout::

    config.yaml          format: fastembed, embedding_dim, vocab_size, training parameters, versions; cell_norm: l2
                         when the projected cells are scaled to unit length, pool_vectors: input+output when
                         cells pool input and output vectors side by side (fastembed.kernels.projection)
    universe.bed         N regions; row i = token i (the 7 special tokens are implied as ids N..N+6)
    region_vectors.npy   float32 (vocab_size, embedding_dim): the input vectors used for encoding
    output_vectors.npy   float32 (vocab_size, embedding_dim), optional (required with pool_vectors: input+output)
    token_counts.npy     int64 (vocab_size,): cells containing each token in training, optional
    trained_rows.npy     int64 (n_rows,), optional: when present, the vector files hold only these token ids'
                         rows (strictly increasing), and every other row is zero. Written when more than a
                         tenth of the rows are zero (tokens never trained, the special tokens), so a folder's
                         size follows the trained tokens, not the universe: 3,000 trained tokens of a
                         126,536-region universe take a few MB instead of ~100 MB.
    cell_projection.npy  float32 (k + 1, embedding_dim, or twice that with pool_vectors): centre and axes of the
                         training cells
                         (:mod:`fastembed.projection`); present exactly when config.yaml has n_components
    region_context.npy   float32 (vocab_size, embedding_dim, or twice that with pool_vectors): each token's cell
                         context, added to what it pools (pool_context: cells) or pooled instead of the vectors
                         (pool_context: cells-alone); present exactly when config.yaml has pool_context
                         (fastembed.kernels.projection.CONTEXT_MODES), stored by the rows of trained_rows.npy

geniml layout (what ``geniml``'s ``export`` writes and Hugging Face scEmbed models hold)::

    checkpoint.pt        torch state dict {"projection.weight": float32 (vocab_size, embedding_dim)}
    config.yaml          vocab_size, embedding_dim (legacy: embedding_size), maybe pooling_method
    universe.bed         the regions; legacy exports end with placeholder lines for the special tokens
                         (chrUNK/chrPAD/chrMASK/chrCLS/chrEOS/chrBOS/chrSEP with start = end = 0)

geniml encodes such a folder with the config's ``pooling_method`` (``"mean"`` when absent; geniml also knows
``"max"``). fastembed pools by the mean only, so it reads a folder whose ``pooling_method`` is absent or
``"mean"`` and refuses any other value with an error, rather than give vectors that differ from geniml's. The
geniml layout holds no cell projection (``write_model_folder`` leaves it out, with a warning, and writes
``pooling_method: mean``; a ``cell_projection.npy`` that fastembed 0.7 wrote beside a checkpoint is not used),
so both tools give the same cell vectors from one geniml folder.

Model folders may come from strangers: ``.npy`` files are parsed header first and never unpickled, the
checkpoint is read with :mod:`fastembed.checkpoint` (tensors only), config.yaml with ``yaml.safe_load`` and a
type check of every key fastembed uses, and vectors holding NaN or infinity are refused. Every model file read
must be a regular file inside the folder: a symbolic link may point to another file of the folder (or, in a
Hugging Face cache snapshot, to the cache's ``blobs``), never elsewhere.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from fastembed._version import __version__
from fastembed.common.warn import warn
from fastembed.genome.universe import N_SPECIAL, Universe, read_bed
from fastembed.storage.atomic import atomic_dir, folder_entries, register_kind, small_yaml
from fastembed.storage.checkpoint import read_torch_state_dict, write_torch_state_dict

__all__ = ["ModelFolder", "read_model_folder", "write_model_folder"]

CONFIG = "config.yaml"
UNIVERSE = "universe.bed"
REGION_VECTORS = "region_vectors.npy"
OUTPUT_VECTORS = "output_vectors.npy"
TOKEN_COUNTS = "token_counts.npy"
TRAINED_ROWS = "trained_rows.npy"
CELL_PROJECTION = "cell_projection.npy"
REGION_CONTEXT = "region_context.npy"
# The values of pool_context (fastembed.kernels.projection.CONTEXT_CELLS and CONTEXT_MODES), spelled here so that
# reading a folder does not import the kernels package; tests/kernels/test_projection.py checks they agree.
CONTEXT_CELLS = "cells"
CONTEXT_MODES = (CONTEXT_CELLS, "cells-alone")
CHECKPOINT = "checkpoint.pt"
WEIGHT_KEY = "projection.weight"
MODEL_FILES = frozenset(
    {
        CONFIG,
        UNIVERSE,
        REGION_VECTORS,
        OUTPUT_VECTORS,
        TOKEN_COUNTS,
        TRAINED_ROWS,
        CELL_PROJECTION,
        REGION_CONTEXT,
        CHECKPOINT,
    }
)
"""Every file a model folder written by fastembed may hold (overwrite replaces only such folders)."""


def is_model_folder(path: Path) -> str | None:
    """None when the existing folder ``path`` is a model folder fastembed wrote (``overwrite`` may replace it), else
    why not: only model files, all regular, with config.yaml, universe.bed and weights, and a config.yaml naming a
    fastembed version."""
    names, reason = folder_entries(path, MODEL_FILES, "files a model folder does not")
    if reason:
        return reason
    if not {CONFIG, UNIVERSE} <= names or not names & {REGION_VECTORS, CHECKPOINT}:
        return "it lacks config.yaml, universe.bed or the weights"
    for name in names:
        if not stat.S_ISREG(os.lstat(path / name).st_mode):
            return f"'{name}' in it is not a regular file"
    config = small_yaml(path / CONFIG)
    if config is None or "fastembed_version" not in config:
        return "its config.yaml was not written by fastembed (no fastembed_version)"
    return None


# the model folder owns its recogniser; the safe-output machinery only asks its registry
register_kind("model", "model folder", is_model_folder, folder=True)

# gtars wrote special tokens into legacy universe files as these chromosomes (start = end = 0).
_PLACEHOLDER_CHROMS = {
    "chrunk",
    "chrpad",
    "chrmask",
    "chrcls",
    "chreos",
    "chrbos",
    "chrsep",
    "<unk>",
    "<pad>",
    "<mask>",
    "<cls>",
    "<eos>",
    "<bos>",
    "<sep>",
}


@dataclass
class ModelFolder:
    """The contents of a model folder.

    Attributes
    ----------
    config : dict
        ``config.yaml`` as read (``embedding_dim`` always set; the legacy ``embedding_size`` is mapped).
    region_vectors : np.ndarray of float32, shape (vocab_size, embedding_dim)
        The input vectors; rows ``N..N+6`` are the special tokens.
    universe : Universe
        The N regions, token order.
    format : str
        ``"fastembed"`` or ``"geniml"``: the layout read, or the one to write.
    token_counts : np.ndarray of int64, shape (vocab_size,), or None
    output_vectors : np.ndarray of float32, shape (vocab_size, embedding_dim), or None
    cell_projection : np.ndarray of float32, shape (k + 1, embedding_dim), or None
        Row 0 the centre, rows 1..k orthogonal weighted axes (see :mod:`fastembed.projection`). Always None when read
        from the geniml layout, and not written to it.
    region_context : np.ndarray of float32, shape (vocab_size, width), or None
        Each token's cell context (``pool_context: cells``), as wide as the cell projection; only with one, and
        like it never in the geniml layout.
    """

    config: dict
    region_vectors: np.ndarray
    universe: Universe
    format: str = "fastembed"
    token_counts: np.ndarray | None = None
    output_vectors: np.ndarray | None = None
    cell_projection: np.ndarray | None = None
    region_context: np.ndarray | None = None


# config.yaml keys fastembed reads, with the lowest value each may take; all are integers below 2**31.
_INT_KEYS = {
    "embedding_dim": 1,
    "embedding_size": 1,
    "vocab_size": 1,
    "window_size": 1,
    "negative_samples": 1,
    "min_count": 1,
    "n_components": 1,
}
_STR_KEYS = ("format", "universe_sha256", "fastembed_version")
_POOLING_METHODS = ("mean",)  # the pooling_method values fastembed honours: it pools by the plain mean
_GENIML_POOLING_METHODS = ("mean", "max")  # what geniml's ScEmbed.encode accepts
_MAX_INT = 2**31 - 1
_MAX_CONFIG_BYTES = 1 << 20  # a model config is a few hundred bytes; a huge one is not a config


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_config(config: dict, path: Path) -> None:
    """Every key fastembed reads has the type and range it needs (None means absent)."""

    def bad(key, expected):
        value = config[key]
        return ValueError(
            f"model config '{path}': {key} must be {expected}, got {_short(value)} ({type(value).__name__})"
        )

    for key, low in _INT_KEYS.items():
        value = config.get(key)
        if value is None:
            continue
        # bool is an int to Python but never a size; floats (even 100.0) and strings are refused rather than
        # guessed at, so a damaged file cannot slip through as a plausible number
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT:
            raise bad(key, f"an integer from {low} to {_MAX_INT}")
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise bad(
            "seed", "a non-negative integer or null"
        )  # what ScEmbed accepts, so every saved model loads
    sample = config.get("sample")
    if (
        sample is not None
        and sample != "auto"
        and (isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample < 1)
    ):
        raise bad("sample", "'auto', a number in [0, 1) or null")
    for key in _STR_KEYS:
        if config.get(key) is not None and not isinstance(config[key], str):
            raise bad(key, "a string")
    _check_pooling_method(config.get("pooling_method"), path)
    cell_norm = config.get("cell_norm")
    if cell_norm is not None and cell_norm != "l2":  # fastembed.kernels.projection.CELL_NORM
        raise bad("cell_norm", "'l2' or null (the projected cells scaled to unit length, or not)")
    pool = config.get("pool_vectors")
    if pool is not None and pool != "input+output":  # fastembed.kernels.projection.POOL_BOTH
        raise bad(
            "pool_vectors", "'input+output' or null (cells pool both vector matrices, or the input ones)"
        )
    context = config.get("pool_context")
    if context is not None and context not in CONTEXT_MODES:
        raise bad(
            "pool_context",
            "'cells', 'cells-alone' or null (each token also pools its cell context, pools it alone, or neither)",
        )
    training = config.get("training")
    # The training record travels on (into zarr attributes as JSON, into saved configs): flat scalars only, so
    # a YAML alias bomb or a date cannot surface later as a blow-up or a serialisation error.
    if training is not None and not (
        isinstance(training, dict)
        and all(
            isinstance(k, str) and (v is None or isinstance(v, bool | int | float | str))
            for k, v in training.items()
        )
    ):
        raise bad("training", "a mapping of names to numbers, strings or null")
    dim, legacy = config.get("embedding_dim"), config.get("embedding_size")
    if dim is not None and legacy is not None and dim != legacy:
        raise ValueError(
            f"model config '{path}' gives embedding_dim {dim} and embedding_size {legacy}; they must agree"
        )
    written = config.get("fastembed_version")
    if written is not None and _major_minor(written) is None:
        raise bad("fastembed_version", f"a version string such as '{__version__}'")


def _check_pooling_method(value, path: Path) -> None:
    """A ``pooling_method`` fastembed can honour: absent (None) or ``"mean"``; raises ValueError naming
    ``path``, the value and what is supported otherwise.

    geniml pools a cell's region vectors by this key; fastembed pools by the mean alone, so any other value would
    make fastembed's cell vectors silently differ from geniml's for the same folder.
    """
    if value is None or value in _POOLING_METHODS:
        return
    supported = " or ".join(repr(p) for p in _POOLING_METHODS)
    if isinstance(value, str) and value in _GENIML_POOLING_METHODS:
        why = (
            f"geniml's {value!r} pooling is not implemented in fastembed, and mean pooling would give other "
            "vectors than geniml does; encode this model with geniml, or set pooling_method: mean to use mean "
            "pooling knowingly"
        )
    else:
        why = f"geniml knows {' and '.join(repr(p) for p in _GENIML_POOLING_METHODS)}"
    raise ValueError(
        f"model config '{path}': pooling_method is {_short(value)} ({type(value).__name__}); fastembed supports "
        f"pooling_method {supported} (or no pooling_method): {why}"
    )


_VERSION = re.compile(r"\s*v?(\d{1,9})\.(\d{1,9})(?![\d])")


def _major_minor(version: str) -> tuple[int, int] | None:
    match = _VERSION.match(version)
    return None if match is None else (int(match[1]), int(match[2]))


def _warn_if_newer(config: dict, directory: Path) -> None:
    """A folder written by a newer fastembed (major or minor version) may use what this one cannot read."""
    written = config.get("fastembed_version")
    ours = _major_minor(__version__)
    if written is not None and ours is not None and _major_minor(written) > ours:
        warn(
            f"model folder '{directory}' was written by fastembed {written[:40]}, newer than the "
            f"installed fastembed {__version__}; it may not load correctly or may encode differently: "
            "upgrade fastembed to use it",
            UserWarning,
        )


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def allowed_roots(directory: Path) -> tuple[Path, ...]:
    """Where the model files of ``directory`` may resolve to: the folder itself and, for a snapshot of the
    Hugging Face cache (``models--owner--name/snapshots/<revision>``, whose files are links to ``../../blobs``),
    that cache's blobs."""
    root = directory.resolve()
    roots = [root]
    # The folder may be the snapshot or a folder inside it (a reference folder's model/).
    for snap in (root, *root.parents):
        repo = snap.parent.parent
        if snap.parent.name == "snapshots" and repo.name.startswith("models--") and (repo / "blobs").is_dir():
            roots.append(repo / "blobs")
            break
    return tuple(roots)


def model_file(directory: Path, name: str, roots: tuple[Path, ...] | None = None) -> Path | None:
    """``directory / name`` if it exists, None if not; anything that is not a regular file, or a symbolic link
    resolving outside the model folder, is refused before a byte is read."""
    path = directory / name
    if not os.path.lexists(path):
        return None
    link = f" (a symbolic link to '{os.readlink(path)}')" if path.is_symlink() else ""
    try:
        info = os.stat(path)  # follows links
    except OSError as err:
        raise FileNotFoundError(
            f"model file '{path}'{link} cannot be opened ({err.strerror or type(err).__name__})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"model file '{path}'{link} is not a regular file: it is {_file_kind(info.st_mode)}; a model "
            "folder holds plain files"
        )
    if link:
        target = Path(os.path.realpath(path))
        roots = allowed_roots(directory) if roots is None else roots
        if not any(target.is_relative_to(r) for r in roots):
            raise ValueError(
                f"model file '{path}'{link} resolves to '{target}', outside the model folder '{roots[0]}'; "
                "refusing to follow it (copy the file into the folder instead)"
            )
    return path


def read_config_mapping(path: Path, what: str = "model") -> dict:
    """A folder's YAML config as a dict, read safely.

    ``path`` is ``config.yaml`` of a model folder or ``reference.yaml`` of a reference folder. It must be a real
    file (no link out of the folder, :func:`model_file`) of at most 1 MiB holding plain YAML types only
    (``yaml.safe_load``) with a mapping at the top; the keys are the caller's to check. ``what`` names the
    folder's kind in the errors: FileNotFoundError for a missing file, ValueError otherwise.
    """
    if model_file(path.parent, path.name) is None:
        raise FileNotFoundError(f"{what} folder '{path.parent}' has no {path.name}")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(
            f"{what} config '{path}' is {path.stat().st_size} bytes; a {what} config is far smaller"
        )
    try:
        # safe_load builds only plain YAML types. Anything it raises (bad syntax, a bad date, nesting deep
        # enough to exhaust the recursion limit) means the file is not a config we can use.
        config = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except Exception as err:
        msg = str(err).replace("\n", " ")
        raise ValueError(
            f"{what} config '{path}' is not valid YAML ({type(err).__name__}: {msg[:200]})"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{what} config '{path}' must be a mapping of keys to values, got {type(config).__name__}"
        )
    return config


def _read_config(path: Path) -> dict:
    config = read_config_mapping(path)
    _check_config(config, path)
    return config


def _read_universe(path: Path) -> tuple[Universe, int]:
    """The universe without trailing special-token placeholder lines, and how many were stripped."""
    if model_file(path.parent, path.name) is None:
        raise FileNotFoundError(f"model folder '{path.parent}' has no {UNIVERSE}")
    chroms, starts, ends = read_bed(path, what="universe")
    placeholder = np.array([str(c).lower() in _PLACEHOLDER_CHROMS for c in chroms], dtype=bool)
    n_regions = int(np.argmax(placeholder)) if placeholder.any() else placeholder.size
    if placeholder[n_regions:].size and not placeholder[n_regions:].all():
        raise ValueError(
            f"universe '{path}': special-token placeholder lines (e.g. chrUNK) must all come after "
            f"the regions; line {n_regions + 1} is one but a region follows it"
        )
    if n_regions == 0:
        raise ValueError(f"universe '{path}' holds no regions")
    uni = Universe.from_arrays(chroms[:n_regions], starts[:n_regions], ends[:n_regions], source=str(path))
    return uni, int(placeholder.size - n_regions)


def load_npy(path: Path, *, required: bool, dtype_kind: str, what: str) -> np.ndarray | None:
    """A ``.npy`` file of ours, its header checked against the file's size before anything is allocated.

    ``dtype_kind`` is ``"f4"`` (float32, any byte order) or ``"i8"`` (int64); the result is native-endian.
    """
    if model_file(path.parent, path.name) is None:
        if required:
            raise FileNotFoundError(f"model folder '{path.parent}' has no {path.name}")
        return None
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(
                    f"npy format version {version} is not one numpy.save writes for plain arrays"
                )
            header_end = fh.tell()
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise ValueError(f"dtype {dtype} is not a plain numeric type")
            if f"{dtype.kind}{dtype.itemsize}" != dtype_kind:
                raise ValueError(f"expected {what} of dtype {np.dtype(dtype_kind).name}, got {dtype}")
            if any(d < 0 for d in shape):
                raise ValueError(f"its header claims shape {shape}")
            n = 1
            for d in shape:
                n *= d
            # A header may claim any shape; the data must be exactly the bytes the file holds.
            if n * dtype.itemsize != size - header_end:
                raise ValueError(
                    f"its header claims shape {shape} ({n * dtype.itemsize} bytes) but the file "
                    f"holds {size - header_end} bytes of data"
                )
            array = np.fromfile(fh, dtype=dtype, count=n).reshape(shape, order="F" if fortran else "C")
    except OSError:
        raise
    except Exception as err:  # numpy reports bad headers as ValueError, SyntaxError, struct.error, ...
        raise ValueError(f"'{path}' is not a plain numpy array file ({str(err)[:200]})") from None
    return np.ascontiguousarray(array, dtype=dtype.newbyteorder("="))


def check_finite(array: np.ndarray, path: Path) -> None:
    """Refuse an array read from ``path`` that holds NaN or infinite values (a ValueError naming the file,
    the count and the first row): a damaged model or reference would give NaN embeddings or labels."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        row = int(np.argmin(finite.all(axis=1)))
        raise ValueError(
            f"'{path}' holds {bad} NaN or infinite values (first in row {row}); the model is "
            "damaged and would give NaN embeddings"
        )


def _read_projection(directory: Path, config: dict, fmt: str, dim: int) -> np.ndarray | None:
    """The cell projection of a fastembed folder, checked against config.yaml; None for the geniml layout.

    ``n_components`` (top level) is what the model was saved with: a projection is required when it is set and
    has at most that many axes. ``training: n_components`` records the axes actually fitted (fewer than asked
    when there were few cells): when it is an integer, the projection has exactly that many.
    """
    path = directory / CELL_PROJECTION
    if fmt != "fastembed":
        if os.path.lexists(path):
            warn(
                f"model folder '{directory}' is in the geniml layout, which geniml and fastembed both encode "
                f"with mean pooling: its {CELL_PROJECTION} (written beside the checkpoint by fastembed 0.7) is "
                "not used; delete it to silence this warning",
                UserWarning,
            )
        return None
    n_components = config.get("n_components")  # an integer >= 1 or None (checked by _check_config)
    fitted = (config.get("training") or {}).get("n_components")
    if isinstance(fitted, bool) or not isinstance(fitted, int):
        fitted = None  # the training record is provenance; only an integer there says how many axes
    projection = load_npy(path, required=False, dtype_kind="f4", what="cell projection")
    if projection is None:
        if n_components is not None:
            raise FileNotFoundError(
                f"model folder '{directory}' has no {CELL_PROJECTION}, but '{directory / CONFIG}' says "
                f"n_components {n_components}: the model was saved with a cell projection (pooling='pca') "
                "and would encode differently without it; restore the file, or remove n_components from "
                "config.yaml to use the model with mean pooling"
            )
        return None
    max_k = dim if n_components is None else min(n_components, dim)
    recorded = f"embedding_dim {dim}" + ("" if n_components is None else f", n_components {n_components}")
    if fitted is not None:
        if not 1 <= fitted <= max_k:
            raise ValueError(
                f"model config '{directory / CONFIG}': training n_components {fitted} (the axes of the cell "
                f"projection) must be from 1 to {max_k}, as it says {recorded}"
            )
        recorded += f" and {fitted} axes fitted at training (training: n_components)"
        expected = f"({fitted + 1}, {dim}), a centre and {fitted} axes"
        ok = projection.shape == (fitted + 1, dim)
    else:
        expected = f"(k + 1, {dim}) with 1 <= k <= {max_k}, a centre and k axes"
        ok = projection.ndim == 2 and projection.shape[1] == dim and 2 <= projection.shape[0] <= max_k + 1
    if not ok:
        raise ValueError(
            f"'{path}' has shape {projection.shape}; expected {expected}, as '{directory / CONFIG}' says "
            f"{recorded}"
        )
    check_finite(projection, path)
    # Rows 1..k are orthogonal axes whose squared lengths are their weights (fastembed.projection.fit_projection):
    # 1 for plain PCA (what versions before 0.11 wrote), at least 1 otherwise.
    axes = projection[1:].astype(np.float64)
    gram = axes @ axes.T
    lengths = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    unit = gram / np.maximum(np.outer(lengths, lengths), 1e-30)
    if not (lengths.min() > 0.5 and np.allclose(unit, np.eye(axes.shape[0]), atol=1e-3)):
        raise ValueError(f"'{path}': rows 1..k must be mutually orthogonal axes of length at least 1")
    return projection


def _expand_rows(directory: Path, rows, region_vectors, output_vectors, context, vocab: int, vocab_cfg):
    """Full (vocab, width) matrices from the stored rows of ``trained_rows.npy`` (the others zero), after checking
    the row ids against the universe (which bounds the allocation: it is read from a real file)."""
    where = directory / TRAINED_ROWS
    if vocab_cfg != vocab:
        raise ValueError(
            f"'{directory / CONFIG}' says vocab_size {vocab_cfg} but universe.bed has {vocab - N_SPECIAL} regions "
            f"(+{N_SPECIAL} special tokens = {vocab})"
        )
    if rows.ndim != 1 or (rows.size and (rows[0] < 0 or rows[-1] >= vocab or np.any(np.diff(rows) <= 0))):
        raise ValueError(f"'{where}' must list strictly increasing token ids below vocab_size {vocab}")
    full = []
    for name, stored in (
        (REGION_VECTORS, region_vectors),
        (OUTPUT_VECTORS, output_vectors),
        (REGION_CONTEXT, context),
    ):
        if stored is None:
            full.append(None)
            continue
        if stored.ndim != 2 or stored.shape[0] != rows.size:
            raise ValueError(
                f"'{directory / name}' has shape {stored.shape}; expected {rows.size} rows, one per id of '{where}'"
            )
        out = np.zeros((vocab, stored.shape[1]), dtype=np.float32)
        out[rows] = stored
        full.append(out)
    return full[0], full[1], full[2]


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
        The folder or one of its required files is missing (the file is named); ``cell_projection.npy`` is
        required in fastembed's layout when config.yaml has ``n_components``.
    ValueError
        A file is damaged or disagrees with the others; the message names the file (both files for a
        disagreement) and what was expected. Checked: config.yaml is a YAML mapping (read with
        ``yaml.safe_load``) whose known keys have the right type and range, whose ``pooling_method``, if
        any, is one fastembed honours (``"mean"``; geniml's ``"max"`` and anything else are refused), and whose
        ``format``, if any, names the layout of the files present; ``.npy`` files are plain float32
        (vectors) or int64 (counts) arrays whose header matches the file size (never unpickled); the
        checkpoint is read by :func:`fastembed.checkpoint.read_torch_state_dict`; weight rows agree with
        ``vocab_size`` and with the regions of universe.bed, vector length with ``embedding_dim``; no vector
        holds NaN or infinity; token counts are non-negative; the cell projection has ``embedding_dim``
        columns, at most ``n_components`` axes and exactly the ``n_components`` of the training record if it
        has one; ``fastembed_version`` is a version string; every file read is a regular file, and one that is
        a symbolic link resolves inside the folder.

    Warns
    -----
    UserWarning
        The folder was written by a newer fastembed (major or minor version); a geniml-layout folder holds a
        ``cell_projection.npy``, which is not used (that layout is encoded with mean pooling, as geniml does).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(
            f"model folder '{directory}' is a file; expected a model folder (config.yaml, universe.bed and weights)"
        )
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder '{directory}' does not exist")
    config = _read_config(directory / CONFIG)
    _warn_if_newer(config, directory)
    universe, n_placeholders = _read_universe(directory / UNIVERSE)
    n = len(universe)
    if model_file(directory, REGION_VECTORS) is not None:
        fmt = "fastembed"
        region_vectors = load_npy(
            directory / REGION_VECTORS, required=True, dtype_kind="f4", what="region vectors"
        )
        output_vectors = load_npy(
            directory / OUTPUT_VECTORS, required=False, dtype_kind="f4", what="output vectors"
        )
        counts = load_npy(directory / TOKEN_COUNTS, required=False, dtype_kind="i8", what="token counts")
        context = load_npy(directory / REGION_CONTEXT, required=False, dtype_kind="f4", what="region context")
        weight_file = REGION_VECTORS
        rows = load_npy(directory / TRAINED_ROWS, required=False, dtype_kind="i8", what="trained rows")
        if rows is not None:
            region_vectors, output_vectors, context = _expand_rows(
                directory,
                rows,
                region_vectors,
                output_vectors,
                context,
                n + N_SPECIAL,
                config.get("vocab_size"),
            )
    elif model_file(directory, CHECKPOINT) is not None:
        fmt = "geniml"
        tensors = read_torch_state_dict(directory / CHECKPOINT)
        key = (
            WEIGHT_KEY
            if WEIGHT_KEY in tensors
            else next((k for k in tensors if k.endswith(WEIGHT_KEY)), None)
        )
        if key is None:
            raise ValueError(
                f"checkpoint '{directory / CHECKPOINT}' has no '{WEIGHT_KEY}' tensor "
                f"(tensors: {', '.join(tensors)})"
            )
        region_vectors, output_vectors, counts, context = tensors[key], None, None, None
        weight_file = CHECKPOINT
    else:
        raise FileNotFoundError(f"model folder '{directory}' has neither {REGION_VECTORS} nor {CHECKPOINT}")
    declared = config.get("format")
    if declared is not None and declared != fmt:
        # Written by write_model_folder beside the files it describes; a mismatch means a mixed-up folder.
        raise ValueError(
            f"model config '{directory / CONFIG}': format is {_short(declared)} but the folder holds "
            f"{weight_file}, the {fmt} layout; expected format: {fmt}"
        )

    if region_vectors.ndim != 2 or region_vectors.dtype.kind != "f":
        raise ValueError(
            f"'{directory / weight_file}': expected a 2-d float matrix (vocab_size x embedding_dim), "
            f"got {region_vectors.dtype} of shape {region_vectors.shape}"
        )
    region_vectors = np.ascontiguousarray(region_vectors, dtype=np.float32)
    check_finite(
        region_vectors, directory / weight_file
    )  # after the cast: float64 beyond float32's range is inf
    rows, dim = region_vectors.shape
    dim_cfg = config.get("embedding_dim", config.get("embedding_size"))
    if dim_cfg is not None and dim_cfg != dim:
        raise ValueError(
            f"'{directory / CONFIG}' says embedding_dim {dim_cfg} but '{directory / weight_file}' has "
            f"vectors of length {dim}"
        )
    vocab_cfg = config.get("vocab_size")
    if vocab_cfg is not None and vocab_cfg != rows:
        raise ValueError(
            f"'{directory / CONFIG}' says vocab_size {vocab_cfg} but '{directory / weight_file}' has "
            f"{rows} rows"
        )
    if rows == n:  # no special-token rows (older geniml models): keep ids, specials get zero vectors
        region_vectors = np.vstack([region_vectors, np.zeros((N_SPECIAL, dim), dtype=np.float32)])
    elif rows != n + N_SPECIAL:
        raise ValueError(
            f"'{directory / UNIVERSE}' has {n} regions"
            f"{f' (plus {n_placeholders} special-token lines)' if n_placeholders else ''}, so the weights need "
            f"{n + N_SPECIAL} rows (regions + 7 special tokens), but '{directory / weight_file}' has {rows}"
        )
    for name, extra, shape in (
        (OUTPUT_VECTORS, output_vectors, region_vectors.shape),
        (TOKEN_COUNTS, counts, (region_vectors.shape[0],)),
    ):
        if extra is not None and extra.shape != shape:
            raise ValueError(
                f"'{directory / name}' has shape {extra.shape}; expected {shape} to match "
                f"'{directory / weight_file}'"
            )
    if output_vectors is not None:
        output_vectors = np.ascontiguousarray(output_vectors, dtype=np.float32)
        check_finite(output_vectors, directory / OUTPUT_VECTORS)
    if counts is not None:
        counts = np.asarray(counts, dtype=np.int64)
        if counts.size and counts.min() < 0:
            raise ValueError(f"'{directory / TOKEN_COUNTS}' holds negative counts; expected cells per token")
    both = fmt != "geniml" and config.get("pool_vectors") == "input+output"
    if both and output_vectors is None:
        raise FileNotFoundError(
            f"model folder '{directory}' has no {OUTPUT_VECTORS}, but '{directory / CONFIG}' says pool_vectors "
            "input+output: its cells pool both vector matrices and cannot be encoded without it; restore the file"
        )
    # With both matrices pooled, the projection's centre and axes are twice the embedding dimension wide.
    projection = _read_projection(directory, config, fmt, 2 * dim if both else dim)
    context = _read_context(
        directory, config, context, projection, (region_vectors.shape[0], 2 * dim if both else dim)
    )
    expected_sha = config.get("universe_sha256")
    if expected_sha and expected_sha != universe.checksum:
        raise ValueError(
            f"'{directory / UNIVERSE}' does not match the universe checksum recorded in "
            f"'{directory / CONFIG}'; the folder was modified or mixed up"
        )
    config = dict(config)
    config["embedding_dim"] = dim
    config["vocab_size"] = int(region_vectors.shape[0])
    return ModelFolder(config, region_vectors, universe, fmt, counts, output_vectors, projection, context)


def _read_context(directory: Path, config: dict, context, projection, shape) -> np.ndarray | None:
    """The region context of a fastembed folder with a cell projection, checked against config.yaml (required
    exactly when it says ``pool_context: cells`` or ``cells-alone``); None otherwise (a stray file is not used)."""
    wanted = projection is not None and config.get("pool_context") in CONTEXT_MODES
    if not wanted:
        return None
    if context is None:
        raise FileNotFoundError(
            f"model folder '{directory}' has no {REGION_CONTEXT}, but '{directory / CONFIG}' says pool_context "
            f"{config.get('pool_context')}: its cells pool each token's cell context and cannot be encoded without "
            "it; restore the file"
        )
    if context.shape != shape:
        raise ValueError(
            f"'{directory / REGION_CONTEXT}' has shape {context.shape}; expected {shape}, one row per token as wide "
            f"as '{directory / CELL_PROJECTION}'"
        )
    context = np.ascontiguousarray(context, dtype=np.float32)
    check_finite(context, directory / REGION_CONTEXT)
    return context


def _stored_rows(
    region_vectors: np.ndarray, output_vectors: np.ndarray | None, context: np.ndarray | None = None
) -> np.ndarray | None:
    """The token ids whose rows are worth storing (nonzero in any matrix), or None to store every row: only
    when more than a tenth of the rows are zero does the index pay for itself."""
    nonzero = np.any(region_vectors != 0, axis=1)
    if output_vectors is not None and output_vectors.shape == region_vectors.shape:
        nonzero |= np.any(output_vectors != 0, axis=1)
    if context is not None and context.shape[0] == region_vectors.shape[0]:
        nonzero |= np.any(context != 0, axis=1)
    if np.count_nonzero(~nonzero) * 10 <= nonzero.size:
        return None
    return np.flatnonzero(nonzero).astype(np.int64)


def write_model_folder(
    directory: str | os.PathLike,
    folder: ModelFolder,
    *,
    format: str | None = None,
    overwrite: bool = False,
    inputs=(),
) -> Path:
    """Write a model folder atomically: into a temporary folder beside ``directory``, renamed when complete.

    Parameters
    ----------
    directory
        The folder to create; its parent must exist.
    folder
        What to write. ``region_vectors`` must have ``len(universe) + 7`` rows.
    format : {"fastembed", "geniml"}, optional
        The layout (default: ``folder.format``); see the module docstring. ``"geniml"`` writes only what
        geniml reads (no counts, output vectors or cell projection: a warning says so when the folder has a
        projection) and ``pooling_method: mean``, how geniml and fastembed both encode that layout.
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
    format = folder.format if format is None else format
    if format not in ("fastembed", "geniml"):
        raise ValueError(f"format must be 'fastembed' or 'geniml', got {format!r}")
    if format == "geniml" and folder.cell_projection is not None:
        warn(
            f"model folder '{directory}': the geniml format holds no cell projection, so it is written without "
            f"{CELL_PROJECTION} and with pooling_method: mean; geniml and fastembed will both encode it with "
            "mean pooling, not this model's default pooling='pca'; save with format='fastembed' to keep the "
            "projection",
            UserWarning,
        )
    directory = Path(directory).expanduser().absolute()
    if not directory.parent.is_dir():
        raise FileNotFoundError(f"model folder '{directory}': folder '{directory.parent}' does not exist")
    region_vectors = np.ascontiguousarray(folder.region_vectors, dtype=np.float32)
    vocab = len(folder.universe) + N_SPECIAL
    if region_vectors.ndim != 2 or region_vectors.shape[0] != vocab:
        raise ValueError(
            f"weights of shape {region_vectors.shape} do not fit a universe of {len(folder.universe)} "
            f"regions (need {vocab} rows)"
        )
    config = {k: v for k, v in folder.config.items() if v is not None}
    config.update({"embedding_dim": int(region_vectors.shape[1]), "vocab_size": vocab})
    config.setdefault("fastembed_version", __version__)  # how a later overwrite recognises the folder as ours
    with atomic_dir(directory, what="model folder", overwrite=overwrite, inputs=inputs, kind="model") as tmp:
        folder.universe.write_bed(tmp / UNIVERSE)
        if format == "fastembed":
            config["format"] = "fastembed"
            config["universe_sha256"] = folder.universe.checksum
            output_vectors = (
                None
                if folder.output_vectors is None
                else np.ascontiguousarray(folder.output_vectors, dtype=np.float32)
            )
            context = (
                None
                if folder.region_context is None or folder.cell_projection is None
                else np.ascontiguousarray(folder.region_context, dtype=np.float32)
            )
            if context is not None and context.shape[0] != vocab:
                raise ValueError(f"a region context of shape {context.shape} does not fit {vocab} tokens")
            rows = _stored_rows(region_vectors, output_vectors, context)
            if rows is not None:
                np.save(tmp / TRAINED_ROWS, rows, allow_pickle=False)
                region_vectors = region_vectors[rows]
                output_vectors = None if output_vectors is None else output_vectors[rows]
                context = None if context is None else context[rows]
            np.save(tmp / REGION_VECTORS, region_vectors, allow_pickle=False)
            if output_vectors is not None:
                np.save(tmp / OUTPUT_VECTORS, output_vectors, allow_pickle=False)
            if context is not None:
                np.save(tmp / REGION_CONTEXT, context, allow_pickle=False)
                if config.get("pool_context") not in CONTEXT_MODES:
                    config["pool_context"] = CONTEXT_CELLS
            else:
                config.pop("pool_context", None)
            if folder.token_counts is not None:
                np.save(
                    tmp / TOKEN_COUNTS, np.asarray(folder.token_counts, dtype=np.int64), allow_pickle=False
                )
            # n_components is present exactly when the projection is (what read_model_folder checks), and it
            # bounds the projection's axes.
            if folder.cell_projection is None:
                config.pop("n_components", None)
                config.pop("cell_norm", None)  # it applies to projected cells only
                config.pop("pool_vectors", None)  # so does this: mean pooling pools the input vectors
            else:
                projection = np.asarray(folder.cell_projection, dtype=np.float32)
                asked = config.get("n_components")
                if isinstance(asked, bool) or not isinstance(asked, int) or asked < projection.shape[0] - 1:
                    config["n_components"] = int(projection.shape[0] - 1)
                np.save(tmp / CELL_PROJECTION, projection, allow_pickle=False)
        else:
            # geniml's loader builds nn.Embedding(vocab_size, embedding_dim) from these two keys and reads
            # pooling_method if present; other keys are ignored by it and kept for provenance. geniml pools
            # by the mean, and fastembed reads this layout the same way: no projection, no n_components.
            config = {
                "vocab_size": vocab,
                "embedding_dim": int(region_vectors.shape[1]),
                "pooling_method": "mean",
                **{
                    k: v
                    for k, v in config.items()
                    if k
                    not in (
                        "vocab_size",
                        "embedding_dim",
                        "format",
                        "pooling_method",
                        "n_components",
                        "pool_context",
                    )
                },
            }
            write_torch_state_dict(tmp / CHECKPOINT, {WEIGHT_KEY: region_vectors})
        (tmp / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def fetch_model_folder(repo_id: str, revision: str | None = None) -> Path:
    """Download a model folder from the Hugging Face hub (needs the ``hub`` extra and network access) and return
    the local path of its snapshot; errors name the repository and what a model folder holds."""
    from fastembed.storage.hub import fetch_folder

    return fetch_folder(
        repo_id,
        revision,
        what="model",
        contents=" (checkpoint.pt or region_vectors.npy, config.yaml, universe.bed)",
    )
