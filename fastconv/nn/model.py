"""``Sequential``: a Keras-style model on fastconv's kernels (NCHW, PyTorch weight layout).

Every computation of a model runs through one mechanism: a :class:`~fastconv.nn.step.Step` compiled per
batch size from the layers' bound kernel calls.  ``fit`` (through :func:`fastconv.nn.training.fit_loop`),
``train_on_batch``, ``compute_gradients``, ``backpropagate``, ``evaluate``, ``test_on_batch`` and
``predict`` all run steps.

Training follows Keras 3 (``fit``'s arguments, sample and class weights, several metrics, callbacks); where
the core differs it says so: NCHW inputs, weights in one flat buffer, ``train_on_batch`` metrics that do
not accumulate across calls, and metrics that read ``from_logits`` outputs as logits.
"""
import contextlib
import math
import numbers

import numpy as np

from .. import ops
from . import callbacks as callbacks_mod
from . import layers as layers_mod
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers
from .saving import load_model, save_model
from .step import Step
from .training import fit_loop, single_threaded_blas

__all__ = ["Sequential", "load_model"]

_MAX_STEPS = 16   # compiled steps kept per model (batch sizes x kinds)


def _metric_runs(metrics, weighted_metrics, loss, output_shape):
    """See :meth:`Sequential._metric_runs`."""
    runs, seen = [], {}
    for weighted, group in ((False, metrics), (True, weighted_metrics)):
        for metric in group:
            name = metric.name
            if name in seen and weighted:
                name = "weighted_" + metric.name
            if name in seen:
                seen[name] += 1
                name = f"{name}_{seen[name] - 1}"
            seen.setdefault(name, 1)
            runs.append((name, metric.resolve(loss, output_shape), weighted))
    return runs


