"""Metrics: Keras's accuracies, top-k accuracies, mae and mse, by name or as objects.

A metric gives each sample a value (1/0 for a hit, or the mean of its elementwise values) and reports the
mean over the samples seen, or with sample weights ``sum(w_i v_i) / sum(w_i)`` (Keras's ``Mean``; 0 when
nothing was counted).  As in Keras, ``compile(metrics=...)`` are unweighted and
``compile(weighted_metrics=...)`` take the sample weights.

``"accuracy"``/``"acc"`` resolve as Keras 3 resolves them, from the shapes of the targets and the outputs:
one output per sample -> :class:`BinaryAccuracy` (threshold 0.5); integer labels (the sparse
cross-entropy) -> :class:`SparseCategoricalAccuracy`; otherwise :class:`CategoricalAccuracy`.  The core
treats the per-sample output as one flat vector (Keras looks at the last axis; the same for (N, K) outputs).

With a ``from_logits=True`` loss the model's outputs are logits, and the core's metrics read them as such
(they apply the loss's sigmoid or softmax first, so binary accuracy thresholds the probability at 0.5);
Keras applies metrics to the raw outputs (its binary accuracy would threshold the logits at 0.5).

During ``fit`` the metrics are counted on the training step's buffers, which hold the logits when the
loss is fused with the last activation: the accuracies then compare logits (softmax and sigmoid are
monotone, so the count equals that of the probabilities up to rounding at ties); mae and mse apply the
activation first.  ``evaluate`` computes every metric on the model's outputs.
"""
import math
import numbers

import numpy as np

from .. import ops

__all__ = ["identifier", "serialize", "deserialize", "Metric", "Accuracy",
           "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "get", "METRICS"]


def _activate(z, pre):
    """The model's outputs from the pre-activation values ``z`` (N, K) of a fused step."""
    if pre == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if pre == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))     # = 1 / (1 + exp(-z)), without overflow
    return z


class Metric:
    """Base class.  ``per_sample(out, t, pre)`` gives each sample's value (N,) from outputs ``out`` (N, K)
    and targets ``t`` (N, K), or (N,) integer labels for the sparse metrics; ``pre`` names the activation
    still to apply to ``out`` (a fused training step) or is None.

    ``name`` is what the logs call the metric (Keras: the string given to ``compile``, else the object's
    name); ``direction`` is "up" or "down" (what ``mode="auto"`` of the monitoring callbacks reads).
    """

    default_name = None
    direction = "up"
    sparse = False          # reads integer class labels

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        if dtype is not None:
            raise NotImplementedError(f"{type(self).__name__}(dtype={dtype!r}) is not supported by fastconv: "
                                      f"metrics are computed in float64")
        self.name = name or self.default_name

    def resolve(self, loss, output_shape):
        """The metric that runs for a model with ``loss`` and per-sample ``output_shape`` (self, except
        for :class:`Accuracy`); raises when the targets of ``loss`` cannot feed it."""
        sparse_loss = loss.name == "sparse_categorical_crossentropy"
        if self.sparse != sparse_loss:
            kinds = ("targets of the output's shape", "integer class labels")
            raise ValueError(f"metric {self.name!r} needs {kinds[self.sparse]}, but loss {loss.name!r} takes "
                             f"{kinds[sparse_loss]}")
        return self

    def per_sample(self, out, t, pre=None):
        raise NotImplementedError

    def bind(self, out, t, pre, w=None):
        """A bound call returning ``sum_i v_i`` (or ``sum_i w_i v_i`` with the weight buffer ``w``) of the
        batch in the step's buffers ``out``/``t``."""
        n = out.shape[0]
        out2 = out.reshape(n, -1)
        t2 = t if self.sparse else t.reshape(n, -1)
        if w is None:
            return _sum_values, (self, out2, t2, pre)
        return _dot_values, (self, out2, t2, pre, w)

    def value(self, out, t, w=None, pre=None):
        """The metric of model outputs ``out`` (after the last activation; ``pre``: the activation still to
        apply, for outputs that are logits) against prepared targets ``t``, weighted by ``w`` if given."""
        n = out.shape[0]
        v = self.per_sample(out.reshape(n, -1), t if self.sparse else t.reshape(n, -1), pre)
        if w is None:
            return float(v.sum()) / n if n else 0.0
        total, count = float(np.dot(w, v)), float(np.sum(w))
        return total / count if count else 0.0

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


