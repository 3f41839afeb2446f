"""Losses, and how each one joins a compiled training step.

A loss reads the model's output and the batch targets and writes dL/d(output) into the step's gradient
buffer.  When the model's last activation is the one the loss pairs with (softmax for the categorical
cross-entropies, sigmoid for the binary one) and ``from_logits`` is False, the step is compiled *fused*:
the last layer stops before its activation and the loss works on the logits, which is exact and stable
(log-sum-exp).  With ``from_logits=True`` the model's outputs are logits already.  Evaluation runs on the
model's outputs after the last activation.

Reduction is Keras's ``"sum_over_batch_size"``: the loss of a batch of ``n`` samples with sample weights
``w`` is ``sum_i w_i * l_i / n``, ``l_i`` the mean of sample ``i``'s elementwise losses (``w = 1`` without
weights), and its gradient is ``w_i`` times the unweighted one, row by row.
"""
import numpy as np

from .. import ops
from .activations import sigmoid

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
           "MeanSquaredError", "MeanAbsoluteError", "Huber", "get", "LOSSES", "ALIASES"]

_REDUCTIONS = ("sum_over_batch_size", "mean")   # the same in Keras: sum / batch size


def _keras_only(cls_name, reduction, dtype, **unsupported):
    """NotImplementedError for Keras arguments fastconv lacks, naming them; ValueError for bad reductions."""
    if reduction not in _REDUCTIONS:
        if reduction in ("sum", "none", None, "mean_with_sample_weight"):
            raise NotImplementedError(f"{cls_name}(reduction={reduction!r}) is not supported by fastconv; "
                                      f"only reduction='sum_over_batch_size' (Keras's default)")
        raise ValueError(f"{cls_name}: reduction must be 'sum_over_batch_size', got {reduction!r}")
    if dtype is not None:
        raise NotImplementedError(f"{cls_name}(dtype={dtype!r}) is not supported by fastconv: the loss runs in "
                                  f"the model's dtype")
    for name, (value, default) in unsupported.items():
        if value != default:
            raise NotImplementedError(f"{cls_name}({name}={value!r}) is not supported by fastconv "
                                      f"(only {name}={default!r})")


def _weighted(loss, out, t, w, gout, logits):
    """The weighted batch loss ``sum(w_i l_i) / n``; dL/d(out) is the unweighted gradient times ``w_i``."""
    value, grad = loss.value_and_grad(out, t, logits)
    np.multiply(grad, w.reshape((-1,) + (1,) * (out.ndim - 1)), out=gout)
    return loss.weighted_value(out, t, w, logits)


def _weighted_fused(kernel_call, loss, out, t, w, gout, logits):
    """The fused kernel's gradient rows scaled by ``w``; the weighted loss from the per-sample losses."""
    fn, args = kernel_call
    fn(*args)
    gout *= w.reshape((-1,) + (1,) * (gout.ndim - 1))
    return loss.weighted_value(out, t, w, logits)


