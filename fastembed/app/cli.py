"""The ``fastembed`` command line: tokenize, train, encode, annotate, demo.

Exit codes: 0 success, 1 bad input (one line on stderr naming the problem; the traceback only with
``--debug``), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
import warnings
from pathlib import Path

from fastembed import settings
from fastembed.common.suffix import has_suffix

# Errors that mean "the input is wrong", reported as one line with exit code 1.
# OSError covers missing/unwritable files and an unreachable model hub; ImportError a missing optional extra.
INPUT_ERRORS = (ValueError, KeyError, OSError, ImportError, MemoryError)


def _log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)


def _read_input(path: str, args):
    """An AnnData from a .h5ad file, a 10x folder or a .mtx file (with --barcodes and --peaks)."""
    from fastembed.genome import readers

    p = Path(path)
    if p.is_dir():
        return readers.read_10x(p)
    if has_suffix(p, ".h5ad"):
        return readers.read_h5ad(p)
    if has_suffix(p, ".mtx", ".mtx.gz"):
        if not (getattr(args, "barcodes", None) and getattr(args, "peaks", None)):
            raise ValueError(f"input '{p}' is a MatrixMarket file: also pass --barcodes and --peaks")
        return readers.read_mtx(p, args.barcodes, args.peaks)
    if not p.exists():
        raise FileNotFoundError(f"input '{p}' does not exist")
    # What the subcommand at hand accepts, so the user sees every way in (tokens for encode, fragments for tokenize).
    extra = (
        "a fragments file (.tsv[.gz|.bgz], or any name with --fragments)"
        if hasattr(args, "universe")
        else "a token .parquet (from 'fastembed tokenize')"
    )
    raise ValueError(
        f"input '{p}': expected an .h5ad or .zarr AnnData, a 10x folder, a .mtx[.gz] file (with --barcodes and "
        f"--peaks) or {extra}"
    )


def _check_flags_apply(args, fragments: bool) -> None:
    """Refuse input flags that the input at hand would ignore: a user who passes them expects an effect
    (``--barcodes`` read as a whitelist of an .h5ad's cells, ``--min-fragments`` as a filter of a matrix)."""
    name = args.input
    if fragments:
        if getattr(args, "peaks", None):
            raise ValueError(f"--peaks applies to a .mtx input; '{name}' is a fragments file")
        return
    if getattr(args, "mode", "fragment") != "fragment" or getattr(args, "min_fragments", None) is not None:
        raise ValueError(f"--mode and --min-fragments apply to fragments files; '{name}' is not one")
    mtx = has_suffix(name, ".mtx", ".mtx.gz")
    if not mtx and (getattr(args, "barcodes", None) or getattr(args, "peaks", None)):
        raise ValueError(
            f"--barcodes and --peaks apply to a .mtx input (and --barcodes to a fragments file, as a whitelist); "
            f"'{name}' holds its own cell names and peaks"
        )


def _min_fragments_arg(text: str):
    """``--min-fragments``: "auto" or an integer >= 1, else argparse's one-line error."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected auto or an integer >= 1, got {text!r}")
    return value


def _subsample_arg(text: str):
    """``--subsample``: "auto" or a number in [0, 1) (ScEmbed's ``sample``), else argparse's one-line error."""
    from fastembed.common.validate import check_sample

    try:
        return check_sample("auto" if text == "auto" else float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1), got {text!r}") from None


def _memory_arg(text: str) -> int:
    """``--memory``: bytes or a size like 1GB, 512MB, 2GiB, else argparse's one-line error."""
    from fastembed.common.budget import parse_memory

    try:
        return parse_memory(text, "--memory")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# Inputs read lazily, in blocks of cells, rather than whole. Endings are matched in any case (DATA.H5AD), here
# and everywhere (fastembed._suffix.has_suffix).
LAZY_SUFFIXES = (".h5ad", ".zarr")

# A file INPUT with one of these endings (10x writes fragments.tsv.gz) is a fragments file; --fragments says so
# for any other name.
FRAGMENT_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bgz")


def _tokenize_fragments(args) -> None:
    import json

    import pyarrow.parquet as pq

    from fastembed.genome.fragments import META_STATS, tokenize_fragments

    if args.chrom_style != "asis":
        raise ValueError(
            "--chrom-style applies to peak matrices; rename the chromosomes of the fragments file "
            f"'{args.input}' or of the universe instead"
        )
    if args.layer is not None:
        raise ValueError(f"--layer applies to AnnData inputs; '{args.input}' is a fragments file")
    if args.scheduler is not None or args.workers is not None:
        flag = "--scheduler" if args.scheduler is not None else "--workers"
        raise ValueError(
            f"{flag} applies to peak matrices; the fragments file '{args.input}' is streamed by one process"
        )
    t = time.perf_counter()
    out = tokenize_fragments(
        args.input,
        args.universe,
        args.output,
        barcodes=args.barcodes,
        mode=args.mode,
        # A whitelist decides alone; without one, empty droplets go unless --min-fragments says otherwise.
        min_fragments=(1 if args.barcodes else "auto") if args.min_fragments is None else args.min_fragments,
        min_overlap=args.min_overlap,
        overwrite=args.overwrite,
        memory=args.memory,
    )
    s = json.loads(pq.ParquetFile(out).schema_arrow.metadata[META_STATS])
    _log(
        args, fragments_summary(s, args.barcodes is not None) + f"; {time.perf_counter() - t:.1f} s -> {out}"
    )


def fragments_summary(s: dict, whitelist: bool) -> str:
    """The fragments tokenize stats as one line; it speaks of a whitelist only when one was given."""
    pct = 100 * s["n_fragments_in_universe"] / max(s["n_fragments_kept"], 1)
    if whitelist:
        dropped = (
            f"dropped {s['n_barcodes_not_in_whitelist']} barcodes not in the whitelist "
            f"({s['n_fragments_not_in_whitelist']} fragments); {s['n_whitelist_without_fragments']} whitelisted "
            "barcodes had no fragment"
        )
    else:
        dropped = (
            f"dropped {s['n_barcodes_below_min_fragments']} barcodes below --min-fragments "
            f"{s['min_fragments']} ({s['n_fragments_below_min_fragments']} fragments)"
        )
    return (
        f"read {s['n_fragments']} fragments of {s['n_barcodes']} barcodes; kept {s['n_barcodes_kept']} "
        f"barcodes with {s['n_fragments_kept']} fragments, {s['n_fragments_in_universe']} ({pct:.1f}%) in the "
        f"universe; {dropped}; {s['n_fragments_unknown_chrom']} fragments on chromosomes absent from the universe"
    )


def _inputs(args, *names: str) -> list:
    """The input paths among ``args`` (for the check that no output replaces one)."""
    return [getattr(args, n) for n in names if getattr(args, n, None)]


def cmd_tokenize(args) -> None:
    from fastembed.genome.tokenize import tokenize_cells, tokenize_summary
    from fastembed.genome.tokens import read_tokens_parquet
    from fastembed.storage.atomic import check_output_path

    # Checked here as well as in tokenize_cells: only the command line knows which files the cells came from.
    check_output_path(
        args.output,
        what="parquet output",
        overwrite=args.overwrite,
        kind="parquet",
        inputs=_inputs(args, "input", "universe", "barcodes", "peaks"),
    )
    if not has_suffix(args.output, ".parquet"):
        raise ValueError(
            f"output '{args.output}': tokens are written as parquet; expected a path ending in .parquet"
        )
    fragments = args.fragments or (
        has_suffix(args.input, *FRAGMENT_SUFFIXES) and not Path(args.input).is_dir()
    )
    _check_flags_apply(args, fragments)
    if fragments:
        return _tokenize_fragments(args)
    from fastembed.backends.dask import open_client

    t = time.perf_counter()
    # On-disk AnnData goes to tokenize_cells as a path, which reads it in blocks instead of whole.
    data = args.input if has_suffix(args.input, *LAZY_SUFFIXES) else _read_input(args.input, args)
    with open_client(args.scheduler, args.workers) as client:
        out = tokenize_cells(
            data,
            args.universe,
            args.output,
            min_overlap=args.min_overlap,
            overwrite=args.overwrite,
            client=client,
            chrom_style=args.chrom_style,
            layer=args.layer,
            memory=args.memory,
        )
    stats = read_tokens_parquet(out).stats
    _log(
        args,
        f"tokenized {stats['n_cells']} cells in {time.perf_counter() - t:.1f} s -> {out}: "
        f"{tokenize_summary(stats)}",
    )


def cmd_train(args) -> None:
    from fastembed.model.training import check_train_args
    from fastembed.region2vec import Region2VecDataset
    from fastembed.scembed import ScEmbed
    from fastembed.storage.atomic import check_output_path

    out = check_output_path(
        args.output,
        what="model folder",
        overwrite=args.overwrite,
        kind="model",
        inputs=_inputs(args, "input", "universe"),
    )
    # The flags' values first, by the library's own checks, before the tokens are read (main words the
    # messages with the flags).
    model = ScEmbed(
        args.embedding_dim,
        args.window_size,
        args.negative_samples,
        min_count=args.min_count,
        sample=args.subsample,
        seed=args.seed,
        threads=args.threads,
    )
    check_train_args(args.epochs, args.batch_size, args.learning_rate)
    if args.memory is not None:
        settings.MEMORY_BUDGET = args.memory  # the budget training is checked against (fastembed.trainmem)
    if args.sample_cells is None:
        from fastembed.genome.tokens import footer_regions
        from fastembed.model.trainmem import check_training_memory, parquet_counts

        # A file too large for this machine is refused before it is read; the budget warning comes from train.
        footer = parquet_counts(args.input)
        if footer is not None:
            check_training_memory(
                *footer, footer_regions(args.input), args.embedding_dim, f"'{args.input}'", budget=1 << 62
            )
    ds = Region2VecDataset(args.input, universe=args.universe, sample_cells=args.sample_cells, seed=args.seed)
    if args.seed is not None:
        import numba

        threads = args.threads or numba.get_num_threads()
        if threads > 1:
            _log(
                args,
                f"fastembed train: note: --seed {args.seed} with {threads} threads gives similar but not "
                "bit-identical vectors between runs; add --threads 1 for bit-identical results",
            )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="training was interrupted")
        model.train(
            ds,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            progress=not args.quiet,
        )
    if model.training_info.get("partial"):
        # In Python a partial model is kept for the user to decide; a command saves only complete work.
        raise KeyboardInterrupt
    model.save(out, overwrite=args.overwrite)
    info = model.training_info
    seen = (
        (
            f" ({100 * info['fraction_cells_seen']:.1f}% of {info['n_cells_total']} cells, "
            f"{100 * info['fraction_tokens_seen']:.1f}% of the tokens)"
        )
        if args.sample_cells
        else ""
    )
    _log(
        args, f"trained on {len(ds)} cells{seen}, {info['epochs']} epochs in {info['seconds']:.1f} s -> {out}"
    )


def cmd_encode(args) -> None:
    import anndata as ad
    import numpy as np
    import pandas as pd

    from fastembed.backends.dask import open_client
    from fastembed.common.validate import check_positive_int
    from fastembed.scembed import ScEmbed
    from fastembed.storage.atomic import atomic_file, check_output_path
    from fastembed.storage.faults import write_h5ad
    from fastembed.storage.marker import mark

    check_positive_int("batch_cells", args.batch_cells)  # before the model and the cells are read
    out = Path(args.output)
    if not has_suffix(out, ".zarr", ".h5ad"):
        raise ValueError(f"output '{out}': expected a path ending in .zarr or .h5ad")
    kind = "zarr" if has_suffix(out, ".zarr") else "h5ad"
    if not args.embedding_key or "/" in args.embedding_key:
        # h5py would nest 'a/b' into groups (or fail on ''), and anndata.read_h5ad cannot open the result
        raise ValueError(f"--embedding-key must be a non-empty name without '/', got {args.embedding_key!r}")
    _check_flags_apply(args, fragments=False)
    inputs = _inputs(args, "input", "barcodes", "peaks") + ([args.model] if Path(args.model).exists() else [])
    out = check_output_path(out, what=f"{kind} output", overwrite=args.overwrite, inputs=inputs, kind=kind)
    if has_suffix(args.input, *FRAGMENT_SUFFIXES) and not Path(args.input).is_dir():
        raise ValueError(
            f"input '{args.input}' is a fragments file; encode takes an .h5ad or .zarr AnnData, a 10x folder, a "
            ".mtx (with --barcodes and --peaks) or a token .parquet. Tokenize it first: fastembed tokenize "
            f"{args.input} --universe MODEL_DIR/universe.bed --output tokens.parquet, then fastembed encode "
            "tokens.parquet"
        )
    model = ScEmbed.from_pretrained(args.model)
    src = Path(args.input)
    data = src if has_suffix(src, ".parquet", *LAZY_SUFFIXES) else _read_input(args.input, args)
    if kind == "zarr":
        with open_client(args.scheduler, args.workers) as client:
            emb = model.encode(
                data,
                out=out,
                batch_cells=args.batch_cells,
                overwrite=args.overwrite,
                client=client,
                embedding_key=args.embedding_key,
                chrom_style=args.chrom_style,
                layer=args.layer,
                progress=not args.quiet,
                memory=args.memory,
            )
        _log(args, f"encoded {emb.shape[0]} cells -> {out} (AnnData zarr, obsm['{args.embedding_key}'])")
        return
    if has_suffix(src, ".parquet"):
        from fastembed.genome.tokens import read_tokens_parquet, token_obs

        data = read_tokens_parquet(src)
        obs = token_obs(src)  # a fragments file's per-cell counts, kept beside the vectors
        adata = ad.AnnData(
            obs=pd.DataFrame(
                {} if obs is None else {c: obs[c].to_numpy() for c in obs.columns},
                index=pd.Index(np.asarray(data.barcodes, dtype=str)),
            )
        )
    else:
        from fastembed.genome.readers import read_h5ad

        # an .h5ad output holds the input's obs and var too, so the input is read whole here
        adata = read_h5ad(src) if has_suffix(src, ".h5ad") else data
        data = adata
    with open_client(args.scheduler, args.workers) as client:
        emb = model.encode(
            data,
            batch_cells=args.batch_cells,
            client=client,
            chrom_style=args.chrom_style,
            layer=args.layer,
            progress=not args.quiet,
            memory=args.memory,
        )
    if args.embeddings_only:
        # The cells' metadata and their vectors, without the count matrix (often most of the file).
        adata = ad.AnnData(obs=adata.obs.copy())
    adata.obsm[args.embedding_key] = emb
    # Marks the file as ours, so a later --overwrite may replace it (and nothing else).
    mark(adata, args.embedding_key, model=str(args.model))
    with atomic_file(out, what="h5ad output", overwrite=args.overwrite, inputs=inputs, kind="h5ad") as tmp:
        # Through an image in memory: HDF5 writing the file itself can crash the interpreter on a full disk.
        write_h5ad(adata, tmp)
    _log(args, f"encoded {adata.n_obs} cells -> {out} (obsm['{args.embedding_key}'])")


def cmd_annotate(args) -> None:
    from fastembed.annotation.annotate import annotate_celltypes_table, annotation_table
    from fastembed.backends.dask import open_client
    from fastembed.storage.atomic import atomic_file, check_output_path

    inputs = _inputs(args, "query", "reference")
    out = check_output_path(
        args.output, what="labels output", overwrite=args.overwrite, inputs=inputs, kind="csv"
    )
    sep = "," if has_suffix(out, ".csv") else "\t" if has_suffix(out, ".tsv") else None
    if sep is None:
        raise ValueError(f"output '{args.output}': expected a table ending in .csv (commas) or .tsv (tabs)")
    query, reference = Path(args.query), Path(args.reference)
    max_novelty = _max_novelty_arg(args.max_novelty)
    from fastembed.reference import is_reference_folder

    if is_reference_folder(reference):
        _annotate_with_reference_folder(args, out, sep, inputs, max_novelty)
        return
    for which, path in (("query", query), ("reference", reference)):
        if not has_suffix(path, *LAZY_SUFFIXES):
            raise ValueError(f"{which} '{path}': expected an .h5ad file or a .zarr AnnData")
    if not query.exists():
        raise FileNotFoundError(f"query '{query}' does not exist")
    # Both are passed as paths: only the reference's obs and obsm[embedding_key] are read, and the query's
    # obsm[embedding_key], block by block.
    with open_client(args.scheduler, args.workers) as client:
        found = annotate_celltypes_table(
            query,
            reference,
            embedding_key=args.embedding_key,
            k=10 if args.k is None else args.k,
            label_key=args.label_key,
            confidence_key="cell_type_confidence",
            min_confidence=args.min_confidence,
            center=not args.no_center,
            client=client,
            novelty_key=None if max_novelty in ("auto", None) else "novelty",
            max_novelty=max_novelty,
            memory=args.memory,
        )
    table = annotation_table(found[args.label_key], found["cell_type_confidence"], args.label_key)
    if "novelty" in found:
        table["novelty"] = found["novelty"].to_numpy()
    with atomic_file(out, what="labels output", overwrite=args.overwrite, inputs=inputs, kind="csv") as tmp:
        table.to_csv(tmp, sep=sep)
    _log(args, f"annotated {len(table)} cells -> {out}")


def _max_novelty_arg(text: str):
    """``--max-novelty``: ``auto`` (the reference folder's threshold), ``none`` or a number in [0, 1]."""
    if text is None or text.lower() == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"--max-novelty must be 'auto', 'none' or a number in [0, 1], got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--max-novelty must be 'auto', 'none' or a number in [0, 1], got {text!r}")
    return value


