"""Training-loop hooks with Keras 3's names, arguments and semantics.

:class:`Callback` (the hooks), :class:`History` (what ``fit`` returns), :class:`EarlyStopping`,
:class:`ModelCheckpoint`, :class:`ReduceLROnPlateau`, :class:`LearningRateScheduler`, :class:`CSVLogger`,
:class:`TerminateOnNaN`, :class:`ProgbarLogger` and :class:`LambdaCallback`.

Where the core differs from Keras: weights are the model's flat ``params`` buffer (and ``state``, the
non-trainable buffers, where the model has one), copied and restored in place; ModelCheckpoint writes
fastconv's ``.npz`` (``model.save``) whatever the file name; batch logs also carry ``batch_loss`` (the
loss of that batch alone) and ``size`` (its sample count) beside Keras's running means.
"""
import csv
import math
import sys
import time
import warnings

import numpy as np

from .progress import Progress

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler",
           "CSVLogger", "TerminateOnNaN", "ProgbarLogger", "LambdaCallback", "get_weights", "set_weights"]


class Callback:
    """Base class for the hooks ``fit`` calls (Keras 3's names).

    ``on_train_begin(logs)``, ``on_train_end(logs)`` (the last epoch's logs), ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``,
    ``on_test_begin(logs)``/``on_test_end(logs)`` (around fit's validation; the end gets its results).
    ``on_batch_begin``/``on_batch_end`` are the old names: the default ``on_train_batch_*`` call them.
    ``epoch`` and ``batch`` count from 0.  A batch's logs hold the running means of the epoch so far
    (``loss`` and each metric), ``batch_loss`` (that batch's own loss) and ``size`` (its samples); an
    epoch's logs hold the epoch's means and, with validation, ``val_loss`` and ``val_<metric>``.
    ``self.model`` is the model; ``self.params`` is ``{"verbose", "epochs", "steps"}``.  Setting
    ``model.stop_training = True`` ends training after the current batch.
    """

    model = None
    params = None

    def __init__(self):
        self.params = None
        self.model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        """The old name of :meth:`on_train_batch_begin`."""

    def on_batch_end(self, batch, logs=None):
        """The old name of :meth:`on_train_batch_end`."""

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass


class History(Callback):
    """What ``fit`` returns: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ... one value
    per epoch; ``history.epoch`` the epochs run.  ``fit`` also sets ``model.history``."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.append(epoch, logs or {})
        if self.model is not None:
            self.model.history = self

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


# ------------------------------------------------------------------------------------------- weights

def get_weights(model):
    """A copy of the model's weights: its flat ``params`` and, where it has one, its ``state`` buffer."""
    state = getattr(model, "state", None)
    return model.params.copy(), (None if state is None else np.copy(state))


def set_weights(model, weights):
    """Write weights from :func:`get_weights` back into the model's buffers (in place: every layer's views
    stay valid)."""
    params, state = weights
    model.params[...] = params
    if state is not None:
        model.state[...] = state


# ------------------------------------------------------------------------------------------ monitors

def _check_int(value, name, cls, minimum=0):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{cls}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_real(value, name, cls):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{cls}: {name} must be a finite number, got {value!r}")
    return float(value)


