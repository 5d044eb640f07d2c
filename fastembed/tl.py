"""Tools for scanpy users (``fe.tl``): compute embeddings and store them in the AnnData, as SnapATAC2 does.

``fe.tl.scembed(adata)`` is to fastembed what ``snap.tl.spectral(adata)`` is to SnapATAC2 and ``sc.tl.pca`` to
scanpy: one call on an in-memory AnnData that leaves its result in ``adata.obsm`` (key ``"scembed_X"``, the name
the rest of fastembed and the README use) and what the user needs to know in ``adata.uns["scembed"]``. It
returns the trained model (unlike scanpy's ``tl`` functions, which return None) because the model is what a user
needs next: to embed more cells (``fe.tl.scembed(query, model=model)``), to annotate, or to save.

No file is written unless ``save=`` asks for one, so a notebook cell can be run again: the second call replaces
the first one's ``obsm``/``uns`` entries, and with ``seed`` and ``threads=1`` gives bit-identical vectors.
"""

from __future__ import annotations

from fastembed import settings
from fastembed.common.validate import require_anndata
from fastembed.genome.datauniverse import universe_for
from fastembed.pp import UNS_KEY, universe_info

__all__ = ["scembed"]


def scembed(
    adata,
    universe=None,
    *,
    model=None,
    embedding_dim: int = settings.MODEL_DEFAULTS.embedding_dim,
    window_size: int | None = None,
    negative_samples: int = settings.MODEL_DEFAULTS.negative_samples,
    epochs: int | None = None,
    seed: int | None = 0,
    threads: int | None = None,
    pooling: str | None = None,
    min_overlap: int = 1,
    layer: str | None = None,
    chrom_style: str = "asis",
    key_added: str = "scembed_X",
    save=None,
    overwrite: bool = False,
    progress: bool = True,
):
    """Tokenize, train and encode an in-memory AnnData; the embedding goes to ``adata.obsm[key_added]``.

    Parameters
    ----------
    adata : anndata.AnnData
        Cells x peaks, in memory (``var`` with ``chr``/``start``/``end`` or ``var_names`` like
        ``chr1:100-200``). A cell's regions are its nonzero columns; values are not counts.
    universe : str or os.PathLike or Universe, optional
        The vocabulary to train on. None (default): the data's own peaks, sorted, overlapping peaks merged
        (:func:`fastembed.pp.universe_from_peaks`), which keeps every peak. A given universe that maps few of
        the data's peaks or counts gets a warning with the numbers. Not allowed together with ``model``.
    model : ScEmbed, optional
        A trained model (``ScEmbed.from_pretrained(...)`` or the return value of an earlier call): only encode
        ``adata`` with it (tokenized against the model's universe); nothing is trained.
    embedding_dim, window_size, negative_samples, seed, threads
        :class:`fastembed.ScEmbed` settings (``window_size=None``: its default). ``seed`` defaults to 0 so a
        re-run cell repeats its result; with ``threads=1`` the vectors are bit-identical (more threads update
        shared vectors without locks, so results differ in the last digits between runs).
    epochs : int, optional
        :meth:`fastembed.ScEmbed.train`'s ``epochs`` (None: derived from the data).
    pooling : {"pca", "mean"}, optional
        :meth:`fastembed.ScEmbed.encode`'s pooling (None: the model's default, ``"pca"`` for a model trained by
        fastembed).
    min_overlap, layer, chrom_style
        As in :func:`fastembed.io.tokenize_cells`.
    key_added : str
        ``adata.obsm`` key of the embedding (default ``"scembed_X"``).
    save : str or os.PathLike, optional
        Also write the trained model to this folder (:meth:`fastembed.ScEmbed.save`).
    overwrite : bool
        Let ``save`` replace a model folder fastembed wrote before (needed when a cell with ``save=`` re-runs).
    progress : bool
        Progress bars for training and encoding.

    Returns
    -------
    ScEmbed
        The trained (or given) model. ``adata`` gains ``obsm[key_added]`` (float32, n_cells x embedding_dim;
        zeros for a cell with no trained token) and ``uns["scembed"]`` with ``params`` (the settings of this
        call), ``universe`` (source, ``from_data``, ``n_regions``, ``sha256``), ``tokenize`` (what landed in
        the universe: :attr:`fastembed.TokenizedCells.stats`) and, when it trained, ``training``
        (:attr:`fastembed.ScEmbed.training_info`). Earlier values under these keys are replaced.
    """
    from fastembed.genome.tokenize import tokenize_cells
    from fastembed.scembed import ScEmbed
    from fastembed.storage.marker import uns_safe

    require_anndata(adata, "fe.tl.scembed")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}")
    if model is not None:
        if universe is not None:
            raise ValueError(
                "pass universe= or model=, not both: a trained model encodes against its own universe"
            )
        if not isinstance(model, ScEmbed):
            raise TypeError(
                f"model must be a trained fastembed.ScEmbed, got {type(model).__name__}; load a folder with "
                "fe.ScEmbed.from_pretrained(path)"
            )
        uni, from_data = model.universe, False
        if uni is None:
            raise ValueError("model= has no vectors yet: train it, or leave model= out to train one here")
        trained = False
    else:
        uni, from_data = universe_for(adata, universe)
        model = ScEmbed(
            embedding_dim,
            settings.DEFAULT_WINDOW_SIZE if window_size is None else window_size,
            negative_samples,
            seed=seed,
            threads=threads,
        )
        trained = True
    tokens = tokenize_cells(adata, uni, min_overlap=min_overlap, layer=layer, chrom_style=chrom_style)
    if trained:
        model.train(tokens, epochs=epochs, progress=progress)
    embedding = model.encode(tokens, pooling=pooling, progress=progress)
    if save is not None:
        model.save(save, overwrite=overwrite)
    adata.obsm[key_added] = embedding
    record = {
        "params": uns_safe(
            {
                "key_added": key_added,
                "embedding_dim": model.embedding_dim,
                "window_size": model.window_size,
                "negative_samples": model.negative_samples,
                "seed": model.seed,
                "threads": threads,
                "epochs": epochs,
                "pooling": model._resolve_pooling(pooling),
                "min_overlap": int(min_overlap),
                "layer": layer,
                "chrom_style": chrom_style,
                "trained": trained,
                "saved_to": None if save is None else str(save),
            }
        ),
        "universe": universe_info(uni, from_data),
        "tokenize": {k: v for k, v in tokens.stats.items() if v is not None},
    }
    if trained:
        record["training"] = uns_safe(dict(model.training_info))
    adata.uns[UNS_KEY] = record
    return model
