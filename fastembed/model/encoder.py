"""The encoder: cells to vectors with a trained model, one streaming path for every input and every output.

Any accepted input (an AnnData or ``.h5ad``/``.zarr`` path, tokenized against the model's universe block by
block; token parquet files and folders; :class:`~fastembed.genome.tokens.TokenizedCells`) becomes blocks of cells
cut to the memory budget (:mod:`fastembed.common.budget`). Each block is pooled (:meth:`CellEncoder.pool`), here
or as a Dask task (:func:`encode_task`), and its rows go to the output: an in-memory array or the ``obsm``
array of an AnnData zarr store (:func:`write_store_layout`), written to a temporary and renamed when complete.
:func:`encode_cells` is that path; :meth:`fastembed.ScEmbed.encode` checks the arguments and calls it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastembed import settings
from fastembed._version import __version__
from fastembed.common.budget import peak_matrix_blocks, plan_blocks, resolve_memory, token_block_costs
from fastembed.common.errors import HintedValueError, Keyword, ParameterError
from fastembed.common.progress import progress_bar
from fastembed.common.suffix import has_suffix
from fastembed.common.warn import warn
from fastembed.genome.readers import as_adata, cell_matrix
from fastembed.genome.tokenize import PeakMapper
from fastembed.genome.tokens import TokenizedCells, read_tokens_parquet, token_obs
from fastembed.genome.universe import Universe
from fastembed.kernels.pooling import weighted_mean_pool
from fastembed.kernels.projection import CELL_NORM, apply_projection, project_scores, unit_rows
from fastembed.region2vec import Region2VecDataset
from fastembed.storage.atomic import atomic_dir, check_output_path
from fastembed.storage.marker import mark

__all__ = ["CellEncoder", "encode_cells", "encode_task", "write_store_layout", "is_peak_matrix"]


def is_parts_folder(path) -> bool:
    """A folder of token parquet parts (not a .zarr AnnData store, which is a folder too)."""
    p = Path(path)
    return (
        p.is_dir()
        and not has_suffix(p, ".zarr")
        and not any((p / m).exists() for m in ("zarr.json", ".zgroup"))
    )


def is_peak_matrix(data) -> bool:
    """False for token inputs (parquet path or folder, TokenizedCells, Region2VecDataset), True for AnnData."""
    if isinstance(data, TokenizedCells):
        return False
    return not (
        isinstance(data, str | os.PathLike) and (has_suffix(data, ".parquet") or is_parts_folder(data))
    )


def input_obs(data):
    """The cell annotations (obs DataFrame) of an AnnData input, in memory or on disk; for tokens made from a
    fragments file, its per-cell fragment counts; None for other tokens."""
    if not is_peak_matrix(data):
        return token_obs(data)
    if isinstance(data, str | os.PathLike):
        from fastembed.genome.readers import read_obs

        return read_obs(data, index=False)
    return data.obs


def _cell_names(adata):
    """Cell names sliceable by rows; an on-disk AnnData's are read block by block when written out."""
    return adata.names if hasattr(adata, "names") else np.asarray(adata.obs_names, dtype=object)


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


