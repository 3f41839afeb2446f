"""Activations as parts of a compiled step.

``get(name).plan(z, gz)`` takes the buffer ``z`` that the layer's linear part writes and the buffer ``gz``
that its backward reads dL/dz from (None when no gradient flows through), and returns
``(y, gy, forward, backward)``: the output buffer, the buffer the next layer writes dL/dy into, and the
bound calls (``(function, args)`` pairs) that compute ``y`` from ``z`` and ``gz`` from ``gy``.  ReLU and
the activations of :func:`fastconv.ops.activation_forward` run compiled kernels; sigmoid, tanh and softmax
are NumPy expressions on the step's buffers (the compiled sigmoid and tanh round differently from NumPy's
and would change the bits of existing models).

Names (``get``, case-insensitive): relu, sigmoid, tanh, softmax, linear, elu, selu, gelu (exact, erf),
gelu_tanh, leaky_relu, silu, swish (silu), softplus, softsign, relu6, hard_sigmoid.  ``LeakyReLU``, ``ELU``
and ``GELU`` take parameters; a layer's config stores a default activation by name and any other as
``{"class": ..., "config": {...}}``, which ``get`` reads back.
"""
import numbers

import numpy as np

from .. import ops

__all__ = ["ACTIVATIONS", "Activation", "ELU", "GELU", "LeakyReLU", "ReLU", "get", "serialize", "sigmoid",
           "softmax"]


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))``, split by sign so that exp never overflows."""
    out = np.empty_like(x) if out is None else out
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(x, out=None):
    """Row-wise softmax of a 2-D array, shifted by the row maximum."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.divide(e, e.sum(axis=1, keepdims=True), out=out)


