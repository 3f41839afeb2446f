"""Keras-style layers on fastconv's kernels (NCHW activations, PyTorch weight layout).

A layer declares its parameters in ``build`` (name, shape, initializer); :class:`fastconv.Sequential` then
places every parameter and gradient of the model in one flat buffer and hands each layer views into it, so
an optimizer step is one fused kernel call.  A layer describes its forward and backward once, in
``plan(x, gx, training, logits)``: given the buffer ``x`` its input arrives in and the buffer ``gx`` its
input gradient goes to (None when nothing before it needs one), it allocates its own buffers and returns
``(y, gy, forward, backward)`` -- its output buffer, the buffer dL/dy arrives in, and the bound kernel
calls that compute them.  The model compiles those into one step per batch size and runs every fit,
evaluate, predict, train_on_batch and compute_gradients through it.
"""
import math
import numbers

import numpy as np

from .. import ops
from . import activations, initializers

__all__ = ["Layer", "Conv2D", "Dense", "Flatten", "MaxPool2D", "Dropout", "Activation", "BatchNormalization",
           "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Reshape", "get_activation",
           "layer_from_config"]

ACTIVATIONS = tuple(activations.ACTIVATIONS)


def get_activation(identifier):
    """Validate an activation -- a name (case-insensitive; None means linear), an
    :class:`fastconv.nn.activations.Activation` instance or a saved activation config -- and return its
    name in lower case (``activations.get`` gives the object); an unknown name lists the valid ones."""
    return activations.get(identifier).name