def _verbose(verbose):
    """Keras's verbose: 0, 1, 2 or "auto" (1)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def _callback_list(callbacks):
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of fastconv.nn.callbacks.Callback, got {callbacks!r}")
    for cb in callbacks:
        if not isinstance(cb, callbacks_mod.Callback):
            raise TypeError(f"callbacks must be fastconv.nn.callbacks.Callback instances, got {cb!r}")
    return list(callbacks)


def _count(value, name, minimum):
    """``value`` as an int >= minimum (TypeError for non-integers, ValueError below the minimum)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class Sequential:
    """A stack of layers trained with a fused optimizer over one flat parameter buffer.

    Parameters
    ----------
    layers : list of :mod:`fastconv.layers` layers.
    dtype : "float32" (default) or "float64".
    seed : int or None -- seeds initialization, shuffling and dropout; the same seed gives a bit-identical
        run on the same machine and thread count.

    Examples
    --------
    >>> from fastconv import Sequential, layers
    >>> model = Sequential([layers.Conv2D(16, 8, activation="relu"), layers.Conv2D(8, 4, strides=2, activation="relu"),
    ...                     layers.Flatten(), layers.Dense(10, activation="softmax")], seed=0)
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    """

    def __init__(self, layers=None, dtype="float32", seed=None):
        self.layers = list(layers or [])
        for layer in self.layers:
            if not isinstance(layer, layers_mod.Layer):
                raise TypeError(f"Sequential takes fastconv.layers layers, got {type(layer).__name__}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None:
            _count(seed, "seed", 0)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.weighted_metrics = []
        self.stop_training = False
        self.history = None
        self._steps = {}

    def add(self, layer):
        """Append a layer (before the model is built)."""
        if self.built:
            raise RuntimeError("cannot add layers to a built model")
        if not isinstance(layer, layers_mod.Layer):
            raise TypeError(f"Sequential takes fastconv.layers layers, got {type(layer).__name__}")
        self.layers.append(layer)

    # ------------------------------------------------------------------------------------------- build
    def build(self, input_shape):
        """Build for ``input_shape`` (with or without the batch dimension, e.g. (1, 28, 28) or (None, 1, 28, 28))."""
        if not self.layers:
            raise ValueError("the model has no layers: add layers before building, fitting or predicting")
        shape = tuple(input_shape)
        first = self.layers[0]
        batched_rank = 4 if isinstance(first, layers_mod.Conv2D) else 2 if isinstance(first, layers_mod.Dense) else None
        if shape and (shape[0] is None or len(shape) == batched_rank):
            shape = shape[1:]  # drop the batch dimension
        for s in shape:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"input_shape must be positive ints (batch dimension optional), "
                                 f"got {tuple(input_shape)}")
        self.input_shape = tuple(int(s) for s in shape)
        specs, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.build(shape)
            specs += [(layer, name, pshape, init) for name, pshape, init in layer.param_specs]
        self.output_shape = shape
        sizes = [math.prod(s) for _, _, s, _ in specs]
        total = int(sum(sizes))
        self.params = np.zeros(total, self.dtype)
        self.grads = np.zeros(total, self.dtype)
        self.segments = []   # (start, stop) of each variable in the flat buffers (per-variable clipnorm)
        offset = 0
        for (layer, name, pshape, init), size in zip(specs, sizes):
            view = self.params[offset:offset + size].reshape(pshape)
            view[...] = init(pshape, dtype=self.dtype, rng=self.rng)
            layer.params[name] = view
            layer.grads[name] = self.grads[offset:offset + size].reshape(pshape)
            self.segments.append((offset, offset + size))
            offset += size
        # non-trainable state (BatchNormalization's running statistics): one flat buffer the optimizer never sees
        states = [(layer, name, sshape, value) for layer in self.layers for name, sshape, value in layer.state_specs]
        state_sizes = [math.prod(s) for _, _, s, _ in states]
        self.state = np.zeros(int(sum(state_sizes)), self.dtype)
        offset = 0
        for (layer, name, sshape, value), size in zip(states, state_sizes):
            view = self.state[offset:offset + size].reshape(sshape)
            view[...] = value
            layer.state[name] = view
            offset += size
        for layer in self.layers:
            if isinstance(layer, layers_mod.Dropout):
                layer.rng = np.random.default_rng(self.rng.integers(2**63))
        self.built = True
        self._steps = {}
        if self.optimizer is not None:
            self.optimizer.build(total, self.dtype)
        return self

    def count_params(self):
        return int(self.params.size) if self.built else 0

    def summary(self, print_fn=print):
        """Print layers, output shapes and parameter counts."""
        if not self.built:
            raise RuntimeError("the model is not built yet: call model.build(input_shape), or fit, predict or "
                               "call the model on data first")
        rows = [("Layer (type)", "Output shape", "Param #")]
        for i, layer in enumerate(self.layers):
            rows.append((f"{layer.name or type(layer).__name__.lower() + '_' + str(i)} ({type(layer).__name__})",
                         str((None,) + tuple(layer.output_shape)), f"{layer.count_params():,}"))
        widths = [max(len(r[c]) for r in rows) + 2 for c in range(3)]
        line = "-" * sum(widths)
        out = [line] + ["".join(r[c].ljust(widths[c]) for c in range(3)) for r in rows[:1]] + [line]
        out += ["".join(r[c].ljust(widths[c]) for c in range(3)) for r in rows[1:]]
        out += [line, f"Total params: {self.count_params():,} ({self.dtype.name})", line]
        print_fn("\n".join(out))

    # ----------------------------------------------------------------------------------------- compile
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None, weighted_metrics=None):
        """Set the optimizer (name or instance), the loss (a name such as ``"mse"``, ``"huber"``, or a
        :mod:`~fastconv.nn.losses` instance) and the metrics (names such as ``"accuracy"``, ``"mae"``, or
        :mod:`~fastconv.nn.metrics` instances; logged under the name given).  As in Keras, ``metrics``
        ignore sample weights and ``weighted_metrics`` apply them.  Everything is checked before anything
        is changed."""
        optimizer = optimizers.get(optimizer)
        loss = losses_mod.get(loss)
        lists = []
        for arg, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))):
                raise TypeError(f"{arg} must be a list of names or metrics, e.g. ['accuracy'], got {value!r}")
            lists.append([metrics_mod.get(m) for m in (value or [])])
        if self.layers:
            self._check_output_for(loss)
        if self.built:
            _metric_runs(lists[0], lists[1], loss, self.output_shape)   # raises for a metric the loss cannot feed
        self.optimizer, self.loss = optimizer, loss
        self.metrics, self.weighted_metrics = lists
        self._steps = {}
        if self.built:
            self.optimizer.build(self.params.size, self.dtype)
        return self

    def _metric_runs(self):
        """``[(log name, resolved metric, weighted), ...]`` of the compiled metrics (Keras's names: a
        repeated name gets ``_1``, ``_2``; a weighted metric named like an unweighted one ``weighted_``)."""
        return _metric_runs(self.metrics, getattr(self, "weighted_metrics", []), self.loss, self.output_shape)

    def _check_output_for(self, loss):
        """A probability loss on a layer with no activation: the outputs are not probabilities."""
        act = getattr(self.layers[-1], "activation", "linear")
        if loss.pairs_with is not None and not loss.from_logits and act == "linear":
            cls = type(loss).__name__
            raise ValueError(f"{loss.name} reads the model's outputs as probabilities, but the last layer has no "
                             f"activation: give it activation={loss.pairs_with!r}, or pass "
                             f"loss=fastconv.nn.losses.{cls}(from_logits=True)")

    # ------------------------------------------------------------------------------------------ inputs
    def _prepare_x(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        if not self.layers:
            raise ValueError("the model has no layers: add layers before building, fitting or predicting")
        first = self.layers[0]
        if isinstance(first, layers_mod.Conv2D) and x.ndim == 3:
            x = x[:, None]  # (N, H, W) grayscale -> (N, 1, H, W)
        if isinstance(first, layers_mod.Conv2D) and x.ndim == 4:
            expected = self.input_shape if self.built else None
            if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4) and x.shape[1:] != expected:
                raise ValueError(f"x has shape {x.shape}, which looks channels-last (N, H, W, C); fastconv's layers "
                                 f"take channels-first (N, C, H, W): pass x.transpose(0, 3, 1, 2)")
        x = x.astype(self.dtype, copy=False)
        if not self.built:
            if x.ndim < 2:
                raise ValueError(f"x must have a batch dimension and per-sample dimensions, got shape {x.shape}")
            self.build(x.shape[1:])
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x has per-sample shape {x.shape[1:]} but the model was built for {self.input_shape}")
        return x

    def _prepare_t(self, y, n):
        if len(np.shape(y)) == 0 or len(y) != n:
            raise ValueError(f"x has {n} samples but y has {len(y) if np.ndim(y) else 'none (a scalar)'}")
        return self.loss.targets(y, n, self.output_shape, self.dtype)

    def _require_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"call model.compile(...) before {what}")

    def _step(self, kind, n, target_dtype=None, weighted=False):
        """The compiled step for ``kind`` and batch size ``n`` (compiled on first use); ``weighted``: with a
        sample-weight buffer."""
        key = (kind, n, target_dtype, ops.get_num_threads(), bool(weighted))
        step = self._steps.get(key)
        if step is None:
            if kind == "train":
                self._check_output_for(self.loss)
            if len(self._steps) >= _MAX_STEPS:
                self._steps.clear()
            step = self._steps[key] = Step(self, n, kind, target_dtype, bool(weighted))
        return step

    def _update(self):
        """The optimizer's bound step on this model's flat buffers."""
        return self.optimizer.bind(self.params, self.grads, self.segments)

    # ------------------------------------------------------------------------------------- public loops
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0):
        """Train as Keras's ``Model.fit``; returns the :class:`~fastconv.nn.callbacks.History`.

        Parameters
        ----------
        x, y : inputs (N, ...) and targets (what the loss takes: integer labels, one-hot rows, values).
        batch_size : int >= 1 (None: 32).  The last batch of an epoch may be smaller.
        epochs : int; trains epochs ``initial_epoch .. epochs - 1``.
        verbose : 0 (silent), 1 (a progress bar per epoch) or 2 (one line per epoch); "auto" is 1.
        callbacks : list of :class:`~fastconv.nn.callbacks.Callback`.  A History is added (after them, as in
            Keras) unless one is given, and a ProgbarLogger when ``verbose``.
        validation_split : float in [0, 1): the LAST ``floor(N * (1 - split))..N`` samples (before any
            shuffling) are held out, with their sample weights, and evaluated after each epoch.
        validation_data : ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``; wins over
            ``validation_split``.  Its values are logged as ``val_loss``, ``val_<metric>``.
        shuffle : bool; each epoch draws an order from the model's RNG when True.
        class_weight : dict ``class index -> weight``; a sample weighs its class's weight (classes absent from
            the dict weigh 1, as in Keras).  Labels, one-hot rows (argmax) or one 0/1 output (rounded).
        sample_weight : (N,) weights of the training samples (not with ``class_weight``).
        initial_epoch : int, the epoch to start counting from.

        The loss of a batch with weights is ``sum(w_i l_i) / batch size`` (Keras's "sum_over_batch_size");
        the epoch's logged loss is the sample-count-weighted mean of its batch losses.
        """
        self._require_compiled("fit")
        if batch_size is None:
            batch_size = 32
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        epochs = _count(epochs, "epochs", 0)
        initial_epoch = _count(initial_epoch, "initial_epoch", 0)
        verbose = _verbose(verbose)
        ops.as_bool(shuffle, "shuffle")
        callbacks = _callback_list(callbacks)
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(validation_split, numbers.Real) \
                or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be a float in [0, 1), got {validation_split!r}")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("pass class_weight or sample_weight, not both (as in Keras)")
        if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                            or len(validation_data) not in (2, 3)):
            raise ValueError("validation_data must be a pair (x_val, y_val) or a triple (x_val, y_val, "
                             "sample_weight_val)")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples: fit needs at least one")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or inf; clean the data before fitting")
        t = self._prepare_t(y, len(x))
        self._metric_runs()                 # a metric the loss cannot feed raises before training starts
        w = None if sample_weight is None else self._prepare_w(sample_weight, len(x), "sample_weight")
        validation = None
        if validation_data is not None:
            xv, yv = validation_data[0], validation_data[1]
            wv = validation_data[2] if len(validation_data) == 3 else None
            xv = self._prepare_x(xv)
            tv = self._prepare_t(yv, len(xv))
            wv = None if wv is None else self._prepare_w(wv, len(xv), "validation_data's sample_weight")
            validation = (xv, tv, wv)
        elif validation_split:
            n = len(x)
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"x has {n} samples, too few to split into training and validation sets with "
                                 f"validation_split={validation_split}")
            validation = (x[split:], t[split:], None if w is None else w[split:])
            x, t, w = x[:split], t[:split], (None if w is None else w[:split])
        if class_weight is not None:
            w = self._class_weights(class_weight, t)
        return fit_loop(self, x, t, sample_weight=w, batch_size=batch_size, epochs=epochs, shuffle=bool(shuffle),
                        validation=validation, verbose=verbose, callbacks=callbacks, initial_epoch=initial_epoch)

    def _prepare_w(self, sample_weight, n, name):
        """Sample weights as a (n,) array of the model's dtype: one finite number per sample."""
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {w.dtype}")
        if w.ndim == 2 and w.shape[1] == 1:
            w = w[:, 0]
        if w.ndim > 1 and w.shape[0] == n:
            raise NotImplementedError(f"{name} of shape {w.shape} (weights per element, Keras's temporal weights) "
                                      f"is not supported by fastconv: give one weight per sample, shape ({n},)")
        if w.shape != (n,):
            raise ValueError(f"{name} must have one weight per sample, shape ({n},); got shape {w.shape}")
        w = w.astype(self.dtype)
        if not np.isfinite(w).all():
            raise ValueError(f"{name} contains NaN or inf")
        return w

    def _class_weights(self, class_weight, t):
        """Keras's ``class_weight -> sample_weight``: each sample weighs its class's weight, else 1."""
        if not hasattr(class_weight, "items") or not hasattr(class_weight, "get"):
            raise TypeError(f"class_weight must be a dict of class index -> weight, got {class_weight!r}")
        weights = {}
        for key, value in class_weight.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (numbers.Integral, str)):
                raise ValueError(f"class_weight keys must be integer class indices, got {key!r}")
            try:
                key = int(key)
            except ValueError:
                raise ValueError(f"class_weight keys must be integer class indices, got {key!r}") from None
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ValueError(f"class_weight[{key}] must be a finite number, got {value!r}")
            weights[key] = float(value)
        n = len(t)
        if t.ndim == 1:
            labels = t
        elif math.prod(t.shape[1:]) > 1 and t.ndim == 2:
            labels = t.argmax(axis=1)
        elif math.prod(t.shape[1:]) == 1:
            labels = np.round(t.reshape(n)).astype(np.int64)
        else:
            raise ValueError(f"class_weight needs one class per sample; the targets have shape {t.shape}")
        classes, which = np.unique(labels, return_inverse=True)
        return np.array([weights.get(int(c), 1.0) for c in classes], self.dtype)[which.reshape(n)]

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None):
        """One optimizer step on the batch (x, y); returns ``{"loss": ..., <metric>: ...}`` of that batch
        (computed on the outputs before the step; unlike Keras, metrics do not accumulate across calls)."""
        self._require_compiled("train_on_batch")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("pass class_weight or sample_weight, not both (as in Keras)")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        w = None if sample_weight is None else self._prepare_w(sample_weight, len(x), "sample_weight")
        if class_weight is not None:
            w = self._class_weights(class_weight, t)
        step = self._step("train", len(x), t.dtype, weighted=w is not None)
        loss = step.train_whole(x, t, w)
        result = self._batch_result(step, loss, len(x), w)
        self._update()()
        return result

    def _batch_result(self, step, loss, n, w=None):
        result = {"loss": float(loss)}
        count_w = None if w is None else float(np.sum(w))
        for (name, _, weighted), total in zip(self._metric_runs(), step.metric_sums()):
            count = count_w if weighted and w is not None else n
            result[name] = total / count if count else 0.0
        return result

    def test_on_batch(self, x, y, sample_weight=None):
        """``{"loss": ..., <metric>: ...}`` of the batch (x, y) in inference mode, as :meth:`evaluate`."""
        return self.evaluate(x, y, batch_size=max(1, len(x)), sample_weight=sample_weight)

    def compute_gradients(self, x, y, sample_weight=None):
        """Loss on (x, y) in training mode (weighted as in ``fit`` with ``sample_weight``) and its gradient:
        a copy of the flat gradient buffer."""
        self._require_compiled("compute_gradients")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        w = None if sample_weight is None else self._prepare_w(sample_weight, len(x), "sample_weight")
        loss = self._step("train", len(x), t.dtype, weighted=w is not None).train_whole(x, t, w)
        return loss, self.grads.copy()

    def backpropagate(self, x, output_gradient):
        """Forward ``x`` in training mode, then send ``output_gradient`` (dL/d(model output), the output's
        shape) back through every layer.  Returns each layer's output (copies); the parameter gradients
        are left in ``model.grads`` (and each layer's ``grads`` views)."""
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        g = np.asarray(output_gradient)
        if g.shape != (len(x),) + self.output_shape:
            raise ValueError(f"output_gradient has shape {g.shape}; the model's output has shape "
                             f"{(len(x),) + self.output_shape}")
        step = self._step("gradient", len(x))
        np.copyto(step.x, x)
        step.run_forward()
        np.copyto(step.gout, g)
        step.run_backward()
        return [out.copy() for out in step.outputs]

    def predict(self, x, batch_size=256):
        """Model outputs (after the last activation) for x, in batches."""
        batch_size = _count(batch_size, "batch_size", 1)
        x = self._prepare_x(x)
        out = np.empty((len(x),) + tuple(self.output_shape), self.dtype)
        with single_threaded_blas() if len(x) > ops.DENSE_SMALL_BATCH else contextlib.nullcontext():
            for i in range(0, len(x), batch_size):
                chunk = x[i:i + batch_size]
                step = self._step("predict", len(chunk))
                np.copyto(step.x, chunk)
                step.run_forward()
                out[i:i + len(chunk)] = step.out
        return out

    def __call__(self, x):
        """The model's outputs for ``x`` (inference mode), as :meth:`predict`."""
        return self.predict(x)

    def evaluate(self, x, y, batch_size=32, verbose=0, sample_weight=None):
        """``{"loss": ..., <metric>: ...}`` on (x, y), in inference mode.

        The loss is computed exactly on all of the model's outputs (``predict`` in batches of
        ``batch_size``): ``sum(w_i l_i) / N`` with ``sample_weight`` (1 without), the value Keras's running
        mean over batches gives.  Metrics are computed on the outputs; weighted metrics apply the weights.
        ``verbose``: 0 silent, else one line."""
        if self.loss is None:
            raise RuntimeError("call model.compile(...) before evaluate")
        _verbose(verbose)
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        w = None if sample_weight is None else self._prepare_w(sample_weight, len(x), "sample_weight")
        result = self._evaluate_prepared(x, t, w, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result

    def _evaluate_prepared(self, x, t, w, batch_size):
        """:meth:`evaluate` on prepared inputs, targets and weights (fit's validation runs this too)."""
        out = self.predict(x, batch_size)
        if w is None:
            loss, _ = self.loss.value_and_grad(out, t, self.loss.from_logits)  # outputs after the last activation
        else:
            loss = self.loss.weighted_value(out, t, w, self.loss.from_logits)
        result = {"loss": float(loss)}
        pre = self.loss.pairs_with if self.loss.from_logits else None   # outputs that are logits
        for name, metric, weighted in self._metric_runs():
            result[name] = metric.value(out, t, w if weighted else None, pre)
        return result

    # ------------------------------------------------------------------------------------------ save/load
    def get_config(self):
        return {"dtype": self.dtype.name, "seed": self.seed, "input_shape": list(self.input_shape),
                "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
                "loss": None if self.loss is None else self.loss.name,
                "loss_config": None if self.loss is None else self.loss.get_config(),
                # names that metrics.get resolves (what load_model compiles with); the full metrics, with
                # their log names and settings, in metrics_config
                "metrics": [metrics_mod.identifier(m) for m in self.metrics],
                "weighted_metrics": [metrics_mod.identifier(m) for m in self.weighted_metrics],
                "metrics_config": {"metrics": [metrics_mod.serialize(m) for m in self.metrics],
                                   "weighted_metrics": [metrics_mod.serialize(m) for m in self.weighted_metrics]},
                "optimizer": None if self.optimizer is None else {"class": type(self.optimizer).__name__,
                                                                   "config": self.optimizer.get_config()}}

    def save(self, path):
        """Weights, config, RNG and optimizer state in one ``.npz``, written atomically and durably
        (:func:`fastconv.nn.saving.save_model`); :func:`load_model` rebuilds the model bit for bit."""
        save_model(self, path)

    def state_dict(self):
        """The parameters (and batch-norm statistics) under PyTorch's names, as
        :func:`fastconv.interop.state_dict`: the names of ``to_torch(model).state_dict()``."""
        from .. import interop  # the face sits above nn; imported only when asked for

        return interop.state_dict(self)

    def load_state_dict(self, state_dict, strict=True):
        """Load PyTorch-named arrays or tensors, checked before anything is written
        (:func:`fastconv.interop.load_state_dict`)."""
        from .. import interop

        return interop.load_state_dict(self, state_dict, strict=strict)