def _sum_values(metric, out, t, pre):
    return float(metric.per_sample(out, t, pre).sum())


def _dot_values(metric, out, t, pre, w):
    return float(np.dot(w, metric.per_sample(out, t, pre)))


def _count_binary(out, t, threshold, per_element):
    return np.count_nonzero((out > threshold) == t) * per_element


def _count_argmax(out, t):
    return np.count_nonzero(out.argmax(axis=1) == t.argmax(axis=1))


class BinaryAccuracy(Metric):
    """Keras's ``binary_accuracy``: an element is a hit when ``(out > threshold) == t`` (targets exactly 0 or
    1); a sample's value is the fraction of its elements that hit."""

    default_name = "binary_accuracy"

    def __init__(self, name=None, dtype=None, threshold=0.5):
        super().__init__(name, dtype)
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real) \
                or not np.isfinite(threshold):
            raise ValueError(f"BinaryAccuracy: threshold must be a finite number, got {threshold!r}")
        self.threshold = float(threshold)

    def _threshold(self, pre):
        thr = self.threshold
        if pre == "sigmoid":        # sigmoid(z) > thr  <=>  z > logit(thr)
            thr = math.inf if thr >= 1 else -math.inf if thr <= 0 else math.log(thr / (1 - thr))
        return thr

    def per_sample(self, out, t, pre=None):
        if pre not in (None, "sigmoid"):
            out = _activate(out, pre)
        return ((out > self._threshold(pre)) == t).mean(axis=1)

    def bind(self, out, t, pre, w=None):
        if w is None and pre in (None, "sigmoid"):      # the hits counted at once: sum of per-sample means
            n = out.shape[0]
            out2, t2 = out.reshape(n, -1), t.reshape(n, -1)
            return _count_binary, (out2, t2, self._threshold(pre), 1.0 / out2.shape[1])
        return super().bind(out, t, pre, w)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """Keras's ``categorical_accuracy``: a sample hits when its largest output sits where its target's
    largest value does (first maximum, as ``argmax``)."""

    default_name = "categorical_accuracy"

    def per_sample(self, out, t, pre=None):
        if pre not in (None, "softmax", "sigmoid"):
            out = _activate(out, pre)
        return (out.argmax(axis=1) == t.argmax(axis=1)).astype(np.float64)

    def bind(self, out, t, pre, w=None):
        if w is None and pre in (None, "softmax", "sigmoid"):
            n = out.shape[0]
            return _count_argmax, (out.reshape(n, -1), t.reshape(n, -1))
        return super().bind(out, t, pre, w)


class SparseCategoricalAccuracy(Metric):
    """Keras's ``sparse_categorical_accuracy``: a sample hits when its largest output sits at its label.
    Unweighted in ``fit``, counted by the compiled ``count_correct`` kernel."""

    default_name = "sparse_categorical_accuracy"
    sparse = True

    def per_sample(self, out, t, pre=None):
        if pre not in (None, "softmax", "sigmoid"):
            out = _activate(out, pre)
        return (out.argmax(axis=1) == t).astype(np.float64)

    def bind(self, out, t, pre, w=None):
        if w is None and pre in (None, "softmax", "sigmoid"):
            return ops.bind_count_correct(out.reshape(out.shape[0], -1), t)
        return super().bind(out, t, pre, w)


def _check_k(k, cls):
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{cls}: k must be a positive int, got {k!r}")
    return int(k)


def _in_top_k(out, labels, k):
    """Keras's ``in_top_k``: hit when fewer than ``k`` outputs exceed the label's (ties count as in);
    a NaN at the label never hits."""
    at = out[np.arange(out.shape[0]), labels]
    at = np.where(np.isnan(at), -np.inf, at)
    return ((out > at[:, None]).sum(axis=1) < k).astype(np.float64)


