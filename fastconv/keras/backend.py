"""Session state of the Keras face: layer-name counters, the seed generator, floatx and the image data format.

Keras keeps these in a global state that ``keras.backend.clear_session()`` resets; so does the face.  The
seed generator is what every face model draws its core ``seed`` from when it is built: fastconv itself
never reads the global ``np.random``, so :func:`fastconv.keras.utils.set_random_seed` resets this generator
to make a program reproducible.
"""
import collections
import re

import numpy as np

__all__ = ["backend", "clear_session", "floatx", "set_floatx", "image_data_format", "set_image_data_format",
           "epsilon", "get_uid"]

_names = collections.defaultdict(int)
_state = {"floatx": "float32", "image_data_format": "channels_last", "seed_rng": np.random.default_rng()}


def backend():
    """The name of the backend: ``"fastconv"``."""
    return "fastconv"


def clear_session():
    """Reset the layer and model name counters (``conv2d``, ``conv2d_1``, ... start again), as Keras does."""
    _names.clear()


def get_uid(prefix=""):
    """1 for the first call with ``prefix``, then 2, 3, ... (Keras's ``backend.get_uid``)."""
    _names[prefix] += 1
    return _names[prefix]


def unique_name(prefix):
    """``prefix`` the first time, then ``prefix_1``, ``prefix_2``, ... (Keras's automatic names)."""
    count = _names[prefix]
    _names[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


def to_snake_case(name):
    """Keras's class-name-to-layer-name rule: ``MaxPooling2D`` -> ``max_pooling2d``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def floatx():
    """The default float type of new models: ``"float32"`` unless :func:`set_floatx` changed it."""
    return _state["floatx"]


def set_floatx(value):
    """Set the default float type: ``"float32"`` or ``"float64"`` (fastconv computes in no other)."""
    if value not in ("float32", "float64"):
        if value in ("float16", "bfloat16"):
            raise NotImplementedError(f"floatx {value!r}: fastconv computes in float32 and float64 only")
        raise ValueError(f"Unknown floatx type: {value!r}; expected 'float32' or 'float64'")
    _state["floatx"] = value


def image_data_format():
    """``"channels_last"`` (Keras's default) or ``"channels_first"``."""
    return _state["image_data_format"]


def set_image_data_format(data_format):
    """Set the default ``data_format`` of Conv2D and the pooling layers."""
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. "
                         f"Received: data_format={data_format!r}")
    _state["image_data_format"] = data_format


def epsilon():
    """Keras's fuzz factor, 1e-7."""
    return 1e-7


def seed_generator():
    """The generator face models draw their seeds from (reset by ``utils.set_random_seed``)."""
    return _state["seed_rng"]


def reset_seed_generator(seed):
    _state["seed_rng"] = np.random.default_rng(seed)
