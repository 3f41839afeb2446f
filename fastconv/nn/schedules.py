"""Learning-rate schedules with Keras 3's formulas (``keras.optimizers.schedules``).

A schedule maps the optimizer's step counter to a learning rate: an optimizer given one as
``learning_rate`` evaluates it at ``optimizer.iterations`` (the number of steps already taken) before
each step, as Keras does.  Values are computed in double precision (Keras computes them in float32) and
rounded to the parameter dtype by the update kernel.

>>> from fastconv.nn import optimizers, schedules
>>> lr = schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96, staircase=True)
>>> opt = optimizers.SGD(learning_rate=lr)
>>> lr(2000)
0.09216
"""
import math
import numbers

import numpy as np

from .. import ops

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "InverseTimeDecay",
           "serialize", "deserialize"]


def _number(value, name, positive=False, low=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if value != value or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _name(value, default):
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"name must be a string, got {value!r}")
    return value


def _step(step):
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Real):
        raise TypeError(f"step must be a number (the optimizer's iterations), got {step!r}")
    return float(step)


class LearningRateSchedule:
    """Base class: ``schedule(step)`` gives the learning rate (a float) at step ``step``; subclasses
    define ``__call__`` and ``get_config``, and ``from_config(config)`` rebuilds them."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; ``staircase=True`` floors the
    exponent (the rate drops every ``decay_steps`` steps).  Keras's formula and arguments."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _number(decay_steps, "decay_steps", positive=True)
        self.decay_rate = _number(decay_rate, "decay_rate")
        self.staircase = ops.as_bool(staircase, "staircase")
        self.name = _name(name, "ExponentialDecay")

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` for ``boundaries[i-1] < step <=
    boundaries[i]``, ``values[-1]`` after the last boundary (Keras's rule; ``len(values) ==
    len(boundaries) + 1``, boundaries increasing)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if isinstance(boundaries, (str, bytes)) or not hasattr(boundaries, "__len__"):
            raise TypeError(f"boundaries must be a list of numbers, got {boundaries!r}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise TypeError(f"values must be a list of numbers, got {values!r}")
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={list(boundaries)} of length {len(boundaries)}, and "
                             f"values={list(values)} of length {len(values)}.")
        self.boundaries = [_number(b, f"boundaries[{i}]") for i, b in enumerate(boundaries)]
        self.values = [_number(v, f"values[{i}]") for i, v in enumerate(values)]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {self.boundaries}")
        self.name = _name(name, "PiecewiseConstant")

    def __call__(self, step):
        step = _step(step)
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay with optional linear warmup (Keras's formula).

    Without ``warmup_target``: ``lr(step) = initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))``.  With ``warmup_target``: for
    ``step < warmup_steps`` the rate rises linearly, ``(warmup_target - initial_learning_rate) *
    step / warmup_steps + initial_learning_rate``; afterwards it decays from ``warmup_target`` as above
    over ``step - warmup_steps``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _number(decay_steps, "decay_steps", positive=True)
        self.alpha = _number(alpha, "alpha")
        self.name = _name(name, "CosineDecay")
        self.warmup_target = None if warmup_target is None else _number(warmup_target, "warmup_target")
        self.warmup_steps = _number(warmup_steps, "warmup_steps", low=0.0)

    def _decay(self, step, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step / self.decay_steps)))
        return start * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _step(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``; ``staircase=True`` floors
    ``step / decay_steps`` (Keras's formula and arguments)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _number(decay_steps, "decay_steps", positive=True)
        self.decay_rate = _number(decay_rate, "decay_rate")
        self.staircase = ops.as_bool(staircase, "staircase")
        self.name = _name(name, "InverseTimeDecay")

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay, InverseTimeDecay)}


def serialize(schedule):
    """``{"class": name, "config": schedule.get_config()}`` (JSON-compatible)."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"expected a LearningRateSchedule, got {schedule!r}")
    return {"class": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """The schedule :func:`serialize` described; raises ValueError naming the valid classes."""
    if not (isinstance(config, dict) and isinstance(config.get("config"), dict)
            and config.get("class") in SCHEDULES):
        raise ValueError(f"not a serialized learning-rate schedule: {config!r}; expected "
                         f"{{'class': one of {sorted(SCHEDULES)}, 'config': {{...}}}}")
    return SCHEDULES[config["class"]].from_config(config["config"])
