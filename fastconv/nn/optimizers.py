"""Optimizers that update a model's whole flat parameter buffer with one fused kernel call per step.

``step(params, grads)`` updates any arrays in place (through :func:`fastconv.ops.adam_update` /
:func:`~fastconv.ops.sgd_update`); ``bind(params, grads)`` returns the bound update a model's training
loop calls once per batch (the buffers and hyperparameters checked once; the learning rate read at each
step, so a change to ``learning_rate`` between steps takes effect).
"""
import numbers

import numpy as np

from .. import ops

__all__ = ["Optimizer", "Adam", "SGD", "get"]


def _real(value, name, low=None, high=None, high_open=False):
    """``value`` as a float in [low, high] (or [low, high)); raises naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        hint = " (learning-rate schedules are not supported: pass a number)" if callable(value) else ""
        raise TypeError(f"{name} must be a real number, got {value!r}{hint}")
    value = float(value)
    if value != value or (low is not None and value < low) or (high is not None and (
            value > high or (high_open and value == high))):
        bound = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {'in ' if high is not None else ''}{bound}, got {value}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class Optimizer:
    """Base class: ``build(n, dtype)`` allocates state; ``step(params, grads)`` updates params in place."""

    def build(self, size, dtype):
        self.iterations = 0
        self._bound = None

    def _lr(self):
        lr = self.learning_rate
        return lr if type(lr) is float and lr >= 0 else _real(lr, "learning_rate", 0.0)

    def state(self):
        return {}

    def set_state(self, state):
        for key, value in state.items():
            if key == "iterations":
                self.iterations = int(value)
            else:
                getattr(self, key)[...] = value


class Adam(Optimizer):
    """Adam (``torch.optim.Adam`` semantics by default; Keras argument names).

    ``epsilon_hat=True`` is the Kingma-Ba/Keras form seed 000 uses; ``amsgrad``, ``weight_decay`` and
    ``decoupled`` (AdamW) as in :func:`fastconv.ops.adam_update`.
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                 decoupled=False, amsgrad=False, epsilon_hat=False):
        self.learning_rate = _real(learning_rate, "learning_rate", 0.0)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.weight_decay = _real(weight_decay, "weight_decay", 0.0)
        self.decoupled = _flag(decoupled, "decoupled")
        self.amsgrad = _flag(amsgrad, "amsgrad")
        self.epsilon_hat = _flag(epsilon_hat, "epsilon_hat")
        self.iterations = 0
        self.m = self.v = self.vmax = None
        self._bound = None

    def build(self, size, dtype):
        super().build(size, dtype)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.vmax = np.zeros(size, dtype) if self.amsgrad else None

    def step(self, params, grads):
        self.iterations += 1
        ops.adam_update(params, grads, self.m, self.v, step=self.iterations, lr=self.learning_rate, beta1=self.beta_1,
                        beta2=self.beta_2, eps=self.epsilon, weight_decay=self.weight_decay, decoupled=self.decoupled,
                        amsgrad=self.amsgrad, vmax=self.vmax, eps_hat=self.epsilon_hat)

    def bind(self, params, grads):
        if self.m is None:
            raise RuntimeError("the optimizer has no state yet: build the model (or call optimizer.build) first")
        hyper = (self.beta_1, self.beta_2, self.epsilon, self.weight_decay, self.decoupled, self.epsilon_hat,
                 ops.get_num_threads())
        key = (params, grads, self.m, self.v, self.vmax, hyper)
        if self._bound is None or any(a is not b for a, b in zip(self._bound[0][:5], key[:5])) \
                or self._bound[0][5] != hyper:
            kernel = ops.bind_adam_update(params, grads, self.m, self.v, self.vmax, beta1=self.beta_1,
                                          beta2=self.beta_2, eps=self.epsilon, weight_decay=self.weight_decay,
                                          decoupled=self.decoupled, eps_hat=self.epsilon_hat)

            def update():
                self.iterations += 1
                kernel(self.iterations, self._lr())

            self._bound = (key, update)
        return self._bound[1]

    def state(self):
        s = {"iterations": self.iterations, "m": self.m, "v": self.v}
        if self.amsgrad:
            s["vmax"] = self.vmax
        return s

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay, "decoupled": self.decoupled,
                "amsgrad": self.amsgrad, "epsilon_hat": self.epsilon_hat}


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay (``torch.optim.SGD`` semantics)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.learning_rate = _real(learning_rate, "learning_rate", 0.0)
        self.momentum = _real(momentum, "momentum", 0.0)
        self.nesterov = _flag(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0 (as torch.optim.SGD)")
        self.weight_decay = _real(weight_decay, "weight_decay", 0.0)
        self.iterations = 0
        self.velocity = None
        self._bound = None

    def build(self, size, dtype):
        super().build(size, dtype)
        self.velocity = np.zeros(size, dtype) if self.momentum else None

    def step(self, params, grads):
        self.iterations += 1
        ops.sgd_update(params, grads, self.velocity, lr=self.learning_rate, momentum=self.momentum,
                       nesterov=self.nesterov, weight_decay=self.weight_decay)

    def bind(self, params, grads):
        hyper = (self.momentum, self.nesterov, self.weight_decay, ops.get_num_threads())
        key = (params, grads, self.velocity, hyper)
        if self._bound is None or any(a is not b for a, b in zip(self._bound[0][:3], key[:3])) \
                or self._bound[0][3] != hyper:
            kernel = ops.bind_sgd_update(params, grads, self.velocity, momentum=self.momentum,
                                         nesterov=self.nesterov, weight_decay=self.weight_decay)

            def update():
                self.iterations += 1
                kernel(self._lr())

            self._bound = (key, update)
        return self._bound[1]

    def state(self):
        s = {"iterations": self.iterations}
        if self.velocity is not None:
            s["velocity"] = self.velocity
        return s

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


_OPTIMIZERS = {"adam": Adam, "sgd": SGD}


def get(identifier):
    """An optimizer from a name ("adam", "sgd") or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; valid choices: {', '.join(_OPTIMIZERS)} "
                     "or an Optimizer instance")
