"""The training loop: one short function that every model's ``fit`` runs, with callback hooks."""
import contextlib

import numpy as np

from .callbacks import Callback, History
from .progress import Progress

__all__ = ["fit_loop", "ProgressBar", "single_threaded_blas"]

_controller = None   # threadpoolctl's view of the loaded BLAS libraries, made once


def single_threaded_blas():
    """A context in which NumPy's BLAS runs on one thread, where threadpoolctl is installed (else nothing).

    The dense layers above ``fastconv.ops.DENSE_SMALL_BATCH`` samples call NumPy's BLAS between fastconv's
    OpenMP kernels; a multi-threaded BLAS then spins its threads against OpenMP's on the same cores, and
    its sums can group differently with its thread count.  On one thread it does neither.
    """
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    if _controller is False:
        return contextlib.nullcontext()
    return _controller.limit(limits=1, user_api="blas")


class ProgressBar(Callback):
    """The per-epoch progress bar of ``fit(verbose=1)``: samples seen, running loss and accuracy."""

    def __init__(self, n, epochs):
        self.n, self.epochs, self.bar = n, epochs, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = Progress(self.n, f"Epoch {epoch + 1}/{self.epochs}", True)

    def on_batch_end(self, batch, logs=None):
        stats = {k: f"{logs[k]:.4f}" for k in ("loss", "accuracy") if k in logs}
        self.bar.update(logs["size"], stats)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


def _overrides(callback, hook):
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def fit_loop(model, x, t, *, batch_size, epochs, shuffle, validation_data, verbose, callbacks, initial_epoch=0):
    """Train ``model`` on prepared inputs ``x`` and targets ``t``; returns the History.

    Each epoch draws an order from ``model.rng`` (when ``shuffle``), runs the model's compiled training step
    on each batch of that order and the optimizer's bound update after it, then evaluates
    ``validation_data``.  Hooks: ``on_train_begin/end``, ``on_epoch_begin/end``, ``on_batch_end``.
    """
    n = len(x)
    history = History()
    callbacks = [history] + callbacks + ([ProgressBar(n, epochs)] if verbose else [])
    for cb in callbacks:
        cb.set_model(model)
    batch_hooks = [cb.on_batch_end for cb in callbacks if _overrides(cb, "on_batch_end")]
    metric = model.metrics[0] if model.metrics else None
    per_item = metric.per_item(model.loss, model.output_shape) if metric else 0.0
    update = model._update()
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin({})
    with single_threaded_blas():
        _epochs(model, x, t, batch_size, epochs, shuffle, validation_data, callbacks, batch_hooks, metric, per_item,
                update, initial_epoch)
    for cb in callbacks:
        cb.on_train_end({})
    return history


def _epochs(model, x, t, batch_size, epochs, shuffle, validation_data, callbacks, batch_hooks, metric, per_item,
            update, initial_epoch):
    """The epochs of :func:`fit_loop`."""
    n = len(x)
    steps = {}
    for epoch in range(initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        order = model.rng.permutation(n) if shuffle else np.arange(n)
        total_loss = total_correct = 0.0
        for batch, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            step = steps.get(len(idx))
            if step is None:
                step = steps[len(idx)] = model._step("train", len(idx), t.dtype)
            loss = step.train(x, t, idx)
            total_loss += loss * len(idx)
            if metric:
                total_correct += step.correct() * per_item
            update()
            if batch_hooks:
                seen = start + len(idx)
                logs = {"loss": total_loss / seen, "batch_loss": loss, "size": len(idx)}
                if metric:
                    logs["accuracy"] = total_correct / seen
                for hook in batch_hooks:
                    hook(batch, logs)
        logs = {"loss": total_loss / n}
        if metric:
            logs["accuracy"] = total_correct / n
        if validation_data is not None:
            for key, value in model.evaluate(*validation_data, batch_size=max(batch_size, 256)).items():
                logs["val_" + key] = value
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
