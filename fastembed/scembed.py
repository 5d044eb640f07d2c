"""The user-facing model: :class:`ScEmbed` (train, encode, save, load) and cell-type annotation.

The class checks the arguments and holds the settings and the results; the work happens in the rooms below it:
training in :mod:`fastembed.model.training` (over the numba kernels of :mod:`fastembed.kernels.sgns`), encoding
in :mod:`fastembed.model.encoder` (one streaming path to memory, a zarr store or Dask tasks), model folders in
:mod:`fastembed.model.modelfolder` and the hub in :mod:`fastembed.storage.hub`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed._version import __version__
from fastembed.annotation.annotate import annotate_celltypes
from fastembed.common.budget import resolve_memory
from fastembed.common.errors import ParameterError
from fastembed.common.inputs import ENCODE_ACCEPTS, refuse_fragments
from fastembed.common.progress import check_progress
from fastembed.common.threads import check_threads, numba_threads
from fastembed.common.validate import check_positive_int, check_sample
from fastembed.common.warn import warn
from fastembed.genome.universe import Universe
from fastembed.kernels.pooling import pooled_vectors
from fastembed.kernels.projection import CONTEXT_ALONE
from fastembed.model.encoder import CellEncoder, encode_cells
from fastembed.model.training import check_train_args, load_training_data, train_vectors
from fastembed.storage.hub import check_folder_arg, upload_folder
from fastembed.storage.marker import uns_safe

__all__ = ["ScEmbed", "annotate_celltypes"]

POOLINGS = ("mean", "pca")


MODEL = settings.MODEL_DEFAULTS
TRAIN = settings.TRAIN_DEFAULTS

DEFAULT_SAMPLE = MODEL.sample
"""Default frequent-region subsampling: only regions with more than about 1,300 occurrences per pass are thinned
(:func:`fastembed.sgns.resolve_sample`, :data:`fastembed.sgns.THIN_OCCURRENCES`)."""
DEFAULT_COMPONENTS = MODEL.n_components
"""Default number of principal axes of the cell projection fitted at training (``pooling="pca"``): ``"auto"``
picks 20 or 30 from the training cells' coverage (:func:`fastembed.kernels.projection.auto_components`)."""


