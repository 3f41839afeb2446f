"""A compiled step: the layers' bound kernel calls on buffers preallocated for one batch size.

:class:`Step` is the only way a model computes.  ``kind`` is ``"train"`` (forward in training mode, the
loss, the backward), ``"gradient"`` (the same, with dL/d(output) given instead of a loss) or
``"predict"`` (forward in inference mode).  Whether the loss is fused with the last activation is decided
here, once: the last layer is then planned to stop at its logits.  A *weighted* training step also has a
sample-weight buffer ``w`` that its loss (and its weighted metrics) read.
"""
import numpy as np

__all__ = ["Step"]


class Step:
    """The step of ``model`` for batches of ``n`` samples (see the module docstring for ``kind``).

    Attributes: ``x`` (the input buffer), ``t`` (the targets buffer of a training step), ``w`` (its
    sample-weight buffer when ``weighted``, else None), ``outputs`` (each layer's output buffer), ``out``
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
        for layer in layers:
            x, gx, f, b = layer.plan(x, gx, training, logits=fused and layer is last)
            forward += f
            backward = b + backward
            outputs.append(x)
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