def _annotate_with_reference_folder(args, out: Path, sep: str, inputs, max_novelty) -> None:
    """``fastembed annotate`` with a reference folder: the query may be any input its model encodes."""
    from fastembed.annotation.annotate import CONFIDENCE_COLUMN, predicted_column
    from fastembed.reference import annotate_with_reference, read_reference
    from fastembed.storage.atomic import atomic_file

    if args.scheduler or args.workers:
        raise ValueError("--scheduler and --workers are not supported with a reference folder yet")
    ref = read_reference(args.reference)
    query = Path(args.query)
    if not query.exists():
        raise FileNotFoundError(f"query '{query}' does not exist")
    data = (
        query
        if query.is_dir() or has_suffix(query, ".parquet", *LAZY_SUFFIXES)
        else _read_input(args.query, args)
    )
    found = annotate_with_reference(
        data,
        ref,
        k=args.k,
        center=False if args.no_center else None,
        min_confidence=args.min_confidence,
        max_novelty=max_novelty,
    )
    label_key = ref.label_key
    table = found.rename(columns={label_key: predicted_column(label_key), "confidence": CONFIDENCE_COLUMN})
    table.index.name = "barcode"
    with atomic_file(out, what="labels output", overwrite=args.overwrite, inputs=inputs, kind="csv") as tmp:
        table.to_csv(tmp, sep=sep)
    unknown = int((found[label_key].astype(str) == "unknown").sum())
    _log(args, f"annotated {len(table)} cells -> {out} ({unknown} unknown)")


