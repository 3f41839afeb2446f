"""Keras-style layers on fastconv's kernels (NCHW activations, PyTorch weight layout).

A layer declares its parameters in ``build`` (name, shape, initializer); :class:`fastconv.Sequential` then
places every parameter and gradient of the model in one flat buffer and hands each layer views into it, so
an optimizer step is one fused kernel call.  ``forward(x, training)`` caches what ``backward(dy)`` needs;
``backward`` writes parameter gradients into the gradient views and returns the input gradient.
"""
import numpy as np

from .. import _conv, _relu, ops
from . import initializers

__all__ = ["Layer", "Conv2D", "Dense", "Flatten", "MaxPool2D", "Dropout", "Activation", "get_activation"]

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "linear")


def get_activation(name):
    """Validate an activation name (None means linear)."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid choices: {', '.join(ACTIVATIONS)}")
    return name.lower()


def _sigmoid(x):
    # split by sign so exp never overflows
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# _is_kernel_ready(a, dtype=None): True for a C-contiguous native float32/float64 ndarray (of ``dtype`` if
# given): the compiled kernels can take it as it is.  Layers then call them directly; anything else goes
# through the validating ops.
_is_kernel_ready = _conv.kernel_ready


class _ActivationMixin:
    """Applies ``self.activation`` after the layer's linear part and differentiates through it.

    ``logits_only`` (set by the model for a fused softmax/sigmoid + cross-entropy step) skips the activation
    in both directions.
    """

    logits_only = False

    def _activate(self, z, training):
        act = "linear" if self.logits_only else self.activation
        if act == "linear":
            return z
        if act == "relu":
            if _is_kernel_ready(z):  # our own conv/dense output: skip re-validation
                y = np.empty_like(z)
                self._mask = np.empty(z.shape, np.bool_)
                _relu.relu_forward(z, y, self._mask, ops._num_threads)
                return y
            y, self._mask = ops.relu_forward(z)
            return y
        if act == "sigmoid":
            self._out = _sigmoid(z)
        elif act == "tanh":
            self._out = np.tanh(z)
        else:
            self._out = _softmax(z.reshape(z.shape[0], -1)).reshape(z.shape)
        return self._out

    def _activation_backward(self, dy):
        act = "linear" if self.logits_only else self.activation
        if act == "linear":
            return dy
        if act == "relu":
            if _is_kernel_ready(dy) and dy.shape == self._mask.shape:
                dx = np.empty_like(dy)
                _relu.relu_backward(dy, self._mask, dx, ops._num_threads)
                return dx
            return ops.relu_backward(dy, self._mask)
        y = self._out
        if act == "sigmoid":
            return dy * y * (1 - y)
        if act == "tanh":
            return dy * (1 - y * y)
        flat_y, flat_dy = y.reshape(y.shape[0], -1), dy.reshape(dy.shape[0], -1)
        return (flat_y * (flat_dy - (flat_dy * flat_y).sum(axis=1, keepdims=True))).reshape(dy.shape)


class Layer:
    """Base class. Subclasses set ``param_specs`` in ``build`` and implement forward/backward."""

    trainable = True

    def __init__(self, name=None):
        self.name = name
        self.param_specs = []  # (name, shape, initializer)
        self.params = {}       # name -> view into the model's flat parameter buffer
        self.grads = {}        # name -> view into the model's flat gradient buffer
        self.input_shape = self.output_shape = None

    def build(self, input_shape):
        """Declare parameters for ``input_shape`` (batch dim excluded) and return the output shape."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {"name": self.name}

    def count_params(self):
        return int(sum(np.prod(shape) for _, shape, _ in self.param_specs))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items() if k != 'name')})"


