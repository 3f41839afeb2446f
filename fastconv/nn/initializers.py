"""Weight initializers: presets of one ``VarianceScaling`` core (Keras), with PyTorch's fan layout.

Every initializer is called as ``init(shape, dtype=np.float32, rng=None)`` and returns a new ndarray;
``rng`` is a ``numpy.random.Generator`` or an int seed (``None``: fresh OS entropy).  Randomness never
comes from the global ``np.random`` state.

Fans follow PyTorch's ``_calculate_fan_in_and_fan_out``: dense ``(out, in)`` -> ``fan_in = in``,
``fan_out = out``; conv ``(F, C, kh, kw)`` -> ``fan_in = C*kh*kw``, ``fan_out = F*kh*kw``.

=================  ===========================================  =====================================
name               distribution                                  std / bound
=================  ===========================================  =====================================
he_normal          N(0, std^2), untruncated                      std = sqrt(2 / fan_in)
he_uniform         U(-a, a)                                      a = sqrt(6 / fan_in)
glorot_normal      N(0, std^2), untruncated                      std = sqrt(2 / (fan_in + fan_out))
glorot_uniform     U(-a, a)                                      a = sqrt(6 / (fan_in + fan_out))
lecun_normal       N(0, std^2), untruncated                      std = sqrt(1 / fan_in)
lecun_uniform      U(-a, a)                                      a = sqrt(3 / fan_in)
=================  ===========================================  =====================================

``VarianceScaling(distribution="truncated_normal")`` is Keras's variant: draws from N(0, s^2) cut at 2s with
``s = std / 0.87962566103423978`` so the *result* has standard deviation ``std``.
"""
import difflib
import math
import numbers

import numpy as np

__all__ = [
    "Initializer", "VarianceScaling", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "Orthogonal", "compute_fans", "calculate_gain", "get", "zeros", "ones", "constant",
    "random_normal", "random_uniform", "truncated_normal", "glorot_normal", "glorot_uniform", "he_normal",
    "he_uniform", "lecun_normal", "lecun_uniform", "orthogonal", "variance_scaling",
]

# std of a unit normal truncated to [-2, 2]: dividing by it makes the truncated draw have the asked-for std.
TRUNCATION_STD = 0.87962566103423978


def _rng(rng):
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _shape(shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from exc
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must not have negative sizes, got {shape}")
    return shape


def _dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    return dtype


def compute_fans(shape, fan_in=None, fan_out=None):
    """``(fan_in, fan_out)`` for a weight of ``shape`` in PyTorch's layout; explicit values override.

    >>> compute_fans((10, 784))            # dense (out, in)
    (784, 10)
    >>> compute_fans((16, 1, 8, 8))        # conv (F, C, kh, kw)
    (64, 1024)
    """
    shape = _shape(shape)
    if len(shape) == 0:
        computed = (1, 1)
    elif len(shape) == 1:
        computed = (shape[0], shape[0])
    else:
        receptive = math.prod(shape[2:])
        computed = (shape[1] * receptive, shape[0] * receptive)
    return (computed[0] if fan_in is None else fan_in, computed[1] if fan_out is None else fan_out)


_GAINS = {"linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
          "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
          "selu": 3.0 / 4}


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, numbers.Real):
            raise ValueError(f"negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity in _GAINS:
        return _GAINS[nonlinearity]
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}; choose from {sorted(_GAINS) + ['leaky_relu']}")


