"""The training driver: from tokenized cells to a model's trained arrays, checked before anything is allocated.

:class:`fastembed.ScEmbed` holds the settings and the results; this module does the run: it checks the arguments
(:func:`check_train_args`, which the command line calls too, before the tokens are read), checks the memory, picks
the epochs, runs :func:`fastembed.kernels.sgns.train_sgns`, fits the cell projection and records what happened.
"""

from __future__ import annotations

from fastembed import settings
from fastembed.common.validate import check_positive_float, check_positive_int

__all__ = ["check_train_args"]


def check_train_args(
    epochs,
    batch_size=settings.TRAIN_DEFAULTS.batch_size,
    learning_rate=settings.TRAIN_DEFAULTS.learning_rate,
    min_learning_rate=settings.TRAIN_DEFAULTS.min_learning_rate,
) -> tuple:
    """:meth:`fastembed.ScEmbed.train`'s numeric arguments, checked.

    Returns
    -------
    tuple
        ``(epochs or None, batch_size, learning_rate, min_learning_rate)`` as int, int, float, float.

    Raises
    ------
    ValueError
        Naming the first bad argument first (``batch_size must be an integer >= 1, got 0``).
    """
    epochs = None if epochs is None else check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    min_learning_rate = check_positive_float("min_learning_rate", min_learning_rate, allow_zero=True)
    if min_learning_rate > learning_rate:
        raise ValueError(
            f"min_learning_rate must be at most learning_rate={learning_rate}, got {min_learning_rate}"
        )
    return epochs, batch_size, learning_rate, min_learning_rate