class _Monitor(Callback):
    """Keras's MonitorCallback: which way ``monitor`` improves and by how much (``min_delta``)."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        cls = type(self).__name__
        if not isinstance(monitor, str):
            raise TypeError(f"{cls}: monitor must be a string such as 'val_loss', got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{cls} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        self.monitor, self.mode = monitor, mode
        self.best = None if baseline is None else _check_real(baseline, "baseline", cls)
        self.min_delta = abs(_check_real(min_delta, "min_delta", cls))
        self.monitor_op = None

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            name = self.monitor.removeprefix("val_")
            if name == "loss":
                self.monitor_op = np.less
            known = name != "loss" and getattr(self.model, "built", False) and hasattr(self.model, "_metric_runs")
            runs = self.model._metric_runs() if known else []
            for metric_name, metric, _ in runs:
                if metric_name == name:
                    self.monitor_op = np.greater if metric.direction == "up" else np.less
            if self.monitor_op is None:
                raise ValueError(f"{type(self).__name__} callback received monitor={self.monitor}, but fastconv "
                                 f"cannot tell whether that metric should be maximized or minimized: pass "
                                 f"mode='max' or mode='min'")
        if self.monitor_op is np.less:
            self.min_delta = -abs(self.min_delta)
        else:
            self.min_delta = abs(self.min_delta)

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))

    def _monitor_value(self, logs, what):
        """The monitored value in ``logs``, or None with Keras's one-line warning when it is absent (the
        direction is then not needed; an available value with no known direction in mode "auto" raises)."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{what} conditioned on metric `{self.monitor}` which is not available. Available "
                          f"metrics are: {','.join(logs or {})}", stacklevel=3)
            return None
        if self.monitor_op is None:
            self._set_monitor_op()
        return value


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has stopped improving (Keras 3's EarlyStopping).

    After each epoch from ``start_from_epoch`` on: an improvement (by more than ``min_delta`` in the
    direction of ``mode``) records the value and epoch (and the weights with ``restore_best_weights``) and
    resets the wait unless ``baseline`` is given and not beaten; otherwise, once ``patience`` epochs have
    passed without one (and this is not epoch 0), training stops.  With ``restore_best_weights`` the
    weights of the best epoch are copied back at the end of training (``model.params`` and
    ``model.state``), whether or not it stopped early.  ``stopped_epoch``, ``best``, ``best_epoch``, ``wait``
    are kept as in Keras.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, None, min_delta)
        cls = type(self).__name__
        self.patience = _check_int(patience, "patience", cls)
        self.verbose = _check_int(verbose, "verbose", cls)
        self.baseline = None if baseline is None else _check_real(baseline, "baseline", cls)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_int(start_from_epoch, "start_from_epoch", cls)
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor_value(logs, "Early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = get_weights(self.model)
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = get_weights(self.model)
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            set_weights(self.model, self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch (Keras 3's ModelCheckpoint, ``save_freq="epoch"``).

    ``filepath`` is formatted with ``epoch`` (counting from 1) and the epoch's logs, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``.  The file is fastconv's ``model.save`` (``.npz``, any name);
    with ``save_weights_only`` it is ``model.save_weights(path)`` where the model has that method, else
    an ``.npz`` holding ``params`` (and ``state``).  ``save_best_only``: save only when ``monitor``
    improves (a missing monitor saves anyway, with Keras's warning).  ``initial_value_threshold``: the
    value to beat first.  Integer ``save_freq`` (every n batches) raises NotImplementedError.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        import os

        cls = type(self).__name__
        self.filepath = os.fspath(filepath)
        if not isinstance(self.filepath, str):
            raise TypeError(f"{cls}: filepath must be a str or path, got {filepath!r}")
        self.verbose = _check_int(verbose, "verbose", cls)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        if save_freq != "epoch":
            if isinstance(save_freq, (int, np.integer)) and not isinstance(save_freq, bool):
                raise NotImplementedError(f"{cls}(save_freq={save_freq!r}) (every n batches) is not supported by "
                                          f"fastconv; only save_freq='epoch'")
            raise ValueError(f"Unrecognized save_freq: {save_freq!r}. Expected 'epoch'")
        self.save_freq = save_freq

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {exc}') from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            else:
                if self.monitor_op is None:
                    self._set_monitor_op()
                best = "None" if self.best is None else f"{self.best:.5f}"
                if not self._is_improvement(current, self.best):
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
                    return
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                          f"saving model to {path}")
                self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        self._save(path)

    def _save(self, path):
        import os

        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(f"ModelCheckpoint: the filepath is an existing directory: {path}")
        if not self.save_weights_only:
            self.model.save(path)
        elif hasattr(self.model, "save_weights"):
            self.model.save_weights(path)
        else:
            params, state = get_weights(self.model)
            arrays = {"params": params} if state is None else {"params": params, "state": state}
            with open(path, "wb") as f:
                np.savez(f, **arrays)


def _learning_rate(optimizer, to_set=False):
    """The optimizer's current learning rate as a float.  A schedule is read at the optimizer's
    ``iterations`` (for the logs), but a callback cannot set it (TypeError, as Keras)."""
    lr = optimizer.learning_rate
    if callable(lr):
        if to_set:
            raise TypeError(f"the optimizer's learning_rate is the schedule {lr!r}: a callback cannot set it; "
                            f"pass a number as learning_rate to use this callback")
        return float(lr(getattr(optimizer, "iterations", 0)))
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"the optimizer's learning_rate is {lr!r}, not a number")
    return float(lr)


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved (by ``min_delta``) for
    ``patience`` epochs (Keras 3's ReduceLROnPlateau): ``lr = max(lr * factor, min_lr)`` written to
    ``model.optimizer.learning_rate``, then ``cooldown`` epochs before counting again.  Each epoch's logs
    gain ``learning_rate``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs):
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments: {', '.join(kwargs)}")
        super().__init__(monitor, mode, None, min_delta)
        cls = type(self).__name__
        factor = _check_real(factor, "factor", cls)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.min_lr = _check_real(min_lr, "min_lr", cls)
        self.patience = _check_int(patience, "patience", cls)
        self.verbose = _check_int(verbose, "verbose", cls)
        self.cooldown = _check_int(cooldown, "cooldown", cls)
        self.cooldown_counter = self.wait = 0

    def on_train_begin(self, logs=None):
        self.best = None
        self.cooldown_counter = self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _learning_rate(self.model.optimizer)
        current = self._monitor_value(logs, "Learning rate reduction")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = _learning_rate(self.model.optimizer, to_set=True)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of each epoch set ``model.optimizer.learning_rate = schedule(epoch, lr)`` (or
    ``schedule(epoch)`` for a one-argument function, as Keras); the result must be a float.  Each epoch's
    logs gain ``learning_rate``."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule
        self.verbose = _check_int(verbose, "verbose", "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        lr = _learning_rate(self.model.optimizer, to_set=True)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:          # the old one-argument form
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.float32, np.float64)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"The output of the `schedule` function should be a finite float >= 0. Got: {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model.optimizer)


class CSVLogger(Callback):
    """Stream each epoch's logs to a CSV file (Keras 3's CSVLogger): a header ``epoch`` then the log keys
    in sorted order (with ``val_`` copies of them, written ``NA``, when the first epoch has no validation),
    one row per epoch (``epoch`` counting from 0).  ``append``: continue an existing file (no second
    header)."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        import os

        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a one-character string, got {separator!r}")
        self.sep, self.append = separator, bool(append)
        self.writer = self.keys = self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        import os

        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, logs.get(k, "NA")) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training when a batch's running loss is NaN or infinite (Keras 3's TerminateOnNaN): prints
    ``Batch {batch}: Invalid loss, terminating training`` and sets ``model.stop_training``, or with
    ``raise_error=True`` raises RuntimeError at once."""

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                                   f"Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


_HIDDEN = ("batch_loss", "size")    # batch-log keys the progress display leaves out


class ProgbarLogger(Callback):
    """What ``fit(verbose=1|2)`` shows: verbose 1 a progress bar per epoch (batches done, running loss and
    metrics; tqdm when installed, else a text bar, on stderr), verbose 2 one line per epoch on stdout
    (``Epoch 3/10 - 0.4s - loss: 0.1234 - accuracy: 0.9500 - val_loss: ...``)."""

    def __init__(self):
        super().__init__()
        self.verbose, self.epochs, self.target, self.bar = 1, 1, None, None
        self._start, self._epoch = 0.0, 0

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch = time.perf_counter(), epoch
        if self.verbose == 1:
            self.bar = Progress(self.target or 0, f"Epoch {epoch + 1}/{self.epochs}", True, unit="step")

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1 and self.bar is not None:
            stats = {k: f"{v:.4f}" for k, v in (logs or {}).items() if k not in _HIDDEN}
            self.bar.update(1, stats)

    def on_epoch_end(self, epoch, logs=None):
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items() if k not in _HIDDEN)
        if self.verbose == 1 and self.bar is not None:
            self.bar.close()
            self.bar = None
            if any(k.startswith("val_") for k in logs or {}):
                sys.stderr.write(f"  {text}\n")
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - self._start:.1f}s - {text}")


class LambdaCallback(Callback):
    """A callback from functions (Keras 3's LambdaCallback): ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``, and any other hook by
    keyword."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not (name.startswith("on_") and callable(getattr(Callback, name, None))):
                raise TypeError(f"LambdaCallback: {name!r} is not a callback hook")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be a function, got {fn!r}")
            setattr(self, name, fn)
