"""Keras 3 optimizers with Keras's argument names, defaults and update formulas, as core optimizers.

- ``Adam``: Keras's form, ``epsilon=1e-7`` added to ``sqrt(v)`` *before* the bias correction folded into the
  step size ("epsilon hat"): the core's ``Adam(convention="keras")``.  ``weight_decay`` is decoupled (Keras
  applies ``w -= lr * weight_decay * w`` before the update, as AdamW).
- ``SGD``: Keras's momentum form ``v = momentum * v - lr * g; w += v`` (the velocity carries the learning
  rate): the core's ``SGD(convention="keras")``; without momentum both forms are the same update.
- ``RMSprop``, ``Adagrad``, ``AdamW``, ``Nadam``: the core's optimizers of those names, given Keras's defaults
  explicitly.
- ``clipnorm``, ``clipvalue``, ``global_clipnorm`` and a schedule (``keras.optimizers.schedules``) as
  ``learning_rate`` are passed to the core, which applies them with Keras's semantics.

Each function returns the core optimizer object (``model.optimizer``), whose ``learning_rate`` can be set
between steps.
"""
import numbers
import sys

from ..nn import optimizers as _core
from . import schedules
from ._core import core_class

__all__ = ["Adam", "SGD", "RMSprop", "Adagrad", "AdamW", "Nadam", "Optimizer", "get", "schedules"]

Optimizer = _core.Optimizer
sys.modules[__name__ + ".schedules"] = schedules

_KERAS_ONLY = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
               "gradient_accumulation_steps": None}


def _common(owner, learning_rate, clipnorm, clipvalue, global_clipnorm, extra):
    """The keyword arguments every optimizer passes on: learning rate (number or schedule) and clipping."""
    for key, default in _KERAS_ONLY.items():
        value = extra.pop(key, default)
        if value != default:
            raise NotImplementedError(f"{owner}: {key}={value!r} is not supported by fastconv (only {default!r})")
    extra.pop("name", None)
    if extra:
        raise ValueError(f"Argument(s) not recognized: {extra}")
    kwargs = {"learning_rate": learning_rate, "clipnorm": clipnorm, "clipvalue": clipvalue,
              "global_clipnorm": global_clipnorm}
    if not isinstance(learning_rate, numbers.Real) and callable(learning_rate) and not schedules.available():
        raise NotImplementedError(f"{owner}: a learning-rate schedule is not supported by this fastconv: its core "
                                  "has no fastconv.nn.schedules")
    if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
        raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                         f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
    return kwargs


def Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=None,
         clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
    """Keras's Adam: ``w -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)``."""
    kw = _common("Adam", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    decay = 0.0 if weight_decay is None else weight_decay
    return _core.Adam(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, weight_decay=decay,
                      convention="keras", **kw)


def SGD(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None, clipvalue=None,
        global_clipnorm=None, **kwargs):
    """Keras's SGD: ``v = momentum * v - lr * g; w += v`` (Nesterov: ``w += momentum * v - lr * g``)."""
    kw = _common("SGD", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    if weight_decay:
        kw["weight_decay"] = weight_decay
    return _core.SGD(momentum=momentum, nesterov=nesterov, convention="keras", **kw)


def RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
            clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
    """Keras's RMSprop (``rho=0.9``, ``epsilon=1e-7``; ``centered`` subtracts the mean gradient squared)."""
    cls = core_class(_core, "RMSprop", "keras.optimizers.RMSprop")
    kw = _common("RMSprop", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    if weight_decay is not None:
        kw["weight_decay"] = weight_decay
    return cls(rho=rho, momentum=momentum, epsilon=epsilon, centered=centered, **kw)


def Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None, clipnorm=None,
            clipvalue=None, global_clipnorm=None, **kwargs):
    """Keras's Adagrad (accumulator starts at 0.1, ``epsilon=1e-7``)."""
    cls = core_class(_core, "Adagrad", "keras.optimizers.Adagrad")
    kw = _common("Adagrad", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    if weight_decay is not None:
        kw["weight_decay"] = weight_decay
    return cls(initial_accumulator_value=initial_accumulator_value, epsilon=epsilon, **kw)


def AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
          clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
    """Keras's AdamW: Keras's Adam with decoupled ``weight_decay=0.004``."""
    cls = core_class(_core, "AdamW", "keras.optimizers.AdamW")
    kw = _common("AdamW", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    return cls(weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
               convention="keras", **kw)


def Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None, clipnorm=None,
          clipvalue=None, global_clipnorm=None, **kwargs):
    """Keras's Nadam (Keras's momentum-cache schedule)."""
    cls = core_class(_core, "Nadam", "keras.optimizers.Nadam")
    kw = _common("Nadam", learning_rate, clipnorm, clipvalue, global_clipnorm, kwargs)
    if weight_decay is not None:
        kw["weight_decay"] = weight_decay
    return cls(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kw)


_BY_NAME = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adamw": AdamW, "nadam": Nadam}


def get(identifier):
    """An optimizer with Keras's defaults from its name ("adam", "sgd", "rmsprop", "adagrad", "adamw",
    "nadam"), or a core optimizer object (what this module's functions return) as it is."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, str) and identifier.lower() in ("adadelta", "adamax", "ftrl", "lion", "adafactor",
                                                             "lamb", "loss_scale_optimizer"):
        raise NotImplementedError(f"optimizer {identifier!r} is not supported by fastconv; valid choices: "
                                  f"{', '.join(_BY_NAME)}")
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}; valid choices: "
                     f"{', '.join(_BY_NAME)} or a keras.optimizers object")
