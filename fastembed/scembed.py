"""The user-facing model: :class:`ScEmbed` (train, encode, save, load) and cell-type annotation.

The class validates input, picks kernels and holds results; the work happens in plain numba functions
(:mod:`fastembed.sgns` for training, :mod:`fastembed.pooling` for encoding).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed._version import __version__
from fastembed.annotation.annotate import annotate_celltypes
from fastembed.common.budget import peak_matrix_blocks, plan_blocks, resolve_memory, token_block_costs
from fastembed.common.inputs import ENCODE_ACCEPTS, refuse_fragments
from fastembed.common.progress import check_progress, progress_bar
from fastembed.common.suffix import has_suffix
from fastembed.common.threads import check_threads, numba_threads
from fastembed.common.validate import check_positive_float, check_positive_int, check_sample
from fastembed.common.warn import warn
from fastembed.genome.readers import _as_adata, cell_matrix
from fastembed.genome.tokenize import _PeakMapper
from fastembed.genome.tokens import TokenizedCells, footer_regions, read_tokens_parquet, token_obs
from fastembed.genome.universe import Universe
from fastembed.kernels.pooling import weighted_mean_pool
from fastembed.kernels.projection import (
    CELL_NORM,
    HIGH_COVERAGE_COMPONENTS,
    apply_projection,
    auto_components,
    fit_projection,
    unit_rows,
)
from fastembed.model.trainmem import check_training_memory, parquet_counts
from fastembed.region2vec import Region2VecDataset
from fastembed.storage.atomic import atomic_dir, check_output_path
from fastembed.storage.hub import check_folder_arg, fetch_folder, upload_folder
from fastembed.storage.marker import mark, uns_safe

__all__ = ["ScEmbed", "annotate_celltypes"]

POOLINGS = ("mean", "pca")


DEFAULT_SAMPLE = "auto"
"""Default frequent-region subsampling: only regions with more than about 1,300 occurrences per pass are thinned
(:func:`fastembed.sgns.resolve_sample`, :data:`fastembed.sgns.THIN_OCCURRENCES`)."""
DEFAULT_COMPONENTS = "auto"
"""Default number of principal axes of the cell projection fitted at training (``pooling="pca"``): ``"auto"``
picks 20 or 30 from the training cells' coverage (:func:`fastembed.kernels.projection.auto_components`)."""


def _train_args(epochs, batch_size, learning_rate, min_learning_rate=1e-4) -> tuple:
    """:meth:`ScEmbed.train`'s numeric arguments, checked: (epochs or None, batch_size, learning_rate,
    min_learning_rate), or a ValueError that starts with the first bad argument's name. The command line
    calls it too, so that a bad flag is refused before the tokens are read."""
    epochs = None if epochs is None else check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    min_learning_rate = check_positive_float("min_learning_rate", min_learning_rate, allow_zero=True)
    if min_learning_rate > learning_rate:
        raise ValueError(
            f"min_learning_rate must be at most learning_rate={learning_rate}, got {min_learning_rate}"
        )
    return epochs, batch_size, learning_rate, min_learning_rate


def _check_components(value) -> int | str | None:
    """``n_components``: None, ``"auto"`` or a positive integer; anything else is a ValueError naming it."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, str):
        raise ValueError(f"n_components must be a positive integer, 'auto' or None, got {value!r}"[:300])
    return check_positive_int("n_components", value)


def _cell_names(adata):
    """Cell names sliceable by rows; an on-disk AnnData's are read block by block when written out."""
    return adata.names if hasattr(adata, "names") else np.asarray(adata.obs_names, dtype=object)


def _input_obs(data):
    """The cell annotations (obs DataFrame) of an AnnData input, in memory or on disk; for tokens made from a
    fragments file, its per-cell fragment counts; None for other tokens."""
    if not _is_peak_matrix(data):
        return token_obs(data)
    if isinstance(data, str | os.PathLike):
        from fastembed.genome.readers import read_obs

        return read_obs(data, index=False)
    return data.obs


def _is_parts_folder(path) -> bool:
    """A folder of token parquet parts (not a .zarr AnnData store, which is a folder too)."""
    p = Path(path)
    return (
        p.is_dir()
        and not has_suffix(p, ".zarr")
        and not any((p / m).exists() for m in ("zarr.json", ".zgroup"))
    )


def _is_peak_matrix(data) -> bool:
    """False for token inputs (parquet path or folder, TokenizedCells, Region2VecDataset), True for AnnData."""
    if isinstance(data, TokenizedCells):
        return False
    return not (
        isinstance(data, str | os.PathLike) and (has_suffix(data, ".parquet") or _is_parts_folder(data))
    )


def _counted(chunks, n_cells: int, enabled: bool):
    """``chunks`` (``(lo, hi, ...)`` tuples), advancing a progress bar of cells as each one is consumed."""
    bar = progress_bar(n_cells, desc="encoding", unit="cell", enabled=enabled)
    if bar is None:
        yield from chunks
        return
    try:
        for item in chunks:
            yield item
            bar.update(item[1] - item[0])
    finally:
        bar.close()


def _as_dataset(data) -> Region2VecDataset:
    if isinstance(data, Region2VecDataset):
        return data
    if isinstance(data, TokenizedCells | str | os.PathLike):
        return Region2VecDataset(data)
    raise TypeError(
        f"expected a Region2VecDataset, TokenizedCells or token parquet path, got {type(data).__name__}"
    )


