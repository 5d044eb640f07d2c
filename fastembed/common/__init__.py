"""Helpers every room uses: numba thread counts, progress bars, warnings attributed to the user's line, file suffixes."""
