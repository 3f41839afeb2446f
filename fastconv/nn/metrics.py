"""Metrics: accuracy, resolved from the loss as Keras resolves ``"accuracy"``.

With a categorical loss a sample is correct when its largest output sits at its class; with the binary
and regression losses each output is correct when it falls on the target's side of 0.5 (of 0 for logits).
"""
import numpy as np

from .. import ops

__all__ = ["Accuracy", "get"]


def _count_argmax(out2, t2):
    return np.count_nonzero(out2.argmax(axis=1) == t2.argmax(axis=1))


def _count_threshold(out2, t2, threshold):
    return np.count_nonzero((out2 > threshold) == (t2 > 0.5))


class Accuracy:
    """Fraction of correct predictions; :meth:`bind` gives a step's bound count of correct predictions."""

    name = "accuracy"

    def per_item(self, loss, output_shape):
        """The weight of one correct count in the per-sample mean (1, or 1/outputs for per-output counts)."""
        return 1.0 if loss.classification else 1.0 / max(1, int(np.prod(output_shape)))

    def bind(self, loss, out, t, logits):
        """A bound call returning the number of correct predictions of the batch in ``out`` / ``t``."""
        n = out.shape[0]
        out2 = out.reshape(n, -1)
        if loss.name == "sparse_categorical_crossentropy":
            return ops.bind_count_correct(out2, t)
        if loss.classification:
            return _count_argmax, (out2, t.reshape(n, -1))
        return _count_threshold, (out2, t.reshape(n, -1), 0.0 if logits else 0.5)

    def value(self, loss, out, t):
        """Accuracy of model outputs ``out`` (after the last activation) against targets ``t``."""
        n = out.shape[0]
        if loss.name == "sparse_categorical_crossentropy":
            correct = np.count_nonzero(out.reshape(n, -1).argmax(axis=1) == t)
            return correct / max(1, n)
        if loss.classification:
            return _count_argmax(out.reshape(n, -1), t.reshape(n, -1)) / max(1, n)
        return _count_threshold(out.reshape(n, -1), t.reshape(n, -1), 0.5) / max(1, out.size)


_METRICS = {"accuracy": Accuracy, "acc": Accuracy}


def get(identifier):
    """A metric from its name or an instance; an unknown name lists the valid ones."""
    if isinstance(identifier, Accuracy):
        return identifier
    if isinstance(identifier, str) and identifier in _METRICS:
        return _METRICS[identifier]()
    raise ValueError(f"unknown metric {identifier!r}; valid choices: accuracy")
