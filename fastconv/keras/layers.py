"""Keras 3 layers on fastconv's core layers: Keras names, arguments, defaults and array layouts.

A face layer holds its Keras arguments; when its model is built it creates the core layer(s) that compute
it (NCHW, PyTorch weight layout) and converts at the boundary only:

- **Activations.**  A channels-last model's images enter the core transposed to (N, C, H, W), once per
  fit, evaluate or predict call, by the model; every layer between runs on the core's layout.
- **Weights.**  ``get_weights``/``set_weights`` speak Keras's layouts: conv kernel ``(kh, kw, in, out)``,
  dense kernel ``(in, out)``, BatchNormalization ``[gamma, beta, moving_mean, moving_variance]``.
- **Flatten.**  Keras flattens a channels-last image in (H, W, C) order, the core in (C, H, W) order.  The
  face does not reorder at run time: it records the permutation and applies it to the input axis of the
  next Dense kernel (and to per-feature BatchNormalization vectors) inside ``get_weights``/``set_weights``,
  so weights copied from Keras give Keras's predictions at no run-time cost.  A model whose output is such
  a permuted vector, or an image, is converted back to Keras's order by the model's ``predict``.

Keras arguments or values that fastconv lacks (regularizers, constraints, groups, ``keepdims=True``, ...)
raise NotImplementedError naming them.
"""
import math
import numbers

import numpy as np

from ..nn import layers as _core
from . import activations as _activations
from . import backend as _backend
from . import initializers as _initializers
from ._core import check_defaults, core_class, unsupported

__all__ = ["Layer", "InputLayer", "Input", "Conv2D", "Dense", "Flatten", "Reshape", "Dropout", "MaxPooling2D",
           "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
           "GlobalAvgPool2D", "GlobalMaxPool2D", "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU",
           "Softmax", "deserialize"]

_KERAS_ONLY = {"kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
               "kernel_constraint": None, "bias_constraint": None, "lora_rank": None}


# ------------------------------------------------------------------------------------------- tensors
class _Spec:
    """A tensor between layers: its Keras per-sample shape, the core's shape of it, and, for a flat vector,
    ``perm`` with ``keras_vector[i] == core_vector[perm[i]]`` (None when the orders agree).  A rank-3 tensor
    of a channels-last model is (H, W, C) in Keras and (C, H, W) in the core."""

    def __init__(self, keras_shape, channels_last, perm=None):
        self.keras_shape = tuple(int(s) for s in keras_shape)
        self.channels_last = channels_last and len(self.keras_shape) == 3
        self.perm = perm
        s = self.keras_shape
        self.core_shape = (s[2], s[0], s[1]) if self.channels_last else s

    def keras_order(self):
        """Core flat indices arranged in the Keras tensor's shape."""
        if self.perm is not None:
            return self.perm.reshape(self.keras_shape)
        index = np.arange(math.prod(self.core_shape)).reshape(self.core_shape)
        return index.transpose(1, 2, 0) if self.channels_last else index

    @staticmethod
    def flat(order):
        """A rank-1 spec whose Keras order is ``order`` (core flat indices)."""
        order = order.ravel()
        same = np.array_equal(order, np.arange(order.size))
        return _Spec((order.size,), False, None if same else order)

    def batch(self):
        return (None,) + self.keras_shape