def cmd_reference_build(args) -> None:
    from fastembed.reference import build_reference
    from fastembed.scembed import ScEmbed

    inputs = _inputs(args, "input") + ([args.model] if Path(args.model).exists() else [])
    from fastembed.storage.atomic import check_output_path

    out = check_output_path(
        args.output, what="reference folder", overwrite=args.overwrite, inputs=inputs, kind="reference"
    )
    model = ScEmbed.from_pretrained(args.model)
    src = Path(args.input)
    adata = _read_input(args.input, args)
    columns = [c for c in (args.obs_columns or "").split(",") if c]
    ref = build_reference(
        model,
        adata,
        label_key=args.label_key,
        obs_columns=columns,
        embedding_key=args.embedding_key,
        k=args.k,
        center=not args.no_center,
        max_novelty=_max_novelty_arg(args.max_novelty) if args.max_novelty != "auto" else _default_novelty(),
        calibrate=not args.no_calibrate,
        description=args.description or f"Built from '{src.name}'.",
    )
    ref.save(out, overwrite=args.overwrite)
    q = ref.quality
    acc = f", cross-validated accuracy {q['cv_accuracy']:.3f}" if "cv_accuracy" in q else ""
    _log(args, f"reference of {ref.n_cells} cells, {len(ref.labels.cat.categories)} types{acc} -> {out}")


