"""Optimizers that update a model's whole flat parameter buffer with one fused kernel call per step."""
import numpy as np

from .. import ops

__all__ = ["Optimizer", "Adam", "SGD", "get"]


class Optimizer:
    """Base class: ``build(n, dtype)`` allocates state; ``step(params, grads)`` updates params in place."""

    def build(self, size, dtype):
        self.iterations = 0

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
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon
        self.weight_decay, self.decoupled, self.amsgrad, self.epsilon_hat = weight_decay, decoupled, amsgrad, epsilon_hat
        self.iterations = 0
        self._checked = None  # (arrays and hyperparameters) of the last fully checked step

    def build(self, size, dtype):
        super().build(size, dtype)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.vmax = np.zeros(size, dtype) if self.amsgrad else None

    def step(self, params, grads):
        self.iterations += 1
        hyper = (self.learning_rate, self.beta_1, self.beta_2, self.epsilon, self.weight_decay, self.decoupled,
                 self.amsgrad, self.epsilon_hat)
        checked = self._checked
        if (checked is not None and checked[0] is params and checked[1] is grads and checked[2] is self.m
                and checked[3] is self.v and checked[4] is self.vmax and checked[5] == hyper):
            # the same buffers and hyperparameters that adam_update accepted on an earlier step: skip its
            # checks (2.9 us on top of the 4.8 us kernel for seed 000's 9,586 float64 parameters)
            ops._adam_update_unchecked(params, grads, self.m, self.v, self.vmax, self.iterations, *checked[6])
            return
        ops.adam_update(params, grads, self.m, self.v, step=self.iterations, lr=self.learning_rate, beta1=self.beta_1,
                        beta2=self.beta_2, eps=self.epsilon, weight_decay=self.weight_decay, decoupled=self.decoupled,
                        amsgrad=self.amsgrad, vmax=self.vmax, eps_hat=self.epsilon_hat)
        # remember what was accepted; plain 1-D contiguous buffers only (others need copies and write-back)
        plain = all(a is None or (type(a) is np.ndarray and a.ndim == 1 and a.flags.c_contiguous
                                  and a.flags.writeable) for a in (params, grads, self.m, self.v, self.vmax))
        self._checked = (params, grads, self.m, self.v, self.vmax, hyper,
                         tuple(float(h) for h in hyper[:5]) + (bool(self.decoupled), bool(self.epsilon_hat))
                         ) if plain else None

    def state(self):
        s = {"iterations": self.iterations, "m": self.m, "v": self.v}
        if self.amsgrad:
            s["vmax"] = self.vmax
        return s

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled, "amsgrad": self.amsgrad,
                "epsilon_hat": self.epsilon_hat}


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay (``torch.optim.SGD`` semantics)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.learning_rate, self.momentum, self.nesterov, self.weight_decay = learning_rate, momentum, nesterov, weight_decay
        self.iterations = 0

    def build(self, size, dtype):
        super().build(size, dtype)
        self.velocity = np.zeros(size, dtype) if self.momentum else None

    def step(self, params, grads):
        self.iterations += 1
        ops.sgd_update(params, grads, self.velocity, lr=self.learning_rate, momentum=self.momentum,
                       nesterov=self.nesterov, weight_decay=self.weight_decay)

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
    raise ValueError(f"unknown optimizer {identifier!r}; valid choices: {', '.join(_OPTIMIZERS)} or an Optimizer instance")
