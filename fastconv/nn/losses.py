"""Losses, and how each one joins a compiled training step.

A loss reads the model's output and the batch targets and writes dL/d(output) into the step's gradient
buffer.  When the model's last activation is the one the loss pairs with (softmax for the categorical
cross-entropies, sigmoid for the binary one) and ``from_logits`` is False, the step is compiled *fused*:
the last layer stops before its activation and the loss works on the logits, which is exact and stable
(log-sum-exp).  With ``from_logits=True`` the model's outputs are logits already.  Evaluation runs on the
model's outputs after the last activation.
"""
import numpy as np

from .. import ops
from .activations import sigmoid

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
           "MeanSquaredError", "get", "LOSSES"]


class Loss:
    """Base class: ``value_and_grad(out, t, logits)`` gives the mean loss and dL/d(out)."""

    name = None
    pairs_with = None          # the activation a fused step folds into this loss
    classification = False     # accuracy counts samples (True) or outputs (False)

    def __init__(self, from_logits=False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
        self.from_logits = bool(from_logits)

    def fuses_with(self, activation_name):
        """True when a training step should hand this loss the logits instead of ``activation``'s output."""
        return not self.from_logits and activation_name == self.pairs_with

    def targets(self, y, n, output_shape, dtype):
        """``y`` checked and converted for this loss (raises naming what is wrong)."""
        raise NotImplementedError

    def bind(self, out, t, gout, logits):
        """The bound call of a step: computes the loss (returned) and writes dL/d(out) into ``gout``."""
        return _numpy_loss, (self.value_and_grad, out, t, gout, logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


def _numpy_loss(value_and_grad, out, t, gout, logits):
    loss, grad = value_and_grad(out, t, logits)
    np.copyto(gout, grad)
    return loss


def _as_floats(y, n, shape, dtype, loss_name):
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{loss_name} needs numeric targets, got dtype {y.dtype}")
    if y.size != n * int(np.prod(shape)):
        raise ValueError(f"{loss_name} needs targets of shape {(n,) + tuple(shape)} (the model's output), "
                         f"got {y.shape}")
    return y


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels ``y`` of shape (N,)."""

    name = "sparse_categorical_crossentropy"
    pairs_with = "softmax"
    classification = True

    def targets(self, y, n, output_shape, dtype):
        y = np.asarray(y)
        k = int(np.prod(output_shape))
        if y.ndim == 2 and y.shape == (n, k) and k > 1 and y.dtype.kind in "biuf" and np.all((y == 0) | (y == 1)) \
                and np.all(y.sum(axis=1) == 1):
            raise ValueError(f"sparse_categorical_crossentropy needs integer class labels of shape ({n},); got "
                             f"one-hot targets of shape {y.shape}: use loss='categorical_crossentropy', or pass "
                             f"y.argmax(axis=1)")
        if y.dtype.kind not in "iu":
            if y.dtype.kind == "f" and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                raise TypeError(f"sparse_categorical_crossentropy needs integer class labels, got dtype {y.dtype}")
        if y.size != n:
            raise ValueError(f"sparse_categorical_crossentropy needs one class label per sample, shape ({n},); "
                             f"got shape {y.shape}")
        y = y.reshape(-1).astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"labels must lie in [0, {k}) for a model with {k} outputs; found {y.min()}..{y.max()}")
        return y

    def bind(self, out, t, gout, logits):
        if logits:
            n = out.shape[0]
            return ops.bind_softmax_cross_entropy(out.reshape(n, -1), t, gout.reshape(n, -1))
        return super().bind(out, t, gout, logits)

    def value_and_grad(self, out, y, logits):
        n = out.shape[0]
        if logits:
            return ops.softmax_cross_entropy(out.reshape(n, -1), y)
        p = np.clip(out.reshape(n, -1), 1e-12, None)
        g = np.zeros_like(p)
        g[np.arange(n), y] = -1.0 / (p[np.arange(n), y] * n)
        return float(-np.log(p[np.arange(n), y]).mean()), g.reshape(out.shape)


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) targets ``y`` of the output's shape."""

    name = "categorical_crossentropy"
    pairs_with = "softmax"
    classification = True

    def targets(self, y, n, output_shape, dtype):
        y = np.asarray(y)
        k = int(np.prod(output_shape))
        if y.dtype.kind in "iu" and y.ndim == 1 and y.shape[0] == n and k > 1:
            raise ValueError(f"categorical_crossentropy needs one-hot targets of shape ({n}, {k}); got integer "
                             f"class labels of shape {y.shape}: one-hot them (np.eye({k})[y]) or use "
                             f"loss='sparse_categorical_crossentropy'")
        return _as_floats(y, n, output_shape, dtype, self.name).reshape((n,) + tuple(output_shape))

    def value_and_grad(self, out, y, logits):
        n = out.shape[0]
        t = y.reshape(n, -1)
        if logits:
            z = out.reshape(n, -1)
            zmax = z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
            loss = float(-(t * (z - lse)).sum(axis=1).mean())
            return loss, ((np.exp(z - lse) * t.sum(axis=1, keepdims=True) - t) / n).astype(out.dtype)
        p = np.clip(out.reshape(n, -1), 1e-12, None)
        return float(-(t * np.log(p)).sum(axis=1).mean()), (-t / p / n).astype(out.dtype).reshape(out.shape)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy with targets in [0, 1] of the output's shape."""

    name = "binary_crossentropy"
    pairs_with = "sigmoid"

    def targets(self, y, n, output_shape, dtype):
        return _as_floats(y, n, output_shape, dtype, self.name).reshape((n,) + tuple(output_shape)).astype(dtype)

    def value_and_grad(self, out, t, logits):
        if logits:
            z = out
            loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
            return loss, ((sigmoid(z) - t) / out.size).astype(out.dtype)
        p = np.clip(out, 1e-12, 1 - 1e-12)
        loss = float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
        return loss, ((p - t) / (p * (1 - p)) / out.size).astype(out.dtype)


class MeanSquaredError(Loss):
    """``mean((out - y)**2)`` over every output."""

    name = "mse"

    def __init__(self):
        super().__init__(False)

    def targets(self, y, n, output_shape, dtype):
        return _as_floats(y, n, output_shape, dtype, self.name).reshape((n,) + tuple(output_shape)).astype(dtype)

    def value_and_grad(self, out, t, logits):
        diff = out - t
        return float(np.mean(diff * diff)), (2 * diff / out.size).astype(out.dtype)

    def get_config(self):
        return {}


LOSSES = {cls.name: cls for cls in (SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
                                    MeanSquaredError)}


def get(identifier):
    """A loss from its name or an instance; an unknown name lists the valid ones."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in LOSSES:
        return LOSSES[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; valid choices: {', '.join(LOSSES)} or a fastconv.nn.losses.Loss")
