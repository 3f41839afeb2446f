"""``keras.datasets``: MNIST (``keras.datasets.mnist.load_data()``)."""
from . import mnist

__all__ = ["mnist"]

_KERAS_DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imdb", "reuters", "boston_housing",
                   "california_housing")


def __getattr__(name):
    if name in _KERAS_DATASETS:
        raise NotImplementedError(f"keras.datasets.{name} is not available in fastconv.keras (it works offline "
                                  "and has MNIST only: keras.datasets.mnist)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
