"""``Sequential``: a Keras-style model on fastconv's kernels (NCHW, PyTorch weight layout).

Every computation of a model runs through one mechanism: a :class:`~fastconv.nn.step.Step` compiled per
batch size from the layers' bound kernel calls.  ``fit`` (through :func:`fastconv.nn.training.fit_loop`),
``train_on_batch``, ``compute_gradients``, ``backpropagate``, ``evaluate`` and ``predict`` all run steps.
"""
import contextlib
import math
import numbers

import numpy as np

from .. import ops
from . import layers as layers_mod
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers
from .saving import load_model, save_model
from .step import Step
from .training import fit_loop, single_threaded_blas

__all__ = ["Sequential", "load_model"]

_MAX_STEPS = 16   # compiled steps kept per model (batch sizes x kinds)


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
        self.stop_training = False
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
        offset = 0
        for (layer, name, pshape, init), size in zip(specs, sizes):
            view = self.params[offset:offset + size].reshape(pshape)
            view[...] = init(pshape, dtype=self.dtype, rng=self.rng)
            layer.params[name] = view
            layer.grads[name] = self.grads[offset:offset + size].reshape(pshape)
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
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Set the optimizer (name or instance), the loss (name or :mod:`~fastconv.nn.losses` instance) and
        the metrics (``["accuracy"]`` or none).  Everything is checked before anything is changed."""
        optimizer = optimizers.get(optimizer)
        loss = losses_mod.get(loss)
        if metrics is not None and (isinstance(metrics, str) or not isinstance(metrics, (list, tuple))):
            raise TypeError(f"metrics must be a list of names, e.g. ['accuracy'], got {metrics!r}")
        metrics = [metrics_mod.get(m) for m in (metrics or [])]
        if self.layers:
            self._check_output_for(loss)
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics[:1]
        self._steps = {}
        if self.built:
            self.optimizer.build(self.params.size, self.dtype)
        return self

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

    def _step(self, kind, n, target_dtype=None):
        """The compiled step for ``kind`` and batch size ``n`` (compiled on first use)."""
        key = (kind, n, target_dtype, ops.get_num_threads())
        step = self._steps.get(key)
        if step is None:
            if kind == "train":
                self._check_output_for(self.loss)
            if len(self._steps) >= _MAX_STEPS:
                self._steps.clear()
            step = self._steps[key] = Step(self, n, kind, target_dtype)
        return step

    def _update(self):
        """The optimizer's bound step on this model's flat buffers."""
        return self.optimizer.bind(self.params, self.grads)

    # ------------------------------------------------------------------------------------- public loops
    def fit(self, x, y, batch_size=32, epochs=1, shuffle=True, validation_data=None, verbose=1, callbacks=None,
            initial_epoch=0):
        """Train; returns a :class:`~fastconv.nn.callbacks.History` with per-epoch ``loss``/``accuracy``
        (and ``val_*``).  ``callbacks``: :class:`~fastconv.nn.callbacks.Callback` instances."""
        self._require_compiled("fit")
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        epochs = _count(epochs, "epochs", 0)
        initial_epoch = _count(initial_epoch, "initial_epoch", 0)
        callbacks = list(callbacks or [])
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples: fit needs at least one")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or inf; clean the data before fitting")
        t = self._prepare_t(y, len(x))
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
        return fit_loop(self, x, t, batch_size=batch_size, epochs=epochs, shuffle=bool(shuffle),
                        validation_data=validation_data, verbose=verbose, callbacks=callbacks,
                        initial_epoch=initial_epoch)

    def train_on_batch(self, x, y):
        """One optimizer step on the batch (x, y); returns ``{"loss": ..., "accuracy": ...}`` of that batch."""
        self._require_compiled("train_on_batch")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        step = self._step("train", len(x), t.dtype)
        loss = step.train_whole(x, t)
        result = self._batch_result(step, loss, len(x))
        self._update()()
        return result

    def _batch_result(self, step, loss, n):
        result = {"loss": loss}
        if self.metrics:
            result["accuracy"] = step.correct() * self.metrics[0].per_item(self.loss, self.output_shape) / n
        return result

    def compute_gradients(self, x, y):
        """Loss on (x, y) in training mode and its gradient: a copy of the flat gradient buffer."""
        self._require_compiled("compute_gradients")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        loss = self._step("train", len(x), t.dtype).train_whole(x, t)
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

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """``{"loss": ..., "accuracy": ...}`` on (x, y)."""
        if self.loss is None:
            raise RuntimeError("call model.compile(...) before evaluate")
        x = self._prepare_x(x)
        if len(x) == 0:
            raise ValueError("x has no samples")
        t = self._prepare_t(y, len(x))
        out = self.predict(x, batch_size)
        loss, _ = self.loss.value_and_grad(out, t, self.loss.from_logits)  # outputs after the last activation
        result = {"loss": loss}
        if self.metrics:
            result["accuracy"] = self.metrics[0].value(self.loss, out, t)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result

    # ------------------------------------------------------------------------------------------ save/load
    def get_config(self):
        return {"dtype": self.dtype.name, "seed": self.seed, "input_shape": list(self.input_shape),
                "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
                "loss": None if self.loss is None else self.loss.name,
                "loss_config": None if self.loss is None else self.loss.get_config(),
                "metrics": [m.name for m in self.metrics],
                "optimizer": None if self.optimizer is None else {"class": type(self.optimizer).__name__,
                                                                   "config": self.optimizer.get_config()}}

    def save(self, path):
        """Weights, config, RNG and optimizer state in one ``.npz``, written atomically and durably
        (:func:`fastconv.nn.saving.save_model`); :func:`load_model` rebuilds the model bit for bit."""
        save_model(self, path)
