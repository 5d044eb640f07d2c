"""Cell-type annotation by k-nearest-neighbour label transfer from a labelled reference."""