# --------------------------------------------------------------------------------------------- base
def _shape_arg(owner, value, name):
    """A per-sample shape argument (``input_shape``/``shape``): a tuple of positive ints, no batch size."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be a tuple of ints, got {value!r}") from None
    if any(s is None for s in shape):
        raise ValueError(f"{owner}: {name}={shape} contains None. {name} is the shape of one sample, without "
                         f"the batch dimension (and fastconv needs every size known): "
                         f"pass {name}={tuple(s for s in shape if s is not None)}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{owner}: {name} must hold positive ints, got {shape}")
    return tuple(int(s) for s in shape)


class Layer:
    """Base of the face's layers: Keras's common arguments (``name``, ``dtype``, ``input_shape``,
    ``input_dim``, ``trainable``) and the Keras weight API."""

    def __init__(self, name=None, dtype=None, trainable=True, input_shape=None, input_dim=None, batch_size=None,
                 autocast=True, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {cls}: {kwargs}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{cls}: name must be a string, got {name!r}")
        self.name = name or _backend.unique_name(_backend.to_snake_case(self._keras_class()))
        if dtype is not None and str(np.dtype(dtype)) not in ("float32", "float64"):
            raise unsupported(cls, "dtype", dtype, "fastconv computes in float32 and float64")
        self.dtype = None if dtype is None else str(np.dtype(dtype))
        if trainable is not True:
            raise unsupported(cls, "trainable", trainable, "every fastconv layer trains")
        if input_dim is not None:
            input_shape = (input_dim,)
        self._input_shape_arg = None if input_shape is None else _shape_arg(f'{cls} "{self.name}"', input_shape,
                                                                            "input_dim" if input_dim else
                                                                            "input_shape")
        self.built = False
        self._in = self._out = None
        self._core = []

    @classmethod
    def _keras_class(cls):
        return cls.__name__

    @property
    def trainable(self):
        return True

    @trainable.setter
    def trainable(self, value):
        if value is not True:
            raise unsupported(type(self).__name__, "trainable", value, "freezing layers is not supported")

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(f"calling layer {self.name!r} on a tensor (the functional API) is not supported "
                                  "by fastconv.keras: put the layers in a keras.Sequential")

    # ---- building (by the model)
    def _build(self, spec, ctx):
        """Create this layer's core layers for input ``spec``; returns the output spec."""
        raise NotImplementedError(f"layer {self.name!r} ({type(self).__name__}): custom layers (subclasses of "
                                  "keras.layers.Layer) are not supported by fastconv.keras")

    def _fail(self, spec, problem):
        return ValueError(f'Exception encountered when calling {type(self).__name__} "{self.name}" on an input of '
                          f"shape {spec.batch()}: {problem}")

    def _core_build(self, layer, spec):
        """``layer.build`` on the core shape, its errors reworded to name this layer; returns the core output."""
        try:
            return layer.build(spec.core_shape)
        except ValueError as exc:
            raise self._fail(spec, str(exc)) from exc

    def _after_core_build(self, core_model):
        """Hook run once the core model holds the parameters (seeded initializers, Dropout seeds)."""

    @property
    def input_shape(self):
        return None if self._in is None else self._in.batch()

    @property
    def output_shape(self):
        return None if self._out is None else self._out.batch()

    def compute_output_shape(self, input_shape):
        if self._in is not None and tuple(input_shape) == self._in.batch():
            return self._out.batch()
        raise NotImplementedError("compute_output_shape works on a built layer's own input shape only")

    # ---- weights in Keras layouts
    def _weights(self):
        """[(keras_shape, read() -> Keras array, write(keras array))] for each Keras weight, in Keras order."""
        return []

    def _weight_count(self):
        return len(self._weights()) if self.built else 0

    def get_weights(self):
        """The layer's weights as NumPy arrays in Keras's layouts (copies); [] before the model is built."""
        return [np.array(read()) for _, read, _ in self._weights()] if self.built else []

    def set_weights(self, weights):
        """Set the weights from arrays in Keras's layouts (the form ``get_weights`` and Keras return)."""
        if not self.built:
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}', which is not built yet: "
                             "build the model first (give it an Input, or call fit, predict or build)")
        table = self._weights()
        weights = list(weights)
        if len(weights) != len(table):
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of "
                             f"length {len(weights)}, but the layer was expecting {len(table)} weights.")
        arrays = []
        for (shape, _, _), w in zip(table, weights):
            w = np.asarray(w)
            if w.shape != tuple(shape):
                raise ValueError(f"Layer {self.name} weight shape {tuple(shape)} is not compatible with provided "
                                 f"weight shape {w.shape}.")
            if w.dtype.kind not in "biuf":
                raise TypeError(f"Layer {self.name}: weights must be numeric, got dtype {w.dtype}")
            arrays.append(w)
        for (_, _, write), w in zip(table, arrays):
            write(w)

    @property
    def weights(self):
        """The weights as arrays in Keras's layouts (copies; fastconv has no Variable objects)."""
        return self.get_weights()

    def _trainable_count(self):
        return sum(math.prod(shape) for shape in self._trainable_shapes())

    def _trainable_shapes(self):
        return [shape for shape, _, _ in self._weights()] if self.built else []

    def count_params(self):
        """The number of weights, trainable or not, as Keras counts them."""
        return sum(math.prod(shape) for shape, _, _ in self._weights()) if self.built else 0

    # ---- config
    def get_config(self):
        config = {"name": self.name}
        if self.dtype is not None:
            config["dtype"] = self.dtype
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class _ElementwiseMixin:
    def _build_elementwise(self, spec, core_layer):
        self._core = [core_layer]
        self._core_build(core_layer, spec)
        return spec