class Activation:
    """An elementwise (or row-wise) function of a layer's output; the linear activation is the identity."""

    name = "linear"

    def plan(self, z, gz):
        return z, gz, [], []

    def get_config(self):
        """The constructor arguments (none for the unparametrised activations)."""
        return {}

    def __eq__(self, other):
        return type(other) is type(self) and other.name == self.name and other.get_config() == self.get_config()

    def __hash__(self):
        return hash((type(self).__name__, self.name, tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        config = self.get_config()
        if config:
            return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"
        return f"activation {self.name!r}"


class ReLU(Activation):
    """PyTorch's ReLU: ``0 where z <= 0 else z``; the gradient passes where ``not (z <= 0)``."""

    name = "relu"

    def plan(self, z, gz):
        y, mask = np.empty_like(z), np.empty(z.shape, np.bool_)
        forward = [ops.bind_relu_forward(z, y, mask)]
        if gz is None:
            return y, None, forward, []
        gy = np.empty_like(z)
        return y, gy, forward, [ops.bind_relu_backward(gy, mask, gz)]


def _sigmoid_backward(gy, y, gz):
    np.multiply(gy, y, out=gz)          # gz = gy * y * (1 - y)
    np.multiply(gz, 1 - y, out=gz)


def _tanh_backward(gy, y, gz):
    np.multiply(gy, 1 - y * y, out=gz)  # gz = gy * (1 - y**2)


def _softmax_forward(z2, y2):
    softmax(z2, out=y2)


def _softmax_backward(gy2, y2, gz2):
    # gz = y * (gy - sum(gy * y)) row by row
    np.multiply(y2, gy2 - (gy2 * y2).sum(axis=1, keepdims=True), out=gz2)


class _NumpyActivation(Activation):
    """An activation whose forward and backward are NumPy functions ``f(z, y)`` and ``b(gy, y, gz)``."""

    def __init__(self, name, forward, backward, rows=False):
        self.name, self._forward, self._backward, self._rows = name, forward, backward, rows

    def plan(self, z, gz):
        y = np.empty_like(z)
        view = (lambda a: a.reshape(a.shape[0], -1)) if self._rows else (lambda a: a)
        forward = [(self._forward, (view(z), view(y)))]
        if gz is None:
            return y, None, forward, []
        gy = np.empty_like(z)
        return y, gy, forward, [(self._backward, (view(gy), view(y), view(gz)))]


class _Compiled(Activation):
    """An activation run by :func:`fastconv.ops.activation_forward` / ``activation_backward`` with
    ``kind`` and ``params``; the backward reads z, or y for the kinds that read the output."""

    def __init__(self, name, kind=None, **params):
        self.name, self._kind, self._params = name, kind or name, params

    def plan(self, z, gz):
        y = np.empty_like(z)
        forward = [ops.bind_activation_forward(z, y, self._kind, **self._params)]
        if gz is None:
            return y, None, forward, []
        gy = np.empty_like(z)
        return y, gy, forward, [ops.bind_activation_backward(gy, z, y, gz, self._kind, **self._params)]


def _finite_real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


class LeakyReLU(_Compiled):
    """``z if z > 0 else negative_slope * z`` (PyTorch's default slope 0.01); the gradient takes the
    slope where ``z <= 0``.

    >>> LeakyReLU(0.2).negative_slope
    0.2
    """

    def __init__(self, negative_slope=0.01):
        self.negative_slope = _finite_real(negative_slope, "negative_slope")
        super().__init__("leaky_relu", negative_slope=self.negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


class ELU(_Compiled):
    """``z if z > 0 else alpha * expm1(z)``; the gradient ``alpha * exp(z)`` where ``z <= 0``, else 1."""

    def __init__(self, alpha=1.0):
        self.alpha = _finite_real(alpha, "alpha")
        super().__init__("elu", alpha=self.alpha)

    def get_config(self):
        return {"alpha": self.alpha}


class GELU(_Compiled):
    """``0.5*z*(1 + erf(z/sqrt(2)))`` (``approximate="none"``, name "gelu") or PyTorch's tanh form
    ``0.5*z*(1 + tanh(sqrt(2/pi)*(z + 0.044715*z**3)))`` (``approximate="tanh"``, name "gelu_tanh")."""

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        super().__init__("gelu" if approximate == "none" else "gelu_tanh")

    def get_config(self):
        return {"approximate": self.approximate}


ACTIVATIONS = {
    "relu": ReLU(),
    "sigmoid": _NumpyActivation("sigmoid", sigmoid, _sigmoid_backward),
    "tanh": _NumpyActivation("tanh", np.tanh, _tanh_backward),
    "softmax": _NumpyActivation("softmax", _softmax_forward, _softmax_backward, rows=True),
    "linear": Activation(),
    "elu": ELU(),
    "selu": _Compiled("selu"),
    "gelu": GELU(),
    "gelu_tanh": GELU("tanh"),
    "leaky_relu": LeakyReLU(),
    "silu": _Compiled("silu"),
    "swish": _Compiled("silu"),
    "softplus": _Compiled("softplus"),
    "softsign": _Compiled("softsign"),
    "relu6": _Compiled("relu6"),
    "hard_sigmoid": _Compiled("hard_sigmoid"),
}
_CLASSES = {cls.__name__: cls for cls in (LeakyReLU, ELU, GELU)}


def get(identifier):
    """The activation for ``identifier``: a name (case-insensitive; None means linear), an
    :class:`Activation` instance (returned as it is), or a saved config ``{"class": "LeakyReLU", "config":
    {"negative_slope": 0.2}}`` (see :func:`serialize`).  An unknown name lists the valid ones.

    >>> get("LEAKY_RELU").negative_slope
    0.01
    """
    if identifier is None:
        return ACTIVATIONS["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, dict):
        cls, config = _CLASSES.get(identifier.get("class")), identifier.get("config")
        if cls is None or not isinstance(config, dict) or set(identifier) != {"class", "config"}:
            raise ValueError(f"activation config {identifier!r} is not {{'class': one of {sorted(_CLASSES)}, "
                             "'config': {...}}")
        return cls(**config)
    if not isinstance(identifier, str) or identifier.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown activation {identifier!r}; valid choices: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[identifier.lower()]


def serialize(activation):
    """What a layer's config stores for ``activation``: its name when ``get(name)`` gives it back (the
    unparametrised ones and the defaults), else ``{"class": ..., "config": ...}``."""
    activation = get(activation)
    if ACTIVATIONS.get(activation.name) == activation:
        return activation.name
    if type(activation).__name__ not in _CLASSES:
        raise ValueError(f"{activation!r} cannot be saved: only the named activations and "
                         f"{', '.join(sorted(_CLASSES))} have a config")
    return {"class": type(activation).__name__, "config": activation.get_config()}
