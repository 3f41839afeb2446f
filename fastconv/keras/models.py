"""``keras.Sequential`` on fastconv's core model, and ``keras.models.load_model``.

The face model keeps Keras's conventions at its boundary and runs everything through one core
:class:`fastconv.nn.model.Sequential` (NCHW, PyTorch weight layout):

- inputs: a channels-last image batch (N, H, W, C) is transposed to (N, C, H, W) and cast to the model's
  dtype in ONE contiguous copy per ``fit``/``evaluate``/``predict`` call (training and validation data
  share it under ``validation_split``); nothing is converted per layer or per batch;
- outputs: an image output is transposed back to (N, H, W, C), a flattened image back to Keras's (H, W, C)
  order; targets of such outputs are converted the other way;
- training, evaluation and prediction are the core's ``fit``, ``evaluate``, ``predict``, ``train_on_batch``;
  the face converts arguments and return values (``evaluate`` gives a scalar or ``[loss, *metrics]``, or a
  dict with ``return_dict=True``).

The model's core seed is drawn, when the model is built, from the face's seed generator, which
``keras.utils.set_random_seed`` resets: a program that calls it runs the same way every time.
"""
import json
import math
import os
import shutil

import numpy as np

from ..nn import callbacks as _core_callbacks
from ..nn import model as _core_model
from ..nn import saving as _core_saving
from . import backend as _backend
from . import layers as layers_mod
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod

__all__ = ["Sequential", "Model", "load_model", "clone_model"]

_FORMAT = "fastconv.keras/1"


class _CoreSequential(_core_model.Sequential):
    """The core model of a face model: its config carries the face's (under ``"keras"``), so that every file
    the core saves for it (``model.save``, ``ModelCheckpoint``) loads back as a face model."""

    face = None

    def get_config(self):
        config = super().get_config()
        if self.face is not None:
            config["keras"] = self.face._face_config()
        return config


class _Context:
    """What every layer of a model agrees on while the model builds: the data format."""

    def __init__(self, channels_last):
        self.channels_last = channels_last


def _keras_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return verbose


def _batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _weights(sample_weight):
    """Keras's sample_weight as the core takes it: None, or an array."""
    return None if sample_weight is None else np.asarray(sample_weight)


def _not_none(owner, **kwargs):
    for key, value in kwargs.items():
        if value is not None:
            raise NotImplementedError(f"{owner}: {key}={value!r} is not supported by fastconv.keras (NumPy arrays "
                                      "are fed whole, in batches of batch_size)")


