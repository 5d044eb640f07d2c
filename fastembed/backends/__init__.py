"""Where work runs beyond one process: the dask.distributed backend."""