class TopKCategoricalAccuracy(Metric):
    """Keras's ``top_k_categorical_accuracy`` (one-hot targets): the target's class is among the ``k``
    largest outputs."""

    default_name = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None, dtype=None):
        super().__init__(name, dtype)
        self.k = _check_k(k, type(self).__name__)

    def per_sample(self, out, t, pre=None):
        if pre not in (None, "softmax", "sigmoid"):
            out = _activate(out, pre)
        return _in_top_k(out, t.argmax(axis=1), self.k)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Keras's ``sparse_top_k_categorical_accuracy`` (integer labels)."""

    default_name = "sparse_top_k_categorical_accuracy"
    sparse = True

    def per_sample(self, out, t, pre=None):
        if pre not in (None, "softmax", "sigmoid"):
            out = _activate(out, pre)
        return _in_top_k(out, t, self.k)


class MeanAbsoluteError(Metric):
    """Keras's ``mean_absolute_error`` metric: each sample's ``mean(|out - t|)``."""

    default_name = "mean_absolute_error"
    direction = "down"

    def per_sample(self, out, t, pre=None):
        return np.abs(_activate(out, pre) - t).mean(axis=1)


class MeanSquaredError(Metric):
    """Keras's ``mean_squared_error`` metric: each sample's ``mean((out - t)**2)``."""

    default_name = "mean_squared_error"
    direction = "down"

    def per_sample(self, out, t, pre=None):
        d = _activate(out, pre) - t
        return (d * d).mean(axis=1)


class Accuracy(Metric):
    """``"accuracy"``: resolved at compile time from the loss's targets and the output shape (see the
    module docstring) into a binary, sparse categorical or categorical accuracy of the same name.

    Unlike ``keras.metrics.Accuracy`` (exact equality of outputs and targets), this is what Keras's string
    ``"accuracy"`` gives."""

    default_name = "accuracy"

    def resolve(self, loss, output_shape):
        k = math.prod(output_shape)
        if k == 1:
            return BinaryAccuracy(self.name)
        if loss.name == "sparse_categorical_crossentropy":
            return SparseCategoricalAccuracy(self.name)
        return CategoricalAccuracy(self.name)


METRICS = {"accuracy": Accuracy, "acc": Accuracy, "binary_accuracy": BinaryAccuracy,
           "categorical_accuracy": CategoricalAccuracy, "sparse_categorical_accuracy": SparseCategoricalAccuracy,
           "top_k_categorical_accuracy": TopKCategoricalAccuracy,
           "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
           "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
           "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError}
METRICS.update({cls.__name__: cls for cls in set(METRICS.values())})


def get(identifier):
    """A metric from its name (logged under that name, as Keras does) or an instance; an unknown name
    lists the valid ones."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        cls = Accuracy if identifier.lower() in ("accuracy", "acc") else METRICS.get(identifier)
        if cls is not None:
            return cls(name=identifier)
    valid = ", ".join(k for k in METRICS if k[0].islower())
    raise ValueError(f"unknown metric {identifier!r}; valid choices: {valid} or a fastconv.nn.metrics.Metric")


def identifier(metric):
    """A name :func:`get` turns back into ``metric``'s kind: its log name where that is a registry name,
    else its class's default name (its settings and custom name then live in :func:`serialize`)."""
    return metric.name if metric.name in METRICS or metric.name.lower() in ("accuracy", "acc") \
        else metric.default_name


def serialize(metric):
    """``{"class": ..., "config": ...}`` of a metric, for :func:`deserialize`."""
    return {"class": type(metric).__name__, "config": metric.get_config()}


def deserialize(entry):
    """The metric :func:`serialize` described (ValueError/TypeError for anything else)."""
    if not isinstance(entry, dict) or entry.get("class") not in METRICS or not isinstance(entry.get("config"), dict):
        raise ValueError(f"not a serialized fastconv metric: {entry!r}")
    cls = METRICS[entry["class"]]
    if not isinstance(cls, type) or cls.__name__ != entry["class"]:
        raise ValueError(f"not a serialized fastconv metric: {entry!r}")
    return cls(**entry["config"])