def _check_components(value) -> int | str | None:
    """``n_components``: None, ``"auto"`` or a positive integer; anything else is a ParameterError naming it."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, str):
        raise ParameterError("n_components", "a positive integer, 'auto'", value, or_none=True)
    return check_positive_int("n_components", value)


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
        the cosine geometry in which a euclidean Leiden graph separates such cells best, and cells pool each
        token's input and output vectors side by side (``pool_vectors: input+output``,
        :data:`fastembed.kernels.projection.POOL_BOTH`; the embeddings keep ``embedding_dim`` columns, the axes'
        weighted scores first and zeros after). With ``"auto"`` and fewer than 2,000 training cells, each token
        also pools its cell context, the mean of the training cells that hold it (``pool_context: cells``,
        :data:`fastembed.kernels.projection.CONTEXT_CELLS`): on a few hundred cells the region vectors are noisy
        and that average over the cells places sparse cells better. Where the regions are rare as well, held by
        fewer than 20 training cells each on average (a dataset's own large peak set), tokens pool that context
        alone (``pool_context: cells-alone``, :func:`fastembed.kernels.projection.auto_context`), and at high
        coverage the axes keep their plain scores (:func:`fastembed.kernels.projection.auto_axis_power`), one
        per training cell holding a region, between 10 and 30
        (:func:`fastembed.kernels.projection.auto_rare_components`). A
        trained model records what it chose (``training_info["n_components"]``, ``["pool_context"]`` and
        ``["axis_power"]``; ``n_components``, ``cell_norm``, ``pool_vectors`` and ``pool_context`` in a saved
        folder, the context as ``region_context.npy``).
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
        embedding_dim: int = MODEL.embedding_dim,
        window_size: int = MODEL.window_size,
        negative_samples: int = MODEL.negative_samples,
        *,
        min_count: int = MODEL.min_count,
        sample: float | str = MODEL.sample,
        n_components: int | str | None = MODEL.n_components,
        seed: int | None = MODEL.seed,
        threads: int | None = MODEL.threads,
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
            raise ParameterError("seed", "a non-negative integer", seed, or_none=True)
        self.seed = None if seed is None else int(seed)
        self.threads = check_threads(threads)
        self.universe: Universe | None = None
        self.training_info: dict = {}
        self._region_vectors: np.ndarray | None = None
        self._output_vectors: np.ndarray | None = None
        self._token_counts: np.ndarray | None = None
        self._projection: np.ndarray | None = None
        self._cell_norm: str | None = None  # CELL_NORM: projected cells scaled to unit length
        self._pool_vectors: str | None = None  # POOL_BOTH: cells pool input and output vectors side by side
        # What each token pools besides its vector (CONTEXT_CELLS) or instead of it (CONTEXT_ALONE): _pool_context.
        self._region_context: np.ndarray | None = None
        self._pool_context: str | None = None
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
        epochs: int | None = TRAIN.epochs,
        batch_size: int = TRAIN.batch_size,
        learning_rate: float = TRAIN.learning_rate,
        *,
        min_learning_rate: float = TRAIN.min_learning_rate,
        init: str = TRAIN.init,
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
        progress = check_progress(progress)
        epochs, batch_size, learning_rate, min_learning_rate = check_train_args(
            epochs, batch_size, learning_rate, min_learning_rate
        )
        # Before the tokens are read (a parquet file's footer says how many) and before numba allocates.
        ds = load_training_data(dataset, self.embedding_dim, self.universe)
        run = train_vectors(
            ds,
            embedding_dim=self.embedding_dim,
            window_size=self.window_size,
            negative_samples=self.negative_samples,
            min_count=self.min_count,
            sample=self.sample,
            n_components=self.n_components,
            seed=self.seed,
            threads=self.threads,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            min_learning_rate=min_learning_rate,
            init=init,
            progress=progress,
        )
        self.universe = ds.universe
        self._region_vectors, self._output_vectors = run.region_vectors, run.output_vectors
        self._token_counts, self._projection = run.token_counts, run.projection
        self._cell_norm = run.cell_norm
        self._pool_vectors = run.pool_vectors
        self._region_context = run.region_context
        self._pool_context = run.pool_context
        self._training_files = [ds.path] if ds.path is not None else []
        self.training_info = run.info
        if run.epochs_done < run.epochs:
            warn(
                f"training was interrupted after {run.epochs_done} of {run.epochs} epochs; the model keeps the "
                "vectors trained so far and is marked partial (training_info['partial']); save it or train again",
            )
        return self

    # -- encoding -------------------------------------------------------------------------------------
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

    def _encoder(self, pooling: str | None = None) -> CellEncoder:
        """What encoding with ``pooling`` (None: the model's default) needs of this model."""
        self._require_vectors()
        pooling = self._resolve_pooling(pooling)
        return CellEncoder(
            universe=self.universe,
            # The projection was fitted on what the cells pooled; mean pooling (no projection) pools the input
            # vectors, as every model does.
            vectors=pooled_vectors(
                self._region_vectors,
                self._output_vectors,
                self._pool_vectors if pooling == "pca" else None,
                self._region_context if pooling == "pca" else None,
                context_alone=self._pool_context == CONTEXT_ALONE,
            ),
            weights=self.pooling_weights(pooling),
            pooling=pooling,
            projection=self._projection,
            min_count=self.min_count,
            cell_norm=self._cell_norm,
            pool_vectors=self._pool_vectors if pooling == "pca" else None,
        )

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
        encoder = self._encoder(pooling)
        with numba_threads(self.threads):
            return encode_cells(
                encoder,
                adata_or_tokens,
                out=out,
                batch_cells=batch_cells,
                overwrite=overwrite,
                layer=layer,
                client=client,
                embedding_key=embedding_key,
                chrom_style=chrom_style,
                progress=progress,
                budget=budget,
                inputs=[adata_or_tokens, getattr(adata_or_tokens, "path", None), self._model_dir],
                config=uns_safe(self.config()) if out is not None else None,
                threads=self.threads,
            )

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
            "pool_vectors": self._pool_vectors,
            "pool_context": None if self._region_context is None else self._pool_context,
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
        from fastembed.model.modelfolder import write_model_folder

        self._require_vectors()
        check_folder_arg(directory, "model")
        return write_model_folder(
            directory, self._model_folder(format), overwrite=overwrite, inputs=self._training_files
        )

    def _model_folder(self, format: str = "fastembed"):
        """The model as a :class:`~fastembed.model.modelfolder.ModelFolder` (what ``save`` writes)."""
        from fastembed.model.modelfolder import ModelFolder

        return ModelFolder(
            config=self.config(),
            region_vectors=self._region_vectors,
            universe=self.universe,
            format=format,
            token_counts=self._token_counts,
            output_vectors=self._output_vectors,
            cell_projection=self._projection,
            region_context=self._region_context,
        )

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
        from fastembed.model.modelfolder import fetch_model_folder, read_model_folder

        check_folder_arg(directory_or_hub_id, "model")
        path = Path(directory_or_hub_id).expanduser()
        if not path.exists():
            path = fetch_model_folder(str(directory_or_hub_id), revision)
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
        model._pool_vectors = cfg.get("pool_vectors") if folder.cell_projection is not None else None
        model._region_context = folder.region_context if folder.cell_projection is not None else None
        model._pool_context = cfg.get("pool_context") if model._region_context is not None else None
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