# -------------------------------------------------------------------------------------------- input
class InputLayer(Layer):
    """The model's input: ``shape`` is one sample's shape, e.g. ``(28, 28, 1)`` (no batch dimension)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, input_tensor=None,
                 optional=False, name=None, **kwargs):
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if batch_shape is not None:
            if shape is not None:
                raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time.")
            shape = tuple(batch_shape)[1:]
        super().__init__(name=name, dtype=dtype, **kwargs)
        check_defaults("InputLayer", {"sparse": sparse, "input_tensor": input_tensor, "optional": optional},
                       {"sparse": None, "input_tensor": None, "optional": False})
        if shape is None:
            raise ValueError("You must pass a `shape` argument.")
        self.shape = _shape_arg("Input", shape, "shape")
        self.batch_size = batch_size

    @property
    def batch_shape(self):
        return (self.batch_size,) + self.shape

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False):
    """The input of a ``keras.Sequential``: ``keras.Input(shape=(28, 28, 1))`` (one sample's shape)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                      input_tensor=tensor, optional=optional, name=name)


# ------------------------------------------------------------------------------------- conv, dense
def _tuple2(owner, value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value), int(value))
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be an int or a tuple of 2 ints, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{owner}: The `{name}` argument must be a tuple of 2 integers. Received: {value!r}")
    return pair


def _data_format(owner, value):
    if value is None:
        return None
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"{owner}: The `data_format` argument must be one of {{'channels_first', "
                         f"'channels_last'}}. Received: data_format={value!r}")
    return value


def _batch_hint(layer, spec):
    """A hint for a first layer whose ``input_shape`` looks like it includes the batch dimension."""
    if layer._input_shape_arg is None:
        return ""
    return (f" (input_shape={layer._input_shape_arg} is the shape of ONE sample, without the batch dimension: "
            f"did you mean input_shape={layer._input_shape_arg[1:]}?)")


def _check_image(layer, spec):
    if len(spec.keras_shape) != 3:
        raise ValueError(f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected ndim=4, found '
                         f"ndim={len(spec.keras_shape) + 1}. Full shape received: {spec.batch()}"
                         + (_batch_hint(layer, spec) if len(spec.keras_shape) == 4 else ""))


