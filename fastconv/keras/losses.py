"""Keras losses by name and as objects, on fastconv's core losses.

Names: ``mse``/``mean_squared_error``, ``mae``/``mean_absolute_error``, ``huber``, ``binary_crossentropy``,
``categorical_crossentropy``, ``sparse_categorical_crossentropy``; the classes take Keras's arguments
(``from_logits``, ``delta``).  ``label_smoothing``, ``ignore_class``, other reductions and custom loss
functions raise NotImplementedError.
"""
from ..nn import losses as _core
from ._core import check_defaults, core_class

__all__ = ["get", "Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "mean_squared_error", "mean_absolute_error",
           "huber", "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"]

Loss = _core.Loss

# Keras name -> (core names to try, core class)
_NAMES = {
    "mean_squared_error": (("mean_squared_error", "mse"), "MeanSquaredError"),
    "mean_absolute_error": (("mean_absolute_error", "mae"), "MeanAbsoluteError"),
    "huber": (("huber",), "Huber"),
    "binary_crossentropy": (("binary_crossentropy",), "BinaryCrossentropy"),
    "categorical_crossentropy": (("categorical_crossentropy",), "CategoricalCrossentropy"),
    "sparse_categorical_crossentropy": (("sparse_categorical_crossentropy",), "SparseCategoricalCrossentropy"),
}
_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "huber_loss": "huber",
            "bce": "binary_crossentropy", "cce": "categorical_crossentropy"}
_REDUCTION = {"reduction": "sum_over_batch_size"}


def _by_name(name):
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _NAMES:
        raise ValueError(f"Could not interpret loss identifier: {name!r}; valid choices: "
                         f"{', '.join(sorted(set(_NAMES) | set(_ALIASES)))}")
    names, cls = _NAMES[key]
    for candidate in names:
        if candidate in _core.LOSSES:
            return _core.LOSSES[candidate]()
    return core_class(_core, cls, f"loss {name!r}")()


def _with_logits(cls_name, feature, from_logits, kwargs):
    check_defaults(cls_name, kwargs, {**_REDUCTION, "label_smoothing": 0.0, "axis": -1, "ignore_class": None})
    kwargs.pop("name", None)
    return core_class(_core, cls_name, feature)(from_logits=from_logits)


def MeanSquaredError(reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
    """``mean((y_pred - y_true)**2)``."""
    check_defaults("MeanSquaredError", {"reduction": reduction}, _REDUCTION)
    return _by_name("mse")


def MeanAbsoluteError(reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
    """``mean(|y_pred - y_true|)``."""
    check_defaults("MeanAbsoluteError", {"reduction": reduction}, _REDUCTION)
    return _by_name("mae")


def Huber(delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
    """Quadratic within ``delta`` of the target, linear beyond."""
    check_defaults("Huber", {"reduction": reduction}, _REDUCTION)
    return core_class(_core, "Huber", "keras.losses.Huber")(delta=delta)


def BinaryCrossentropy(from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                       name="binary_crossentropy", dtype=None):
    return _with_logits("BinaryCrossentropy", "keras.losses.BinaryCrossentropy", from_logits,
                        {"label_smoothing": label_smoothing, "axis": axis, "reduction": reduction})


def CategoricalCrossentropy(from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                            name="categorical_crossentropy", dtype=None):
    return _with_logits("CategoricalCrossentropy", "keras.losses.CategoricalCrossentropy", from_logits,
                        {"label_smoothing": label_smoothing, "axis": axis, "reduction": reduction})


def SparseCategoricalCrossentropy(from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                                  name="sparse_categorical_crossentropy", dtype=None):
    return _with_logits("SparseCategoricalCrossentropy", "keras.losses.SparseCategoricalCrossentropy", from_logits,
                        {"ignore_class": ignore_class, "reduction": reduction})


def _tag(name):
    """A Keras loss function name, usable as ``loss=keras.losses.<name>`` in compile."""
    def loss(y_true, y_pred):
        raise NotImplementedError(f"keras.losses.{name} is usable as compile(loss=...) in fastconv.keras; "
                                  "to compute a loss value, use model.evaluate")
    loss.__name__ = loss.__qualname__ = name
    loss._keras_loss = name
    return loss


mean_squared_error = mse = _tag("mean_squared_error")
mean_absolute_error = mae = _tag("mean_absolute_error")
huber = _tag("huber")
binary_crossentropy = _tag("binary_crossentropy")
categorical_crossentropy = _tag("categorical_crossentropy")
sparse_categorical_crossentropy = _tag("sparse_categorical_crossentropy")


def get(identifier):
    """A core loss from a Keras name, a face loss function, or a core loss object."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _by_name(identifier)
    name = getattr(identifier, "_keras_loss", None)
    if name is not None:
        return _by_name(name)
    if callable(identifier):
        raise NotImplementedError(f"loss={identifier!r}: custom loss functions are not supported by fastconv; "
                                  f"use one of: {', '.join(sorted(_NAMES))}")
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
