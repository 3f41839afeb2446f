"""``keras.datasets.mnist.load_data()``: Keras's cached MNIST when present, else fastconv's embedded subset."""
import os

import numpy as np

from ... import datasets as _datasets

__all__ = ["load_data"]


def keras_cache(path="mnist.npz"):
    """Where Keras caches ``path``: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets`` (Keras's ``get_file``)."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    return os.path.join(home, "datasets", path)


def load_data(path="mnist.npz"):
    """``((x_train, y_train), (x_test, y_test))``: images uint8 (N, 28, 28), labels uint8 (N,), as Keras.

    Reads Keras's own cached file (``~/.keras/datasets/mnist.npz``, or under ``$KERAS_HOME``) when it is
    there, checked by :func:`fastconv.datasets.load_mnist` (shapes, values, no pickle; a damaged file is a
    ValueError naming it).  Without it (fastconv never downloads) it returns the embedded subset of real
    MNIST, 4,000 training and 1,000 test images, and prints one line saying so.
    """
    cached = keras_cache(path)
    if os.path.isfile(cached):
        (x, y), (xt, yt) = _datasets.load_mnist(cached)
    else:
        (x, y), (xt, yt) = _datasets.load_mnist()
        print(f"fastconv.keras.datasets.mnist: no Keras cache at {cached}; using fastconv's embedded MNIST subset "
              f"({len(x):,} train / {len(xt):,} test images)", flush=True)
    return (x, y.astype(np.uint8)), (xt, yt.astype(np.uint8))
