"""``Sequential``: a Keras-style model on fastconv's kernels (NCHW, PyTorch weight layout)."""
import json
import os
import sys
import tempfile
import time

import numpy as np

from . import layers as layers_mod
from .. import _conv, _softmax_ce, ops
from . import optimizers
from .callbacks import History
from .progress import Progress as _Progress

__all__ = ["Sequential", "History", "load_model"]

LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy", "mse")


class Sequential:
    """A stack of layers trained with a fused optimizer over one flat parameter buffer.

    Parameters
    ----------
    layers : list of :mod:`fastconv.layers` layers.
    dtype : "float32" (default) or "float64".
    seed : int or None -- seeds initialization, shuffling and dropout; the same seed gives a bit-identical run.

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
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.built = False
        self.optimizer = None
        self.loss = None
        # fit runs covered models as flat kernel programs (see _step_program); False: layer by layer
        self.use_step_programs = True

    def add(self, layer):
        if self.built:
            raise RuntimeError("cannot add layers to a built model")
        self.layers.append(layer)

    # ------------------------------------------------------------------------------------------- build
    def build(self, input_shape):
        """Build for ``input_shape`` (with or without the batch dimension, e.g. (1, 28, 28) or (None, 1, 28, 28))."""
        shape = tuple(input_shape)
        first = self.layers[0] if self.layers else None
        batched_rank = 4 if isinstance(first, layers_mod.Conv2D) else 2 if isinstance(first, layers_mod.Dense) else None
        if shape and (shape[0] is None or len(shape) == batched_rank):
            shape = shape[1:]  # drop the batch dimension
        self.input_shape = tuple(int(s) for s in shape)
        specs, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.build(shape)
            specs += [(layer, name, pshape, init) for name, pshape, init in layer.param_specs]
        self.output_shape = shape
        sizes = [int(np.prod(s)) for _, _, s, _ in specs]
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
        # no layer before the first parameterised one has parameters: its input gradient is never needed
        first_trainable = next((l for l in self.layers if l.param_specs), None)
        for layer in self.layers:
            if hasattr(layer, "need_dx"):
                layer.need_dx = layer is not first_trainable
            if isinstance(layer, layers_mod.Dropout):
                layer.rng = np.random.default_rng(self.rng.integers(2**63))
        self.built = True
        if self.optimizer is not None:
            self.optimizer.build(total, self.dtype)
        return self

    def count_params(self):
        return int(self.params.size) if self.built else 0

    def summary(self, print_fn=print):
        """Print layers, output shapes and parameter counts."""
        if not self.built:
            raise RuntimeError("build the model first: model.build(input_shape) or call it on data")
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
        self.optimizer = optimizers.get(optimizer)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid choices: {', '.join(LOSSES)}")
        self.loss = loss
        metrics = list(metrics or [])
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"unknown metric {m!r}; valid choices: accuracy")
        self.metrics = ["accuracy"] if metrics else []
        if self.built:
            self.optimizer.build(self.params.size, self.dtype)
        return self

    # ------------------------------------------------------------------------------------- forward/back
    def _prepare_x(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        x = x.astype(self.dtype, copy=False)
        if isinstance(self.layers[0], layers_mod.Conv2D) and x.ndim == 3:
            x = x[:, None]  # (N, H, W) grayscale -> (N, 1, H, W)
        if not self.built:
            self.build(x.shape[1:])
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x has per-sample shape {x.shape[1:]} but the model was built for {self.input_shape}")
        return x

    def _last_activation(self):
        return getattr(self.layers[-1], "activation", "linear")

    def _forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _fused(self):
        act = self._last_activation()
        return ((self.loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") and act == "softmax")
                or (self.loss == "binary_crossentropy" and act == "sigmoid"))

    def _loss_and_grad(self, out, y, fused):
        """Loss value and gradient w.r.t. ``out`` (logits when fused, else the model output)."""
        n = out.shape[0]
        if self.loss == "sparse_categorical_crossentropy":
            if fused:
                logits = out.reshape(n, -1)
                if (getattr(self, "_labels_checked", None) is y and logits.flags.c_contiguous
                        and logits.dtype in ops._FLOAT_DTYPES):
                    return ops._softmax_cross_entropy_unchecked(logits, y)
                return ops.softmax_cross_entropy(logits, y)
            p = np.clip(out.reshape(n, -1), 1e-12, None)
            g = np.zeros_like(p)
            g[np.arange(n), y] = -1.0 / (p[np.arange(n), y] * n)
            return float(-np.log(p[np.arange(n), y]).mean()), g.reshape(out.shape)
        if self.loss == "categorical_crossentropy":
            t = y.reshape(n, -1)
            if fused:
                z = out.reshape(n, -1)
                zmax = z.max(axis=1, keepdims=True)
                lse = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
                loss = float(-(t * (z - lse)).sum(axis=1).mean())
                return loss, ((np.exp(z - lse) * t.sum(axis=1, keepdims=True) - t) / n).astype(out.dtype)
            p = np.clip(out.reshape(n, -1), 1e-12, None)
            return float(-(t * np.log(p)).sum(axis=1).mean()), (-t / p / n).astype(out.dtype).reshape(out.shape)
        if self.loss == "binary_crossentropy":
            t = y.reshape(out.shape).astype(out.dtype)
            if fused:
                z = out
                loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
                return loss, ((layers_mod._sigmoid(z) - t) / out.size).astype(out.dtype)
            p = np.clip(out, 1e-12, 1 - 1e-12)
            loss = float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
            return loss, ((p - t) / (p * (1 - p)) / out.size).astype(out.dtype)
        t = y.reshape(out.shape).astype(out.dtype)
        diff = out - t
        return float(np.mean(diff * diff)), (2 * diff / out.size).astype(out.dtype)

    def _prepare_y(self, y, n):
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"x has {n} samples but y has {len(y)}")
        if self.loss == "sparse_categorical_crossentropy":
            if y.dtype.kind not in "iu":
                if y.dtype.kind == "f" and np.all(y == np.round(y)):
                    y = y.astype(np.int64)
                else:
                    raise TypeError(f"sparse_categorical_crossentropy needs integer class labels, got dtype {y.dtype}")
            y = y.reshape(-1).astype(np.int64)
            k = int(np.prod(self.output_shape))
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"labels must lie in [0, {k}) for a model with {k} outputs; found {y.min()}..{y.max()}")
        return y

    def _correct(self, out, y, logits=False):
        """Number of correct predictions (count_nonzero: 0.9 us at batch 1, np.mean 3.0 us);
        ``logits`` says the outputs are pre-activation (fused training pass)."""
        n = out.shape[0]
        if self.loss == "sparse_categorical_crossentropy":
            z = out.reshape(n, -1)
            if _conv.kernel_ready(z) and type(y) is np.ndarray and y.dtype == np.int64 and y.ndim == 1:
                return _softmax_ce.count_correct(z, y)  # at batch 1: 0.7 us where NumPy's three calls took 3.5
            return np.count_nonzero(z.argmax(axis=1) == y)
        if self.loss == "categorical_crossentropy":
            return np.count_nonzero(out.reshape(n, -1).argmax(axis=1) == y.reshape(n, -1).argmax(axis=1))
        threshold = 0.0 if logits else 0.5
        return np.count_nonzero((out.reshape(n, -1) > threshold) == (y.reshape(n, -1) > 0.5))

    def _accuracy(self, out, y, logits=False):
        """Fraction correct (per output for the binary and regression losses)."""
        total = out.shape[0] if self.loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") \
            else out.size
        return self._correct(out, y, logits) / max(1, total)

    def compute_gradients(self, x, y):
        """Loss on (x, y) in training mode and its gradient: a copy of the flat gradient buffer."""
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        loss, _ = self._forward_backward(x, y)
        return loss, self.grads.copy()

    def train_on_batch(self, x, y):
        """One optimizer step on a prepared batch; returns (loss, the batch outputs)."""
        loss, out = self._forward_backward(x, y)
        self.optimizer.step(self.params, self.grads)
        return loss, out

    def _forward_backward(self, x, y):
        fused = self._fused()
        last = self.layers[-1]
        last.logits_only = fused  # the loss applies softmax/sigmoid itself, stably
        try:
            return self._forward_backward_set(x, y, fused)
        finally:
            last.logits_only = False

    def _forward_backward_set(self, x, y, fused):
        """_forward_backward with the last layer's ``logits_only`` already set for ``fused``."""
        x = self._forward(x, True)
        loss, grad = self._loss_and_grad(x, y, fused)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
            if grad is None:
                break
        return loss, x

    def _step_program(self, n):
        """The training step for batches of ``n`` as a flat list of kernel calls on preallocated buffers,
        or None where the model has a layer, activation or loss it does not cover (fit then steps layer by
        layer).  Covered: Conv2D, Dense (ReLU or no activation) and Flatten, ending in softmax with
        sparse categorical cross-entropy (seed 000's CNN).  The calls, their order and their inputs are
        the layer-by-layer step's, so the results are bit-identical (tested); what goes is the Python
        around them (on a 2 GHz Zen 1, a step of a model of 1x1 convolutions: 66 us layer by layer, 22 us
        as a program with the other trims of the same change)."""
        if self.loss != "sparse_categorical_crossentropy" or not self._fused() or not self.layers:
            return None
        nt = ops._num_threads
        xbuf = np.empty((n,) + self.input_shape, self.dtype)
        ybuf = np.empty(n, np.int64)
        x, gx, forward, backward = xbuf, None, [], []
        for layer in self.layers:
            make = getattr(layer, "_step_ops", None)
            ops_ = make(x, gx, layer is self.layers[-1], nt) if make is not None else None
            if ops_ is None:
                return None
            x, gx, f, b = ops_
            forward += f
            backward = b + backward
        logits = x.reshape(n, -1)
        return xbuf, ybuf, forward, (logits, ybuf, gx.reshape(n, -1), nt), backward, logits

    def _run_program(self, program, x, y, idx):
        """One forward/backward of ``program`` on samples ``idx`` of the prepared ``x``, ``y``; returns
        (loss, logits buffer)."""
        xbuf, ybuf, forward, loss_args, backward, logits = program
        x.take(idx, axis=0, out=xbuf, mode="clip")   # idx is in range: "clip" skips numpy's buffering
        y.take(idx, out=ybuf, mode="clip")           # (the method: np.take's dispatch cost 2 us more)
        for kernel, args in forward:
            kernel(*args)
        loss = _softmax_ce.softmax_cross_entropy(*loss_args)
        for kernel, args in backward:
            kernel(*args)
        return loss, logits

    # ------------------------------------------------------------------------------------- public loops
    def fit(self, x, y, batch_size=32, epochs=1, shuffle=True, validation_data=None, verbose=1):
        """Train; returns a :class:`History` with per-epoch ``loss``/``accuracy`` (and ``val_*``)."""
        if self.optimizer is None:
            raise RuntimeError("call model.compile(...) before fit")
        x = self._prepare_x(x)
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or inf; clean the data before fitting")
        y = self._prepare_y(y, len(x))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        history = History()
        n = len(x)
        logits = self._fused()  # training outputs are pre-activation when the loss is fused
        # accuracy counts outputs for the binary/regression losses and samples for the categorical ones
        per_sample = 1.0 if self.loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") else \
            1.0 / max(1, int(np.prod(self.output_shape)))
        # the step's pieces, looked up once (at batch 1 the per-step Python is a large part of a step)
        last, step, optimizer_step = self.layers[-1], self._forward_backward_set, self.optimizer.step
        params, grads, metrics, correct = self.params, self.grads, bool(self.metrics), self._correct
        programs = {} if self.use_step_programs else None   # batch size -> program (or None)
        run, count_correct = self._run_program, _softmax_ce.count_correct
        for epoch in range(epochs):
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            progress = _Progress(n, f"Epoch {epoch + 1}/{epochs}", verbose)
            total_loss = total_correct = 0.0
            last.logits_only = logits  # the loss applies softmax/sigmoid itself, stably
            try:
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    program = None
                    if programs is not None:
                        program = programs.get(len(idx), False)
                        if program is False:
                            program = programs[len(idx)] = self._step_program(len(idx))
                    if program is not None:
                        loss, out = run(program, x, y, idx)
                        total_loss += loss * len(idx)
                        if metrics:  # the program's case: logits and int64 labels, counted in C
                            total_correct += count_correct(out, program[1])
                    else:
                        xb, yb = x.take(idx, axis=0), y.take(idx, axis=0)  # take: 0.3 us at batch 1, x[idx] 0.9
                        self._labels_checked = yb  # checked by _prepare_y above: the loss can skip the range check
                        loss, out = step(xb, yb, logits)
                        total_loss += loss * len(idx)
                        if metrics:
                            total_correct += correct(out, yb, logits) * per_sample
                    optimizer_step(params, grads)
                    if verbose:
                        seen = min(n, start + batch_size)
                        stats = {"loss": f"{total_loss / seen:.4f}"}
                        if metrics:
                            stats["accuracy"] = f"{total_correct / seen:.4f}"
                        progress.update(len(idx), stats)
            finally:
                last.logits_only = False
            progress.close()
            logs = {"loss": total_loss / n}
            if self.metrics:
                logs["accuracy"] = total_correct / n
            if validation_data is not None:
                for key, value in self.evaluate(*validation_data, batch_size=max(batch_size, 256)).items():
                    logs["val_" + key] = value
            history.append(epoch, logs)
        return history

    def predict(self, x, batch_size=256):
        """Model outputs (after the last activation) for x, in batches."""
        x = self._prepare_x(x)
        outs = [self._forward(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,) + tuple(self.output_shape), self.dtype)

    def evaluate(self, x, y, batch_size=256, verbose=0):
        """``{"loss": ..., "accuracy": ...}`` on (x, y)."""
        if self.loss is None:
            raise RuntimeError("call model.compile(...) before evaluate")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        out = self.predict(x, batch_size)
        loss, _ = self._loss_and_grad(out, y, fused=False)  # outputs here are after the last activation
        result = {"loss": loss}
        if self.metrics:
            result["accuracy"] = self._accuracy(out, y)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result

    # ------------------------------------------------------------------------------------------ save/load
    def get_config(self):
        return {"dtype": self.dtype.name, "seed": self.seed, "input_shape": list(self.input_shape),
                "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers],
                "loss": self.loss, "metrics": getattr(self, "metrics", []),
                "optimizer": None if self.optimizer is None else {"class": type(self.optimizer).__name__,
                                                                   "config": self.optimizer.get_config()}}

    def save(self, path):
        """Weights, config and optimizer state in one ``.npz``, written atomically (temp file + rename)."""
        if not self.built:
            raise RuntimeError("cannot save an unbuilt model")
        path = os.fspath(path)
        arrays = {"config": np.array(json.dumps(self.get_config())), "params": self.params,
                  "rng_state": np.array(json.dumps(self.rng.bit_generator.state))}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, layers_mod.Dropout):
                arrays[f"layer_rng/{i}"] = np.array(json.dumps(layer.rng.bit_generator.state))
        if self.optimizer is not None:
            for key, value in self.optimizer.state().items():
                if value is not None:
                    arrays["optimizer/" + key] = np.asarray(value)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fastconv-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def load_model(path):
    """Rebuild a model saved by :meth:`Sequential.save` (predictions are bit-identical)."""
    try:
        data = np.load(os.fspath(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a fastconv model from {path!r}: {exc}") from exc
    with data:
        if "config" not in data.files or "params" not in data.files:
            raise ValueError(f"{path!r} is not a fastconv model file (no config/params)")
        config = json.loads(str(data["config"]))
        model = Sequential([layers_mod.layer_from_config(l["class"], l["config"]) for l in config["layers"]],
                           dtype=config["dtype"], seed=config["seed"])
        if config["optimizer"] is not None:
            opt = getattr(optimizers, config["optimizer"]["class"])(**config["optimizer"]["config"])
            model.compile(opt, config["loss"], config["metrics"])
        model.build(tuple(config["input_shape"]))
        model.params[...] = data["params"]
        model.rng.bit_generator.state = json.loads(str(data["rng_state"]))
        for key in data.files:
            if key.startswith("layer_rng/"):
                model.layers[int(key.split("/", 1)[1])].rng.bit_generator.state = json.loads(str(data[key]))
        if model.optimizer is not None:
            state = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("optimizer/")}
            model.optimizer.set_state(state)
    return model