class Initializer:
    """Base class: subclasses implement ``_draw(shape, dtype, rng)``; ``get_config`` returns the arguments."""

    def __call__(self, shape, dtype=np.float32, rng=None):
        shape, dtype = _shape(shape), _dtype(dtype)
        return np.asarray(self._draw(shape, dtype, _rng(rng)), dtype=dtype).reshape(shape)

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def _draw(self, shape, dtype, rng):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    def _draw(self, shape, dtype, rng):
        return np.ones(shape, dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def _draw(self, shape, dtype, rng):
        return np.full(shape, self.value, dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """N(mean, stddev^2).  Seed 001's "large random" ``randn * 10`` is ``RandomNormal(stddev=10)``."""

    def __init__(self, mean=0.0, stddev=0.05):
        if stddev < 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def _draw(self, shape, dtype, rng):
        return self.mean + self.stddev * rng.standard_normal(shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """U(minval, maxval); seed 000's old initializer is ``RandomUniform(-0.5, 0.5)``."""

    def __init__(self, minval=-0.05, maxval=0.05):
        if maxval < minval:
            raise ValueError(f"maxval ({maxval}) must be >= minval ({minval})")
        self.minval, self.maxval = float(minval), float(maxval)

    def _draw(self, shape, dtype, rng):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


def _truncated_standard_normal(shape, rng):
    """Unit normal draws restricted to [-2, 2] by resampling the rejects."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out


class TruncatedNormal(RandomNormal):
    """N(mean, stddev^2) restricted to mean +- 2*stddev (Keras's ``TruncatedNormal``)."""

    def _draw(self, shape, dtype, rng):
        return self.mean + self.stddev * _truncated_standard_normal(shape, rng)


class VarianceScaling(Initializer):
    """std = sqrt(scale / n), n = fan_in, fan_out or their mean (``mode``).

    distribution: ``"normal"`` (untruncated, as PyTorch and the seeds), ``"truncated_normal"`` (Keras: cut at
    2 sigma, sigma corrected by 0.8796 so the result has std), ``"uniform"`` (bound = sqrt(3) * std).
    ``fan_in``/``fan_out`` override the fans computed from the shape (the seed-000 author's variants).
    """

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="normal", fan_in=None, fan_out=None):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self.DISTRIBUTIONS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution
        self.fan_in, self.fan_out = fan_in, fan_out

    def std(self, shape):
        """The standard deviation this initializer gives a weight of ``shape``."""
        fan_in, fan_out = compute_fans(shape, self.fan_in, self.fan_out)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return math.sqrt(self.scale / max(1.0, n))

    def _draw(self, shape, dtype, rng):
        std = self.std(shape)
        if self.distribution == "normal":
            return std * rng.standard_normal(shape)
        if self.distribution == "truncated_normal":
            return (std / TRUNCATION_STD) * _truncated_standard_normal(shape, rng)
        bound = math.sqrt(3.0) * std
        return rng.uniform(-bound, bound, shape)

    def get_config(self):
        config = {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}
        if self.fan_in is not None:
            config["fan_in"] = self.fan_in
        if self.fan_out is not None:
            config["fan_out"] = self.fan_out
        return config


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``: QR of a normal draw, Q multiplied by sign(diag R).

    Shapes with more than 2 dims are flattened to ``(shape[0], prod(shape[1:]))`` as PyTorch does.
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def _draw(self, shape, dtype, rng):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape with at least 2 dims, got {shape}")
        rows, cols = shape[0], math.prod(shape[1:])
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q[:rows, :cols]

    def get_config(self):
        return {"gain": self.gain}


def _preset(name, scale, mode, distribution, doc):
    def make(fan_in=None, fan_out=None):
        init = VarianceScaling(scale, mode, distribution, fan_in=fan_in, fan_out=fan_out)
        init.name = name
        return init

    make.__name__ = name
    make.__doc__ = doc
    return make


he_normal = _preset("he_normal", 2.0, "fan_in", "normal", "He/Kaiming normal: std = sqrt(2 / fan_in), untruncated.")
he_uniform = _preset("he_uniform", 2.0, "fan_in", "uniform", "He/Kaiming uniform: bound = sqrt(6 / fan_in).")
glorot_normal = _preset("glorot_normal", 1.0, "fan_avg", "normal",
                        "Glorot/Xavier normal: std = sqrt(2 / (fan_in + fan_out)), untruncated.")
glorot_uniform = _preset("glorot_uniform", 1.0, "fan_avg", "uniform",
                         "Glorot/Xavier uniform: bound = sqrt(6 / (fan_in + fan_out)).")
lecun_normal = _preset("lecun_normal", 1.0, "fan_in", "normal", "LeCun normal: std = sqrt(1 / fan_in), untruncated.")
lecun_uniform = _preset("lecun_uniform", 1.0, "fan_in", "uniform", "LeCun uniform: bound = sqrt(3 / fan_in).")
variance_scaling = VarianceScaling
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal, orthogonal = RandomNormal, RandomUniform, TruncatedNormal, Orthogonal

_REGISTRY = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "orthogonal": Orthogonal,
    "variance_scaling": VarianceScaling, "he_normal": he_normal, "he_uniform": he_uniform,
    "glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform, "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
}
_ALIASES = {"kaiming_normal": "he_normal", "kaiming_uniform": "he_uniform", "xavier_normal": "glorot_normal",
            "xavier_uniform": "glorot_uniform", "zero": "zeros", "one": "ones", "normal": "random_normal",
            "uniform": "random_uniform"}


def get(identifier):
    """An initializer from a name, alias, class, instance or callable (``None`` -> ``None``).

    >>> get("he_normal")((16, 1, 8, 8), rng=0).shape
    (16, 1, 8, 8)
    """
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in _REGISTRY:
            return _REGISTRY[key]()
        choices = sorted(_REGISTRY) + sorted(_ALIASES)
        close = difflib.get_close_matches(key, choices, n=3)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"unknown initializer {identifier!r}{hint}; valid names: {', '.join(sorted(_REGISTRY))}")
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"cannot interpret {identifier!r} as an initializer")