def _default_novelty() -> float:
    from fastembed.annotation.novelty import DEFAULT_MAX_NOVELTY

    return DEFAULT_MAX_NOVELTY


def cmd_demo(args) -> None:
    from fastembed.app.demo import run_demo

    run_demo(
        args.output,
        epochs=args.epochs,
        n_cells=args.cells,
        threads=args.threads,
        quiet=args.quiet,
        overwrite=args.overwrite,
    )


def build_parser() -> argparse.ArgumentParser:
    # The model's and training's defaults, and the help's "(default: ...)", come from settings: one source.
    model, train = settings.MODEL_DEFAULTS, settings.TRAIN_DEFAULTS

    def flags(default):
        # The flags work before or after the subcommand; SUPPRESS keeps a subcommand's unset flag from
        # overwriting one given before it.
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument(
            "--debug", action="store_true", default=default, help="show the full traceback on errors"
        )
        p.add_argument(
            "--quiet", action="store_true", default=default, help="no progress bars, messages or warnings"
        )
        return p

    common = flags(argparse.SUPPRESS)
    from fastembed._version import __version__

    parser = argparse.ArgumentParser(
        prog="fastembed",
        parents=[flags(False)],
        description="Fast scEmbed cell embeddings for single-cell ATAC-seq.",
    )
    parser.add_argument("--version", action="version", version=f"fastembed {__version__}")
    # Not required: a bare 'fastembed' prints the help (see main).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # main() looks a subcommand's parser up here, to spell hints in its flags.
    parser.subparsers = sub.choices

    def matrix_inputs(p):
        p.add_argument("--barcodes", help="barcodes file, when INPUT is a .mtx[.gz] file")
        p.add_argument("--peaks", help="peaks BED file, when INPUT is a .mtx[.gz] file")
        p.add_argument(
            "--layer",
            help="AnnData layer holding the counts, when they are not in X (e.g. 'counts')",
        )
        p.add_argument(
            "--chrom-style",
            choices=("asis", "add-chr", "strip-chr"),
            default="asis",
            help="match the peaks' chromosome names to the universe's: as they are (default), with "
            "'chr' added (1, MT -> chr1, chrM) or stripped (chr1, chrM -> 1, MT)",
        )

    def dask_options(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            default=None,
            help="run blocks of cells as tasks on this running Dask scheduler (needs the dask extra)",
        )
        g.add_argument(
            "--workers",
            type=int,
            metavar="N",
            default=None,
            help="run blocks of cells as tasks on a local Dask cluster of N worker processes",
        )

    def memory_option(p):
        p.add_argument(
            "--memory",
            type=_memory_arg,
            default=None,
            metavar="SIZE",
            help="bytes one block of cells may need, e.g. 512MB or 2GB; blocks are cut by the cells' nonzeros "
            f"(default: {settings.MEMORY_BUDGET >> 20} MiB)",
        )

    p = sub.add_parser(
        "tokenize",
        parents=[common],
        help="tokenize cells against a universe -> parquet",
        description="Map each cell's peaks to universe regions and write the tokens as parquet.",
    )
    p.add_argument(
        "input",
        help=".h5ad file, 10x folder, .mtx[.gz] (with --barcodes/--peaks) "
        "or fragments file (fragments.tsv.gz)",
    )
    p.add_argument("--universe", required=True, help="universe BED file (optionally gzipped)")
    p.add_argument("--output", required=True, help="output file, ending in .parquet")
    p.add_argument("--min-overlap", type=int, default=1, help="minimum overlap in bp (default: 1)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing token parquet written by fastembed"
    )
    matrix_inputs(p)
    p.add_argument(
        "--fragments",
        action="store_true",
        help="INPUT is a fragments file (automatic for names ending .tsv, .tsv.gz, .tsv.bgz); "
        "--barcodes is then a whitelist of barcodes to keep",
    )
    p.add_argument(
        "--mode",
        choices=("fragment", "insertion"),
        default="fragment",
        help="fragments: overlap the whole fragment or its two Tn5 insertion sites (default: fragment)",
    )
    p.add_argument(
        "--min-fragments",
        type=_min_fragments_arg,
        default=None,
        help="fragments, without --barcodes: drop barcodes with fewer fragments; 'auto' (default) drops empty "
        "droplets: fewer than max(100, a tenth of the 99th percentile of the 3,000 largest barcodes); 1 keeps all",
    )
    dask_options(p)
    memory_option(p)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a model on tokenized cells",
        description="Train scEmbed region vectors (skip-gram, negative sampling) on a token parquet.",
    )
    p.add_argument("input", help="token .parquet file from 'fastembed tokenize'")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument(
        "--universe",
        help="the BED file the tokens index, for a token parquet that does not carry its universe (e.g. "
        "written by gtars); a file that carries one must match it",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=train.epochs,
        help="passes over all cells (default: from the data and the window; see the README)",
    )
    p.add_argument(
        "--embedding-dim",
        type=int,
        default=model.embedding_dim,
        help=f"vector length (default: {model.embedding_dim})",
    )
    p.add_argument(
        "--window-size",
        type=int,
        default=model.window_size,
        help=f"context window (default: {model.window_size})",
    )
    p.add_argument(
        "--negative-samples",
        type=int,
        default=model.negative_samples,
        help=f"negatives per pair (default: {model.negative_samples})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=train.batch_size,
        help=f"cells per parallel work unit (default: {train.batch_size})",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=train.learning_rate,
        help=f"initial learning rate (default: {train.learning_rate})",
    )
    p.add_argument(
        "--min-count",
        type=int,
        default=model.min_count,
        help=f"ignore tokens seen in fewer cells (default: {model.min_count})",
    )
    p.add_argument(
        "--subsample",
        type=_subsample_arg,
        default=model.sample,
        metavar="auto|S",
        help=f"frequent-region subsampling (default: {model.sample}): auto thins only regions in more than "
        "~1,300 cells, 0 turns it off, or word2vec's threshold S in (0, 1), e.g. 1e-4",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed of training and of --sample-cells; bit-identical results need --threads 1 "
        "as well (with more threads the updates race, so runs differ slightly)",
    )
    p.add_argument(
        "--sample-cells",
        type=int,
        default=None,
        metavar="N",
        help="train on a random sample of N cells, stratified by parquet row group (default: all)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing model folder written by fastembed"
    )
    memory_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "encode",
        parents=[common],
        help="embed cells with a trained model",
        description="Embed cells with a model folder or Hugging Face id; write .zarr or .h5ad.",
    )
    p.add_argument("input", help=".h5ad, 10x folder, .mtx[.gz] (with --barcodes/--peaks) or token .parquet")
    p.add_argument("--model", required=True, help="model folder or Hugging Face model id")
    p.add_argument("--output", required=True, help="output ending in .zarr or .h5ad")
    p.add_argument(
        "--embedding-key",
        default=settings.EMBEDDING_KEY,
        help=f"obsm key of the vectors (default: {settings.EMBEDDING_KEY})",
    )
    p.add_argument(
        "--batch-cells",
        type=int,
        default=settings.ENCODE_BATCH_CELLS,
        help=f"most cells per block, an upper bound beside --memory (default: {settings.ENCODE_BATCH_CELLS})",
    )
    p.add_argument(
        "--embeddings-only",
        action="store_true",
        help=".h5ad output: write obs and the vectors without the count matrix (X, var); a .zarr "
        "store never holds the matrix",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output written by fastembed")
    matrix_inputs(p)
    dask_options(p)
    memory_option(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "annotate",
        parents=[common],
        help="transfer cell-type labels from a reference",
        description="k-NN label transfer from a labelled reference .h5ad to a query .h5ad.",
    )
    p.add_argument("query", help="query .h5ad or .zarr (from 'fastembed encode') with embeddings in obsm")
    p.add_argument(
        "--reference",
        required=True,
        help="reference folder ('fastembed reference build'; the query may then be any input its model "
        "encodes: .h5ad, .zarr, token .parquet or parts folder, 10x folder), or a reference .h5ad or .zarr "
        "with embeddings and labels",
    )
    p.add_argument(
        "--output",
        required=True,
        help="output table, .csv (commas) or .tsv (tabs); columns barcode, predicted_<label-key> "
        "(e.g. predicted_cell_type) and confidence (the winner's share of the neighbours' summed similarity)",
    )
    p.add_argument("--label-key", default="cell_type", help="reference obs column (default: cell_type)")
    p.add_argument(
        "--embedding-key",
        default=settings.EMBEDDING_KEY,
        help=f"obsm key (default: {settings.EMBEDDING_KEY})",
    )
    p.add_argument("-k", type=int, default=None, help="neighbours (default: the reference folder's, else 10)")
    p.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="call cells whose confidence (the vote share; calibrated for a reference folder) is below this "
        "'unknown'",
    )
    p.add_argument(
        "--max-novelty",
        default="auto",
        help="call cells whose novelty score is above this 'unknown' (a number in [0, 1], or 'none'); default "
        "'auto': the reference folder's threshold, none for an AnnData reference",
    )
    p.add_argument(
        "--no-center",
        action="store_true",
        help="plain cosine k-NN (default: cosine around the reference's mean embedding)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing labels CSV written by fastembed"
    )
    dask_options(p)
    memory_option(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "reference",
        parents=[common],
        help="build a shareable annotation reference folder",
        description="Reference folders: a model, labelled reference cells, annotation settings and a model card.",
    )
    rsub = p.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    p = rsub.add_parser(
        "build",
        parents=[common],
        help="build a reference folder from a model and a labelled AnnData",
        description="Encode a labelled AnnData through a model (or use its obsm embeddings) and write a reference "
        "folder: the model, the embeddings, the labels, k and centring, calibration and a README model card.",
    )
    p.add_argument("input", help="labelled reference cells: .h5ad, a 10x folder or a .mtx file")
    p.add_argument("--model", required=True, help="model folder or hub id")
    p.add_argument("--output", required=True, help="reference folder to create")
    p.add_argument("--label-key", default="cell_type", help="obs column of the labels (default: cell_type)")
    p.add_argument("--obs-columns", default="", help="other obs columns to keep, comma-separated")
    p.add_argument(
        "--embedding-key",
        default=settings.EMBEDDING_KEY,
        help=f"obsm key (default: {settings.EMBEDDING_KEY})",
    )
    p.add_argument("-k", type=int, default=10, help="neighbours (default: 10)")
    p.add_argument("--no-center", action="store_true", help="plain cosine k-NN")
    p.add_argument(
        "--max-novelty", default="auto", help="default novelty threshold stored in the folder ('none': never)"
    )
    p.add_argument("--no-calibrate", action="store_true", help="report the raw vote share as the confidence")
    p.add_argument("--description", default=None, help="a line about the data for the model card")
    p.add_argument("--overwrite", action="store_true", help="replace a reference folder written by fastembed")
    p.add_argument("--barcodes", help="barcodes file, when INPUT is a .mtx[.gz] file")
    p.add_argument("--peaks", help="peaks BED file, when INPUT is a .mtx[.gz] file")
    p.set_defaults(func=cmd_reference_build)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run the whole workflow on the bundled real data",
        description="Tokenize, train, encode, cluster, plot and annotate the bundled granja2019 "
        "bone-marrow slice, offline.",
    )
    p.add_argument("--output", default="fastembed-demo", help="output folder (default: ./fastembed-demo)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: from the data)")
    p.add_argument("--cells", type=int, default=None, help="use a random subset of this many cells")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs in an existing folder")
    p.set_defaults(func=cmd_demo)
    return parser