class _WeightedLayer(_ActivationMixin, Layer):
    """A layer with a kernel, an optional bias and an activation (Conv2D, Dense)."""

    def _init_weights(self, activation, kernel_initializer, bias_initializer, use_bias):
        self.activation = get_activation(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = bool(use_bias)
        self.need_dx = True

    def _declare_weights(self, kernel_shape):
        self.param_specs = [("kernel", tuple(kernel_shape), self.kernel_initializer)]
        if self.use_bias:
            self.param_specs.append(("bias", (kernel_shape[0],), self.bias_initializer))

    def _step_ops_with(self, z, logits, forward, backward, nt):
        """A weighted layer's entries in a training program (see Sequential._step_program): ``forward`` is
        the (kernel, args) of its linear part, which writes ``z``; ``backward(gz)`` the (kernel, args) of
        its gradients given dL/dz in ``gz``.  Adds the activation (ReLU or none) around them and returns
        (output, buffer for dL/doutput, forward entries, backward entries), or None for other activations."""
        act = "linear" if logits else self.activation
        if act == "linear":
            gy = np.empty_like(z)
            return z, gy, [forward], [backward(gy)]
        if act != "relu":
            return None
        y, mask, gy, gz = np.empty_like(z), np.empty(z.shape, np.bool_), np.empty_like(z), np.empty_like(z)
        return (y, gy, [forward, (_relu.relu_forward, (z, y, mask, nt))],
                [(_relu.relu_backward, (gy, mask, gz, nt)), backward(gz)])

    def _grad_buffers(self, dtype):
        """Where the kernels write dW and db: the model's gradient views (db to scratch without a bias)."""
        units = self.param_specs[0][1][0]
        return self.grads["kernel"], (self.grads["bias"] if self.use_bias else np.empty(units, dtype))

    def _weights_config(self):
        return {"activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": _init_config(self.kernel_initializer),
                "bias_initializer": _init_config(self.bias_initializer)}


class Conv2D(_WeightedLayer):
    """2-D convolution, weights ``(filters, in_channels, kh, kw)``; padding an int, pair, "valid" or "same"."""

    def __init__(self, filters, kernel_size, strides=1, padding=0, activation=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", use_bias=True, name=None):
        super().__init__(name)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = ops._pair(kernel_size, "kernel_size", 1)
        self.strides = ops._pair(strides, "strides", 1)
        if isinstance(padding, str):
            if padding.lower() not in ("valid", "same"):
                raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if padding.lower() == "same" and self.strides != (1, 1):
                raise ValueError("padding='same' is supported for strides=1 only (as PyTorch)")
            if padding.lower() == "same" and (self.kernel_size[0] % 2 == 0 or self.kernel_size[1] % 2 == 0):
                raise ValueError("padding='same' needs odd kernel sizes (symmetric zero padding)")
            self.padding_arg = padding.lower()
            self.padding = (0, 0) if padding.lower() == "valid" else (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
        else:
            self.padding_arg = padding
            self.padding = ops._pair(padding, "padding", 0)
        self._init_weights(activation, kernel_initializer, bias_initializer, use_bias)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D expects inputs of shape (N, C, H, W), got per-sample shape {tuple(input_shape)}")
        C = input_shape[0]
        self._declare_weights((self.filters, C) + self.kernel_size)
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        _, F, Ho, Wo = ops.conv2d_output_shape((1,) + tuple(input_shape), (self.filters, input_shape[0]) + self.kernel_size,
                                               self.strides, self.padding)
        return (F, Ho, Wo)

    def forward(self, x, training=False):
        w = self.params["kernel"]
        self._x = x
        if _is_kernel_ready(x, w.dtype) and x.ndim == 4 and x.shape[1:] == self.input_shape:
            # shapes were validated at build: call the kernel directly into a fresh output
            z = np.empty((x.shape[0],) + self.output_shape, x.dtype)
            if z.size:
                _conv.conv2d_forward(x, w, self.params.get("bias"), z, self.strides, self.padding, ops._num_threads)
        else:
            z = ops.conv2d_forward(x, w, self.params.get("bias"), stride=self.strides, padding=self.padding)
        return self._activate(z, training)

    def backward(self, dy):
        dz = self._activation_backward(dy)
        x, w = self._x, self.params["kernel"]
        if (_is_kernel_ready(dz, w.dtype) and _is_kernel_ready(x, w.dtype)
                and dz.shape == (x.shape[0],) + self.output_shape and dz.size):
            # gradients go straight into the model's flat gradient buffer
            dx = np.empty(x.shape, x.dtype) if self.need_dx else None
            _conv.conv2d_backward(dz, x, w, dx, *self._grad_buffers(x.dtype), self.strides, self.padding,
                                  ops._num_threads)
            return dx
        dx, dw, db = ops.conv2d_backward(dz, x, w, stride=self.strides, padding=self.padding, need_dx=self.need_dx)
        self.grads["kernel"][...] = dw
        if self.use_bias:
            self.grads["bias"][...] = db
        return dx

    def _step_ops(self, x, gx, logits, nt):
        """Training-program entries (see Sequential._step_program) for input buffer ``x`` and the buffer
        ``gx`` to write dL/dx into (None: not needed)."""
        w, b = self.params["kernel"], self.params.get("bias")
        gw, gb = self._grad_buffers(x.dtype)
        z = np.empty((x.shape[0],) + self.output_shape, x.dtype)
        return self._step_ops_with(
            z, logits, (_conv.conv2d_forward, (x, w, b, z, self.strides, self.padding, nt)),
            lambda gz: (_conv.conv2d_backward, (gz, x, w, gx, gw, gb, self.strides, self.padding, nt)), nt)

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding_arg, **self._weights_config()}


class Dense(_WeightedLayer):
    """Fully connected: ``y = x @ W.T + b`` with ``W`` of shape ``(units, in_features)`` (PyTorch layout)."""

    def __init__(self, units, activation=None, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 use_bias=True, name=None):
        super().__init__(name)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = int(units)
        self._init_weights(activation, kernel_initializer, bias_initializer, use_bias)

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects flat inputs (N, features); got per-sample shape {tuple(input_shape)}: "
                             "add a Flatten() layer first")
        self._declare_weights((self.units, input_shape[0]))
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x, training=False):
        w = self.params["kernel"]
        b = self.params.get("bias")
        if _is_kernel_ready(x, w.dtype) and x.ndim == 2 and x.shape[1] == w.shape[1]:
            # shapes were validated at build: straight to the kernel (at batch 1, compiled loops with no
            # BLAS dispatch: seed 000's 648 -> 10 layer in a training step, 16 -> 7.8 us on a Zen 1)
            z = np.empty((x.shape[0], self.units), x.dtype)
            ops._dense_forward_into(x, w, b, z)
        else:
            z = ops.dense_forward(x, w, b)
        self._x = x
        return self._activate(z, training)

    def backward(self, dy):
        dz = self._activation_backward(dy)
        x, w = self._x, self.params["kernel"]
        if _is_kernel_ready(dz, w.dtype) and _is_kernel_ready(x, w.dtype) and dz.shape == (x.shape[0], self.units):
            dx = np.empty(x.shape, x.dtype) if self.need_dx else None
            ops._dense_backward_into(dz, x, w, dx, *self._grad_buffers(x.dtype))
            return dx
        dx, dw, db = ops.dense_backward(dz, x, w, need_dx=self.need_dx)
        self.grads["kernel"][...] = dw
        if self.use_bias:
            self.grads["bias"][...] = db
        return dx

    def _step_ops(self, x, gx, logits, nt):
        """Training-program entries (see Conv2D._step_ops)."""
        w, b = self.params["kernel"], self.params.get("bias")
        gw, gb = self._grad_buffers(x.dtype)
        z = np.empty((x.shape[0], self.units), x.dtype)
        return self._step_ops_with(z, logits, (ops._dense_forward_into, (x, w, b, z)),
                                   lambda gz: (ops._dense_backward_into, (gz, x, w, gx, gw, gb)), nt)

    def get_config(self):
        return {"name": self.name, "units": self.units, **self._weights_config()}


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), in C order (as ``torch.flatten(x, 1)``)."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._shape)

    def _step_ops(self, x, gx, logits, nt):
        """Training-program entries: views, no work."""
        n = x.shape[0]
        return x.reshape(n, -1), None if gx is None else gx.reshape(n, -1), [], []