class Loss:
    """Base class: ``value_and_grad(out, t, logits)`` gives the mean loss and dL/d(out)."""

    name = None
    pairs_with = None          # the activation a fused step folds into this loss
    classification = False     # accuracy counts samples (True) or outputs (False)

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None, dtype=None):
        from_logits = ops.as_bool(from_logits, "from_logits")
        _keras_only(type(self).__name__, reduction, dtype)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.from_logits = from_logits
        self.reduction = "sum_over_batch_size"
        self.loss_name = name or self.name     # Keras's ``name``; the logs call the loss "loss" regardless

    def per_sample(self, out, t, logits):
        """Each sample's loss (the mean of its elementwise losses), shape (N,), float64."""
        raise NotImplementedError

    def weighted_value(self, out, t, w, logits):
        """The loss of a batch with sample weights ``w`` (N,): ``sum(w_i l_i) / N`` (0 for no samples)."""
        return float(np.dot(w, self.per_sample(out, t, logits))) / max(out.shape[0], 1)

    def fuses_with(self, activation_name):
        """True when a training step should hand this loss the logits instead of ``activation``'s output."""
        return not self.from_logits and activation_name == self.pairs_with

    def targets(self, y, n, output_shape, dtype):
        """``y`` checked and converted for this loss (raises naming what is wrong)."""
        raise NotImplementedError

    def bind(self, out, t, gout, logits, w=None):
        """The bound call of a step: computes the loss (returned) and writes dL/d(out) into ``gout``.

        With ``w`` (the step's sample-weight buffer, shape (N,)) the loss is ``sum(w_i l_i) / N`` and the
        gradient rows are scaled by ``w_i``."""
        if w is not None:
            return _weighted, (self, out, t, w, gout, logits)
        return _numpy_loss, (self.value_and_grad, out, t, gout, logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of outputs ``y_pred`` (probabilities, or logits with ``from_logits``) against ``y_true``,
        weighted as in training; a Python float.

        >>> MeanSquaredError()(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]))
        0.5
        """
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        n = y_pred.shape[0]
        t = self.targets(y_true, n, y_pred.shape[1:], np.float64)
        if sample_weight is None:
            return float(self.value_and_grad(y_pred, t, self.from_logits)[0])
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have one weight per sample ({n}), "
                             f"got shape {np.shape(sample_weight)}")
        return self.weighted_value(y_pred, t, w, self.from_logits)

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

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name=None, dtype=None):
        _keras_only(type(self).__name__, reduction, None, ignore_class=(ignore_class, None), axis=(axis, -1))
        super().__init__(from_logits, reduction, name, dtype)

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

    def bind(self, out, t, gout, logits, w=None):
        if logits:
            n = out.shape[0]
            call = ops.bind_softmax_cross_entropy(out.reshape(n, -1), t, gout.reshape(n, -1))
            return call if w is None else (_weighted_fused, (call, self, out, t, w, gout, logits))
        return super().bind(out, t, gout, logits, w)

    def per_sample(self, out, y, logits):
        n = out.shape[0]
        z = out.reshape(n, -1).astype(np.float64)
        if logits:
            zmax = z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
            return lse - z[np.arange(n), y]
        return -np.log(np.clip(z[np.arange(n), y], 1e-12, None))

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

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        _keras_only(type(self).__name__, reduction, None, label_smoothing=(label_smoothing, 0.0), axis=(axis, -1))
        super().__init__(from_logits, reduction, name, dtype)

    def per_sample(self, out, y, logits):
        n = out.shape[0]
        z, t = out.reshape(n, -1).astype(np.float64), y.reshape(n, -1)
        if logits:
            zmax = z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
            return -(t * (z - lse)).sum(axis=1)
        return -(t * np.log(np.clip(z, 1e-12, None))).sum(axis=1)

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

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        _keras_only(type(self).__name__, reduction, None, label_smoothing=(label_smoothing, 0.0), axis=(axis, -1))
        super().__init__(from_logits, reduction, name, dtype)

    def per_sample(self, out, t, logits):
        n = out.shape[0]
        z, t = out.reshape(n, -1).astype(np.float64), t.reshape(n, -1)
        if logits:
            return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(axis=1)
        p = np.clip(z, 1e-12, 1 - 1e-12)
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)

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


class _Regression(Loss):
    """A loss on real-valued targets of the output's shape (no activation pairs with it)."""

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(False, reduction, name, dtype)

    def targets(self, y, n, output_shape, dtype):
        return _as_floats(y, n, output_shape, dtype, self.name).reshape((n,) + tuple(output_shape)).astype(dtype)

    def per_sample(self, out, t, logits):
        n = out.shape[0]
        return self._elementwise(out.reshape(n, -1).astype(np.float64), t.reshape(n, -1)).mean(axis=1)

    def get_config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class MeanSquaredError(_Regression):
    """``mean((out - y)**2)`` over every output (Keras's ``mean_squared_error``)."""

    name = "mse"

    def _elementwise(self, out, t):
        return (out - t) ** 2

    def value_and_grad(self, out, t, logits):
        diff = out - t
        return float(np.mean(diff * diff)), (2 * diff / out.size).astype(out.dtype)


class MeanAbsoluteError(_Regression):
    """``mean(|out - y|)`` over every output (Keras's ``mean_absolute_error``); the gradient at 0 is 0."""

    name = "mae"

    def _elementwise(self, out, t):
        return np.abs(out - t)

    def value_and_grad(self, out, t, logits):
        diff = out - t
        return float(np.mean(np.abs(diff))), (np.sign(diff) / out.size).astype(out.dtype)


class Huber(_Regression):
    """Keras's Huber loss: with ``x = out - y``, ``0.5 x**2`` where ``|x| <= delta``, else
    ``delta |x| - 0.5 delta**2``; the mean over every output.  Gradient ``x`` or ``delta sign(x)``."""

    name = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None, dtype=None):
        if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.integer, np.floating)) \
                or not np.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: delta must be a positive finite number, got {delta!r}")
        super().__init__(reduction, name, dtype)
        self.delta = float(delta)

    def _elementwise(self, out, t):
        x = np.abs(out - t)
        return np.where(x <= self.delta, 0.5 * x * x, self.delta * x - 0.5 * self.delta * self.delta)

    def value_and_grad(self, out, t, logits):
        diff = out - t
        loss = float(np.mean(self._elementwise(diff, 0)))
        grad = np.where(np.abs(diff) <= self.delta, diff, self.delta * np.sign(diff))
        return loss, (grad / out.size).astype(out.dtype)

    def get_config(self):
        return {"delta": self.delta}

    def __repr__(self):
        return f"Huber(delta={self.delta})"


LOSSES = {cls.name: cls for cls in (SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
                                    MeanSquaredError, MeanAbsoluteError, Huber)}

# Keras's other names for the same losses (its function names, short forms and class names)
ALIASES = {"mean_squared_error": "mse", "MSE": "mse", "mean_absolute_error": "mae", "MAE": "mae",
           "huber_loss": "huber", "bce": "binary_crossentropy", "BCE": "binary_crossentropy"}
ALIASES.update({cls.__name__: cls.name for cls in LOSSES.values()})


def get(identifier):
    """A loss from its name (Keras's names and aliases, e.g. ``"mse"``, ``"mean_absolute_error"``,
    ``"huber"``, ``"MeanSquaredError"``) or an instance; an unknown name lists the valid ones."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        name = ALIASES.get(identifier, identifier)
        if name in LOSSES:
            return LOSSES[name]()
    raise ValueError(f"unknown loss {identifier!r}; valid choices: {', '.join(LOSSES)} (or "
                     f"{', '.join(a for a in ALIASES if a[0].islower())}) or a fastconv.nn.losses.Loss")
