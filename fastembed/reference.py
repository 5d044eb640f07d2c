"""A shareable annotation reference: a model, its labelled cells and the annotation settings in one folder.

Layout::

    reference.yaml          format: fastembed-reference, fastembed_version, n_cells, embedding_dim, label_key,
                            obs_columns, embedding_key, k, center, max_novelty, quality (measured at build)
    model/                  the model folder (fastembed layout, :mod:`fastembed.modelfolder`)
    embeddings.npy          float32 (n_cells, embedding_dim): the reference cells, encoded by model/
    obs.parquet             n_cells rows: barcode, the label column and the other obs columns named at build
    neighbour_distance.npy  float32 (n_cells,): each cell's mean cosine distance to its k nearest other
                            reference cells (leave-one-out), the null distribution of the novelty score
                            (:mod:`fastembed.annotation.novelty`)
    calibration.npy         float32 (2, m), optional: vote share -> probability that the label is right
                            (isotonic, fitted by cross-validation on the reference at build)
    README.md               the model card (written from reference.yaml; not read back)

A reference folder may come from a stranger, so it is read by the same rules as a model folder: config by
``yaml.safe_load`` with a size limit and a type check of every key, ``.npy`` files parsed header first (their
size must match) and never unpickled, no NaN or infinity, every file a regular file inside the folder (a Hugging
Face cache snapshot's links to its blobs allowed), obs from parquet (data only). Search indexes are not stored:
they are rebuilt when the reference is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fastembed import settings
from fastembed._version import __version__
from fastembed.annotation import annotate as _annotate
from fastembed.annotation.annotate import (
    FittedReference,
    QueryEmbeddings,
    build_index,
    embedding_matrix,
    unit_rows,
)
from fastembed.annotation.novelty import (
    DEFAULT_MAX_NOVELTY,
    leave_one_out_distances,
    predict_with_distance,
    tail_probability,
)
from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.common.validate import is_number, is_whole
from fastembed.common.warn import warn
from fastembed.storage import atomic as _atomic
from fastembed.storage.hub import check_folder_arg, fetch_folder, upload_folder

__all__ = [
    "Reference",
    "build_reference",
    "read_reference",
    "write_reference",
    "annotate_with_reference",
    "expected_calibration_error",
    "is_reference_folder",
    "DEFAULT_MAX_NOVELTY",
]

FORMAT = "fastembed-reference"
CONFIG = "reference.yaml"
MODEL_DIR = "model"
EMBEDDINGS = "embeddings.npy"
OBS = "obs.parquet"
NEIGHBOUR_DISTANCE = "neighbour_distance.npy"
CALIBRATION = "calibration.npy"
CARD = "README.md"
REFERENCE_FILES = frozenset({CONFIG, MODEL_DIR, EMBEDDINGS, OBS, NEIGHBOUR_DISTANCE, CALIBRATION, CARD})
"""Every entry a reference folder written by fastembed holds (overwrite replaces only such folders)."""

_MAX_INT = 2**31 - 1


def _is_reference(path: Path) -> str | None:
    """None when ``path`` is a reference folder fastembed wrote (so ``overwrite`` may replace it), else why not."""
    names, reason = _atomic.folder_entries(path, REFERENCE_FILES, "files a reference folder does not")
    if reason:
        return reason
    if CONFIG not in names:
        return f"it has no {CONFIG}"
    config = _atomic.small_yaml(path / CONFIG)
    if config is None or config.get("format") != FORMAT or "fastembed_version" not in config:
        return f"its {CONFIG} was not written by fastembed"
    return None


# The output checks know model folders, zarr stores, ...; a reference folder is a new kind, registered here so
# that the module holding the output machinery need not know about references.
_atomic.register_kind("reference", "reference folder", _is_reference, folder=True)


@dataclass
class Reference:
    """A labelled reference for annotation, in memory (what a reference folder holds).

    Attributes
    ----------
    model : fastembed.ScEmbed or None
        Encodes query cells that come without embeddings (None only for an in-memory reference made from an
        AnnData; such a reference cannot be saved).
    embeddings : np.ndarray of float32, shape (n_cells, dim)
        The reference cells' embeddings (every cell labelled, none all zeros).
    obs : pandas.DataFrame
        ``n_cells`` rows indexed by barcode: ``label_key`` (categorical) and the other columns kept at build.
    label_key : str
    embedding_key : str
        The ``obsm`` key a query AnnData's embeddings are read from (when present).
    k : int
        Neighbours of the vote and of the novelty score.
    center : bool
        Cosine around the reference mean (see :func:`fastembed.annotate.annotate_celltypes`).
    neighbour_distance : np.ndarray of float32, shape (n_cells,)
        Leave-one-out mean distance of each cell to its ``k`` nearest other reference cells.
    calibration : np.ndarray of float32, shape (2, m), or None
        Row 0 vote shares (increasing), row 1 the probability that the label is right; linear in between.
    max_novelty : float or None
        Default novelty above which cells are called unknown (None: never).
    quality : dict
        What was measured at build (cross-validated accuracy per type, calibration errors); shown in the card.
    model_folder : fastembed.modelfolder.ModelFolder or None
        The model as read or built, written back as it is (so a folder round-trips bit for bit).
    """

    model: object
    embeddings: np.ndarray
    obs: pd.DataFrame
    label_key: str
    embedding_key: str = "scembed_X"
    k: int = 10
    center: bool = True
    neighbour_distance: np.ndarray | None = None
    calibration: np.ndarray | None = None
    max_novelty: float | None = DEFAULT_MAX_NOVELTY
    quality: dict = field(default_factory=dict)
    model_folder: object = None
    description: str = ""

    @property
    def n_cells(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def labels(self) -> pd.Series:
        """The reference labels (categorical), indexed by barcode."""
        return self.obs[self.label_key]

    def fit(
        self, n_query: int, *, k: int | None = None, center: bool | None = None, random_state=0, n_jobs=None
    ):
        """The :class:`~fastembed.annotate.FittedReference` for ``n_query`` query cells (exact or approximate
        search as :func:`~fastembed.annotate.fit_reference` decides); ``k``/``center`` default to the
        reference's."""
        k = self.k if k is None else int(k)
        center = self.center if center is None else bool(center)
        return _fit_arrays(
            self.embeddings,
            np.asarray(self.labels.cat.codes),
            list(self.labels.cat.categories),
            k=k,
            center=center,
            n_query=n_query,
            random_state=random_state,
            n_jobs=n_jobs,
        )

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the reference folder atomically (see :func:`write_reference`)."""
        return write_reference(directory, self, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, threads: int | None = None) -> Reference:
        """Read a reference folder (see :func:`read_reference`)."""
        return read_reference(directory, threads=threads)

    @classmethod
    def from_pretrained(
        cls,
        directory_or_hub_id: str | os.PathLike,
        *,
        revision: str | None = None,
        threads: int | None = None,
    ) -> Reference:
        """A local reference folder, or one fetched from the Hugging Face hub (needs ``huggingface_hub``).

        Parameters
        ----------
        directory_or_hub_id : str or os.PathLike
            A folder, or a hub id ``"owner/name"``.
        revision : str, optional
            Hub revision (branch, tag or commit); only for hub ids.
        threads : int, optional
            Numba threads of the model.

        Returns
        -------
        Reference
        """
        check_folder_arg(directory_or_hub_id, "reference")
        path = Path(directory_or_hub_id).expanduser()
        if not path.exists():
            path = fetch_folder(str(directory_or_hub_id), revision, what="reference")
        return read_reference(path, threads=threads)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload fastembed reference",
    ) -> str:
        """Upload the reference folder to the Hugging Face hub (needs ``huggingface_hub`` and network access).

        Parameters
        ----------
        repo_id : str
            ``"owner/name"``; created if missing.
        private, token, commit_message
            Passed to ``huggingface_hub``.

        Returns
        -------
        str
            The URL of the commit.
        """
        return upload_folder(
            lambda tmp: self.save(tmp / "reference"),
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            advice="save the reference with reference.save(folder) and upload the folder later",
        )


def _fit_arrays(
    embeddings: np.ndarray,
    codes: np.ndarray,
    categories: list,
    *,
    k: int,
    center: bool,
    n_query: int,
    random_state=0,
    n_jobs=None,
    name: str = "reference",
) -> FittedReference:
    """:func:`fastembed.annotate.fit_reference` for arrays that are already checked (labelled, non-zero)."""
    r = np.asarray(embeddings, dtype=np.float32)
    mean = None
    if center:
        mean = r.mean(axis=0, dtype=np.float64).astype(np.float32)
        r = r - mean
    r, _ = unit_rows(r)
    if k > r.shape[0]:
        given = Keyword("k", k)
        raise HintedValueError(
            f"{given} is larger than the {r.shape[0]} cells of {name}; expected k <= {r.shape[0]}",
            keywords=(given,),
        )
    index = None
    if int(n_query) * r.shape[0] > settings.EXACT_SEARCH_PAIRS:
        index = build_index(r, int(k), random_state, n_jobs)
    return FittedReference(
        unit=r,
        mean=mean,
        codes=np.asarray(codes, dtype=np.int64),
        categories=list(categories),
        k=int(k),
        index=index,
        name=name,
    )


# -- calibration ---------------------------------------------------------------------------------------------
def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """Expected calibration error: the cell-weighted mean ``|accuracy - mean confidence|`` over equal-width bins.

    Parameters
    ----------
    confidence : array-like of float, shape (n,)
        Reported confidences in [0, 1].
    correct : array-like of bool, shape (n,)
        Whether each label was right.
    n_bins : int
        Bins of [0, 1] (the last one closed).

    Returns
    -------
    float
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return float("nan")
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    err = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            err += m.sum() * abs(ok[m].mean() - conf[m].mean())
    return float(err / conf.size)