def _output_claim(args):
    """The write lock of the command's output, held for its whole run.

    A second command writing the same output fails at once, before its work, instead of replacing the first's
    result (also with --overwrite). The demo locks its folder itself.
    """
    import contextlib

    from fastembed.storage.atomic import output_lock

    out = getattr(args, "output", None)
    if args.command == "demo" or not out:
        return contextlib.nullcontext()
    parent = Path(out).expanduser().absolute().parent
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        return contextlib.nullcontext()  # the command's own check names the problem
    return output_lock(out, what=f"{args.command} output")


def as_cli_message(err: BaseException, parser: argparse.ArgumentParser | None) -> str:
    """The one-line message of a library error, with the Python parameters it names spelled as ``parser``'s
    options.

    Library messages speak Python (``pass overwrite=True``, ``embedding_dim must be an integer >= 1, got 0``); a
    user at the command line typed flags. The errors say what they name (:mod:`fastembed.common.errors`), so
    the mapping goes by their type and data, never by their wording: a
    :class:`~fastembed.common.errors.ParameterError` about a parameter the command has a flag for is worded with
    the flag as its subject (``--embedding-dim must be an integer >= 1, got 0``; a flag left out is the None, so
    "or None" goes), and each :class:`~fastembed.common.errors.Keyword` a
    :class:`~fastembed.common.errors.HintedError` names is spelled as its flag (``pass --overwrite``).
    Keywords the command has no option for stay as they are; other errors keep their message.
    """
    from fastembed.common.errors import HintedError, ParameterError

    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    msg = str(msg).strip().replace("\n", " ") or type(err).__name__
    if parser is None:
        return msg
    flags = {s for a in parser._actions for s in a.option_strings}

    def option(name: str) -> str | None:
        return next((c for c in (f"--{name.replace('_', '-')}", f"-{name}") if c in flags), None)

    if isinstance(err, ParameterError) and (flag := option(err.param)) is not None:
        msg = err.worded(flag, or_none=False).replace("\n", " ")
    # A HintedError carries its keywords; an error of another type may have been given them on its way up
    # (the training driver hints the learning rate of a DivergedError).
    keywords = err.keywords if isinstance(err, HintedError) else getattr(err, "keywords", ())
    if keywords:
        # Longest spelling first: "min_fragments=5" before a bare "min_fragments=" in the same message.
        for kw in sorted(set(keywords), key=lambda k: -len(str(k))):
            flag = option(kw.name)
            if flag is not None:
                # A whole keyword only: "k=10", not the tail of "block=10".
                spelled = kw.as_flag(flag)
                msg = re.sub(rf"(?<![\w.\-'\"\[]){re.escape(str(kw))}", lambda _, s=spelled: s, msg)
    return msg