@dataclass
class CellEncoder:
    """What encoding needs of a trained model, and nothing else (Dask sends it to every worker).

    Attributes
    ----------
    universe : Universe
        The model's vocabulary: an AnnData's peaks are mapped to it.
    vectors : np.ndarray of float32, shape (vocab_size, embedding_dim)
        The region vectors.
    weights : np.ndarray of float32, shape (vocab_size,)
        Pooling weights: 1 for trained tokens, 0 otherwise.
    pooling : {"mean", "pca"}
        ``"pca"`` projects each pooled cell with ``projection``.
    projection : np.ndarray of float32, optional
        The cell projection fitted at training (:mod:`fastembed.kernels.projection`); None for ``"mean"``.
    min_count : int
        The model's ``min_count``, for messages about cells without a trained token.
    cell_norm : str, optional
        :data:`fastembed.kernels.projection.CELL_NORM`: projected cells are scaled to unit length; None: not.
    pool_vectors : str, optional
        :data:`fastembed.kernels.projection.POOL_BOTH`: ``vectors`` hold input and output vectors side by side
        (``2 x embedding_dim`` wide) and the projected cells are written as weighted scores
        (:func:`fastembed.kernels.projection.project_scores`); None: ``vectors`` are the input vectors.
    """

    universe: Universe
    vectors: np.ndarray
    weights: np.ndarray
    pooling: str
    projection: np.ndarray | None
    min_count: int
    cell_norm: str | None = None
    pool_vectors: str | None = None

    @property
    def embedding_dim(self) -> int:
        """Columns of an embedding (the pooled width is twice this when both vector matrices are pooled)."""
        width = int(self.vectors.shape[1])
        return width if self.pool_vectors is None else width // 2

    def pool(self, ip: np.ndarray, ix: np.ndarray, out: np.ndarray, name: str) -> int:
        """Pool one block of cells (CSR tokens ``ip`` int64 (n + 1,), ``ix`` int32) into ``out`` (float32
        (n, embedding_dim)); returns how many cells had no trained token (they get zeros)."""
        if self.pool_vectors is not None:  # with the projection (pooling "pca") only
            wide = np.zeros((out.shape[0], self.vectors.shape[1]), dtype=np.float32)
            _, empty = weighted_mean_pool(ip, ix, self.vectors, self.weights, out=wide, name=name)
            project_scores(wide, self.projection, empty, out)
            if self.cell_norm == CELL_NORM:
                unit_rows(out, empty)
            return int(empty.sum())
        _, empty = weighted_mean_pool(ip, ix, self.vectors, self.weights, out=out, name=name)
        if self.pooling == "pca":
            apply_projection(out, self.projection, empty)
            if self.cell_norm == CELL_NORM:
                unit_rows(out, empty)
        return int(empty.sum())

    def peak_mapper(self, data, chrom_style: str = "asis"):
        """(AnnData, PeakMapper to the universe, name for messages) of a peak-matrix input; a ValueError when
        no peak overlaps the universe (every cell would get zeros), a warning when some do not."""
        adata, name = as_adata(data)
        mapper = PeakMapper(adata, self.universe, name=name, chrom_style=chrom_style)
        if mapper.n_peaks_unmapped == mapper.n_peaks:
            # Every cell would get a zero embedding: no result is better than a file of zeros.
            hint = Keyword("chrom_style")
            raise HintedValueError(
                f"none of the {mapper.n_peaks} peaks of {name} overlaps a region of the model's universe "
                f"('{self.universe.source}', {len(self.universe)} regions; {mapper.n_peaks_unknown_chrom} peaks "
                "lie on chromosomes it lacks): check that the cells and the model use the same genome build "
                f"and chromosome names ({hint})",
                keywords=(hint,),
            )
        if mapper.n_peaks_unmapped:
            warn(
                f"{mapper.n_peaks_unmapped} of {mapper.n_peaks} peaks of {name} overlap no region of the "
                f"model's universe ({len(self.universe)} regions); they do not contribute to the embeddings",
            )
        return adata, mapper, name

    def token_chunks(
        self,
        data,
        batch_cells: int,
        layer: str | None = None,
        chrom_style: str = "asis",
        budget: int | None = None,
    ):
        """(n_cells, barcodes, name, (blocks, chunk), iterator of (lo, hi, indptr, indices)) for any accepted
        input: blocks of whole chunks of ``chunk`` cells, each within ``budget`` bytes
        (:mod:`fastembed.common.budget`), tokens, the pooling buffer and its copy for zarr counted."""
        budget = resolve_memory(budget)
        out_per_cell = 4 * int(self.vectors.shape[1])  # the pooled width: twice the output with both matrices
        name = "the tokens"
        if isinstance(data, str | os.PathLike) and not is_peak_matrix(data):
            name = f"token file '{data}'"
            data = read_tokens_parquet(data)
        if isinstance(data, Region2VecDataset):
            name = f"dataset {data.source}"
        if isinstance(data, TokenizedCells):
            if layer is not None:
                given = Keyword("layer", layer)
                raise HintedValueError(
                    f"{given} applies to an AnnData; {name} are already tokenized", keywords=(given,)
                )
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

        adata, mapper, name = self.peak_mapper(data, chrom_style)
        matrix, field_name = cell_matrix(adata, layer, name=name)
        plan = peak_matrix_blocks(
            matrix, mapper, budget, batch_cells, name, out_per_cell=out_per_cell, chunked=True
        )

        def chunks():
            for lo, hi in plan[0]:
                ip, ix = mapper.tokens(matrix, lo, hi, field_name)
                yield lo, hi, ip, ix

        return adata.n_obs, _cell_names(adata), name, plan, chunks()

    def task_inputs(self, data, batch_cells: int, budget: int):
        """For Dask tasks: (n_cells, barcodes, PeakMapper or None, blocks, chunk, iterator of one payload per
        block); the blocks are whole chunks of ``chunk`` cells within ``budget``."""
        from fastembed.genome.blocks import source_path, x_payload

        if not is_peak_matrix(data):
            n_cells, barcodes, _, (spans, chunk), chunks = self.token_chunks(data, batch_cells, budget=budget)
            return n_cells, barcodes, None, spans, chunk, (("tokens", ip, ix) for _, _, ip, ix in chunks)
        adata, mapper, name = self.peak_mapper(data)
        matrix, _ = cell_matrix(adata, None, name=name)
        spans, chunk = peak_matrix_blocks(
            matrix,
            mapper,
            budget,
            batch_cells,
            name,
            out_per_cell=4 * int(self.vectors.shape[1]),
            chunked=True,
        )
        path = source_path(data)
        payloads = (x_payload(adata, path, lo, hi) for lo, hi in spans)
        return adata.n_obs, _cell_names(adata), mapper, spans, chunk, payloads