def _fit_calibration(share: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Isotonic map from vote share to the chance the label is right, as (2, m) float32 breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(np.asarray(share, dtype=np.float64), np.asarray(correct, dtype=np.float64))
    return np.vstack([iso.X_thresholds_, iso.y_thresholds_]).astype(np.float32)


def _calibrate(share: np.ndarray, calibration: np.ndarray | None) -> np.ndarray:
    if calibration is None:
        return np.asarray(share, dtype=np.float32)
    return np.interp(share, calibration[0], calibration[1]).astype(np.float32)


def cross_validate(
    embeddings: np.ndarray,
    codes: np.ndarray,
    n_labels: int,
    *,
    k: int,
    center: bool,
    n_folds: int = 5,
    seed=0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold annotation of the reference by itself: each fold labelled from the other folds.

    Parameters
    ----------
    embeddings : np.ndarray of float32, shape (n, dim)
    codes : np.ndarray of int, shape (n,)
    n_labels : int
    k, center
        As for annotation.
    n_folds : int
        Folds, each type's cells spread evenly over them.
    seed : int
        Seed of the fold assignment.

    Returns
    -------
    predicted : np.ndarray of int64, shape (n,)
    vote_share : np.ndarray of float32, shape (n,)
    """
    rng = np.random.default_rng(seed)
    n = embeddings.shape[0]
    fold = np.empty(n, dtype=np.int64)
    for c in range(n_labels):
        rows = np.flatnonzero(codes == c)
        fold[rng.permutation(rows)] = np.arange(rows.size) % n_folds
    predicted = np.zeros(n, dtype=np.int64)
    share = np.zeros(n, dtype=np.float32)
    for f in range(n_folds):
        test = fold == f
        if not test.any() or test.all():
            continue
        fitted = _fit_arrays(
            embeddings[~test],
            codes[~test],
            list(range(n_labels)),
            k=min(k, int((~test).sum())),
            center=center,
            n_query=int(test.sum()),
        )
        w, s, _, _ = predict_with_distance(fitted, embeddings[test])
        predicted[test], share[test] = w, s
    return predicted, share


# -- build -----------------------------------------------------------------------------------------------
def build_reference(
    model,
    adata,
    *,
    label_key: str = "cell_type",
    obs_columns=(),
    embedding_key: str = "scembed_X",
    k: int = 10,
    center: bool = True,
    max_novelty: float | None = DEFAULT_MAX_NOVELTY,
    calibrate: bool = True,
    n_folds: int = 5,
    seed: int = 0,
    description: str = "",
) -> Reference:
    """Build a shareable reference from a trained model and a labelled AnnData.

    Parameters
    ----------
    model : fastembed.ScEmbed or str or os.PathLike
        The trained model (or its folder / hub id) that encodes the reference and, later, the query cells.
    adata : anndata.AnnData or str or os.PathLike
        The reference cells (an ``.h5ad`` path is read): labels in ``obs[label_key]``; embeddings in
        ``obsm[embedding_key]`` if present (they must come from ``model.encode`` with its default pooling),
        otherwise the peak matrix is encoded through ``model``. Cells without a label or with an all-zero
        embedding are left out (warning).
    label_key : str
        The label column.
    obs_columns : iterable of str
        Other ``obs`` columns to keep in the reference (e.g. ``["donor"]``).
    embedding_key : str
        The ``obsm`` key of embeddings, here and in query AnnData objects.
    k : int
        Neighbours of the vote and of the novelty score (stored; annotation uses it by default).
    center : bool
        Cosine around the reference mean (stored).
    max_novelty : float or None
        Default novelty threshold stored in the folder (cells above it are called unknown); None: never.
    calibrate : bool
        Fit the vote share -> P(correct) map by ``n_folds``-fold cross-validation on the reference (needs at
        least two labels) and report the calibrated confidence.
    n_folds : int
        Folds of the build-time cross-validation (accuracy per type and calibration).
    seed : int
        Seed of the fold assignment.
    description : str
        A line about the data for the model card (source, tissue, assay).

    Returns
    -------
    Reference
    """
    from fastembed.scembed import ScEmbed

    if isinstance(model, str | os.PathLike):
        model = ScEmbed.from_pretrained(model)
    if not isinstance(model, ScEmbed):
        raise TypeError(f"model must be a fastembed.ScEmbed or a model folder, got {type(model).__name__}")
    model._require_vectors()
    if not is_whole(k) or k < 1:
        raise ParameterError("k", "an integer >= 1", k)
    _check_threshold("max_novelty", max_novelty)
    if not is_whole(n_folds) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}"[:300])
    name = "reference AnnData"
    if isinstance(adata, str | os.PathLike):
        from fastembed.genome.readers import read_h5ad

        name = f"reference '{adata}'"
        adata = read_h5ad(adata)
    if not hasattr(adata, "obs"):
        raise TypeError(f"adata must be an AnnData or an .h5ad path, got {type(adata).__name__}")
    obs_columns = [obs_columns] if isinstance(obs_columns, str) else list(obs_columns)
    for col in [label_key, *obs_columns]:
        if col not in adata.obs:
            have = ", ".join(map(repr, adata.obs.columns)) or "none"
            raise KeyError(f"{name} has no obs['{col}'] (obs columns: {have})")
    if embedding_key in adata.obsm:
        emb = embedding_matrix(adata, embedding_key, name)
    else:
        emb = np.asarray(model.encode(adata, progress=False), dtype=np.float32)
    if emb.shape[1] != model.embedding_dim:
        raise ValueError(
            f"{name} obsm['{embedding_key}'] has {emb.shape[1]} dims but the model makes {model.embedding_dim}; "
            "expected embeddings from this model's encode"
        )
    labels = adata.obs[label_key]
    keep = emb.any(axis=1) & labels.notna().to_numpy()
    if not keep.all():
        warn(
            f"{int((~keep).sum())} cells of {name} have no label in obs['{label_key}'] or an all-zero embedding; "
            "left out of the reference"
        )
    if keep.sum() <= k:
        given = Keyword("k", k)
        raise HintedValueError(
            f"{name} has {int(keep.sum())} usable cells; a reference needs more than {given}",
            keywords=(given,),
        )
    emb = np.ascontiguousarray(emb[keep])
    kept = labels[keep]
    categories = (
        [c for c in kept.cat.categories if (kept == c).any()]
        if isinstance(kept.dtype, pd.CategoricalDtype)
        else sorted(pd.unique(kept.astype(str)))
    )
    obs = pd.DataFrame(index=pd.Index(np.asarray(adata.obs_names[keep], dtype=str), name="barcode"))
    obs[label_key] = pd.Categorical(
        np.asarray(kept if isinstance(kept.dtype, pd.CategoricalDtype) else kept.astype(str), dtype=object),
        categories=[str(c) for c in categories],
    )
    for col in obs_columns:
        if col != label_key:
            obs[col] = adata.obs[col].to_numpy()[keep]
    codes = np.asarray(obs[label_key].cat.codes, dtype=np.int64)
    fitted = _fit_arrays(emb, codes, categories, k=int(k), center=center, n_query=emb.shape[0])
    loo = leave_one_out_distances(fitted)
    quality: dict = {}
    calibration = None
    if len(categories) >= 2:
        predicted, share = cross_validate(
            emb, codes, len(categories), k=int(k), center=center, n_folds=int(n_folds), seed=seed
        )
        correct = predicted == codes
        quality = {
            "n_folds": int(n_folds),
            "cv_accuracy": round(float(correct.mean()), 4),
            "cv_accuracy_per_type": {
                str(c): round(float(correct[codes == i].mean()), 4) for i, c in enumerate(categories)
            },
            "ece_vote_share": round(expected_calibration_error(share, correct), 4),
        }
        if calibrate:
            calibration = _fit_calibration(share, correct)
            quality["ece_calibrated_in_sample"] = round(
                expected_calibration_error(_calibrate(share, calibration), correct), 4
            )
    return Reference(
        model=model,
        embeddings=emb,
        obs=obs,
        label_key=label_key,
        embedding_key=embedding_key,
        k=int(k),
        center=bool(center),
        neighbour_distance=loo,
        calibration=calibration,
        max_novelty=None if max_novelty is None else float(max_novelty),
        quality=quality,
        model_folder=model._model_folder("fastembed"),
        description=str(description),
    )


def _check_threshold(name: str, value) -> None:
    if value is not None and not (is_number(value) and 0.0 <= value <= 1.0):
        raise ParameterError(name, "a number in [0, 1]", value, or_none=True)


# -- write -----------------------------------------------------------------------------------------------
def _config(ref: Reference) -> dict:
    return {
        "format": FORMAT,
        "fastembed_version": __version__,
        "n_cells": ref.n_cells,
        "embedding_dim": int(ref.embeddings.shape[1]),
        "label_key": ref.label_key,
        "obs_columns": [c for c in ref.obs.columns if c != ref.label_key],
        "embedding_key": ref.embedding_key,
        "k": int(ref.k),
        "center": bool(ref.center),
        "max_novelty": ref.max_novelty,
        "calibrated": ref.calibration is not None,
        "description": ref.description,
        "quality": ref.quality,
    }


def write_reference(directory: str | os.PathLike, ref: Reference, *, overwrite: bool = False) -> Path:
    """Write a reference folder atomically (a temporary folder beside it, renamed when complete).

    Parameters
    ----------
    directory : str or os.PathLike
        The folder to create; its parent must exist.
    ref : Reference
        With a model.
    overwrite : bool
        Replace an existing folder, only if it is a reference folder fastembed wrote.

    Returns
    -------
    pathlib.Path
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastembed.model.modelfolder import write_model_folder

    if ref.model_folder is None:
        raise ValueError(
            "this reference has no model (it was made from an AnnData in memory); build one with "
            "build_reference(model, adata) to save it"
        )
    if ref.neighbour_distance is None:
        raise ValueError("this reference has no neighbour distances; build it with build_reference")
    directory = Path(directory).expanduser().absolute()
    with _atomic.atomic_dir(directory, what="reference folder", overwrite=overwrite, kind="reference") as tmp:
        write_model_folder(tmp / MODEL_DIR, ref.model_folder)
        np.save(tmp / EMBEDDINGS, np.ascontiguousarray(ref.embeddings, dtype=np.float32), allow_pickle=False)
        np.save(
            tmp / NEIGHBOUR_DISTANCE,
            np.ascontiguousarray(ref.neighbour_distance, dtype=np.float32),
            allow_pickle=False,
        )
        if ref.calibration is not None:
            np.save(
                tmp / CALIBRATION, np.ascontiguousarray(ref.calibration, dtype=np.float32), allow_pickle=False
            )
        table = pa.Table.from_pandas(ref.obs.reset_index(names="barcode"), preserve_index=False)
        pq.write_table(table, tmp / OBS)
        config = _config(ref)
        (tmp / CONFIG).write_text(
            yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        (tmp / CARD).write_text(model_card(ref), encoding="utf-8")
    return directory


def model_card(ref: Reference) -> str:
    """The reference folder's README.md: what it holds, how it was trained, how well it annotates itself."""
    mf = ref.model_folder
    cfg = dict(mf.config) if mf is not None else {}
    training = cfg.get("training") or {}
    counts = ref.labels.value_counts().reindex(ref.labels.cat.categories)
    q = ref.quality or {}
    per_type = q.get("cv_accuracy_per_type") or {}
    lines = [
        "---",
        "library_name: fastembed",
        "tags: [single-cell, scATAC-seq, scembed, cell-type-annotation, fastembed-reference]",
        "---",
        "",
        "# fastembed annotation reference",
        "",
        ref.description or "A labelled single-cell ATAC-seq reference for fastembed's k-NN label transfer.",
        "",
        "## Use",
        "",
        "```python",
        "import fastembed as fe",
        'ref = fe.Reference.from_pretrained("path/or/owner-name")',
        'table = fe.annotate_with_reference("query.h5ad", ref)  # label, confidence, vote_share, novelty',
        "```",
        "",
        "or `fastembed annotate QUERY --reference THIS_FOLDER --output labels.csv`.",
        "",
        "## Data",
        "",
        f"- {ref.n_cells} labelled cells, label column `{ref.label_key}`, {len(counts)} types",
        f"- other obs columns: {', '.join(f'`{c}`' for c in ref.obs.columns if c != ref.label_key) or 'none'}",
        "",
        "| type | cells | cross-validated accuracy |",
        "|---|---:|---:|",
    ]
    for t, n in counts.items():
        acc = per_type.get(str(t))
        lines.append(f"| {t} | {int(n)} | {'' if acc is None else f'{acc:.3f}'} |")
    lines += [
        "",
        "## Model",
        "",
        f"- universe: {len(mf.universe) if mf is not None else '?'} regions"
        + (f", sha256 `{cfg['universe_sha256']}`" if cfg.get("universe_sha256") else ""),
        f"- embedding_dim {cfg.get('embedding_dim')}, window_size {cfg.get('window_size')}, negative_samples "
        f"{cfg.get('negative_samples')}, min_count {cfg.get('min_count')}, n_components {cfg.get('n_components')}",
        "- training: " + (", ".join(f"{k} {v}" for k, v in training.items()) or "not recorded"),
        f"- written by fastembed {cfg.get('fastembed_version', __version__)}",
        "",
        "## Annotation settings",
        "",
        f"- k = {ref.k} neighbours, cosine {'around the reference mean' if ref.center else '(plain)'}",
        f"- novelty threshold (cells above it are called unknown): {ref.max_novelty}",
        f"- confidence: {'vote share calibrated by cross-validation (isotonic)' if ref.calibration is not None else 'vote share'}",
        "",
        "## Quality measured at build",
        "",
    ]
    if q:
        lines += [
            f"- {q.get('n_folds')}-fold cross-validated accuracy on the reference: {q.get('cv_accuracy')}",
            f"- expected calibration error of the vote share (out of fold): {q.get('ece_vote_share')}",
        ]
        if "ece_calibrated_in_sample" in q:
            lines.append(
                f"- after isotonic calibration (in sample, so optimistic): {q['ece_calibrated_in_sample']}"
            )
    else:
        lines.append("- not measured (fewer than two labels)")
    return "\n".join(lines) + "\n"


# -- read ------------------------------------------------------------------------------------------------
def is_reference_folder(path) -> bool:
    """True when ``path`` is a folder holding ``reference.yaml`` (a reference, not a model or an AnnData)."""
    return (
        isinstance(path, str | os.PathLike) and Path(path).is_dir() and os.path.lexists(Path(path) / CONFIG)
    )


def _bad(path: Path, key: str, value, expected: str) -> ValueError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(
        f"reference config '{path}': {key} must be {expected}, got {text} ({type(value).__name__})"
    )


def _read_config(path: Path) -> dict:
    from fastembed.model.modelfolder import read_config_mapping

    config = read_config_mapping(path, "reference")
    if config.get("format") != FORMAT:
        raise _bad(path, "format", config.get("format"), repr(FORMAT))
    for key, low in (("n_cells", 2), ("embedding_dim", 1), ("k", 1)):
        v = config.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= _MAX_INT:
            raise _bad(path, key, v, f"an integer from {low} to {_MAX_INT}")
    if config["k"] >= config["n_cells"]:
        raise _bad(path, "k", config["k"], f"below n_cells ({config['n_cells']})")
    for key in ("label_key", "embedding_key"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise _bad(path, key, config.get(key), "a non-empty string")
    cols = config.get("obs_columns", [])
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise _bad(path, "obs_columns", cols, "a list of column names")
    for key in ("center", "calibrated"):
        if not isinstance(config.get(key), bool):
            raise _bad(path, key, config.get(key), "true or false")
    mn = config.get("max_novelty")
    if mn is not None and (isinstance(mn, bool) or not isinstance(mn, int | float) or not 0 <= mn <= 1):
        raise _bad(path, "max_novelty", mn, "a number in [0, 1] or null")
    if not isinstance(config.get("description", ""), str):
        raise _bad(path, "description", config.get("description"), "a string")
    quality = config.get("quality") or {}
    if not isinstance(quality, dict):
        raise _bad(path, "quality", quality, "a mapping")
    return config


def _read_obs(path: Path, n_cells: int, label_key: str, columns: list) -> pd.DataFrame:
    import pyarrow.parquet as pq

    from fastembed.model.modelfolder import model_file

    if model_file(path.parent, path.name) is None:
        raise FileNotFoundError(f"reference folder '{path.parent}' has no {OBS}")
    try:
        meta = pq.ParquetFile(path).metadata
        rows = meta.num_rows
    except Exception as err:
        raise ValueError(f"'{path}' is not a parquet file ({type(err).__name__}: {str(err)[:200]})") from None
    if rows != n_cells:
        raise ValueError(
            f"'{path}' has {rows} rows; expected n_cells {n_cells}, as '{path.parent / CONFIG}' says"
        )
    want = ["barcode", label_key, *columns]
    try:
        table = pq.read_table(path, columns=want)
    except Exception as err:
        raise ValueError(
            f"'{path}' lacks a column of {want} or cannot be read ({type(err).__name__}: {str(err)[:200]})"
        ) from None
    obs = table.to_pandas()
    barcodes = obs.pop("barcode")
    if barcodes.isna().any() or not all(isinstance(b, str) for b in barcodes):
        raise ValueError(f"'{path}': column barcode must hold strings (the cell names)")
    labels = obs[label_key]
    if labels.isna().any():
        raise ValueError(f"'{path}': column {label_key} has missing labels; every reference cell is labelled")
    if not isinstance(labels.dtype, pd.CategoricalDtype):
        obs[label_key] = pd.Categorical(labels.astype(str), categories=sorted(pd.unique(labels.astype(str))))
    obs.index = pd.Index(barcodes.to_numpy(dtype=object), name="barcode")
    return obs


def read_reference(directory: str | os.PathLike, *, threads: int | None = None) -> Reference:
    """Read a reference folder, checked like a model folder (nothing unpickled; sizes, shapes, finiteness).

    Parameters
    ----------
    directory : str or os.PathLike
    threads : int, optional
        Numba threads of the model.

    Returns
    -------
    Reference

    Raises
    ------
    FileNotFoundError
        The folder or a required file is missing (named).
    ValueError
        A file is damaged or disagrees with reference.yaml: the message names the file and what was expected.
    """
    from fastembed.model.modelfolder import allowed_roots, check_finite, load_npy, model_file
    from fastembed.scembed import ScEmbed

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"reference folder '{directory}' does not exist or is not a folder")
    config = _read_config(directory / CONFIG)
    n, dim = config["n_cells"], config["embedding_dim"]
    roots = allowed_roots(directory)
    model_dir = directory / MODEL_DIR
    if not model_dir.is_dir() or (
        model_dir.is_symlink() and not any(Path(os.path.realpath(model_dir)).is_relative_to(r) for r in roots)
    ):
        raise FileNotFoundError(f"reference folder '{directory}' has no {MODEL_DIR}/ model folder")
    model = ScEmbed.from_pretrained(model_dir, threads=threads)
    if model.embedding_dim != dim:
        raise ValueError(
            f"'{directory / CONFIG}' says embedding_dim {dim} but the model in '{model_dir}' makes "
            f"{model.embedding_dim}-dim embeddings"
        )
    for name in (EMBEDDINGS, NEIGHBOUR_DISTANCE, CALIBRATION):
        model_file(directory, name, roots)  # regular files inside the folder (or the hub cache's blobs)
    emb = load_npy(directory / EMBEDDINGS, required=True, dtype_kind="f4", what="embeddings")
    if emb.shape != (n, dim):
        raise ValueError(
            f"'{directory / EMBEDDINGS}' has shape {emb.shape}; expected ({n}, {dim}) as '{directory / CONFIG}' says"
        )
    check_finite(emb, directory / EMBEDDINGS)
    if not emb.any(axis=1).all():
        raise ValueError(
            f"'{directory / EMBEDDINGS}' has all-zero rows; every reference cell has an embedding"
        )
    loo = load_npy(directory / NEIGHBOUR_DISTANCE, required=True, dtype_kind="f4", what="neighbour distances")
    if loo.shape != (n,) or not np.isfinite(loo).all() or loo.min() < 0 or loo.max() > 2:
        raise ValueError(
            f"'{directory / NEIGHBOUR_DISTANCE}' must hold {n} finite cosine distances in [0, 2], got shape "
            f"{loo.shape}"
        )
    calibration = load_npy(directory / CALIBRATION, required=False, dtype_kind="f4", what="calibration")
    if (calibration is None) == config["calibrated"]:
        raise ValueError(
            f"'{directory / CONFIG}' says calibrated: {str(config['calibrated']).lower()} but "
            f"{CALIBRATION} is {'absent' if calibration is None else 'present'}"
        )
    if calibration is not None and not (
        calibration.ndim == 2
        and calibration.shape[0] == 2
        and calibration.shape[1] >= 1
        and np.isfinite(calibration).all()
        and (np.diff(calibration[0]) >= 0).all()
        and (np.diff(calibration[1]) >= 0).all()
        and calibration.min() >= 0
        and calibration.max() <= 1
    ):
        raise ValueError(
            f"'{directory / CALIBRATION}' must be a (2, m) table of increasing vote shares and probabilities in "
            f"[0, 1], got shape {calibration.shape}"
        )
    obs = _read_obs(directory / OBS, n, config["label_key"], config.get("obs_columns", []))
    from fastembed.model.modelfolder import read_model_folder

    return Reference(
        model=model,
        embeddings=emb,
        obs=obs,
        label_key=config["label_key"],
        embedding_key=config["embedding_key"],
        k=config["k"],
        center=config["center"],
        neighbour_distance=loo,
        calibration=calibration,
        max_novelty=None if config.get("max_novelty") is None else float(config["max_novelty"]),
        quality=config.get("quality") or {},
        model_folder=read_model_folder(model_dir),
        description=config.get("description", ""),
    )


# -- annotate --------------------------------------------------------------------------------------------
def _as_reference(reference) -> Reference:
    if isinstance(reference, Reference):
        return reference
    if is_reference_folder(reference):
        return read_reference(reference)
    raise TypeError(
        f"reference must be a fastembed Reference or a reference folder, got {type(reference).__name__}"[:300]
    )


def _query(query, ref: Reference, batch_cells: int) -> QueryEmbeddings:
    """The query's embeddings: read from ``obsm[ref.embedding_key]`` when it has them, else encoded."""
    import anndata as ad

    from fastembed.genome.readers import open_element, read_obs_names
    from fastembed.genome.tokens import TokenizedCells

    key = ref.embedding_key

    def encoded(data, names) -> QueryEmbeddings:
        if ref.model is None:
            raise ValueError(
                f"the query has no obsm['{key}'] and this reference has no model to encode it; encode it first"
            )
        emb = np.asarray(ref.model.encode(data, batch_cells=batch_cells, progress=False), dtype=np.float32)
        holder = ad.AnnData(obs=pd.DataFrame(index=pd.Index(np.asarray(names, dtype=str))), obsm={key: emb})
        return QueryEmbeddings(holder, key)

    if isinstance(query, TokenizedCells):
        return encoded(query, query.barcodes)
    if hasattr(query, "obsm"):
        return QueryEmbeddings(query, key) if key in query.obsm else encoded(query, query.obs_names)
    if not isinstance(query, str | os.PathLike):
        raise TypeError(
            "query must be an AnnData, TokenizedCells or a path (.h5ad, .zarr, token .parquet, a folder of "
            f"parquet parts or a 10x folder), got {type(query).__name__}"
        )
    p = Path(query)
    if not p.exists():
        raise FileNotFoundError(f"query '{p}' does not exist")
    suffix = "".join(p.suffixes[-1:]).lower()
    if suffix in (".h5ad", ".zarr"):
        try:
            has = key in open_element(p, "obsm")
        except (ValueError, KeyError, OSError):
            has = False
        if has:
            return QueryEmbeddings(p, key)
        if suffix == ".zarr":
            raise KeyError(
                f"query '{p}' has no obsm['{key}']; a .zarr query must hold embeddings from encode"
            )
        return encoded(p, read_obs_names(p))
    if p.is_dir() and any((p / m).exists() for m in ("matrix.mtx", "matrix.mtx.gz")):
        from fastembed.genome.readers import read_10x

        adata = read_10x(p)
        return encoded(adata, adata.obs_names)
    from fastembed.region2vec import Region2VecDataset

    data = Region2VecDataset(p)  # a token parquet file or a folder of parts
    return encoded(data, data.barcodes)


def annotate_with_reference(
    query,
    reference,
    *,
    k: int | None = None,
    center: bool | None = None,
    min_confidence: float | None = None,
    max_novelty="auto",
    unknown_label: str = "unknown",
    batch_cells: int = settings.ANNOTATE_BATCH_CELLS,
    random_state: int | None = 0,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Label query cells from a reference, with a calibrated confidence and a novelty score for each cell.

    Parameters
    ----------
    query : anndata.AnnData, TokenizedCells or str or os.PathLike
        An AnnData (its ``obsm[reference.embedding_key]`` if present, else its peaks are encoded through the
        reference's model), or a path: ``.h5ad``/``.zarr`` (embeddings read block by block when present, else an
        ``.h5ad`` is encoded), a token ``.parquet`` file or folder of parts, or a 10x folder.
    reference : Reference or str or os.PathLike
        A :class:`Reference` or a reference folder.
    k, center : optional
        Default: the reference's. Another value recomputes the reference's leave-one-out distances with it, so
        the novelty score stays calibrated.
    min_confidence : float, optional
        Cells whose (calibrated) confidence is below this are called ``unknown_label``.
    max_novelty : float, None or "auto"
        Cells whose novelty is above this are called ``unknown_label``; ``"auto"`` (default): the reference's
        stored threshold (:data:`fastembed.annotation.novelty.DEFAULT_MAX_NOVELTY` unless set at build); None: never.
    unknown_label : str
        Label of unassigned cells; it must not be a reference label when some cells get it (ValueError).
    batch_cells : int
        Query cells read and labelled at a time (a multiple of 1024).
    random_state, n_jobs
        For the pynndescent index of large problems.

    Returns
    -------
    pandas.DataFrame
        Indexed by the query's cell names: ``<label_key>`` (categorical: the reference's labels, plus
        ``unknown_label`` when used), ``confidence`` (float32: the calibrated probability that the label is
        right, or the vote share for an uncalibrated reference), ``vote_share`` (float32) and ``novelty``
        (float32 in [0, 1): 1 minus the tail probability of the cell's neighbour distance among the reference
        cells of its predicted type; see :mod:`fastembed.annotation.novelty`). Cells with an all-zero embedding get
        ``unknown_label``, confidence 0 and novelty 1.
    """
    ref = _as_reference(reference)
    if k is not None and (not is_whole(k) or k < 1):
        raise ParameterError("k", "an integer >= 1", k)
    _check_threshold("min_confidence", min_confidence)
    if isinstance(max_novelty, str) and max_novelty == "auto":
        max_novelty = ref.max_novelty
    _check_threshold("max_novelty", max_novelty)
    if not isinstance(unknown_label, str):
        raise ValueError(f"unknown_label must be a str, got {unknown_label!r}"[:300])
    if not is_whole(batch_cells) or batch_cells < 1 or batch_cells % settings.QUERY_BATCH:
        raise ParameterError("batch_cells", f"a positive multiple of {settings.QUERY_BATCH}", batch_cells)
    batch_cells = int(batch_cells)
    q = _query(query, ref, batch_cells)
    if q.n_obs == 0:
        raise ValueError(f"{q.name} has no cells; expected cells to label")
    if q.dim != ref.embeddings.shape[1]:
        raise ValueError(
            f"embedding dimensions differ: {q.name} has {q.dim}, the reference {ref.embeddings.shape[1]}; expected "
            "embeddings from the reference's model"
        )
    same = (k is None or int(k) == ref.k) and (center is None or bool(center) == ref.center)
    fitted = ref.fit(q.n_obs, k=k, center=center, random_state=random_state, n_jobs=n_jobs)
    fitted.name = "the reference"
    loo = ref.neighbour_distance if same and ref.neighbour_distance is not None else None
    if loo is None:
        # The stored distances belong to the stored k and centring; the search of other settings gets its own.
        loo = leave_one_out_distances(ref.fit(ref.n_cells, k=k, center=center))
    parts = [
        predict_with_distance(fitted, q.block(lo, min(lo + batch_cells, q.n_obs)), lo)
        for lo in range(0, q.n_obs, batch_cells)
    ]
    winner, share, ok, distance = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if not ok.any():
        raise ValueError(f"{q.name}: every cell's embedding is all zeros; expected embeddings from encode")
    novelty = (1.0 - tail_probability(distance, winner, loo, fitted.codes, len(fitted.categories))).astype(
        np.float32
    )
    novelty[~ok] = 1.0
    confidence = _calibrate(share, ref.calibration)
    confidence[~ok] = 0.0
    unknown = ~ok
    if min_confidence is not None:
        unknown |= confidence < min_confidence
    if max_novelty is not None:
        unknown |= novelty > max_novelty
    categories = list(fitted.categories)
    predicted = np.asarray(categories, dtype=object)[winner]
    if unknown.any():
        if unknown_label in categories:
            raise ValueError(
                f"unknown_label {unknown_label!r} is also a label of the reference (obs['{ref.label_key}']), and "
                f"{int(unknown.sum())} query cells would get it as unassigned; pass an unknown_label that is not "
                "a reference label"
            )
        predicted[unknown] = unknown_label
        categories = [*categories, unknown_label]
    return pd.DataFrame(
        {
            ref.label_key: pd.Categorical(predicted, categories=categories),
            "confidence": confidence,
            "vote_share": share,
            "novelty": novelty,
        },
        index=pd.Index(q.obs_names.copy()),
    )


def reference_from_anndata(
    adata, *, label_key: str = "cell_type", embedding_key: str = "scembed_X", k: int = 10, center: bool = True
) -> Reference:
    """An in-memory :class:`Reference` without a model (no saving, no calibration) from an embedded, labelled
    AnnData (or ``.h5ad``/``.zarr`` path, of which only obs and the embedding are read), for novelty scores with
    :func:`fastembed.annotate_celltypes`. Cells without a label or with an all-zero embedding are left out."""
    from fastembed.annotation.annotate import fit_reference, input_name, read_embedded

    name = input_name("reference")
    if isinstance(adata, str | os.PathLike):
        name = input_name("reference", adata)
        adata = read_embedded(adata, "reference", embedding_key)
    fitted = fit_reference(
        adata, n_query=1, embedding_key=embedding_key, k=k, label_key=label_key, center=center
    )
    emb = embedding_matrix(adata, embedding_key, name)
    keep = emb.any(axis=1) & adata.obs[label_key].notna().to_numpy()
    obs = pd.DataFrame(index=pd.Index(np.asarray(adata.obs_names[keep], dtype=str), name="barcode"))
    obs[label_key] = pd.Categorical.from_codes(fitted.codes, categories=[str(c) for c in fitted.categories])
    ref = Reference(
        model=None,
        embeddings=np.ascontiguousarray(emb[keep]),
        obs=obs,
        label_key=label_key,
        embedding_key=embedding_key,
        k=int(k),
        center=bool(center),
        max_novelty=None,
    )
    ref.neighbour_distance = leave_one_out_distances(ref.fit(ref.n_cells))
    return ref


def annotate_celltypes_with_reference(
    query_adata,
    reference,
    *,
    k: int,
    confidence_key: str | None,
    novelty_key: str | None,
    min_confidence,
    max_novelty,
    unknown_label: str,
    center: bool,
    random_state,
    n_jobs,
    batch_cells: int,
    client,
):
    """:func:`fastembed.annotate_celltypes`' work for a :class:`Reference` (or its folder), writing nothing: the
    labels (a categorical Series named by the reference's label column) and ``{confidence_key: calibrated
    confidence, novelty_key: novelty score}`` as float32 arrays, for the keys that are not None."""
    if client is not None:
        raise ValueError(
            "client= is not supported with a reference folder yet; annotate without a Dask client, or pass the "
            "reference's embeddings as an AnnData"
        )
    table = annotate_with_reference(
        query_adata,
        reference,
        k=k,
        center=center,
        min_confidence=min_confidence,
        max_novelty=max_novelty,
        unknown_label=unknown_label,
        batch_cells=batch_cells,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    labels = table[table.columns[0]]
    columns = {
        key: table[col].to_numpy()
        for key, col in ((confidence_key, "confidence"), (novelty_key, "novelty"))
        if key
    }
    return labels, columns


_annotate.register_reference_handler(
    _annotate.ReferenceHandler(
        is_reference=lambda obj: isinstance(obj, Reference) or is_reference_folder(obj),
        from_anndata=reference_from_anndata,
        annotate=annotate_celltypes_with_reference,
    )
)
