"""The numba kernels: SGNS training (and its driver), the alias table and counter-based RNG, pooling, projection, warm start."""