class _WeightedMixin:
    """Kernel, bias, activation and initializers of Conv2D and Dense."""

    def _init_weighted(self, activation, use_bias, kernel_initializer, bias_initializer, extra):
        owner = type(self).__name__
        check_defaults(owner, extra, _KERAS_ONLY)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"{owner}: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self._activation = _activations.to_core(activation)
        self.activation = _activations.get(activation) if isinstance(activation, str) or activation is None \
            else activation
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)

    def _core_init(self, init):
        """The core layer's initializer: a Keras-style function or a seeded one is drawn after the build."""
        if isinstance(init, _initializers.Initializer) and getattr(init, "seed", None) is None:
            return init
        return "zeros"

    def _draw_special(self, core_model):
        """Initializers the core cannot draw itself: seeded ones, and functions of Keras's shape."""
        table = self._weights()
        for (shape, _, write), init in zip(table, [self.kernel_initializer, self.bias_initializer]):
            if isinstance(init, _initializers.Initializer) and getattr(init, "seed", None) is None:
                continue
            if isinstance(init, _initializers.Initializer):
                core_shape = self._core_kernel_shape() if init is self.kernel_initializer else (shape[-1],)
                draw = init(core_shape, dtype=core_model.dtype, rng=init.seed)
                self._core[0].params["kernel" if init is self.kernel_initializer else "bias"][...] = draw
            else:
                write(np.asarray(init(tuple(shape), dtype=core_model.dtype.name)))

    def _weighted_config(self):
        return {"activation": _activations.serialize(self._activation), "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer)}

    def _after_core_build(self, core_model):
        self._draw_special(core_model)


class Conv2D(_WeightedMixin, Layer):
    """2-D convolution, Keras's arguments: kernel ``(kh, kw, in, out)`` in ``get_weights``."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'Conv2D "{self.name}"'
        if isinstance(filters, bool) or not isinstance(filters, numbers.Integral) or filters < 1:
            raise ValueError(f"{owner}: Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters!r}.")
        self.filters = int(filters)
        self.kernel_size = _tuple2(owner, kernel_size, "kernel_size")
        self.strides = _tuple2(owner, strides, "strides")
        self.dilation_rate = _tuple2(owner, dilation_rate, "dilation_rate")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same", "causal"):
            raise ValueError(f"{owner}: The `padding` argument must be one of 'valid', 'same'. Received: {padding!r}")
        self.padding = padding.lower()
        if self.padding == "causal":
            raise unsupported("Conv2D", "padding", padding, "'valid' or 'same'")
        self.data_format = _data_format(owner, data_format)
        if groups != 1:
            raise unsupported("Conv2D", "groups", groups, "grouped convolutions are not supported")
        if self.dilation_rate != (1, 1) and self.strides != (1, 1):
            raise ValueError(f"{owner}: `strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                             f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}")
        extra = dict(kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                     bias_constraint=bias_constraint, lora_rank=lora_rank)
        self._init_weighted(activation, use_bias, kernel_initializer, bias_initializer, extra)

    def _build(self, spec, ctx):
        _check_image(self, spec)
        layer = _core.Conv2D(self.filters, self.kernel_size, strides=self.strides, padding=self.padding,
                             activation=self._activation, kernel_initializer=self._core_init(self.kernel_initializer),
                             bias_initializer=self._core_init(self.bias_initializer), use_bias=self.use_bias,
                             dilation_rate=self.dilation_rate, name=self.name)
        self._core = [layer]
        C, H, W = self._core_build(layer, spec)
        return _Spec((H, W, C) if spec.channels_last else (C, H, W), spec.channels_last)

    def _core_kernel_shape(self):
        return (self.filters, self._in.core_shape[0]) + self.kernel_size

    def _weights(self):
        core = self._core[0]
        kh, kw = self.kernel_size
        cin = self._in.core_shape[0]

        def write_kernel(w):
            core.params["kernel"][...] = np.transpose(w, (3, 2, 0, 1))

        table = [((kh, kw, cin, self.filters), lambda: core.params["kernel"].transpose(2, 3, 1, 0), write_kernel)]
        if self.use_bias:
            table.append(((self.filters,), lambda: core.params["bias"], _writer(core.params, "bias")))
        return table

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), **self._weighted_config()}


def _writer(store, key, perm=None):
    def write(w):
        if perm is None:
            store[key][...] = w
        else:
            store[key][perm] = w
    return write


def _reader(store, key, perm=None):
    return (lambda: store[key]) if perm is None else (lambda: store[key][perm])


class Dense(_WeightedMixin, Layer):
    """Fully connected; kernel ``(in, out)`` in ``get_weights``.  On a flattened channels-last image the
    kernel's input axis is read and written in Keras's (H, W, C) order."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f'Dense "{self.name}": Received an invalid value for `units`, expected a positive '
                             f"integer. Received: units={units!r}")
        self.units = int(units)
        extra = dict(kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                     bias_constraint=bias_constraint, lora_rank=lora_rank)
        self._init_weighted(activation, use_bias, kernel_initializer, bias_initializer, extra)

    def _build(self, spec, ctx):
        if len(spec.keras_shape) != 1:
            raise NotImplementedError(
                f'Dense "{self.name}" got an input of shape {spec.batch()}: Keras applies Dense to the last axis of '
                f"an input of rank > 2, but fastconv's Dense takes (batch, features) only; add a Flatten() layer "
                f"before it (or give the model inputs of shape (batch, features))" + _batch_hint(self, spec))
        layer = _core.Dense(self.units, activation=self._activation,
                            kernel_initializer=self._core_init(self.kernel_initializer),
                            bias_initializer=self._core_init(self.bias_initializer), use_bias=self.use_bias,
                            name=self.name)
        self._core = [layer]
        self._core_build(layer, spec)
        return _Spec((self.units,), False)

    def _core_kernel_shape(self):
        return (self.units, self._in.keras_shape[0])

    def _weights(self):
        core, perm = self._core[0], self._in.perm
        kernel = core.params["kernel"]

        def read_kernel():
            return (kernel if perm is None else kernel[:, perm]).T

        def write_kernel(w):
            if perm is None:
                kernel[...] = np.transpose(w)
            else:
                kernel[:, perm] = np.transpose(w)

        table = [((self._in.keras_shape[0], self.units), read_kernel, write_kernel)]
        if self.use_bias:
            table.append(((self.units,), lambda: core.params["bias"], _writer(core.params, "bias")))
        return table

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._weighted_config()}


