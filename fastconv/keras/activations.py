"""Keras activations by name and as functions, on fastconv's core activations.

``activation="relu"`` (or ``keras.activations.relu``) on a layer resolves to the core activation of that
name.  Where Keras's function has a parameter with a different default than the core's, the face passes
Keras's: ``leaky_relu`` has ``negative_slope=0.2`` (the ``LeakyReLU`` layer's default is 0.3).  Called on
an array, each function runs the core activation's forward on a copy: ``keras.activations.relu(x)``.
"""
from ..nn import activations as _core
from ._core import core_class

__all__ = ["get", "serialize", "deserialize", "relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu",
           "gelu", "leaky_relu", "silu", "swish", "softplus", "softsign", "relu6", "hard_sigmoid"]

NAMES = ("relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu", "leaky_relu", "silu", "swish",
         "softplus", "softsign", "relu6", "hard_sigmoid")


def to_core(identifier):
    """The core activation for a Keras activation identifier: a name (str), a core object, or None."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, _core.Activation):
        return identifier
    name = getattr(identifier, "_keras_activation", None)
    if name is None and isinstance(identifier, str):
        name = identifier.lower()
    if name is None:
        if callable(identifier):
            raise NotImplementedError(f"activation={identifier!r}: custom activation functions are not supported "
                                      f"by fastconv; use one of: {', '.join(NAMES)}")
        raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")
    if name == "leaky_relu":   # Keras's function default; the core's name means PyTorch's 0.01
        return core_class(_core, "LeakyReLU", "activation 'leaky_relu'")(negative_slope=0.2)
    _core.get(name)   # raises ValueError listing the valid names
    return name


def core_name(spec):
    """The name of a resolved activation (``to_core``'s result)."""
    return spec if isinstance(spec, str) else spec.name


def serialize(identifier):
    """The JSON form of an activation identifier (a name, or ``{"class", "config"}`` of a core object)."""
    spec = to_core(identifier)
    if isinstance(spec, str):
        return spec
    config = {k: getattr(spec, k) for k in ("negative_slope", "alpha", "approximate") if hasattr(spec, k)}
    return {"class": type(spec).__name__, "config": config}


def deserialize(config):
    """The inverse of :func:`serialize`."""
    if isinstance(config, dict):
        return core_class(_core, config["class"], f"activation {config['class']}")(**config["config"])
    return config


def get(identifier):
    """The face function for a name (``get("relu") is relu``); functions and None pass through."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        to_core(identifier)
        return globals()[identifier.lower()] if identifier.lower() in NAMES else identifier
    return identifier


def _function(name):
    def activation(x):
        import numpy as np

        z = np.array(x, dtype=np.result_type(np.asarray(x).dtype, np.float32), order="C")
        spec = to_core(name)
        act = _core.get(spec)
        shape = z.shape
        z2 = z.reshape(1, -1) if z.ndim < 2 else z.reshape(-1, shape[-1])   # softmax runs over the last axis
        y, _, forward, _ = act.plan(z2, None)
        for kernel, args in forward:
            kernel(*args)
        return y.reshape(shape)

    activation.__name__ = activation.__qualname__ = name
    activation.__doc__ = f"Keras's ``{name}`` on an array, computed by fastconv's core activation."
    activation._keras_activation = name
    return activation


relu, sigmoid, tanh, softmax, linear = (_function(n) for n in ("relu", "sigmoid", "tanh", "softmax", "linear"))
elu, selu, gelu, leaky_relu = (_function(n) for n in ("elu", "selu", "gelu", "leaky_relu"))
silu, swish, softplus, softsign = (_function(n) for n in ("silu", "swish", "softplus", "softsign"))
relu6, hard_sigmoid = _function("relu6"), _function("hard_sigmoid")
