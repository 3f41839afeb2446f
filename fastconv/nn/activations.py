"""Activations as parts of a compiled step.

``get(name).plan(z, gz)`` takes the buffer ``z`` that the layer's linear part writes and the buffer ``gz``
that its backward reads dL/dz from (None when no gradient flows through), and returns
``(y, gy, forward, backward)``: the output buffer, the buffer the next layer writes dL/dy into, and the
bound calls (``(function, args)`` pairs) that compute ``y`` from ``z`` and ``gz`` from ``gy``.  ReLU runs
the compiled kernel; the others are NumPy expressions on the step's buffers.
"""
import numpy as np

from .. import ops

__all__ = ["ACTIVATIONS", "get", "sigmoid", "softmax"]


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

    def __repr__(self):
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


ACTIVATIONS = {
    "relu": ReLU(),
    "sigmoid": _NumpyActivation("sigmoid", sigmoid, _sigmoid_backward),
    "tanh": _NumpyActivation("tanh", np.tanh, _tanh_backward),
    "softmax": _NumpyActivation("softmax", _softmax_forward, _softmax_backward, rows=True),
    "linear": Activation(),
}


def get(name):
    """The activation called ``name`` (None means linear); an unknown name lists the valid ones."""
    if name is None:
        return ACTIVATIONS["linear"]
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid choices: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name.lower()]
