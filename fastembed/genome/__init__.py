"""Regions and cells: the universe, readers of cells x peaks inputs, tokenization (peaks and fragments), token containers."""