# ------------------------------------------------------------------------------------ reshaping
class Flatten(Layer):
    """Flattens each sample in Keras's order: (H, W, C) for a channels-last image (see the module docstring:
    the order lives in the next Dense kernel's weights, not in a run-time transpose)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(f'Flatten "{self.name}"', data_format)

    def _build(self, spec, ctx):
        order = spec.keras_order()
        if (self.data_format or _backend.image_data_format()) == "channels_first" and order.ndim > 1:
            order = np.moveaxis(order, 0, -1)   # Keras moves the channel axis last before flattening
        self._core = [_core.Flatten(name=self.name)]
        self._core_build(self._core[0], spec)
        return _Spec.flat(order)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one -1 allowed), in Keras's element order."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            self.target_shape = tuple(int(s) for s in target_shape)
        except (TypeError, ValueError):
            raise ValueError(f"Reshape: target_shape must be a tuple of ints, got {target_shape!r}") from None
        if self.target_shape.count(-1) > 1 or any(s < 1 and s != -1 for s in self.target_shape):
            raise ValueError(f"Reshape: invalid target_shape {target_shape!r} (positive ints, at most one -1)")

    def _build(self, spec, ctx):
        try:
            order = spec.keras_order().reshape(self.target_shape)
        except ValueError:
            raise self._fail(spec, f"total size of new array must be unchanged, input_shape = {spec.keras_shape}, "
                                   f"output_shape = {self.target_shape}") from None
        if order.ndim == 1:
            out = _Spec.flat(order)
            self._core = [_core.Flatten(name=self.name)]
        else:
            out = _Spec(order.shape, ctx.channels_last)
            if not np.array_equal(order, out.keras_order()):
                raise NotImplementedError(
                    f'Reshape "{self.name}" from {spec.batch()} to {out.batch()}: in a channels-last model this '
                    "reorders the elements between Keras's layout and fastconv's (N, C, H, W), which needs a "
                    "transpose at run time that fastconv's core does not have; use data_format='channels_first', "
                    "or reshape the data before the model")
            self._core = [core_class(_core, "Reshape", "keras.layers.Reshape")(out.core_shape, name=self.name)]
        self._core_build(self._core[0], spec)
        return out

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dropout(_ElementwiseMixin, Layer):
    """Inverted dropout with probability ``rate`` at training; ``seed`` fixes its masks."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if noise_shape is not None:
            raise unsupported("Dropout", "noise_shape", noise_shape, "masks are drawn per element")
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                             f"Received: rate={rate!r}")
        if rate == 1:
            raise unsupported("Dropout", "rate", rate, "rates in [0, 1)")
        self.rate, self.seed = float(rate), seed

    def _build(self, spec, ctx):
        return self._build_elementwise(spec, _core.Dropout(self.rate, name=self.name))

    def _after_core_build(self, core_model):
        if self.seed is not None:
            self._core[0].rng = np.random.default_rng(self.seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# -------------------------------------------------------------------------------------------- pooling
class _Pooling2D(Layer):
    _core_name = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'{self._keras_class()} "{self.name}"'
        self.pool_size = _tuple2(owner, pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _tuple2(owner, strides, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{owner}: The `padding` argument must be one of 'valid', 'same'. Received: {padding!r}")
        self.padding = padding.lower()
        self.data_format = _data_format(owner, data_format)

    def _build(self, spec, ctx):
        _check_image(self, spec)
        cls = core_class(_core, self._core_name, f"keras.layers.{self._keras_class()}")
        # "valid" as the core's default 0, so the core layer's config stays that of an unpadded pooling
        layer = cls(self.pool_size, self.strides, padding=0 if self.padding == "valid" else "same", name=self.name)
        self._core = [layer]
        C, H, W = self._core_build(layer, spec)
        return _Spec((H, W, C) if spec.channels_last else (C, H, W), spec.channels_last)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    """Max-pooling (Keras's MaxPooling2D / MaxPool2D)."""
    _core_name = "MaxPool2D"


class AveragePooling2D(_Pooling2D):
    """Average pooling (Keras's AveragePooling2D / AvgPool2D); "same" averages over the window's valid
    entries, as TensorFlow does."""
    _core_name = "AveragePooling2D"


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    _core_name = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(f'{self._keras_class()} "{self.name}"', data_format)
        if keepdims is not False:
            raise unsupported(self._keras_class(), "keepdims", keepdims, "the output is (batch, channels)")

    def _build(self, spec, ctx):
        _check_image(self, spec)
        layer = core_class(_core, self._core_name, f"keras.layers.{self._keras_class()}")(name=self.name)
        self._core = [layer]
        (C,) = self._core_build(layer, spec)
        return _Spec((C,), False)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class GlobalAveragePooling2D(_GlobalPooling2D):
    _core_name = "GlobalAveragePooling2D"


class GlobalMaxPooling2D(_GlobalPooling2D):
    _core_name = "GlobalMaxPooling2D"


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D


# ------------------------------------------------------------------------------------ normalization
class BatchNormalization(Layer):
    """Keras's batch normalization (momentum 0.99, epsilon 1e-3) over the channel axis (or the features of a
    flat input): the core's BatchNormalization with ``convention="keras"``.  Weights in Keras's order:
    ``[gamma, beta, moving_mean, moving_variance]`` (gamma only with ``scale``, beta only with ``center``)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 synchronized=False, **kwargs):
        super().__init__(**kwargs)
        check_defaults("BatchNormalization", dict(
            beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
            moving_mean_initializer=moving_mean_initializer, moving_variance_initializer=moving_variance_initializer,
            beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint, synchronized=synchronized),
            dict(beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False))
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise unsupported("BatchNormalization", "axis", axis, "one axis, the channels or features")
            axis = axis[0]
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def _build(self, spec, ctx):
        rank = len(spec.keras_shape) + 1
        axis = self.axis % rank if -rank <= self.axis < rank else None
        channel = (rank - 1) if (rank == 2 or spec.channels_last) else 1
        if rank not in (2, 4) or axis != channel:
            good = f"axis={channel - rank} or axis={channel}" if rank in (2, 4) else "inputs of rank 2 or 4"
            raise NotImplementedError(f'BatchNormalization "{self.name}": axis={self.axis} on an input of shape '
                                      f"{spec.batch()} is not supported; fastconv normalises the channel (or "
                                      f"feature) axis only: {good}")
        cls = core_class(_core, "BatchNormalization", "keras.layers.BatchNormalization")
        layer = cls(momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
                    convention="keras", name=self.name)
        self._core = [layer]
        self._core_build(layer, spec)
        return spec

    def _weights(self):
        core, perm = self._core[0], self._in.perm
        n = self._in.keras_shape[-1] if len(self._in.keras_shape) == 1 or self._in.channels_last \
            else self._in.keras_shape[0]
        table = []
        for key, store, wanted in (("gamma", core.params, self.scale), ("beta", core.params, self.center),
                                   ("moving_mean", core.state, True), ("moving_variance", core.state, True)):
            if wanted:
                table.append(((n,), _reader(store, key, perm), _writer(store, key, perm)))
        return table

    def _trainable_shapes(self):
        return [shape for shape, _, _ in self._weights()[:int(self.scale) + int(self.center)]] if self.built else []

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


# ---------------------------------------------------------------------------------------- activations
class Activation(_ElementwiseMixin, Layer):
    """An activation as a layer: ``Activation("relu")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._activation = _activations.to_core(activation)
        self.activation = activation

    def _build(self, spec, ctx):
        if _activations.core_name(self._activation) == "softmax" and len(spec.keras_shape) != 1:
            raise NotImplementedError(f'{type(self).__name__} "{self.name}": softmax over the last axis of an input '
                                      f"of shape {spec.batch()} is not supported; fastconv's softmax runs over the "
                                      "features of a (batch, features) input")
        return self._build_elementwise(spec, _core.Activation(self._activation, name=self.name))

    def get_config(self):
        return {**super().get_config(), "activation": _activations.serialize(self._activation)}


class ReLU(Activation):
    """``max(x, 0)``; ``max_value=6`` is relu6.  Other thresholds and slopes are not supported."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        if negative_slope != 0 or threshold != 0:
            raise unsupported("ReLU", "negative_slope" if negative_slope != 0 else "threshold",
                              negative_slope if negative_slope != 0 else threshold, "use LeakyReLU for a slope")
        if max_value is not None and max_value != 6:
            raise unsupported("ReLU", "max_value", max_value, "None or 6 (relu6)")
        self.max_value = max_value
        super().__init__("relu" if max_value is None else "relu6", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "max_value": self.max_value}


class LeakyReLU(Activation):
    """``x if x > 0 else negative_slope * x`` (Keras's default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        self.negative_slope = float(negative_slope)
        core = core_class(_activations._core, "LeakyReLU", "keras.layers.LeakyReLU")
        super().__init__(core(negative_slope=self.negative_slope), **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "negative_slope": self.negative_slope}


class ELU(Activation):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""

    def __init__(self, alpha=1.0, **kwargs):
        self.alpha = float(alpha)
        core = core_class(_activations._core, "ELU", "keras.layers.ELU")
        super().__init__(core(alpha=self.alpha), **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "alpha": self.alpha}


class Softmax(Activation):
    """Softmax over the features (``axis=-1``) of a (batch, features) input."""

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise unsupported("Softmax", "axis", axis, "axis=-1 on a (batch, features) input")
        super().__init__("softmax", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return config


# ------------------------------------------------------------------------------------- registry
LAYERS = {cls.__name__: cls for cls in (InputLayer, Conv2D, Dense, Flatten, Reshape, Dropout, MaxPooling2D,
                                        AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                                        BatchNormalization, Activation, ReLU, LeakyReLU, ELU, Softmax)}


def deserialize(config):
    """A layer from ``{"class_name": ..., "config": {...}}`` (what the model's config holds)."""
    cls = LAYERS.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown layer class {config.get('class_name')!r}; fastconv.keras has {sorted(LAYERS)}")
    cfg = dict(config["config"])
    for key in ("kernel_initializer", "bias_initializer"):
        if key in cfg:
            cfg[key] = _initializers.deserialize(cfg[key])
    if "activation" in cfg:
        cfg["activation"] = _activations.deserialize(cfg["activation"])
    return cls(**cfg)


_KERAS_LAYERS_MISSING = (
    "Conv1D", "Conv3D", "Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose", "SeparableConv2D",
    "SeparableConv1D", "DepthwiseConv2D", "MaxPooling1D", "MaxPooling3D", "AveragePooling1D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "LayerNormalization", "GroupNormalization",
    "UnitNormalization", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed", "Attention",
    "MultiHeadAttention", "Add", "Concatenate", "Multiply", "Average", "Subtract", "Dot", "Permute", "RepeatVector",
    "ZeroPadding2D", "Cropping2D", "UpSampling2D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "PReLU", "Lambda", "Rescaling", "Normalization", "Resizing", "RandomFlip", "RandomRotation",
    "RandomZoom", "RandomCrop", "CenterCrop", "Masking", "ActivityRegularization", "Identity")


def __getattr__(name):
    if name in _KERAS_LAYERS_MISSING:
        raise NotImplementedError(f"keras.layers.{name} is not supported by fastconv.keras; its layers are: "
                                  f"{', '.join(sorted(set(__all__) - {'Layer', 'deserialize'}))}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
