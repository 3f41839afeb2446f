"""A compiled step: the layers' bound kernel calls on buffers preallocated for one batch size.

:class:`Step` is the only way a model computes.  ``kind`` is ``"train"`` (forward in training mode, the
loss, the backward), ``"gradient"`` (the same, with dL/d(output) given instead of a loss) or
``"predict"`` (forward in inference mode).  Whether the loss is fused with the last activation is decided
here, once: the last layer is then planned to stop at its logits.  A *weighted* training step also has a
sample-weight buffer ``w`` that its loss (and its weighted metrics) read.
"""
import numpy as np

from . import activations
from .layers import Activation, Conv2D, MaxPool2D

__all__ = ["Step"]


def _relu_then_max_pool(layer, following):
    """Whether ``layer`` is a Conv2D with ``activation="relu"`` or an ``Activation("relu")`` and ``following``
    a MaxPool2D (those classes exactly: a subclass may plan differently)."""
    return (type(layer) in (Conv2D, Activation) and type(layer.activation_fn) is activations.ReLU
            and type(following) is MaxPool2D)


class Step:
    """The step of ``model`` for batches of ``n`` samples (see the module docstring for ``kind``).

    Attributes: ``x`` (the input buffer), ``t`` (the targets buffer of a training step), ``w`` (its
    sample-weight buffer when ``weighted``, else None), ``outputs`` (each layer's output buffer; in a train
    or predict step, a layer ending in ReLU before a MaxPool2D holds its value before the ReLU, which
    runs after the pooling), ``out``
    (the last one), ``gout`` (dL/d(out) of a training or gradient step), ``metric_calls`` (one bound call
    per compiled metric, returning the batch's sum of per-sample values, weighted for weighted metrics).
    """

    def __init__(self, model, n, kind, target_dtype=None, weighted=False):
        training = kind != "predict"
        loss = model.loss if kind == "train" else None
        layers = model.layers
        last = layers[-1]
        fused = loss is not None and loss.fuses_with(getattr(last, "activation", "linear"))
        self.x = x = np.empty((n,) + model.input_shape, model.dtype)
        gx, forward, backward, outputs = None, [], [], []
        pool_first = kind != "gradient"   # a gradient step returns every layer's own output
        i = 0
        while i < len(layers):
            layer = layers[i]
            if pool_first and i + 1 < len(layers) and _relu_then_max_pool(layer, layers[i + 1]):
                # relu(max-pool(z)) is max-pool(relu(z)) bit for bit, and its gradient too: ReLU is monotone,
                # keeps positives and NaN as they are, so a window's first maximum is the same element (or
                # the window is <= 0, all of it ReLU-masked either way).  Pooling first runs ReLU on a
                # quarter of the elements, forward and backward.
                pool = layers[i + 1]
                z, gz, f, b = layer.plan(x, gx, training, logits=True)
                outputs.append(z)     # the layer's value before its ReLU
                p, gp, f2, b2 = pool.plan(z, gz, training, logits=False)
                x, gx, f3, b3 = activations.ACTIVATIONS["relu"].plan(p, gp)
                forward += f + f2 + f3
                backward = b3 + b2 + b + backward
                outputs.append(x)
                i += 2
                continue
            x, gx, f, b = layer.plan(x, gx, training, logits=fused and layer is last)
            forward += f
            backward = b + backward
            outputs.append(x)
            i += 1
        self.forward, self.backward, self.outputs, self.out = forward, backward, outputs, x
        self.loss_call, self.metric_calls, self.w = None, [], None
        if training:
            # dL/d(out): where the loss (or the caller) writes it; scratch when no layer needs it
            self.gout = gx if gx is not None else np.empty_like(x)
        if loss is not None:
            shape = (n,) if loss.name == "sparse_categorical_crossentropy" else (n,) + model.output_shape
            self.t = np.empty(shape, target_dtype)
            logits = fused or loss.from_logits
            if weighted:
                self.w = np.empty(n, model.dtype)
            self.loss_call = loss.bind(x, self.t, self.gout, logits, self.w)
            # the activation the metrics apply to ``x``: the fused one, or the loss's for outputs that are logits
            pre = last.activation if fused else loss.pairs_with if loss.from_logits else None
            self.metric_calls = [metric.bind(x, self.t, pre, self.w if weighted_metric else None)
                                 for _, metric, weighted_metric in model._metric_runs()]

    def run_forward(self):
        for kernel, args in self.forward:
            kernel(*args)

    def run_backward(self):
        for kernel, args in self.backward:
            kernel(*args)

    def train(self, x, t, idx, w=None):
        """Forward, loss and backward on samples ``idx`` of ``x``/``t`` (and weights ``w`` for a weighted
        step); returns the batch's loss."""
        x.take(idx, axis=0, out=self.x, mode="clip")   # idx is in range: "clip" skips numpy's buffering
        t.take(idx, axis=0, out=self.t, mode="clip")
        if w is not None:
            w.take(idx, out=self.w, mode="clip")
        for kernel, args in self.forward:
            kernel(*args)
        fn, args = self.loss_call
        loss = fn(*args)
        for kernel, args in self.backward:
            kernel(*args)
        return loss

    def train_whole(self, x, t, w=None):
        """:meth:`train` on the whole of ``x``/``t`` (exactly ``n`` samples)."""
        np.copyto(self.x, x)
        np.copyto(self.t, t)
        if w is not None:
            np.copyto(self.w, w)
        self.run_forward()
        fn, args = self.loss_call
        loss = fn(*args)
        self.run_backward()
        return loss

    def metric_sums(self):
        """Each metric's sum of per-sample values on the last batch (weighted for weighted metrics)."""
        return [fn(*args) for fn, args in self.metric_calls]
