"""Keras initializers with Keras's definitions, as fastconv core initializers.

Keras's normal presets are *truncated*: ``he_normal``, ``glorot_normal`` and ``lecun_normal`` draw from a
normal cut at two standard deviations (``VarianceScaling(distribution="truncated_normal")``), where the
core's names of the same spelling follow PyTorch (untruncated).  The face maps Keras's names and classes to
the core initializer that draws Keras's distribution.  Fans agree in both layouts: Keras's conv kernel
``(kh, kw, in, out)`` and the core's ``(out, in, kh, kw)`` both give ``fan_in = in*kh*kw``.

``seed=`` fixes an initializer's draw, as in Keras; without one the model's seed (from
``keras.utils.set_random_seed``) decides it.
"""
from ..nn import initializers as _core
from ..nn.initializers import Initializer

__all__ = ["get", "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
           "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
           "Orthogonal", "serialize", "deserialize"]

_DISTRIBUTIONS = {"truncated_normal": "truncated_normal", "untruncated_normal": "normal", "normal": "normal",
                  "uniform": "uniform"}


def _seeded(init, seed):
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        init.seed = seed
    return init


def VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
    """Keras's VarianceScaling: std = sqrt(scale / n), n = fan_in, fan_out or fan_avg; distribution
    "truncated_normal" (default), "untruncated_normal" or "uniform"."""
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"Invalid `distribution` argument: {distribution!r}; expected one of "
                         "'truncated_normal', 'untruncated_normal', 'uniform'")
    return _seeded(_core.VarianceScaling(scale, mode, _DISTRIBUTIONS[distribution]), seed)


def GlorotUniform(seed=None):
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Keras's default kernel initializer)."""
    return VarianceScaling(1.0, "fan_avg", "uniform", seed)


def GlorotNormal(seed=None):
    """Truncated normal, std = sqrt(2 / (fan_in + fan_out))."""
    return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed)


def HeNormal(seed=None):
    """Truncated normal, std = sqrt(2 / fan_in)."""
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def HeUniform(seed=None):
    """U(-a, a), a = sqrt(6 / fan_in)."""
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def LecunNormal(seed=None):
    """Truncated normal, std = sqrt(1 / fan_in)."""
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def LecunUniform(seed=None):
    """U(-a, a), a = sqrt(3 / fan_in)."""
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def RandomNormal(mean=0.0, stddev=0.05, seed=None):
    return _seeded(_core.RandomNormal(mean, stddev), seed)


def RandomUniform(minval=-0.05, maxval=0.05, seed=None):
    return _seeded(_core.RandomUniform(minval, maxval), seed)


def TruncatedNormal(mean=0.0, stddev=0.05, seed=None):
    return _seeded(_core.TruncatedNormal(mean, stddev), seed)


def Orthogonal(gain=1.0, seed=None):
    return _seeded(_core.Orthogonal(gain), seed)


def Zeros():
    return _core.Zeros()


def Ones():
    return _core.Ones()


def Constant(value=0.0):
    return _core.Constant(value)


_BY_NAME = {"zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
            "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
            "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_normal": HeNormal,
            "he_uniform": HeUniform, "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
            "orthogonal": Orthogonal}
for _name, _fn in list(_BY_NAME.items()):
    globals()[_name] = _fn


def _key(name):
    from .backend import to_snake_case

    return to_snake_case(name) if any(c.isupper() for c in name) else name.lower()


def get(identifier):
    """A core initializer with Keras's definition, from a Keras name ("he_normal", "HeNormal"), a face or core
    initializer, or a Keras config dict; None passes through.  An unknown name lists the valid ones."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        key = _key(identifier)
        if key not in _BY_NAME:
            raise ValueError(f"Could not interpret initializer identifier: {identifier!r}; valid names: "
                             f"{', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[key]()
    if callable(identifier):
        return identifier   # a Keras-style function of (shape, dtype); layers call it in Keras's layout
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")


def serialize(init):
    """JSON form: a name stays a name; a core initializer becomes ``{"class", "config", "seed"}``."""
    if isinstance(init, str) or init is None:
        return init
    if isinstance(init, Initializer):
        return {"class": type(init).__name__, "config": init.get_config(), "seed": getattr(init, "seed", None)}
    raise NotImplementedError(f"initializer {init!r}: a custom initializer function cannot be saved")


def deserialize(config):
    if isinstance(config, str) or config is None:
        return get(config)
    cls = getattr(_core, config.get("class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, Initializer)):
        raise ValueError(f"unknown initializer config {config!r}")
    return _seeded(cls(**config["config"]), config.get("seed"))