class MaxPool2D(Layer):
    def __init__(self, pool_size=2, strides=None, name=None):
        super().__init__(name)
        self.pool_size = ops._pair(pool_size, "pool_size", 1)
        self.strides = self.pool_size if strides is None else ops._pair(strides, "strides", 1)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"MaxPool2D expects (N, C, H, W) inputs, got per-sample shape {tuple(input_shape)}")
        C, H, W = input_shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        if kh > H or kw > W:
            raise ValueError(f"pool size {kh}x{kw} is larger than the input {H}x{W}")
        return (C, (H - kh) // sh + 1, (W - kw) // sw + 1)

    def forward(self, x, training=False):
        self._shape = x.shape
        y, self._idx = ops.maxpool2d_forward(x, size=self.pool_size, stride=self.strides)
        return y

    def backward(self, dy):
        return ops.maxpool2d_backward(dy, self._idx, self._shape)

    def get_config(self):
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides}


class Dropout(Layer):
    """Inverted dropout (seed 002): at training, zero each unit with probability ``rate`` and scale the rest
    by ``1/(1-rate)``; at inference, identity."""

    def __init__(self, rate, name=None):
        super().__init__(name)
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = np.random.default_rng()

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._scale = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self._scale = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self._scale

    def backward(self, dy):
        return dy if self._scale is None else dy * self._scale

    def get_config(self):
        return {"name": self.name, "rate": self.rate}


class Activation(_ActivationMixin, Layer):
    """An activation as a layer: ``Activation("relu")``."""

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = get_activation(activation)

    def forward(self, x, training=False):
        return self._activate(x, training)

    def backward(self, dy):
        return self._activation_backward(dy)

    def get_config(self):
        return {"name": self.name, "activation": self.activation}


def _init_config(init):
    if isinstance(init, initializers.Initializer):
        return {"class": type(init).__name__, "config": init.get_config()}
    raise ValueError("only fastconv.initializers.Initializer instances can be saved; got a plain callable")


def _init_from_config(cfg):
    return getattr(initializers, cfg["class"])(**cfg["config"])


LAYER_CLASSES = {cls.__name__: cls for cls in (Conv2D, Dense, Flatten, MaxPool2D, Dropout, Activation)}


def layer_from_config(class_name, config):
    config = dict(config)
    for key in ("kernel_initializer", "bias_initializer"):
        if key in config:
            config[key] = _init_from_config(config[key])
    return LAYER_CLASSES[class_name](**config)