def write_store_layout(
    path: Path,
    barcodes,
    embedding_dim: int,
    *,
    pooling: str,
    embedding_key: str,
    batch_cells: int,
    config: dict,
    obs=None,
    out_name=None,
    store=None,
):
    """Lay out an AnnData zarr store at ``path`` (obs names, ``uns``) and return its empty obsm array.

    ``barcodes`` is an array or a row-sliceable view (an on-disk AnnData's names): the names are written
    block by block, so millions of them are never held at once. ``config`` (the model's, ``uns``-safe) goes to
    ``uns["fastembed"]``. ``obs`` (a DataFrame of the input's cell annotations in the same order, its index
    unused, or None) adds its columns: a store encoded from a labelled AnnData keeps its labels, as the ``.h5ad``
    route does, and can then serve as an annotation reference. ``out_name`` names the store in messages
    (``path`` is its temporary). ``store`` (a :class:`fastembed.storage.zarrstore.GuardedStore` on ``path``) is
    written through instead of ``path`` itself.

    Returns
    -------
    zarr.Array
        ``obsm[embedding_key]``: float32 (n_cells, embedding_dim), chunked by ``batch_cells`` cells.
    """
    import anndata as ad
    import pandas as pd
    import zarr

    n_cells = len(barcodes)
    chunk = min(batch_cells, max(n_cells, 1))  # the chunk length the blocks were cut to
    shell = ad.AnnData(obs=pd.DataFrame(index=pd.Index([], dtype=str)))
    mark(shell, embedding_key, pooling=pooling, config=config)
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
        shape=(n_cells, embedding_dim),
        dtype="float32",
        chunks=(chunk, embedding_dim),
    )
    emb.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    return emb


def encode_task(block: tuple, encoder: CellEncoder, mapper, store: str | None):
    """One Dask task: pool the cells of ``block = (lo, hi, payload)`` (a payload of :mod:`fastembed.genome.blocks`).

    Without ``store``: ``(embeddings float32 (hi - lo, embedding_dim), n_empty)``. With ``store`` (the path of the
    zarr ``embeddings`` array): the block is written into its own whole chunks, so a retried task rewrites the
    same bytes, and ``(None, n_empty)`` comes back.
    """
    from fastembed.genome.blocks import block_tokens

    lo, hi, payload = block
    ip, ix = block_tokens(payload, mapper)
    out = np.zeros((hi - lo, encoder.embedding_dim), dtype=np.float32)
    n_empty = encoder.pool(ip, ix, out, f"cells {lo}:{hi}")
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


def _task_blocks(client, encoder: CellEncoder, mapper, payloads, spans, store: Path | None, threads):
    """(lo, hi, block or None, n_empty) of every block as its Dask task (:func:`encode_task`) finishes; with
    ``store`` the tasks wrote their rows there themselves."""
    from fastembed.backends.dask import map_blocks

    spans = list(spans)
    blocks = [(lo, hi, payload) for (lo, hi), payload in zip(spans, payloads, strict=True)]
    shared = (encoder, mapper, None if store is None else str(store))
    for i, (block, empty) in map_blocks(client, encode_task, blocks, shared=shared, threads=threads):
        yield (*spans[i], block, empty)


def _local_blocks(encoder: CellEncoder, chunks, name: str, target) -> Iterator[tuple]:
    """(lo, hi, block or None, n_empty) of every chunk, pooled here: straight into ``target`` when it is an
    in-memory array (None comes back), else into one reused buffer."""
    buffer = None
    for lo, hi, ip, ix in chunks:
        if isinstance(target, np.ndarray):
            yield lo, hi, None, encoder.pool(ip, ix, target[lo:hi], name)
            continue
        if buffer is None or buffer.shape[0] < hi - lo:
            buffer = np.empty((hi - lo, encoder.embedding_dim), dtype=np.float32)
        n_empty = encoder.pool(ip, ix, buffer[: hi - lo], name)
        yield lo, hi, buffer[: hi - lo], n_empty