def _show_warning(command: str):
    """A ``warnings.showwarning`` that prints one line, ``fastembed CMD: warning: ...``, without source lines."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"fastembed {command}: warning: {text}", file=sys.stderr if file is None else file)

    return show


@contextlib.contextmanager
def _cli_warnings(args):
    """Warnings as the command line shows them: one line each, none with --quiet, Python's form with --debug."""
    with warnings.catch_warnings():
        if args.quiet:
            warnings.simplefilter("ignore")
        elif not args.debug:
            warnings.showwarning = _show_warning(args.command)
        yield


@contextlib.contextmanager
def _interrupt_watch():
    """Yield a list that gets an entry for every Ctrl-C during the block (each still raises KeyboardInterrupt)."""
    import signal
    import threading

    seen: list = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield seen  # the caller (a notebook, a test runner) handles interrupts its own way
        return

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_message(written: list) -> str:
    """What an interrupted command tells the user: nothing was written, or which outputs were (complete)."""
    if not written:
        return "interrupted; nothing was written"
    names = ", ".join(f"'{p}'" for p in dict.fromkeys(written))
    return f"interrupted after {names} was written (complete); nothing else was written"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastembed`` console script; returns the exit code.

    A bare ``fastembed`` (no subcommand) prints the help on stdout and returns 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # --quiet silences tqdm for this command only: main() also runs in-process (tests, notebooks, scripts),
    # where a variable left set would silence every later progress bar of the session.
    quiet_env = args.quiet and "TQDM_DISABLE" not in os.environ
    if quiet_env:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return _run(parser, args)
    finally:
        if quiet_env:
            os.environ.pop("TQDM_DISABLE", None)


def _run(parser, args) -> int:
    """Run the parsed command: its exit code, errors as one line (see :func:`main`)."""
    # Imported before the work: after a failed allocation an import may fail too.
    from fastembed.storage import atomic as _atomic
    from fastembed.storage.faults import is_memory_failure, memory_error

    first = len(_atomic.PUBLISHED)
    try:
        with _cli_warnings(args), _interrupt_watch() as interrupted, _output_claim(args):
            args.func(args)
        if interrupted:
            # A Ctrl-C that a library swallowed (e.g. raised in a weakref callback, printed as "Exception
            # ignored"): the work went on, but the user asked to stop and must hear what happened.
            raise KeyboardInterrupt
    except Exception as err:
        memory = is_memory_failure(err)
        if args.debug or not (memory or isinstance(err, INPUT_ERRORS)):
            raise
        if memory:
            # A failed allocation (also a thread that cannot start, HDF5's realloc): the step and what lowers it.
            print(f"fastembed {args.command}: error: {memory_error(err, args.command)}", file=sys.stderr)
            return 1
        msg = as_cli_message(err, getattr(parser, "subparsers", {}).get(args.command))
        print(f"fastembed {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"fastembed {args.command}: {_interrupted_message(_atomic.PUBLISHED[first:])}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