class Layer:
    """Base class.  Subclasses set ``param_specs`` in ``build`` and describe their computation in ``plan``."""

    trainable = True

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self.name = name
        self.param_specs = []  # (name, shape, initializer)
        self.params = {}       # name -> view into the model's flat parameter buffer
        self.grads = {}        # name -> view into the model's flat gradient buffer
        self.state_specs = []  # (name, shape, initial value): non-trainable state (BatchNormalization's statistics)
        self.state = {}        # name -> view into the model's flat state buffer
        self.input_shape = self.output_shape = None

    def build(self, input_shape):
        """Declare parameters for ``input_shape`` (batch dim excluded) and return the output shape."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def plan(self, x, gx, training, logits=False):
        """This layer's part of a compiled step: ``(y, gy, forward, backward)``.

        ``x`` is the input buffer (N, *input_shape); ``gx`` the buffer to write dL/dx into, or None when no
        layer before this one has parameters; ``training`` selects the training behaviour (dropout) and
        asks for the backward; ``logits`` (the model's last layer in a fused step) stops before the
        activation.  ``forward`` and ``backward`` are lists of bound calls ``(function, args)``; ``gy`` is
        None when no gradient is needed.
        """
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}

    def count_params(self):
        return sum(math.prod(shape) for _, shape, _ in self.param_specs)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items() if k != 'name')})"


class _WeightedLayer(Layer):
    """A layer with a kernel, an optional bias and an activation (Conv2D, Dense)."""

    def _init_weights(self, activation, kernel_initializer, bias_initializer, use_bias):
        self.activation_fn = activations.get(activation)
        self.activation = self.activation_fn.name   # the name: losses pair with it
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = ops.as_bool(use_bias, "use_bias")

    def _declare_weights(self, kernel_shape):
        self.param_specs = [("kernel", tuple(kernel_shape), self.kernel_initializer)]
        if self.use_bias:
            self.param_specs.append(("bias", (kernel_shape[0],), self.bias_initializer))

    def _plan_weighted(self, x, gx, training, logits, z, forward, backward):
        """Add the activation around the linear part: ``forward`` writes ``z``; ``backward(gz, gw, gb)`` is
        the bound call that takes dL/dz from ``gz`` and writes the parameter gradients and ``gx``."""
        act = activations.get("linear" if logits else self.activation_fn)
        if not training:
            y, _, after, _ = act.plan(z, None)
            return y, None, [forward] + after, []
        gz = np.empty_like(z)
        y, gy, after, before = act.plan(z, gz)
        units = self.param_specs[0][1][0]
        # without a bias the kernels still write db: into scratch
        gb = self.grads["bias"] if self.use_bias else np.empty(units, z.dtype)
        return y, gy, [forward] + after, before + [backward(gz, self.grads["kernel"], gb)]

    def _weights_config(self):
        return {"activation": activations.serialize(self.activation_fn), "use_bias": self.use_bias,
                "kernel_initializer": _init_config(self.kernel_initializer),
                "bias_initializer": _init_config(self.bias_initializer)}


def _positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Conv2D(_WeightedLayer):
    """2-D convolution, weights ``(filters, in_channels, kh, kw)`` (PyTorch's layout).

    Parameters
    ----------
    filters : int -- output channels.
    kernel_size, strides, dilation_rate : int or (h, w) pair, each >= 1; ``dilation_rate`` d spreads the
        kernel's taps d apart (an effective kernel of ``d*(k - 1) + 1``).
    padding : int, (h, w) pair, (top, bottom, left, right) 4-tuple, "valid" (none) or "same": TensorFlow's
        rule at any stride, kernel size and dilation (see :func:`fastconv.ops.same_padding`): the output is
        ``ceil(H / stride)`` by ``ceil(W / stride)``, the odd zero row/column going to the bottom/right.
        Computed at build into ``.pads`` = (top, bottom, left, right); ``.padding_arg`` is what was passed.
    activation, kernel_initializer, bias_initializer, use_bias, name : as every weighted layer.
    """

    def __init__(self, filters, kernel_size, strides=1, padding=0, activation=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", use_bias=True, dilation_rate=1,
                 name=None):
        super().__init__(name)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = ops.as_pair(kernel_size, "kernel_size", 1)
        self.strides = ops.as_pair(strides, "strides", 1)
        self.dilation_rate = ops.as_pair(dilation_rate, "dilation_rate", 1)
        self.padding_arg, self.pads = _padding_arg(padding)   # pads None for "same": set at build
        if self.pads is None and self.strides == (1, 1):  # "same" at stride 1 does not depend on the input
            self.pads = self._same_pads((self.kernel_size[0], self.kernel_size[1]))
        self._init_weights(activation, kernel_initializer, bias_initializer, use_bias)

    def _same_pads(self, size):
        """(top, bottom, left, right) of padding="same" for an input of ``size`` = (H, W)."""
        return (ops.same_padding(size[0], self.kernel_size[0], self.strides[0], self.dilation_rate[0])
                + ops.same_padding(size[1], self.kernel_size[1], self.strides[1], self.dilation_rate[1]))

    @property
    def padding(self):
        """The padding in force: (ph, pw) when symmetric, else (top, bottom, left, right); None for "same"
        at a stride > 1 before build."""
        if self.pads is None:
            return None
        top, bottom, left, right = self.pads
        return (top, left) if top == bottom and left == right else self.pads

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D expects inputs of shape (N, C, H, W), got per-sample shape {tuple(input_shape)}")
        if self.padding_arg == "same":
            self.pads = self._same_pads(input_shape[1:])
        C = input_shape[0]
        self._declare_weights((self.filters, C) + self.kernel_size)
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        pads = self._same_pads(input_shape[1:]) if self.padding_arg == "same" else self.pads
        _, F, Ho, Wo = ops.conv2d_output_shape((1,) + tuple(input_shape),
                                               (self.filters, input_shape[0]) + self.kernel_size,
                                               self.strides, pads, self.dilation_rate)
        return (F, Ho, Wo)

    def plan(self, x, gx, training, logits=False):
        w, b = self.params["kernel"], self.params.get("bias")
        z = np.empty((x.shape[0],) + self.output_shape, x.dtype)
        geometry = dict(stride=self.strides, padding=self.pads, dilation=self.dilation_rate)
        return self._plan_weighted(
            x, gx, training, logits, z, ops.bind_conv2d_forward(x, w, b, z, **geometry),
            lambda gz, gw, gb: ops.bind_conv2d_backward(gz, x, w, gx, gw, gb, **geometry))

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding_arg, "dilation_rate": self.dilation_rate, **self._weights_config()}


class Dense(_WeightedLayer):
    """Fully connected: ``y = x @ W.T + b`` with ``W`` of shape ``(units, in_features)`` (PyTorch layout)."""

    def __init__(self, units, activation=None, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 use_bias=True, name=None):
        super().__init__(name)
        self.units = _positive_int(units, "units")
        self._init_weights(activation, kernel_initializer, bias_initializer, use_bias)

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects flat inputs (N, features); got per-sample shape {tuple(input_shape)}: "
                             "add a Flatten() layer first")
        self._declare_weights((self.units, input_shape[0]))
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def plan(self, x, gx, training, logits=False):
        w, b = self.params["kernel"], self.params.get("bias")
        z = np.empty((x.shape[0], self.units), x.dtype)
        return self._plan_weighted(x, gx, training, logits, z, ops.bind_dense_forward(x, w, b, z),
                                   lambda gz, gw, gb: ops.bind_dense_backward(gz, x, w, gx, gw, gb))

    def get_config(self):
        return {"name": self.name, "units": self.units, **self._weights_config()}


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), in C order (as ``torch.flatten(x, 1)``): views, no work."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def plan(self, x, gx, training, logits=False):
        n = x.shape[0]
        return x.reshape(n, -1), None if gx is None else gx.reshape(n, -1), [], []


class MaxPool2D(Layer):
    """Max-pooling over ``pool_size`` windows moved by ``strides`` (default: ``pool_size``); the first maximum
    of a window wins ties and NaN propagates.  ``padding``: an int, (h, w) pair, (top, bottom, left,
    right), "valid" or "same" (TensorFlow's rule); pads act as -inf, each at most half the window."""

    def __init__(self, pool_size=2, strides=None, padding=0, name=None):
        super().__init__(name)
        self.pool_size = ops.as_pair(pool_size, "pool_size", 1)
        self.strides = self.pool_size if strides is None else ops.as_pair(strides, "strides", 1)
        self.padding_arg = _padding_arg(padding)[0]
        self.pads = (0, 0, 0, 0)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"MaxPool2D expects (N, C, H, W) inputs, got per-sample shape {tuple(input_shape)}")
        C, H, W = input_shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        self.pads = ops.pool_padding(self.padding_arg, self.pool_size, self.strides, (H, W))
        if self.pads != (0, 0, 0, 0):
            return ops.pool_output_shape((1,) + tuple(input_shape), self.pool_size, self.strides, self.pads)[1:]
        if kh > H or kw > W:
            raise ValueError(f"pool size {kh}x{kw} is larger than the input {H}x{W}")
        return (C, (H - kh) // sh + 1, (W - kw) // sw + 1)

    def plan(self, x, gx, training, logits=False):
        y = np.empty((x.shape[0],) + self.output_shape, x.dtype)
        idx = np.empty(y.shape, np.int64)
        forward = [ops.bind_maxpool2d_forward(x, y, idx, size=self.pool_size, stride=self.strides, padding=self.pads)]
        if not training or gx is None:
            return y, None, forward, []
        gy = np.empty_like(y)
        return y, gy, forward, [ops.bind_maxpool2d_backward(gy, idx, gx)]

    def get_config(self):
        config = {"name": self.name, "pool_size": self.pool_size, "strides": self.strides}
        if self.padding_arg != 0:   # an unpadded layer's config stays as it was
            config["padding"] = self.padding_arg
        return config


class Dropout(Layer):
    """Inverted dropout (seed 002): at training, zero each unit with probability ``rate`` and scale the rest
    by ``1/(1-rate)``; at inference, identity.  The model seeds ``rng`` from its own seed at build."""

    def __init__(self, rate, name=None):
        super().__init__(name)
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a number in [0, 1), got {rate!r}")
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = np.random.default_rng()

    def _draw(self, r, keep, scale):
        """A fresh mask: ``scale = (uniform >= rate) / (1 - rate)``."""
        self.rng.random(out=r)
        np.greater_equal(r, self.rate, out=keep)
        np.copyto(scale, keep)
        np.divide(scale, scale.dtype.type(1 - self.rate), out=scale)

    def plan(self, x, gx, training, logits=False):
        if not training or self.rate == 0:
            return x, gx, [], []
        r, keep = np.empty(x.shape, np.float64), np.empty(x.shape, np.bool_)
        scale, y = np.empty_like(x), np.empty_like(x)
        forward = [(self._draw, (r, keep, scale)), (np.multiply, (x, scale, y))]
        if gx is None:
            return y, None, forward, []
        gy = np.empty_like(x)
        return y, gy, forward, [(np.multiply, (gy, scale, gx))]

    def get_config(self):
        return {"name": self.name, "rate": self.rate}


class Activation(Layer):
    """An activation as a layer: ``Activation("relu")``, ``Activation(LeakyReLU(0.2))``."""

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation_fn = activations.get(activation)
        self.activation = self.activation_fn.name

    def plan(self, x, gx, training, logits=False):
        act = activations.get("linear" if logits else self.activation_fn)
        return act.plan(x, gx if training else None)

    def get_config(self):
        return {"name": self.name, "activation": activations.serialize(self.activation_fn)}


def _padding_arg(padding):
    """A convolution's or pooling's ``padding`` argument, checked, as ``(arg, pads)``: ``arg`` is "valid" or
    "same" (lower-cased) or the int or tuple of Python ints given; ``pads`` its (top, bottom, left, right),
    None for "same" (which depends on the input)."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be an int, a pair, a (top, bottom, left, right) 4-tuple, 'valid' "
                             f"or 'same', got {padding!r}")
        arg = padding.lower()
        return arg, (0, 0, 0, 0) if arg == "valid" else None
    pads = ops.as_padding(padding, "padding")
    return int(padding) if isinstance(padding, numbers.Integral) else tuple(map(int, padding)), pads


class BatchNormalization(Layer):
    """Batch normalization over axis 1: the channels of (N, C, H, W), the features of (N, D).

    Training steps normalise with the batch's mean and biased variance and update the running statistics
    in the forward; inference (predict, evaluate) uses the running statistics::

        y = (x - mean) / sqrt(var + epsilon) * gamma + beta

    ``convention="torch"`` (``torch.nn.BatchNorm2d``; momentum 0.1): ``running = (1 - momentum)*running +
    momentum*stat`` with the unbiased batch variance.  ``convention="keras"`` (Keras 3; pass momentum=0.99,
    epsilon=1e-3 for Keras's defaults): ``running = momentum*running + (1 - momentum)*stat`` with the biased
    variance.  Parameters ``gamma`` (ones; if ``scale``) and ``beta`` (zeros; if ``center``); state
    ``moving_mean`` (zeros) and ``moving_variance`` (ones), saved with the model, never touched by the
    optimizer.
    """

    def __init__(self, momentum=0.1, epsilon=1e-5, center=True, scale=True, convention="torch", name=None):
        super().__init__(name)
        for arg, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"{arg} must be a number, got {value!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.center, self.scale = ops.as_bool(center, "center"), ops.as_bool(scale, "scale")
        if convention not in ops.BATCHNORM_CONVENTIONS:
            raise ValueError(f"convention must be one of {ops.BATCHNORM_CONVENTIONS}, got {convention!r}")
        self.momentum, self.epsilon, self.convention = float(momentum), float(epsilon), convention

    def build(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ValueError(f"BatchNormalization expects (N, C, H, W) or (N, D) inputs, got per-sample shape "
                             f"{tuple(input_shape)}")
        C = int(input_shape[0])
        self.param_specs = ([("gamma", (C,), initializers.get("ones"))] if self.scale else []) + \
                           ([("beta", (C,), initializers.get("zeros"))] if self.center else [])
        self.state_specs = [("moving_mean", (C,), 0.0), ("moving_variance", (C,), 1.0)]
        return super().build(input_shape)

    def plan(self, x, gx, training, logits=False):
        n, C, dtype = x.shape[0], x.shape[1], x.dtype
        if training and self.convention == "torch" and x.size // C < 2:
            raise ValueError(f"BatchNormalization(convention='torch') needs more than one value per channel in "
                             f"training (the unbiased running variance), got a batch of shape {x.shape}: train with "
                             "batches of at least 2 samples (as torch.nn.BatchNorm1d requires)")
        gamma = self.params["gamma"] if self.scale else np.ones(C, dtype)
        beta = self.params["beta"] if self.center else np.zeros(C, dtype)
        y = np.empty_like(x)
        mean, invstd = np.empty(C, np.float64), np.empty(C, np.float64)
        forward = [ops.bind_batchnorm_forward(
            x, gamma, beta, self.state["moving_mean"], self.state["moving_variance"], y, mean, invstd,
            np.empty(n * C, np.float64), training=training, momentum=self.momentum, eps=self.epsilon,
            convention=self.convention)]
        if not training:
            return y, None, forward, []
        gy = np.empty_like(y)
        # without gamma or beta the kernel still writes their gradients: into scratch
        dgamma = self.grads["gamma"] if self.scale else np.empty(C, dtype)
        dbeta = self.grads["beta"] if self.center else np.empty(C, dtype)
        backward = [ops.bind_batchnorm_backward(gy, x, gamma, mean, invstd, gx, dgamma, dbeta,
                                                np.empty(2 * n * C, np.float64), training=True)]
        return y, gy, forward, backward

    def get_config(self):
        return {"name": self.name, "momentum": self.momentum, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "convention": self.convention}


class AveragePooling2D(Layer):
    """Average pooling with PyTorch's ``AvgPool2d`` semantics on (N, C, H, W).

    ``padding``: an int, (h, w) pair, (top, bottom, left, right), "valid" or "same" (TensorFlow's rule,
    which implies ``count_include_pad=False`` as TensorFlow divides by the input elements only);
    ``count_include_pad`` and ``ceil_mode`` as PyTorch (see :func:`fastconv.ops.avgpool2d_forward`).
    """

    def __init__(self, pool_size=2, strides=None, padding=0, count_include_pad=True, ceil_mode=False, name=None):
        super().__init__(name)
        self.pool_size = ops.as_pair(pool_size, "pool_size", 1)
        self.strides = self.pool_size if strides is None else ops.as_pair(strides, "strides", 1)
        self.padding_arg = _padding_arg(padding)[0]
        count_include_pad = ops.as_bool(count_include_pad, "count_include_pad")
        self.ceil_mode = ops.as_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = count_include_pad and self.padding_arg != "same"
        self.pads = (0, 0, 0, 0)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"AveragePooling2D expects (N, C, H, W) inputs, got per-sample shape "
                             f"{tuple(input_shape)}")
        self.pads = ops.pool_padding(self.padding_arg, self.pool_size, self.strides, tuple(input_shape[1:]))
        return ops.pool_output_shape((1,) + tuple(input_shape), self.pool_size, self.strides, self.pads,
                                     self.ceil_mode)[1:]

    def _geometry(self):
        return dict(size=self.pool_size, stride=self.strides, padding=self.pads, ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad)

    def plan(self, x, gx, training, logits=False):
        y = np.empty((x.shape[0],) + self.output_shape, x.dtype)
        forward = [ops.bind_avgpool2d_forward(x, y, **self._geometry())]
        if not training or gx is None:
            return y, None, forward, []
        gy = np.empty_like(y)
        return y, gy, forward, [ops.bind_avgpool2d_backward(gy, gx, **self._geometry())]

    def get_config(self):
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding_arg,
                "count_include_pad": self.count_include_pad, "ceil_mode": self.ceil_mode}


class _GlobalPooling2D(Layer):
    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) inputs, got per-sample shape "
                             f"{tuple(input_shape)}")
        if input_shape[1] * input_shape[2] == 0:
            raise ValueError(f"{type(self).__name__} needs non-empty (H, W) planes, got {tuple(input_shape)}")
        return (input_shape[0],)


class GlobalAveragePooling2D(_GlobalPooling2D):
    """(N, C, H, W) -> (N, C): the mean of each plane (summed in double)."""

    def plan(self, x, gx, training, logits=False):
        y = np.empty(x.shape[:2], x.dtype)
        forward = [ops.bind_global_avgpool2d_forward(x, y)]
        if not training or gx is None:
            return y, None, forward, []
        gy = np.empty_like(y)
        return y, gy, forward, [ops.bind_global_avgpool2d_backward(gy, gx)]


class GlobalMaxPooling2D(_GlobalPooling2D):
    """(N, C, H, W) -> (N, C): the maximum of each plane; the first maximum wins ties, NaN propagates."""

    def plan(self, x, gx, training, logits=False):
        y = np.empty(x.shape[:2], x.dtype)
        idx = np.empty(x.shape[:2], np.int64)
        forward = [ops.bind_global_maxpool2d_forward(x, y, idx)]
        if not training or gx is None:
            return y, None, forward, []
        gy = np.empty_like(y)
        return y, gy, forward, [ops.bind_global_maxpool2d_backward(gy, idx, gx)]


class Reshape(Layer):
    """(N, *in) -> (N, *target_shape), a C-order view (as ``x.reshape``); one entry may be -1."""

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise TypeError(f"target_shape must be a tuple of ints, got {target_shape!r}") from None
        for v in target:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(f"target_shape must hold ints, got {target_shape!r}")
            if v < 1 and v != -1:
                raise ValueError(f"target_shape must hold positive sizes (or one -1), got {target_shape!r}")
        if list(target).count(-1) > 1:
            raise ValueError(f"target_shape may hold -1 once, got {target_shape!r}")
        if not target:
            raise ValueError("target_shape must not be empty")
        self.target_shape = tuple(int(v) for v in target)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(v for v in self.target_shape if v != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"cannot reshape per-sample shape {tuple(input_shape)} ({size} values) to "
                                 f"{self.target_shape}")
            return tuple(size // known if v == -1 else v for v in self.target_shape)
        if known != size:
            raise ValueError(f"cannot reshape per-sample shape {tuple(input_shape)} ({size} values) to "
                             f"{self.target_shape} ({known} values)")
        return self.target_shape

    def plan(self, x, gx, training, logits=False):
        shape = (x.shape[0],) + self.output_shape
        return x.reshape(shape), None if gx is None else gx.reshape(shape), [], []

    def get_config(self):
        return {"name": self.name, "target_shape": self.target_shape}


def _init_config(init):
    if isinstance(init, initializers.Initializer):
        return {"class": type(init).__name__, "config": init.get_config()}
    raise ValueError("only fastconv.initializers.Initializer instances can be saved; got a plain callable")


def _init_from_config(cfg):
    return getattr(initializers, cfg["class"])(**cfg["config"])


LAYER_CLASSES = {cls.__name__: cls for cls in (Conv2D, Dense, Flatten, MaxPool2D, Dropout, Activation,
                                               BatchNormalization, AveragePooling2D, GlobalAveragePooling2D,
                                               GlobalMaxPooling2D, Reshape)}


def layer_from_config(class_name, config):
    """The layer of class ``class_name`` built from ``get_config()``'s dict."""
    config = dict(config)
    for key in ("kernel_initializer", "bias_initializer"):
        if key in config:
            config[key] = _init_from_config(config[key])
    return LAYER_CLASSES[class_name](**config)