def encode_cells(
    encoder: CellEncoder,
    data,
    *,
    out=None,
    batch_cells: int = settings.ENCODE_BATCH_CELLS,
    overwrite: bool = False,
    layer: str | None = None,
    client=None,
    embedding_key: str = settings.EMBEDDING_KEY,
    chrom_style: str = "asis",
    progress: bool = True,
    budget: int | None = None,
    inputs=(),
    config: dict | None = None,
    threads: int | None = None,
):
    """Embed every cell of ``data``: the one streaming path behind :meth:`fastembed.ScEmbed.encode`.

    Parameters
    ----------
    encoder : CellEncoder
    data
        Any input :meth:`fastembed.ScEmbed.encode` accepts.
    out : str or os.PathLike, optional
        A ``.zarr`` store to write (see :func:`write_store_layout`), through a temporary renamed when complete;
        None: the result stays in memory.
    batch_cells, overwrite, layer, client, embedding_key, chrom_style, progress
        As in :meth:`fastembed.ScEmbed.encode` (checked there).
    budget : int, optional
        Bytes one block may need (None: ``settings.MEMORY_BUDGET``).
    inputs
        Paths ``out`` may not destroy (the input, the model's folder).
    config : dict, optional
        The model's configuration (``uns``-safe), recorded in the store.
    threads : int, optional
        Threads of each Dask task (the caller sets numba's threads for local work).

    Returns
    -------
    np.ndarray of float32, shape (n_cells, embedding_dim), or zarr.Array
        Without ``out`` the embeddings; with it the store's ``obsm[embedding_key]``, opened read-only.
    """
    import zarr

    inputs = list(inputs)
    if out is not None:
        if not isinstance(embedding_key, str) or not embedding_key or "/" in embedding_key:
            raise ParameterError("embedding_key", "a non-empty name without '/'", embedding_key)
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
        n_cells, barcodes, name, (_, chunk), chunks = encoder.token_chunks(
            data, batch_cells, layer, chrom_style, budget
        )
        chunks = _counted(chunks, n_cells, progress)
    else:
        if layer is not None or chrom_style != "asis":
            hints = (Keyword("layer"), Keyword("chrom_style"))
            raise HintedValueError(
                f"{hints[0]} and {hints[1]} are not supported with client=; store the counts in X "
                "with the universe's chromosome names for Dask encoding",
                keywords=hints,
            )
        n_cells, barcodes, mapper, spans, chunk, payloads = encoder.task_inputs(
            data, batch_cells, resolve_memory(budget)
        )
    n_empty = 0
    with contextlib.ExitStack() as stack:
        if out is None:
            target = np.zeros((n_cells, encoder.embedding_dim), dtype=np.float32)
            rows = None
        else:
            from fastembed.storage.zarrstore import guarded_store

            # The guarded store never re-creates a folder the user removed, and on the way out (before
            # atomic_dir removes the temporary) it drains zarr's background writes.
            tmp = stack.enter_context(
                atomic_dir(out, what="zarr output", overwrite=overwrite, inputs=inputs, kind="zarr")
            )
            store = stack.enter_context(guarded_store(tmp))
            target = write_store_layout(
                tmp,
                barcodes,
                encoder.embedding_dim,
                pooling=encoder.pooling,
                embedding_key=embedding_key,
                batch_cells=chunk,
                config=config or {},
                obs=input_obs(data),
                out_name=out.name,
                store=store,
            )
            rows = tmp / "obsm" / embedding_key
        if client is None:
            blocks = _local_blocks(encoder, chunks, name, target)
        else:
            blocks = _task_blocks(client, encoder, mapper, payloads, spans, rows, threads)
        for lo, hi, block, empty in blocks:
            n_empty += empty
            if block is not None:
                target[lo:hi] = block
        if out is not None:
            # anndata reads the consolidated metadata: it must list the array added after write_zarr.
            zarr.consolidate_metadata(store)
    if out is not None:
        target = zarr.open_group(str(out), mode="r")["obsm"][embedding_key]
    if n_empty:
        warn(
            f"{n_empty} of {n_cells} cells have no trained token (no region of the model's universe, or "
            f"only regions seen in fewer than min_count={encoder.min_count} training cells); they get zeros",
        )
    return target
