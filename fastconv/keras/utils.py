"""``keras.utils``: ``to_categorical``, ``normalize``, ``set_random_seed``, ``clear_session``."""
import random

import numpy as np

from . import backend as _backend

__all__ = ["to_categorical", "normalize", "set_random_seed", "clear_session"]


def to_categorical(x, num_classes=None):
    """One-hot encode integer labels: ``(N,)`` -> ``(N, num_classes)`` float64, as Keras's (a trailing axis
    of size 1 is dropped first; ``num_classes`` defaults to ``max(x) + 1``).

    >>> to_categorical([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    x = np.array(x, dtype="int64")
    input_shape = x.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    x = x.reshape(-1)
    if not num_classes:
        num_classes = int(np.max(x)) + 1
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must lie in [0, {num_classes}), found {x.min()}..{x.max()}")
    categorical = np.zeros((x.shape[0], num_classes))
    categorical[np.arange(x.shape[0]), x] = 1
    return categorical.reshape(input_shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """``x`` divided by its ``order``-norm along ``axis`` (zero norms left as they are)."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)


def set_random_seed(seed):
    """Make a program reproducible, as Keras's ``set_random_seed``: seeds Python's ``random``, NumPy's global
    generator (for the program's own draws) and fastconv.keras's seed generator, from which every face
    model built afterwards draws its core seed (initial weights, shuffling, dropout)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected `seed` argument to be a non-negative integer. Received: seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _backend.reset_seed_generator(int(seed))


def clear_session():
    """Reset the automatic layer and model names (Keras's ``clear_session``)."""
    _backend.clear_session()