class ScEmbed:
    """scEmbed (Region2Vec) model: one vector per universe region, learned by skip-gram with negative sampling.

    Parameters
    ----------
    embedding_dim : int
        Length of region and cell vectors (typical 50-200).
    window_size : int
        Context window: every epoch, each token is paired with the next ``2w`` tokens of a fresh random order of
        its cell (wrapping around), ``w`` uniform in ``1..window_size``: as many pairs as a two-sided word2vec
        window of this size, each pair once (typical 3-20). Wider windows see more of each cell per pass and
        get fewer passes by default; on granja2019 (14k cells) window 20 gained transfer accuracy, on
        400-5,000 cells it lost quality (bench/RESULTS-archive.md, "Time to quality").
    negative_samples : int
        Negative tokens per positive pair, drawn from the unigram^0.75 distribution (typical 5-20).
    min_count : int
        Tokens found in fewer cells are neither trained nor used when encoding.
    sample : float or "auto"
        Frequent-region subsampling. ``"auto"`` (the default) thins only regions with more than about 1,300
        occurrences (cells) per pass, so data of up to a few thousand cells train on every token and larger
        data spend fewer updates on their most common regions (on granja2019's 14k cells: 84% of the tokens,
        a higher Leiden ARI, the same transfer accuracy). A number is word2vec's threshold (gensim's
        ``sample``, e.g. 1e-4: relative to the data's size); 0 keeps every token.
    n_components : int, "auto" or None
        Principal axes of the cell projection fitted on the training cells after training and applied by
        :meth:`encode` (``pooling="pca"``, the default for such a model); None fits none (plain mean pooling).
        ``"auto"`` (the default) keeps 20 axes, or 30 when the training cells hold 600 trained tokens or more
        on average (plate-based, sorted or pooled cells), where more axes carry cell-type signal above the
        pooling noise (:func:`fastembed.kernels.projection.auto_components`); with those 30 axes the projected
        cells are also scaled to unit length (``cell_norm: l2``, :func:`fastembed.kernels.projection.unit_rows`),
        the cosine geometry in which a euclidean Leiden graph separates such cells best. A trained model records
        what it chose (``training_info["n_components"]``; ``n_components`` and ``cell_norm`` in a saved folder).
    seed : int, optional
        Seed of all random draws. With ``threads=1`` two runs give bit-identical vectors.
    threads : int, optional
        Numba threads for training and encoding (default: numba's setting, usually all cores).

    Attributes
    ----------
    universe : Universe or None
        The model's vocabulary (None before training or loading).
    training_info : dict
        Training parameters and measured statistics of the last :meth:`train` (or what a loaded folder
        recorded).
    """

    def __init__(
        self,
        embedding_dim: int = 100,
        window_size: int = settings.DEFAULT_WINDOW_SIZE,
        negative_samples: int = 5,
        *,
        min_count: int = 1,
        sample: float | str = DEFAULT_SAMPLE,
        n_components: int | str | None = DEFAULT_COMPONENTS,
        seed: int | None = None,
        threads: int | None = None,
    ):
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.window_size = check_positive_int("window_size", window_size)
        self.negative_samples = check_positive_int("negative_samples", negative_samples)
        self.min_count = check_positive_int("min_count", min_count)
        self.sample = check_sample(sample)
        self.n_components = _check_components(n_components)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}"[:300])
        self.seed = None if seed is None else int(seed)
        self.threads = check_threads(threads)
        self.universe: Universe | None = None
        self.training_info: dict = {}
        self._region_vectors: np.ndarray | None = None
        self._output_vectors: np.ndarray | None = None
        self._token_counts: np.ndarray | None = None
        self._projection: np.ndarray | None = None
        self._cell_norm: str | None = None  # CELL_NORM: projected cells scaled to unit length
        # Files this model was made from or read: save() and encode(out=...) may not replace them.
        self._training_files: list[Path] = []
        self._model_dir: Path | None = None

    # -- state ----------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        state = f"vocab_size={self.vocab_size}" if self.universe is not None else "untrained"
        return (
            f"ScEmbed(embedding_dim={self.embedding_dim}, window_size={self.window_size}, "
            f"negative_samples={self.negative_samples}, min_count={self.min_count}, {state})"
        )

    @property
    def vocab_size(self) -> int | None:
        """Universe regions + 7 special tokens, or None before training/loading."""
        return None if self.universe is None else self.universe.vocab_size

    @property
    def region_vectors(self) -> np.ndarray:
        """Trained input vectors, float32 (vocab_size, embedding_dim); a read-only view."""
        self._require_vectors()
        view = self._region_vectors.view()
        view.flags.writeable = False
        return view

    @property
    def trained_tokens(self) -> np.ndarray:
        """bool (vocab_size,): tokens with a trained vector (seen in >= ``min_count`` cells; no specials)."""
        self._require_vectors()
        if self._token_counts is not None:
            mask = self._token_counts >= self.min_count
        else:  # a model folder without counts (e.g. geniml's): every region token counts as trained
            mask = np.ones(self.vocab_size, dtype=bool)
        mask = mask.copy()
        mask[len(self.universe) :] = False
        return mask

    def _require_vectors(self) -> None:
        if self._region_vectors is None:
            raise RuntimeError(
                "the model has no vectors yet: call train() or load one with ScEmbed.from_pretrained()"
            )

    # -- training -------------------------------------------------------------------------------------
    def train(
        self,
        dataset,
        epochs: int | None = None,
        batch_size: int = 256,
        learning_rate: float = 0.025,
        *,
        min_learning_rate: float = 1e-4,
        init: str = "spectral",
        progress: bool = True,
    ) -> ScEmbed:
        """Learn region vectors by skip-gram with negative sampling over the tokens of each cell.

        Parameters
        ----------
        dataset : Region2VecDataset, TokenizedCells or str/os.PathLike
            Tokenized cells (a parquet path is loaded with :class:`Region2VecDataset`). Its universe
            becomes the model's. A model that already has a universe (trained or loaded) keeps it: it trains
            again, from fresh vectors, only on cells tokenized with that universe, and refuses others with a
            ``ValueError``; for another universe create a new :class:`ScEmbed`.
        epochs : int, optional
            Passes over all cells. By default it follows from the data (:func:`fastembed.sgns.auto_epochs`):
            enough passes for the typical region to be in about ``PAIR_BUDGET`` context pairs, at least
            ``MIN_EPOCHS`` and at most a cap that grows with the number of cells: at the default window, 20
            up to 2,000 cells, rising to 40 at 5,000 cells, 40 up to granja2019's size (14k cells), fewer for
            larger datasets (5 for atlases) and for wider windows.
        batch_size : int
            Number of cells in one parallel work unit: threads take blocks of ``batch_size`` cells, each
            with its own random stream; hogwild updates are shared (not a gradient mini-batch).
        learning_rate : float
            Initial learning rate, decaying linearly to ``min_learning_rate`` over all epochs.
        min_learning_rate : float
        init : {"spectral", "random"}
            ``"spectral"``: start from the regions' coordinates in the spectral embedding of the cells'
            cosine-similarity graph, as SnapATAC2 computes it (:mod:`fastembed.warmstart`), which needs far fewer
            epochs; ``"random"``: word2vec's initialisation.
        progress : bool
            Show a tqdm progress bar (epochs, tokens/s, learning rate) on an interactive terminal. True or False
            only (a numpy bool too): anything else, e.g. ``"no"``, is a ``TypeError``.

        Returns
        -------
        ScEmbed
            ``self``, with new vectors (training always starts afresh, from the ``init`` vectors).

        Raises
        ------
        fastembed.sgns.DivergedError
            Training left NaN or infinite vectors (``learning_rate`` too high); the model is left as it was.
        """
        from fastembed.kernels.sgns import DivergedError, auto_epochs, train_sgns

        progress = check_progress(progress)
        epochs, batch_size, learning_rate, min_learning_rate = _train_args(
            epochs, batch_size, learning_rate, min_learning_rate
        )
        # Before the tokens are read (a parquet file's footer says how many) and before numba allocates.
        footer = parquet_counts(dataset)
        if footer is not None:
            check_training_memory(*footer, footer_regions(dataset), self.embedding_dim, f"'{dataset}'")
        ds = _as_dataset(dataset)
        if footer is None:
            check_training_memory(len(ds), ds.n_tokens, ds.vocab_size, self.embedding_dim, ds.source)
        if self.universe is not None and not ds.universe.same_as(self.universe):
            raise ValueError(
                f"the dataset ({ds.source}) was tokenized with another universe ({len(ds.universe)} regions) "
                f"than this model's ({len(self.universe)} regions, '{self.universe.source}'); a model keeps its "
                "universe when trained again: tokenize the cells with the model's universe.bed, or train a new "
                "ScEmbed() for the other universe"
            )
        if epochs is None:
            epochs = auto_epochs(
                ds.indptr, ds.indices, ds.vocab_size, window_size=self.window_size, min_count=self.min_count
            )
        try:
            result = train_sgns(
                ds.indptr,
                ds.indices,
                ds.vocab_size,
                embedding_dim=self.embedding_dim,
                window_size=self.window_size,
                negative_samples=self.negative_samples,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                min_learning_rate=min_learning_rate,
                min_count=self.min_count,
                sample=self.sample,
                seed=self.seed,
                threads=self.threads,
                progress=progress,
                init=init,
            )
        except DivergedError:  # the learning rate's fault, not the dataset's
            raise
        except ValueError as err:  # the parameters are checked above, so the data is at fault: name it
            raise ValueError(f"dataset {ds.source}: {err}") from None
        self.universe = ds.universe
        self._region_vectors, self._output_vectors, self._token_counts = (
            result.w_in,
            result.w_out,
            result.counts,
        )
        self._training_files = [ds.path] if ds.path is not None else []
        self._projection = None
        self._cell_norm = None
        if self.n_components is not None:
            cells, empty = weighted_mean_pool(
                ds.indptr, ds.indices, self._region_vectors, self.pooling_weights("mean")
            )
            k = self.n_components
            if k == "auto":
                k = auto_components(
                    int(np.count_nonzero(self.trained_tokens[ds.indices])), int((~empty).sum())
                )
                self._cell_norm = CELL_NORM if k == HIGH_COVERAGE_COMPONENTS else None
            self._projection = fit_projection(cells[~empty], k)
        self.training_info = {
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "learning_rate": float(learning_rate),
            "min_learning_rate": float(min_learning_rate),
            "init": init,
            "n_cells": len(ds),
            "n_tokens": ds.n_tokens,
            "words_processed": int(result.words_processed),
            "seconds": float(result.seconds),
            "n_trained_tokens": int(np.count_nonzero(result.trained)),
            "sample_threshold": float(result.sample),
            "kept_share": float(result.kept_share),
            "n_components": None if self._projection is None else int(self._projection.shape[0] - 1),
            **ds.sample_info,  # what share of the data a sampled dataset (sample_cells=) trained on
        }
        if result.epochs_done < epochs:
            self.training_info.update(epochs_completed=int(result.epochs_done), partial=True)
            warn(
                f"training was interrupted after {result.epochs_done} of {epochs} epochs; the model keeps the "
                "vectors trained so far and is marked partial (training_info['partial']); save it or train again",
            )
        return self

    # -- encoding -------------------------------------------------------------------------------------
    def _encode_inputs(self, data, batch_cells: int, budget: int):
        """For Dask tasks: (n_cells, barcodes, _PeakMapper or None, blocks, chunk, iterator of one payload per
        block); the blocks are whole chunks of ``chunk`` cells within ``budget``."""
        from fastembed.genome.blocks import source_path, x_payload

        if not _is_peak_matrix(data):
            n_cells, barcodes, _, (spans, chunk), chunks = self._token_chunks(
                data, batch_cells, budget=budget
            )
            return n_cells, barcodes, None, spans, chunk, (("tokens", ip, ix) for _, _, ip, ix in chunks)
        adata, mapper, name = self._mapper(data)
        matrix, _ = cell_matrix(adata, None, name=name)
        spans, chunk = peak_matrix_blocks(
            matrix, mapper, budget, batch_cells, name, out_per_cell=4 * self.embedding_dim, chunked=True
        )
        path = source_path(data)
        payloads = (x_payload(adata, path, lo, hi) for lo, hi in spans)
        return adata.n_obs, _cell_names(adata), mapper, spans, chunk, payloads

    def _mapper(self, data, chrom_style: str = "asis"):
        """(AnnData, _PeakMapper to the model's universe, name for messages) of a peak-matrix input."""
        adata, name = _as_adata(data)
        mapper = _PeakMapper(adata, self.universe, name=name, chrom_style=chrom_style)
        if mapper.n_peaks_unmapped == mapper.n_peaks:
            # Every cell would get a zero embedding: no result is better than a file of zeros.
            raise ValueError(
                f"none of the {mapper.n_peaks} peaks of {name} overlaps a region of the model's universe "
                f"('{self.universe.source}', {len(self.universe)} regions; {mapper.n_peaks_unknown_chrom} peaks "
                "lie on chromosomes it lacks): check that the cells and the model use the same genome build "
                "and chromosome names (chrom_style=)"
            )
        if mapper.n_peaks_unmapped:
            warn(
                f"{mapper.n_peaks_unmapped} of {mapper.n_peaks} peaks of {name} overlap no region of the "
                f"model's universe ({len(self.universe)} regions); they do not contribute to the embeddings",
            )
        return adata, mapper, name

    def _token_chunks(
        self,
        data,
        batch_cells: int,
        layer: str | None = None,
        chrom_style: str = "asis",
        budget: int | None = None,
    ):
        """(n_cells, barcodes, name, (blocks, chunk), iterator of (lo, hi, indptr, indices)) for any accepted
        input: blocks of whole chunks of ``chunk`` cells, each within ``budget`` bytes (:mod:`fastembed.common.budget`),
        tokens, the pooling buffer and its copy for zarr counted."""
        budget = resolve_memory(budget)
        out_per_cell = 4 * self.embedding_dim
        name = "the tokens"
        if isinstance(data, str | os.PathLike) and (has_suffix(data, ".parquet") or _is_parts_folder(data)):
            name = f"token file '{data}'"
            data = read_tokens_parquet(data)
        if isinstance(data, Region2VecDataset):
            name = f"dataset {data.source}"
        if isinstance(data, TokenizedCells):
            if layer is not None:
                raise ValueError(f"layer={layer!r} applies to an AnnData; {name} are already tokenized")
            if not data.universe.same_as(self.universe):
                raise ValueError(
                    f"these tokens were made with another universe ({len(data.universe)} regions, checksum "
                    f"{data.universe.checksum[:12]}) than the model's ({len(self.universe)} regions, checksum "
                    f"{self.universe.checksum[:12]}); pass the AnnData instead and it is tokenized against the "
                    "model's universe"
                )
            tok = data
            per_nnz, per_cell = token_block_costs(out_per_cell)
            plan = plan_blocks(
                tok.indptr,
                len(tok),
                budget=budget,
                per_nnz=per_nnz,
                per_cell=per_cell,
                max_cells=batch_cells,
                chunked=True,
                what=name,
            )

            def chunks():
                for lo, hi in plan[0]:
                    ip = tok.indptr[lo : hi + 1]
                    yield lo, hi, ip - ip[0], tok.indices[ip[0] : ip[-1]]

            return len(tok), np.asarray(tok.barcodes, dtype=object), name, plan, chunks()

        adata, mapper, name = self._mapper(data, chrom_style)
        matrix, field_name = cell_matrix(adata, layer, name=name)
        plan = peak_matrix_blocks(
            matrix, mapper, budget, batch_cells, name, out_per_cell=out_per_cell, chunked=True
        )

        def chunks():
            for lo, hi in plan[0]:
                ip, ix = mapper.tokens(matrix, lo, hi, field_name)
                yield lo, hi, ip, ix

        return adata.n_obs, _cell_names(adata), name, plan, chunks()

    def pooling_weights(self, pooling: str = "mean") -> np.ndarray:
        """Per-token pooling weights, float32 (vocab_size,): 1 for trained tokens, 0 otherwise (both poolings
        start from the plain mean)."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        return self.trained_tokens.astype(np.float32)

    @property
    def default_pooling(self) -> str:
        """``"pca"`` when the model holds a fitted cell projection, else ``"mean"``."""
        return "mean" if self._projection is None else "pca"

    def _resolve_pooling(self, pooling: str | None) -> str:
        pooling = self.default_pooling if pooling is None else pooling
        self.pooling_weights(pooling)  # validates the name
        if pooling == "pca" and self._projection is None:
            raise ValueError(
                "pooling='pca' needs a cell projection, which this model does not have (it was trained "
                "with n_components=None or loaded from a folder without one); use pooling='mean'"
            )
        return pooling

    def _pool(self, ip, ix, weights, pooling: str, out: np.ndarray, name: str) -> int:
        """Pool one chunk into ``out`` (float32 (n, dim)); returns how many cells had no trained token."""
        _, empty = weighted_mean_pool(ip, ix, self._region_vectors, weights, out=out, name=name)
        if pooling == "pca":
            apply_projection(out, self._projection, empty)
            if self._cell_norm == CELL_NORM:
                unit_rows(out, empty)
        return int(empty.sum())

    def _zarr_store(
        self,
        path: Path,
        barcodes,
        pooling: str,
        embedding_key: str,
        batch_cells: int,
        obs=None,
        out_name=None,
        store=None,
    ):
        """Lay out an AnnData zarr store at ``path`` (obs names, ``uns``) and return its empty obsm array.

        ``barcodes`` is an array or a row-sliceable view (an on-disk AnnData's names): the names are written
        block by block, so millions of them are never held at once. ``obs`` (a DataFrame of the input's cell
        annotations in the same order, its index unused, or None) adds its columns: a store encoded from a
        labelled AnnData keeps its labels, as the ``.h5ad`` route does, and can then serve as an annotation
        reference. ``out_name`` names the store in messages (``path`` is its temporary). ``store`` (a
        :class:`fastembed.storage.zarrstore.GuardedStore` on ``path``) is written through instead of ``path`` itself.
        """
        import anndata as ad
        import pandas as pd
        import zarr

        n_cells = len(barcodes)
        chunk = min(batch_cells, max(n_cells, 1))  # the chunk length the blocks were cut to
        shell = ad.AnnData(obs=pd.DataFrame(index=pd.Index([], dtype=str)))
        mark(shell, embedding_key, pooling=pooling, config=uns_safe(self.config()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's notices about zarr format versions and obs names
            shell.write_zarr(str(path) if store is None else store)
        # Not through the consolidated metadata write_zarr left: anndata refuses to add elements to such a view.
        group = zarr.open_group(str(path) if store is None else store, mode="r+", use_consolidated=False)
        # Marks the store as ours, so overwrite= may replace it (and nothing else).
        group.attrs["fastembed_version"] = __version__
        index_name = group["obs"].attrs["_index"]
        attrs = dict(group["obs"][index_name].attrs)
        del group["obs"][index_name]
        names = group["obs"].create_array(index_name, shape=(n_cells,), dtype=str, chunks=(chunk,))
        names.attrs.update(attrs)
        for lo in range(0, n_cells, chunk):
            names[lo : lo + chunk] = np.asarray(barcodes[lo : lo + chunk], dtype=object).astype(str)
        if obs is not None and obs.shape[1]:
            from anndata.io import write_elem

            if len(obs) != n_cells:
                raise ValueError(f"obs has {len(obs)} rows for {n_cells} cells")
            written, skipped = [], []
            for col in obs.columns:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # anndata's notices about zarr format versions
                        write_elem(group["obs"], str(col), obs[col].values)
                    written.append(str(col))
                except Exception as err:  # noqa: BLE001 - a column anndata cannot store must not cost the run
                    if str(col) in group["obs"]:
                        del group["obs"][str(col)]
                    skipped.append(f"{str(col)[:40]!r} ({type(err).__name__})")
            group["obs"].attrs["column-order"] = written
            if skipped:
                warn(
                    f"obs columns {', '.join(skipped)} cannot be stored in zarr by anndata and were left out of "
                    f"'{out_name or path.name}'; the embeddings and the other columns are written"
                )
        emb = group["obsm"].create_array(
            embedding_key,
            shape=(n_cells, self.embedding_dim),
            dtype="float32",
            chunks=(chunk, self.embedding_dim),
        )
        emb.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        return emb

    def encode(
        self,
        adata_or_tokens,
        *,
        pooling: str | None = None,
        out: str | os.PathLike | None = None,
        batch_cells: int = settings.ENCODE_BATCH_CELLS,
        overwrite: bool = False,
        layer: str | None = None,
        client=None,
        embedding_key: str = settings.EMBEDDING_KEY,
        chrom_style: str = "asis",
        progress: bool = True,
        memory: int | str | None = None,
    ):
        """Embed cells: the mean of the vectors of each cell's trained tokens.

        Parameters
        ----------
        adata_or_tokens : AnnData, str/os.PathLike (.h5ad, .parquet or a folder of parquet parts), TokenizedCells or Region2VecDataset
            An AnnData (or ``.h5ad``) is tokenized against the model's own universe, chunk by chunk;
            tokens must come from the model's universe, with ids below its ``vocab_size``.
        pooling : {"pca", "mean"}, optional
            ``"mean"``: the plain mean of the trained tokens' vectors. ``"pca"`` (the default for a model
            trained by fastembed): that mean, centred and projected onto the top ``n_components`` principal
            axes of the training cells, each weighted so that its spread goes as the square root of its singular
            value (fitted once, at training; see :mod:`fastembed.projection`), still
            ``embedding_dim`` columns. Models without a projection (e.g. geniml's) default to ``"mean"``.
        out : str or os.PathLike, optional
            A ``.zarr`` path: embeddings stream there in chunks of ``batch_cells`` cells, written to a
            temporary store and renamed when complete. The store is an AnnData (``anndata.read_zarr`` opens
            it): barcodes as ``obs_names``, the vectors (float32, n_cells x dim, chunked by cells) in
            ``obsm[embedding_key]``, the model config in ``uns["fastembed"]["config"]``; no ``X``.
            Any other suffix is refused (a zarr store named ``.h5ad`` would mislead every reader): for an
            ``.h5ad``, put the returned array in ``adata.obsm`` and call ``adata.write_h5ad``.
        batch_cells : int
            Most cells tokenized and pooled at a time: an upper bound; ``memory`` cuts blocks of dense cells
            smaller. The zarr chunk length is the largest of ``batch_cells``, halved as often as needed, whose
            every chunk fits ``memory``; blocks are whole chunks.
        overwrite : bool
            Replace an existing ``out`` store, only if it is an embeddings store written by fastembed. ``out``
            may never be the input file or the model's folder (nor a folder holding them).
        layer : str, optional
            For an AnnData input: read the cells x peaks values from ``adata.layers[layer]`` instead of ``X``.
        client : dask.distributed.Client, optional
            Encode each block of ``batch_cells`` cells as a task on the cluster (bit-identical to the serial
            result). With ``out``, the tasks write their blocks straight into the zarr array (chunks = blocks,
            so a retried task rewrites its own chunk), which must be on a file system the workers see; an
            ``.h5ad``/``.zarr`` input is read by the workers. See :mod:`fastembed.distributed`.
        embedding_key : str
            The ``obsm`` key of the vectors in the ``out`` store.
        chrom_style : {"asis", "add-chr", "strip-chr"}
            How an AnnData's peak chromosomes are matched to the model's universe (see
            :func:`fastembed.io.tokenize_cells`).
        progress : bool
            Show a progress bar (cells) in a notebook or on an interactive terminal; silent in logs and CI
            (:func:`fastembed._progress.progress_bar`). True or False only (a numpy bool too): anything else,
            e.g. ``"no"``, is a ``TypeError``.
        memory : int or str, optional
            Bytes one block may need (e.g. ``"512MB"``; default ``settings.MEMORY_BUDGET``): the block of the
            input read, its tokens and its embeddings; blocks are cut by the cells' nonzeros
            (:mod:`fastembed.common.budget`). The model and an in-memory result come on top. A cell that alone needs
            more is a ValueError before anything is written. The same for each Dask task.

        Returns
        -------
        np.ndarray of float32, shape (n_cells, embedding_dim), or zarr.Array
            Rows follow the input cells. A cell with no trained token gets zeros (counted in a warning).
            With ``out``, the store's ``obsm[embedding_key]`` array, opened read-only (``[:]`` loads it).
        """
        self._require_vectors()
        refuse_fragments(adata_or_tokens, "encode", ENCODE_ACCEPTS)
        progress = check_progress(progress)
        batch_cells = check_positive_int("batch_cells", batch_cells)
        budget = resolve_memory(memory)
        pooling = self._resolve_pooling(pooling)
        weights = self.pooling_weights(pooling)
        inputs = [adata_or_tokens, getattr(adata_or_tokens, "path", None), self._model_dir]
        if out is not None and (
            not isinstance(embedding_key, str) or not embedding_key or "/" in embedding_key
        ):
            raise ValueError(f"embedding_key must be a non-empty name without '/', got {embedding_key!r}")
        if out is not None:
            if not isinstance(out, str | os.PathLike):
                raise ValueError(f"out must be a path ending in .zarr, got {type(out).__name__}")
            # Inputs first: a path that would destroy an input is refused as such, whatever its suffix.
            out = check_output_path(out, what="zarr output", overwrite=overwrite, inputs=inputs, kind="zarr")
            if not has_suffix(out, ".zarr"):
                raise ValueError(
                    f"out={str(out)[:200]!r}: encode streams to a zarr store, so out must end in .zarr; for an "
                    f".h5ad, set adata.obsm['{settings.EMBEDDING_KEY}'] = model.encode(adata) and call "
                    "adata.write_h5ad(path)"
                )
        if client is None:
            n_cells, barcodes, name, (_, chunk), chunks = self._token_chunks(
                adata_or_tokens, batch_cells, layer, chrom_style, budget
            )
            chunks = _counted(chunks, n_cells, progress)
        else:
            if layer is not None or chrom_style != "asis":
                raise ValueError(
                    "layer= and chrom_style= are not supported with client=; store the counts in X "
                    "with the universe's chromosome names for Dask encoding"
                )
            n_cells, barcodes, mapper, spans, chunk, payloads = self._encode_inputs(
                adata_or_tokens, batch_cells, budget
            )
            name, chunks = "the cells", ()

            def run_tasks(store):
                return _encode_blocks(client, self, n_cells, mapper, payloads, pooling, weights, spans, store)

        n_empty = 0
        with numba_threads(self.threads):
            if out is None and client is not None:
                result, n_empty = run_tasks(None)
            elif out is None:
                result = np.zeros((n_cells, self.embedding_dim), dtype=np.float32)
                for lo, hi, ip, ix in chunks:
                    n_empty += self._pool(ip, ix, weights, pooling, result[lo:hi], name)
            else:
                import zarr

                from fastembed.storage.zarrstore import guarded_store

                # The guarded store never re-creates a folder the user removed, and on the way out (before
                # atomic_dir removes the temporary) it drains zarr's background writes.
                with (
                    atomic_dir(
                        out, what="zarr output", overwrite=overwrite, inputs=inputs, kind="zarr"
                    ) as tmp,
                    guarded_store(tmp) as store,
                ):
                    emb = self._zarr_store(
                        tmp,
                        barcodes,
                        pooling,
                        embedding_key,
                        chunk,
                        _input_obs(adata_or_tokens),
                        out_name=out.name,
                        store=store,
                    )
                    if client is not None:
                        n_empty = run_tasks(tmp / "obsm" / embedding_key)[1]
                    block = None
                    for lo, hi, ip, ix in chunks:
                        if block is None or block.shape[0] < hi - lo:
                            block = np.empty((hi - lo, self.embedding_dim), dtype=np.float32)
                        n_empty += self._pool(ip, ix, weights, pooling, block[: hi - lo], name)
                        emb[lo:hi] = block[: hi - lo]
                    # anndata reads the consolidated metadata: it must list the array added after write_zarr.
                    zarr.consolidate_metadata(store)
                result = zarr.open_group(str(out), mode="r")["obsm"][embedding_key]
        if n_empty:
            warn(
                f"{n_empty} of {n_cells} cells have no trained token (no region of the model's universe, or "
                f"only regions seen in fewer than min_count={self.min_count} training cells); they get zeros",
            )
        return result

    # -- persistence ----------------------------------------------------------------------------------
    def config(self) -> dict:
        """Model configuration as plain Python values (what ``config.yaml`` holds)."""
        return {
            "embedding_dim": self.embedding_dim,
            "vocab_size": self.vocab_size,
            "window_size": self.window_size,
            "negative_samples": self.negative_samples,
            "min_count": self.min_count,
            "sample": self.sample,
            # "auto" is written as the number it gave, which is what the saved projection holds.
            "n_components": (
                (None if self._projection is None else int(self._projection.shape[0] - 1))
                if self.n_components == "auto"
                else self.n_components
            ),
            "cell_norm": self._cell_norm,
            "seed": self.seed,
            "fastembed_version": __version__,
            "universe_sha256": None if self.universe is None else self.universe.checksum,
            "training": dict(self.training_info),
        }

    def save(
        self, directory: str | os.PathLike, *, format: str = "fastembed", overwrite: bool = False
    ) -> Path:
        """Write the model to a folder, atomically (a temporary folder renamed when complete).

        Parameters
        ----------
        directory
            The model folder to create.
        format : {"fastembed", "geniml"}
            ``"fastembed"``: ``config.yaml``, ``universe.bed`` (row i = token i), ``region_vectors.npy``,
            ``output_vectors.npy`` and ``token_counts.npy``; when more than a tenth of the rows are untrained,
            the vector files hold only the trained rows, listed in ``trained_rows.npy`` (so the folder's size
            follows the trained tokens, not the universe). ``"geniml"``: the layout geniml and the Hugging
            Face scEmbed models use (``checkpoint.pt`` with ``projection.weight``, ``config.yaml``,
            ``universe.bed``), written without torch. It has no place for the cell projection: a model with one
            is written without it (with a warning) and ``pooling_method: mean``, so geniml and fastembed both
            encode such a folder with mean pooling.
        overwrite
            Replace an existing folder, only if it is a model folder written by fastembed (its files and
            nothing else). ``directory`` may never be, or hold, the parquet file the model was trained on.

        Returns
        -------
        pathlib.Path
            The folder.
        """
        from fastembed.model.modelfolder import ModelFolder, write_model_folder

        self._require_vectors()
        _check_folder_arg(directory)
        folder = ModelFolder(
            config=self.config(),
            region_vectors=self._region_vectors,
            universe=self.universe,
            format=format,
            token_counts=self._token_counts,
            output_vectors=self._output_vectors,
            cell_projection=self._projection,
        )
        return write_model_folder(directory, folder, overwrite=overwrite, inputs=self._training_files)

    @classmethod
    def from_pretrained(
        cls,
        directory_or_hub_id: str | os.PathLike,
        *,
        revision: str | None = None,
        threads: int | None = None,
    ) -> ScEmbed:
        """Load a model folder (ours or geniml's / Hugging Face's), or fetch one from the Hugging Face hub.

        Parameters
        ----------
        directory_or_hub_id
            A local folder, or a hub id such as ``"databio/scembed-pbmc-10k"`` (needs the ``hub`` extra and
            network access).
        revision
            Hub revision (branch, tag or commit); only for hub ids.
        threads
            Numba threads for encoding.

        Returns
        -------
        ScEmbed
            With ``universe``, ``region_vectors`` and the folder's configuration. geniml folders carry no token
            counts, so every region token counts as trained.
        """
        from fastembed.model.modelfolder import read_model_folder

        _check_folder_arg(directory_or_hub_id)
        path = Path(directory_or_hub_id).expanduser()
        if not path.exists():
            path = _fetch_from_hub(str(directory_or_hub_id), revision)
        folder = read_model_folder(path)
        cfg = folder.config
        model = cls(
            embedding_dim=int(folder.region_vectors.shape[1]),
            window_size=int(cfg.get("window_size") or 5),
            negative_samples=int(cfg.get("negative_samples") or 5),
            min_count=int(cfg.get("min_count") or 1),
            seed=cfg.get("seed"),
            threads=threads,
        )
        model.universe = folder.universe
        # Models saved before version 0.10 trained without subsampling unless they say otherwise.
        model.sample = check_sample(cfg.get("sample") or 0.0)
        model.n_components = (
            None if folder.cell_projection is None else int(folder.cell_projection.shape[0] - 1)
        )
        model._region_vectors = np.ascontiguousarray(folder.region_vectors, dtype=np.float32)
        model._output_vectors = folder.output_vectors
        model._token_counts = folder.token_counts
        model._projection = folder.cell_projection
        # Folders written before cell_norm existed have none: their cells are encoded as they were.
        model._cell_norm = cfg.get("cell_norm") if folder.cell_projection is not None else None
        model.training_info = dict(cfg.get("training") or {})
        model._model_dir = path
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        format: str = "geniml",
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload scEmbed model (fastembed)",
    ) -> str:
        """Upload the model folder to the Hugging Face hub (needs the ``hub`` extra and network access).

        Parameters
        ----------
        repo_id
            ``"owner/name"``; created if missing.
        format
            Folder layout (see :meth:`save`); ``"geniml"`` (default) so geniml users can load it too. That layout
            holds no cell projection: the pushed model encodes with mean pooling (a warning says so); pass
            ``"fastembed"`` to push the projection as well.
        private, token, commit_message
            Passed to ``huggingface_hub``.

        Returns
        -------
        str
            The URL of the commit.
        """
        return upload_folder(
            lambda tmp: self.save(tmp / "model", format=format),
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            advice="save the model with model.save(folder) and upload the folder later",
        )


def _encode_task(
    block: tuple,
    model: ScEmbed,
    mapper,
    pooling: str,
    weights: np.ndarray,
    store: str | None,
):
    """One Dask task: pool the cells of ``block = (lo, hi, payload)`` (a payload of :mod:`fastembed.genome.blocks`).

    Without ``store``: ``(embeddings float32 (hi - lo, embedding_dim), n_empty)``. With ``store`` (the path of the
    zarr ``embeddings`` array): the block is written into its own whole chunks, so a retried task rewrites the
    same bytes, and ``(None, n_empty)`` comes back.
    """
    from fastembed.genome.blocks import block_tokens

    lo, hi, payload = block
    ip, ix = block_tokens(payload, mapper)
    out = np.zeros((hi - lo, model.embedding_dim), dtype=np.float32)
    n_empty = model._pool(ip, ix, weights, pooling, out, f"cells {lo}:{hi}")
    if store is None:
        return out, n_empty
    import zarr

    from fastembed.storage.zarrstore import GuardedStore

    # Guarded: a worker's write never re-creates the temporary (or its folder) after it was removed.
    emb = zarr.open_array(GuardedStore(Path(store)), mode="r+")
    if lo % emb.chunks[0] or (hi % emb.chunks[0] and hi != emb.shape[0]):
        raise ValueError(
            f"zarr output '{store}': chunks of {emb.chunks[0]} cells do not match the block "
            f"{lo}:{hi}; a retried block would not rewrite exactly its own chunks"
        )
    emb[lo:hi] = out  # whole chunks of its own: a rerun writes the same bytes
    return None, n_empty


def _encode_blocks(
    client,
    model: ScEmbed,
    n_cells: int,
    mapper,
    payloads,
    pooling: str,
    weights: np.ndarray,
    spans,
    store: Path | None,
) -> tuple[np.ndarray | None, int]:
    """Encode every cell as one Dask task per block ``(lo, hi)`` of ``spans`` (:func:`_encode_task` through
    :func:`fastembed.backends.dask.map_blocks`).

    Parameters
    ----------
    client : dask.distributed.Client
    model : ScEmbed
        Trained; a copy without its output vectors is sent to each worker once.
    n_cells, mapper, payloads
        From :meth:`ScEmbed._encode_inputs`: the cell count, the peak-to-token map (None for token inputs) and
        one payload per block.
    pooling, weights
        Resolved by :meth:`ScEmbed.encode`.
    spans : list of (lo, hi)
        The blocks, one task each; with ``store``, each starts and ends on its chunk boundaries.
    store : pathlib.Path, optional
        The ``embeddings`` array of a zarr store already created, chunked so that every block is whole chunks;
        the tasks write into it. None: the blocks come back and are assembled here.

    Returns
    -------
    embeddings : np.ndarray of float32, shape (n_cells, embedding_dim), or None (written to ``store``)
    n_empty : int
        Cells without a trained token.
    """
    import copy

    from fastembed.backends.dask import map_blocks

    light = copy.copy(model)
    light._output_vectors = None  # not needed to encode; halves what each worker receives
    spans = list(spans)
    blocks = [(lo, hi, payload) for (lo, hi), payload in zip(spans, payloads, strict=True)]
    shared = (light, mapper, pooling, weights, None if store is None else str(store))
    result = np.zeros((n_cells, model.embedding_dim), dtype=np.float32) if store is None else None
    n_empty = 0
    for i, (block, empty) in map_blocks(client, _encode_task, blocks, shared=shared, threads=model.threads):
        n_empty += empty
        if result is not None:
            lo, hi = spans[i]
            result[lo:hi] = block
    return result, n_empty


def _check_folder_arg(value) -> None:
    check_folder_arg(value, "model")


def _fetch_from_hub(repo_id: str, revision: str | None) -> Path:
    return fetch_folder(
        repo_id,
        revision,
        what="model",
        contents=" (checkpoint.pt or region_vectors.npy, config.yaml, universe.bed)",
    )
