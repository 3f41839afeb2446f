"""The training loop: one short function that every model's ``fit`` runs, with Keras's callback hooks."""
import contextlib
import ctypes
import os

import numpy as np

from .. import runtime
from .callbacks import Callback, History, ProgbarLogger

__all__ = ["fit_loop", "single_threaded_blas"]

_controller = None   # threadpoolctl's view of the loaded BLAS libraries, or _OpenBLAS, made once

# (set, get) thread-count functions of the OpenBLAS builds NumPy's wheels bundle, newest naming first
_OPENBLAS_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_paths():
    """Paths of the OpenBLAS libraries this process has loaded (Linux), or that NumPy ships beside itself."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            paths.update(line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line)
    except OSError:
        pass
    if not paths:
        root = os.path.dirname(os.path.dirname(np.__file__))
        for folder in (os.path.join(root, "numpy.libs"), os.path.join(os.path.dirname(np.__file__), ".dylibs")):
            if os.path.isdir(folder):
                paths.update(os.path.join(folder, name) for name in os.listdir(folder) if "openblas" in name.lower())
    return sorted(paths)


class _OpenBLAS:
    """NumPy's bundled OpenBLAS, pinned through its own C functions when threadpoolctl is not installed."""

    def __init__(self):
        self.pairs = []
        for path in _openblas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in _OPENBLAS_SYMBOLS:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    self.pairs.append((setter, getter))
                    break

    @contextlib.contextmanager
    def limit(self, limits, user_api):
        before = [getter() for _, getter in self.pairs]
        for setter, _ in self.pairs:
            setter(limits)
        try:
            yield
        finally:
            for (setter, _), n in zip(self.pairs, before):
                setter(n)


def single_threaded_blas():
    """A context in which NumPy's BLAS runs on one thread: through threadpoolctl where it is installed, else
    through the thread functions of the OpenBLAS NumPy bundles (else nothing: another BLAS, not found).

    The dense layers above ``fastconv.ops.DENSE_SMALL_BATCH`` samples call NumPy's BLAS between fastconv's
    OpenMP kernels; a multi-threaded BLAS then spins its threads against OpenMP's on the same cores, and
    its sums can group differently with its thread count.  On one thread it does neither.
    """
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = _OpenBLAS()
        else:
            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _overrides(callback, hook):
    """Whether ``callback`` does anything in ``hook`` (a method of its class, or a function set on it)."""
    fn = getattr(callback, hook)
    return getattr(fn, "__func__", fn) is not getattr(Callback, hook)


def _batch_hooks(callbacks, hook, alias):
    """The bound ``hook`` of each callback that overrides it or its old name ``alias``."""
    return [getattr(cb, hook) for cb in callbacks if _overrides(cb, hook) or _overrides(cb, alias)]


def fit_loop(model, x, t, *, sample_weight=None, batch_size, epochs, shuffle, validation=None, verbose=0,
             callbacks=(), initial_epoch=0):
    """Train ``model`` on prepared inputs ``x``, targets ``t`` and optional sample weights; returns the History.

    Each epoch draws an order from ``model.rng`` (when ``shuffle``), runs the model's compiled training
    step on each batch of that order and the optimizer's bound update after it, then evaluates
    ``validation`` (prepared ``(x, t, w or None)``).  Callbacks run in Keras's order: the user's, then
    History (unless one is given), then ProgbarLogger when ``verbose`` (unless one is given).
    """
    callbacks = list(callbacks)
    history = next((cb for cb in callbacks if isinstance(cb, History)), None)
    if history is None:
        history = History()
        callbacks.append(history)
    if verbose and not any(isinstance(cb, ProgbarLogger) for cb in callbacks):
        callbacks.append(ProgbarLogger())
    n = len(x)
    params = {"verbose": verbose, "epochs": epochs, "steps": -(-n // batch_size)}
    for cb in callbacks:
        cb.set_model(model)
        cb.set_params(params)
    model.history = history
    model.stop_training = False
    logs = {}
    for cb in callbacks:
        cb.on_train_begin({})
    with single_threaded_blas(), runtime.adaptive_threads() as governor:
        logs = _epochs(model, x, t, sample_weight, batch_size, epochs, shuffle, validation, callbacks, initial_epoch,
                       governor)
    for cb in callbacks:
        cb.on_train_end(logs)
    return history


def _epochs(model, x, t, w, batch_size, epochs, shuffle, validation, callbacks, initial_epoch, governor):
    """The epochs of :func:`fit_loop`; returns the last epoch's logs.  ``governor``: a
    :class:`fastconv.runtime.ThreadGovernor` that may change the thread count between steps, or None."""
    n = len(x)
    steps = {}
    runs = model._metric_runs()
    names = [name for name, _, _ in runs]
    weighted = [bool(weighted_metric and w is not None) for _, _, weighted_metric in runs]
    any_weighted = any(weighted)
    begin_hooks = _batch_hooks(callbacks, "on_train_batch_begin", "on_batch_begin")
    end_hooks = _batch_hooks(callbacks, "on_train_batch_end", "on_batch_end")
    update = model._update()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        order = model.rng.permutation(n) if shuffle else np.arange(n)
        total_loss, seen, weight_total = 0.0, 0, 0.0
        totals = [0.0] * len(runs)
        if governor is not None:
            governor.resume()
        for batch, start in enumerate(range(0, n, batch_size)):
            if begin_hooks:
                for hook in begin_hooks:
                    hook(batch, logs={})
            idx = order[start:start + batch_size]
            key = (len(idx), runtime.get_num_threads())
            step = steps.get(key)
            if step is None:
                if governor is not None:
                    governor.pause()
                step = steps[key] = model._step("train", len(idx), t.dtype, weighted=w is not None)
                if governor is not None:
                    governor.resume()
            loss = step.train(x, t, idx, w)
            total_loss += loss * len(idx)
            seen += len(idx)
            if runs:
                for i, (fn, args) in enumerate(step.metric_calls):
                    totals[i] += fn(*args)
                if any_weighted:
                    weight_total += float(np.sum(step.w))
            update()
            if governor is not None and governor.tick(len(idx)):
                runtime.set_num_threads(governor.threads)
                update = model._update()
            if end_hooks:
                batch_logs = _logs(total_loss, seen, weight_total, names, totals, weighted)
                batch_logs["batch_loss"] = float(loss)
                batch_logs["size"] = len(idx)
                for hook in end_hooks:
                    hook(batch, logs=batch_logs)
            if model.stop_training:
                break
        logs = _logs(total_loss, seen, weight_total, names, totals, weighted)
        if governor is not None:
            governor.pause()      # validation and the epoch's callbacks are not training steps
        if validation is not None:
            for cb in callbacks:
                cb.on_test_begin({})
            xv, tv, wv = validation
            val_logs = model._evaluate_prepared(xv, tv, wv, max(batch_size, 256))
            for cb in callbacks:
                cb.on_test_end(dict(val_logs))
            logs.update(("val_" + key, value) for key, value in val_logs.items())
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    return logs


def _logs(total_loss, seen, weight_total, names, totals, weighted):
    """Running means: the sample-count-weighted mean of the batch losses, and each metric's total over the
    samples seen (over the sum of their weights for a weighted metric; 0 when that is 0, as Keras)."""
    logs = {"loss": total_loss / seen}
    for name, total, by_weight in zip(names, totals, weighted):
        count = weight_total if by_weight else seen
        logs[name] = total / count if count else 0.0
    return logs
