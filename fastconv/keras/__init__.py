"""fastconv.keras: Keras 3 conventions on fastconv's core, so a Keras ``Sequential`` program runs with only
its imports changed::

    from fastconv import keras               # was: from tensorflow import keras / import keras
    from fastconv.keras import layers        # was: from keras import layers

- :mod:`~fastconv.keras.models`         ``Sequential`` (channels-last, Keras's weight layouts), ``load_model``
- :mod:`~fastconv.keras.layers`         Conv2D, Dense, Flatten, Reshape, Dropout, pooling, BatchNormalization,
                                        activation layers, ``Input``
- :mod:`~fastconv.keras.losses`, :mod:`~fastconv.keras.metrics`, :mod:`~fastconv.keras.optimizers`
  (with ``schedules``), :mod:`~fastconv.keras.callbacks`, :mod:`~fastconv.keras.activations`,
  :mod:`~fastconv.keras.initializers`   by Keras's names, with Keras's defaults and formulas
- :mod:`~fastconv.keras.utils`          ``to_categorical``, ``set_random_seed``
- :mod:`~fastconv.keras.datasets`       ``mnist.load_data()``

The face is thin: it converts at the model boundary (one transpose of the input per call, weights in
Keras's layouts) and runs everything on :mod:`fastconv.nn`; it has no kernels and no training loop.  What
Keras has and fastconv does not raises ``NotImplementedError`` naming it.
"""
import sys as _sys

from . import activations, callbacks, datasets, initializers, layers, losses, metrics, models, optimizers, utils
from . import backend as config  # keras.config.set_floatx, image_data_format, ...
from .layers import Input, InputLayer, Layer
from .models import Model, Sequential, load_model

backend = config
saving = models    # keras.saving.load_model
_sys.modules[__name__ + ".config"] = config
_sys.modules[__name__ + ".saving"] = saving

__all__ = ["Sequential", "Model", "Input", "InputLayer", "Layer", "load_model", "activations", "backend",
           "callbacks", "config", "datasets", "initializers", "layers", "losses", "metrics", "models", "optimizers",
           "saving", "utils"]