class Sequential:
    """A Keras 3 ``Sequential`` model on fastconv's core.

    Parameters
    ----------
    layers : list of ``fastconv.keras.layers`` layers, optionally starting with ``keras.Input(shape=...)``.
    name : the model's name (default ``"sequential"``, then ``"sequential_1"``, ...).

    Examples
    --------
    >>> from fastconv import keras
    >>> from fastconv.keras import layers
    >>> model = keras.Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
    ...                           layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    """

    def __init__(self, layers=None, trainable=True, name=None):
        if trainable is not True:
            raise NotImplementedError("Sequential: trainable=False is not supported by fastconv")
        self.name = name or _backend.unique_name("sequential")
        self._layers = []
        self._input = None
        self._core = None
        self._compiled = None
        self._trained = False
        self.history = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build()

    # ------------------------------------------------------------------------------------------ layers
    @property
    def layers(self):
        """The model's layers (without its Input), as Keras lists them."""
        return list(self._layers)

    def add(self, layer, rebuild=True):
        """Append a layer (or set the input with ``keras.Input``); a built model is rebuilt keeping the weights
        of its layers."""
        if isinstance(layer, Sequential):
            raise NotImplementedError("Sequential.add: nested models are not supported by fastconv.keras; add "
                                      "their layers")
        if not isinstance(layer, layers_mod.Layer):
            raise ValueError(f"Only instances of `keras.Layer` can be added to a Sequential model. Received: "
                             f"{layer!r} (of type {type(layer).__name__})")
        if isinstance(layer, layers_mod.InputLayer):
            if self._layers or self._input is not None:
                raise ValueError(f"Sequential model '{self.name}' has already been configured to use an input; an "
                                 "InputLayer can only be the first layer")
            self._input = layer
        else:
            if any(other.name == layer.name for other in self._layers):
                raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                                 f"'{layer.name}' is already the name of a layer in this model. Update the `name` "
                                 "argument to pass a unique name.")
            self._layers.append(layer)
        if rebuild:
            self._rebuild()

    def pop(self, rebuild=True):
        """Remove and return the last layer; a built model is rebuilt keeping the other layers' weights."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        layer.built, layer._core = False, []
        if rebuild:
            self._rebuild()
        return layer

    def _input_shape(self):
        if self._input is not None:
            return self._input.shape
        if self._layers and self._layers[0]._input_shape_arg is not None:
            return self._layers[0]._input_shape_arg
        return None

    def _maybe_build(self):
        shape = self._input_shape()
        if shape is not None and self._layers:
            self._build_core(shape)

    def _rebuild(self):
        """Build again after add/pop, with the kept layers' weights (Keras layouts) copied over."""
        if self._core is None:
            self._maybe_build()
            return
        kept = [(layer, layer.get_weights()) for layer in self._layers if layer.built]
        shape = self._in_spec.keras_shape
        self._core = None
        if self._layers:
            self._build_core(shape)
            for layer, weights in kept:
                layer.set_weights(weights)

    def build(self, input_shape=None):
        """Build for ``input_shape`` *with* the batch dimension, as Keras: ``model.build((None, 28, 28, 1))``."""
        if input_shape is None:
            shape = self._input_shape()
            if shape is None:
                raise ValueError("You must provide an `input_shape` argument.")
        else:
            shape = layers_mod._shape_arg("Sequential.build", tuple(input_shape)[1:], "input_shape")
        if self._core is None:
            self._build_core(shape)
        elif shape != self._in_spec.keras_shape:
            raise ValueError(f"model '{self.name}' is built for inputs {self._in_spec.batch()}, not {input_shape}")

    @property
    def built(self):
        return self._core is not None

    def _context(self):
        formats = {layer.data_format or _backend.image_data_format() for layer in self._layers
                   if hasattr(layer, "data_format") and not isinstance(layer, layers_mod.Flatten)}
        if len(formats) > 1:
            raise NotImplementedError(f"model '{self.name}' mixes channels_last and channels_first layers; "
                                      "fastconv.keras needs one data_format for all the layers of a model")
        data_format = formats.pop() if formats else _backend.image_data_format()
        return _Context(data_format == "channels_last")

    def _dtype(self):
        dtypes = {d for d in [getattr(self._input, "dtype", None)] + [layer.dtype for layer in self._layers] if d}
        if len(dtypes) > 1:
            raise NotImplementedError(f"model '{self.name}' mixes dtypes {sorted(dtypes)}; fastconv computes a model "
                                      "in one dtype")
        return dtypes.pop() if dtypes else _backend.floatx()

    def _build_core(self, input_shape, seed=None):
        """Build every layer for Keras input shape ``input_shape`` and the core model that computes them."""
        if not self._layers:
            raise ValueError(f"Sequential model '{self.name}' has no layers: add layers before building it")
        ctx = self._context()
        spec = self._in_spec = layers_mod._Spec(input_shape, ctx.channels_last)
        try:
            for layer in self._layers:
                layer._in = spec
                spec = layer._build(spec, ctx)
                layer._out = spec
                layer.built = True
            self._out_spec = spec
            if seed is None:
                seed = int(_backend.seed_generator().integers(2**31))
            core = _CoreSequential([c for layer in self._layers for c in layer._core], dtype=self._dtype(), seed=seed)
            core.face = self
            core.build(self._in_spec.core_shape)
        except BaseException:
            for layer in self._layers:
                layer.built, layer._core = False, []
            raise
        for layer in self._layers:
            layer._after_core_build(core)
        self._core = core
        if self._compiled is not None and self._compiled["loss"] is not None:
            self._compile_core()

    def _require_built(self, what):
        if self._core is None:
            raise ValueError(f"Sequential model '{self.name}' has not been built yet: give it a keras.Input, "
                             f"call build(input_shape), or fit or predict on data before {what}")

    # ----------------------------------------------------------------------------------------- weights
    def get_weights(self):
        """Every layer's weights, in order, in Keras's layouts."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Set every layer's weights from arrays in Keras's layouts (``keras_model.get_weights()``)."""
        self._require_built("set_weights")
        weights = list(weights)
        expected = sum(layer._weight_count() for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                             f"{len(weights)}, but the layer was expecting {expected} weights.")
        start = 0
        for layer in self._layers:
            n = layer._weight_count()
            layer.set_weights(weights[start:start + n])
            start += n

    @property
    def weights(self):
        return self.get_weights()

    def count_params(self):
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self._layers]}.")

    @property
    def input_shape(self):
        shape = self._input_shape() if self._core is None else self._in_spec.keras_shape
        return None if shape is None else (None,) + tuple(shape)

    @property
    def output_shape(self):
        return None if self._core is None else self._out_spec.batch()

    @property
    def dtype(self):
        return self._dtype()

    @property
    def stop_training(self):
        return bool(self._core is not None and self._core.stop_training)

    @stop_training.setter
    def stop_training(self, value):
        self._require_built("stop_training")
        self._core.stop_training = bool(value)

    # ----------------------------------------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Keras's ``compile``: the optimizer (a name with Keras's defaults, or a ``keras.optimizers`` object),
        the loss and the metrics (names or ``keras.metrics`` objects)."""
        if loss_weights is not None:
            raise NotImplementedError("compile: loss_weights is not supported (a Sequential model has one output)")
        if weighted_metrics is not None:
            raise NotImplementedError("compile: weighted_metrics is not supported by fastconv.keras")
        if steps_per_execution != 1:
            raise NotImplementedError(f"compile: steps_per_execution={steps_per_execution!r} is not supported "
                                      "(fastconv runs one batch per step)")
        optimizer = optimizers_mod.get(optimizer)
        loss = None if loss is None else losses_mod.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, dict):
            raise NotImplementedError("compile: metrics as a dict (per output) is not supported")
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"Expected `metrics` argument to be a list, tuple, or dict. Received instead: "
                            f"metrics={metrics!r} of type {type(metrics)}")
        resolved = [metrics_mod.resolve(m) for m in metrics]
        self._compiled = {"optimizer": optimizer, "loss": loss, "names": [name for name, _ in resolved],
                          "metrics": [core for _, core in resolved]}
        self._trained = False
        if self._core is not None and loss is not None:
            self._compile_core()

    def _compile_core(self):
        c = self._compiled
        self._core.compile(c["optimizer"], c["loss"], list(c["metrics"]))
        if len(self._core.metrics) != len(c["metrics"]):
            self._core.loss = self._core.optimizer = None
            raise NotImplementedError(f"compile: metrics={c['names']}: this fastconv's core model computes one "
                                      "metric per model")

    def _require_compiled(self, what):
        if self._compiled is None:
            raise ValueError(f"You must call `compile()` before using the model (before {what}).")
        if self._compiled["loss"] is None:
            raise ValueError(f"compile() was called without a loss: fastconv.keras needs a loss for {what}")

    @property
    def optimizer(self):
        return None if self._compiled is None else self._compiled["optimizer"]

    @property
    def loss(self):
        return None if self._compiled is None else self._compiled["loss"]

    @property
    def metrics_names(self):
        return [] if self._compiled is None else ["loss"] + self._compiled["names"]

    @property
    def compiled(self):
        return self._compiled is not None

    # ------------------------------------------------------------------------------------ the boundary
    def _core_x(self, x):
        """``x`` in the core's layout and dtype: one contiguous copy (a channels-last image is transposed)."""
        if x is None:
            raise ValueError("x must be given (fastconv.keras takes NumPy arrays)")
        if isinstance(x, dict) or (isinstance(x, (list, tuple)) and len(x) > 1
                                   and all(isinstance(a, np.ndarray) for a in x)
                                   and len({a.shape for a in x}) > 1):
            raise NotImplementedError("several model inputs (a dict or a list of arrays) are not supported by a "
                                      "Sequential model")
        if not isinstance(x, (np.ndarray, list, tuple)) and not hasattr(x, "__array__"):
            raise TypeError(f"fastconv.keras takes NumPy arrays as x (no datasets or generators), got "
                            f"{type(x).__name__}")
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        if self._core is None:
            if x.ndim < 2:
                raise ValueError(f"x must have a batch dimension, got shape {x.shape}")
            self._build_core(x.shape[1:])
        expected = self._in_spec.keras_shape
        if x.shape[1:] != expected:
            first = self._layers[0].name
            if x.ndim == len(expected) + 1 and x.shape[1:-1] == expected[:-1]:
                raise ValueError(f'Input 0 of layer "{first}" is incompatible with the layer: expected axis -1 of '
                                 f"input shape to have value {expected[-1]}, but received input with shape {x.shape}")
            raise ValueError(f'Input 0 of layer "{first}" is incompatible with the layer: expected shape='
                             f"{self._in_spec.batch()}, found shape={x.shape}")
        if self._in_spec.channels_last:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=self._core.dtype)

    def _core_y(self, y, n):
        """Targets in the core's order where the model's output is an image or a flattened image."""
        if y is None:
            raise ValueError("y must be given: fastconv.keras trains on (x, y) arrays")
        y = np.asarray(y)
        out = self._out_spec
        if len(y) != n:
            raise ValueError(f"Data cardinality is ambiguous: x sizes: {n}, y sizes: {len(y)}. Make sure all arrays "
                             "contain the same number of samples.")
        if out.channels_last and y.shape[1:] == out.keras_shape:
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        if out.perm is not None:
            if self._compiled["loss"].name == "sparse_categorical_crossentropy":
                raise NotImplementedError("a sparse categorical loss on a model ending in Flatten of an image is not "
                                          "supported in channels_last; end the model with a Dense layer")
            if y.shape[1:] == out.keras_shape:
                t = np.empty_like(y)
                t[:, out.perm] = y
                return t
        return y

    def _keras_out(self, out):
        """The core's output in Keras's layout."""
        spec = self._out_spec
        if spec.channels_last:
            return np.ascontiguousarray(out.transpose(0, 2, 3, 1))
        if spec.perm is not None:
            return out[:, spec.perm]
        return out

    def _results(self, logs, return_dict):
        """Keras's return forms: a dict, a scalar loss (no metrics), or ``[loss, *metrics]``."""
        names = self.metrics_names
        core_names = ["loss"] + [getattr(m, "name", m) for m in self._core.metrics]
        values = {}
        for name, core_name in zip(names, core_names):
            values[name] = float(logs[name] if name in logs else logs[core_name])
        if return_dict:
            return values
        return values["loss"] if len(names) == 1 else [values[k] for k in names]

    def _core_callbacks(self, callbacks):
        out = []
        for cb in callbacks or []:
            if not isinstance(cb, _core_callbacks.Callback):
                raise TypeError(f"callbacks must be keras.callbacks.Callback instances, got {type(cb).__name__}")
            out.append(cb if type(cb).__module__.startswith("fastconv.nn") else _FaceBound(self, cb).proxy)
        return out

    # ------------------------------------------------------------------------------------------- train
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Keras's ``fit`` on NumPy arrays; returns the History (``history.history["loss"]``, ...).

        ``validation_split`` takes the *last* fraction of the samples (before any shuffling) as validation
        data, as Keras does; ``validation_data`` overrides it.
        """
        self._require_compiled("fit")
        _not_none("fit", steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                  validation_batch_size=validation_batch_size)
        if validation_freq != 1:
            raise NotImplementedError(f"fit: validation_freq={validation_freq!r} is not supported (validation runs "
                                      "after every epoch)")
        if shuffle not in (True, False):
            raise NotImplementedError(f"fit: shuffle={shuffle!r} is not supported (True or False)")
        batch_size, verbose = _batch_size(batch_size), _keras_verbose(verbose)
        xc = self._core_x(x)
        t = self._core_y(y, len(xc))
        sw = None if sample_weight is None else np.asarray(sample_weight)
        if validation_data is not None:
            validation = self._validation(validation_data)
        elif validation_split:
            if isinstance(validation_split, bool) or not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            split_at = int(math.floor(len(xc) * (1.0 - validation_split)))
            if split_at == 0 or split_at == len(xc):
                raise ValueError(f"Training data contains {len(xc)} samples, which is not sufficient to split it into "
                                 f"a validation and training set as specified by `validation_split="
                                 f"{validation_split}`. Either provide more data, or a different value for the "
                                 "`validation_split` argument.")
            validation = (xc[split_at:], t[split_at:]) + (() if sw is None else (sw[split_at:],))
            xc, t = xc[:split_at], t[:split_at]
            sw = None if sw is None else sw[:split_at]
        else:
            validation = None
        history = self._core.fit(xc, t, batch_size=batch_size, epochs=epochs, verbose=verbose,
                                 callbacks=self._core_callbacks(callbacks), validation_data=validation,
                                 shuffle=bool(shuffle), initial_epoch=initial_epoch, class_weight=class_weight,
                                 sample_weight=sw)
        self._trained = True
        history.model = self
        self.history = history
        return history

    def _validation(self, data):
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight)")
        xv = self._core_x(data[0])
        out = (xv, self._core_y(data[1], len(xv)))
        return out + ((np.asarray(data[2]),) if len(data) == 3 and data[2] is not None else ())

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """The loss (a scalar when compiled without metrics) or ``[loss, *metrics]``; a dict with
        ``return_dict=True``."""
        self._require_compiled("evaluate")
        _not_none("evaluate", steps=steps, callbacks=callbacks)
        xc = self._core_x(x)
        t = self._core_y(y, len(xc))
        logs = self._core.evaluate(xc, t, batch_size=_batch_size(batch_size), verbose=_keras_verbose(verbose),
                                   sample_weight=_weights(sample_weight))
        return self._results(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs for ``x`` (inference mode), in Keras's layout."""
        _not_none("predict", steps=steps, callbacks=callbacks)
        _keras_verbose(verbose)
        xc = self._core_x(x)
        return self._keras_out(self._core.predict(xc, _batch_size(batch_size)))

    def __call__(self, x, training=False):
        if training:
            raise NotImplementedError("calling a model with training=True is not supported; use fit or "
                                      "train_on_batch")
        return self.predict(x, batch_size=max(1, len(x)))

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(1, len(x)))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on (x, y); the batch's loss (and metrics) in Keras's return form."""
        self._require_compiled("train_on_batch")
        xc = self._core_x(x)
        t = self._core_y(y, len(xc))
        logs = self._core.train_on_batch(xc, t, sample_weight=_weights(sample_weight), class_weight=class_weight)
        self._trained = True
        return self._results(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) of (x, y) in inference mode, in Keras's return form."""
        self._require_compiled("test_on_batch")
        xc = self._core_x(x)
        t = self._core_y(y, len(xc))
        logs = self._core.test_on_batch(xc, t, sample_weight=_weights(sample_weight))
        return self._results(logs, return_dict)

    # ------------------------------------------------------------------------------------------ summary
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Print the layers, output shapes and parameter counts in Keras 3's table format."""
        if show_trainable or layer_range is not None:
            raise NotImplementedError("summary: show_trainable and layer_range are not supported")
        text = _summary_text(self, line_length, positions)
        (print if print_fn is None else print_fn)(text)

    # --------------------------------------------------------------------------------------- save/load
    def _face_config(self):
        return {"format": _FORMAT, "name": self.name, "input_shape": list(self._in_spec.keras_shape),
                "dtype": self._core.dtype.name, "trained": self._trained,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self._layers],
                "metrics": [] if self._compiled is None else list(self._compiled["names"])}

    def get_config(self):
        self._require_built("get_config")
        return self._face_config()

    def save(self, filepath, overwrite=True, **kwargs):
        """Save the whole model (config, weights, optimizer state, RNG states) to ``filepath``.

        The file is fastconv's model file (an ``.npz`` written by :func:`fastconv.nn.saving.save_model`), not
        Keras's ``.keras`` archive, whatever its name; :func:`load_model` reads it back as a face model.
        """
        if kwargs:
            raise NotImplementedError(f"save: arguments {sorted(kwargs)} are not supported by fastconv.keras")
        self._require_built("save")
        path = os.fspath(filepath)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path!r} exists and overwrite=False")
        _core_saving.save_model(self._core, path)

    def save_weights(self, filepath, overwrite=True):
        """Save the model (see :meth:`save`); :meth:`load_weights` copies the weights back from it."""
        self.save(filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        """Copy the weights of the model saved at ``filepath`` into this model (same layers and shapes)."""
        self.set_weights(load_model(filepath, compile=False).get_weights())

    def __repr__(self):
        return f"<Sequential name={self.name}, built={self.built}>"


class _FaceBound:
    """A user's callback seen by the core loop: its hooks run as they are, with ``self.model`` the face."""

    def __init__(self, face, callback):
        base = _core_callbacks.Callback
        hooks = [name for name in dir(base) if name.startswith("on_")
                 and getattr(type(callback), name, None) is not getattr(base, name)]
        namespace = {name: _forward(name) for name in hooks}
        namespace["set_model"] = lambda self, model: self._inner.set_model(face)
        if hasattr(base, "set_params"):
            namespace["set_params"] = lambda self, params: self._inner.set_params(params)
        self.proxy = type(type(callback).__name__, (base,), namespace)()
        self.proxy._inner = callback


def _forward(name):
    def hook(self, *args, **kwargs):
        return getattr(self._inner, name)(*args, **kwargs)
    hook.__name__ = name
    return hook


# -------------------------------------------------------------------------------------------- summary
def _readable_size(size):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _ratio_reduce(total, ratios, maximums, values):
    """rich's ``ratio_reduce``: how Keras's rich table shrinks its columns to the line length."""
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    total_ratio, remaining, result = sum(ratios), total, []
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            distributed = min(maximum, round(ratio * remaining / total_ratio))
            result.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            result.append(value)
    return result


def _wrap(text, width):
    """rich's cell wrapping: words greedily onto lines of ``width``; a longer word ends in an ellipsis."""
    lines = []
    for word in text.split(" "):
        if len(word) > width:
            word = word[:width - 1] + "…"
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _summary_text(model, line_length, positions):
    """Keras 3's ``model.summary()`` (a rich table with heavy head and lines between rows), as plain text."""
    line_length = line_length or min(88, shutil.get_terminal_size().columns - 4)
    positions = positions or [0.45, 0.80, 1.0]
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    cells = [w + 2 for w in widths]   # rich pads each cell by one space either side
    if sum(cells) > line_length - 4:
        cells = _ratio_reduce(sum(cells) - (line_length - 4), [1] * 3, cells, cells)
    inner = [c - 2 for c in cells]
    rows = []
    for layer in model.layers:
        shape = "?" if not layer.built else "(" + ", ".join(str(s) for s in layer.output_shape) + ")"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        rows.append((f"{layer.name} ({type(layer).__name__})", shape, params))

    def line(left, fill, mid, right):
        return left + mid.join(fill * c for c in cells) + right

    def row(sep, fields):
        cells_text = [_wrap(f, w) for f, w in zip(fields, inner)]
        height = max(len(c) for c in cells_text)
        lines = []
        for k in range(height):
            parts = [(c[k] if k < len(c) else "") for c in cells_text]
            parts = [p.rjust(w) if i == 2 else p.ljust(w) for i, (p, w) in enumerate(zip(parts, inner))]
            lines.append(sep + sep.join(" " + p + " " for p in parts) + sep)
        return "\n".join(lines)

    out = [f'Model: "{model.name}"', line("┏", "━", "┳", "┓"), row("┃", ("Layer (type)", "Output Shape", "Param #")),
           line("┡", "━", "╇", "┩")]
    for i, fields in enumerate(rows):
        if i:
            out.append(line("├", "─", "┼", "┤"))
        out.append(row("│", fields))
    out.append(line("└", "─", "┴", "┘"))
    itemsize = np.dtype(model.dtype).itemsize
    trainable = sum(layer._trainable_count() for layer in model.layers)
    total_weights = sum(layer.count_params() for layer in model.layers)
    non_trainable = total_weights - trainable
    opt_count = opt_bytes = 0
    if model.built and model._trained and model.optimizer is not None:
        arrays = [v for v in model.optimizer.state().values() if isinstance(v, np.ndarray)]
        opt_count = sum(a.size for a in arrays) + 2              # + Keras's iterations and learning_rate variables
        opt_bytes = sum(a.nbytes for a in arrays) + 8 + 4
    total = trainable + non_trainable + opt_count
    out.append(f" Total params: {total:,} ({_readable_size(total_weights * itemsize + opt_bytes)})")
    out.append(f" Trainable params: {trainable:,} ({_readable_size(trainable * itemsize)})")
    out.append(f" Non-trainable params: {non_trainable:,} ({_readable_size(non_trainable * itemsize)})")
    if opt_count:
        out.append(f" Optimizer params: {opt_count:,} ({_readable_size(opt_bytes)})")
    console = shutil.get_terminal_size().columns   # rich crops what is wider than its console
    return "\n".join(line[:console] for text in out for line in text.split("\n"))


# -------------------------------------------------------------------------------------- functional API
class Model:
    """Keras's functional and subclassing ``Model`` APIs are not supported by fastconv.keras."""

    def __new__(cls, *args, **kwargs):
        raise NotImplementedError("keras.Model (the functional and subclassing APIs) is not supported by "
                                  "fastconv.keras: build the network as a keras.Sequential")


def clone_model(model, input_tensors=None, clone_function=None, **kwargs):
    """A new, freshly initialised Sequential with the same layers' configs (Keras's ``clone_model``)."""
    if input_tensors is not None or clone_function is not None or kwargs:
        raise NotImplementedError("clone_model: only clone_model(model) is supported")
    config = model.get_config()
    clone = Sequential(name=None)
    for entry in config["layers"]:
        cfg = dict(entry["config"])
        cfg.pop("name", None)
        clone.add(layers_mod.deserialize({"class_name": entry["class_name"], "config": cfg}), rebuild=False)
    clone._build_core(tuple(config["input_shape"]))
    return clone


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A face model saved by ``model.save`` (or a core ``ModelCheckpoint`` of a face model), restored bit for
    bit: weights, optimizer state, RNG states; ``compile=False`` leaves it uncompiled."""
    if custom_objects:
        raise NotImplementedError("load_model: custom_objects are not supported by fastconv.keras")
    path = os.fspath(filepath)
    core = _core_saving.load_model(path)   # validates the whole file
    with np.load(path, allow_pickle=False) as archive:
        config = json.loads(str(archive["config"][()]))
    face = config.get("keras")
    if not isinstance(face, dict) or face.get("format") != _FORMAT:
        raise ValueError(f"{path!r} holds a model saved by fastconv's core API, not by fastconv.keras: load it with "
                         "fastconv.load_model")
    model = Sequential(name=face["name"])
    for entry in face["layers"]:
        model.add(layers_mod.deserialize(entry), rebuild=False)
    model._build_core(tuple(face["input_shape"]), seed=core.seed)
    new = model._core
    new.params[...] = core.params
    if getattr(core, "state", None) is not None and getattr(new, "state", None) is not None:
        new.state[...] = core.state
    new.rng = core.rng
    for mine, theirs in zip(new.layers, core.layers):
        if isinstance(getattr(theirs, "rng", None), np.random.Generator):
            mine.rng = theirs.rng
    if compile and core.optimizer is not None:
        state = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in core.optimizer.state().items()}
        model._compiled = {"optimizer": core.optimizer, "loss": core.loss, "names": list(face["metrics"]),
                           "metrics": list(core.metrics)}
        model._compile_core()
        core.optimizer.set_state(state)
        model._trained = bool(face.get("trained"))
    return model
