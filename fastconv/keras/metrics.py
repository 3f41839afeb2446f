"""Keras metrics by name and as objects, on fastconv's core metrics.

A metric is logged under the name it was given (``"accuracy"``, ``"mae"``); a metric object under its
Keras default name (``MeanAbsoluteError()`` -> ``"mean_absolute_error"``) or its ``name=``.  ``"accuracy"``
is resolved from the loss as Keras does (binary, categorical or sparse categorical accuracy).
"""
from ..nn import metrics as _core
from ._core import accepts, core_class

__all__ = ["get", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError"]

NAMES = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
         "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "mae", "mse", "mean_absolute_error",
         "mean_squared_error")


class _Metric:
    """A Keras metric object: its log name, and how the core computes it (a name or a core object)."""

    def __init__(self, name, core_name, core_cls=None, **params):
        self.name, self.core_name, self.core_cls, self.params = name, core_name, core_cls, params

    def to_core(self):
        cls = getattr(_core, self.core_cls, None) if self.core_cls else None
        if cls is not None and accepts(cls, "name"):   # the core logs it under the Keras name
            return cls(name=self.name, **self.params)
        if self.params:
            core_class(_core, self.core_cls, f"keras.metrics.{self.core_cls}")
            raise NotImplementedError(f"keras.metrics.{self.core_cls}{self.params} is not supported by this "
                                      "fastconv")
        return _by_name(self.core_name, self.name)

    def __repr__(self):
        return f"<keras metric {self.name}>"


def _by_name(core_name, log_name):
    """The core's name for a metric: the log name where the core knows it (the core logs a metric under the
    name it was given), else ``core_name``."""
    for candidate in (log_name, core_name):
        if _knows(candidate):
            return candidate
    raise NotImplementedError(f"metric {log_name!r} is not supported by this fastconv: its core "
                              f"fastconv.nn.metrics does not know {core_name!r}")


def _knows(name):
    try:
        _core.get(name)
    except ValueError:
        return False
    return True


def Accuracy(name="accuracy", dtype=None):
    return _Metric(name, "accuracy", "Accuracy")


def BinaryAccuracy(name="binary_accuracy", dtype=None, threshold=0.5):
    return _Metric(name, "binary_accuracy", "BinaryAccuracy", **({} if threshold == 0.5 else {"threshold": threshold}))


def CategoricalAccuracy(name="categorical_accuracy", dtype=None):
    return _Metric(name, "categorical_accuracy", "CategoricalAccuracy")


def SparseCategoricalAccuracy(name="sparse_categorical_accuracy", dtype=None):
    return _Metric(name, "sparse_categorical_accuracy", "SparseCategoricalAccuracy")


def TopKCategoricalAccuracy(k=5, name="top_k_categorical_accuracy", dtype=None):
    return _Metric(name, "top_k_categorical_accuracy", "TopKCategoricalAccuracy", **({} if k == 5 else {"k": k}))


def SparseTopKCategoricalAccuracy(k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
    return _Metric(name, "sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy",
                   **({} if k == 5 else {"k": k}))


def MeanAbsoluteError(name="mean_absolute_error", dtype=None):
    return _Metric(name, "mae", "MeanAbsoluteError")


def MeanSquaredError(name="mean_squared_error", dtype=None):
    return _Metric(name, "mse", "MeanSquaredError")


def resolve(identifier):
    """``(log name, core identifier)`` for a Keras metric identifier; unknown names list the valid ones."""
    if isinstance(identifier, _Metric):
        return identifier.name, identifier.to_core()
    if isinstance(identifier, str):
        if identifier not in NAMES:
            raise ValueError(f"Could not interpret metric identifier: {identifier!r}; valid choices: "
                             f"{', '.join(NAMES)}")
        core = {"mean_absolute_error": "mae", "mean_squared_error": "mse"}.get(identifier, identifier)
        return identifier, _by_name(core, identifier)
    name = getattr(identifier, "_keras_loss", None)   # keras.losses.mean_squared_error as a metric
    if name is not None:
        return resolve(name)
    if callable(identifier):
        raise NotImplementedError(f"metric {identifier!r}: custom metric functions are not supported by fastconv")
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def get(identifier):
    """The Keras metric object for a name."""
    name, _ = resolve(identifier)
    return _Metric(name, name)
