"""Optimizers that update a model's whole flat parameter buffer with one fused kernel call per step.

``step(params, grads)`` updates any arrays in place (through :mod:`fastconv.ops`); ``bind(params, grads,
segments=None)`` returns the bound update a model's training loop calls once per batch (the buffers and
hyperparameters checked once; the learning rate read at each step, so a change to ``learning_rate``
between steps takes effect).

Two conventions exist where PyTorch and Keras 3 differ.  ``Adam`` and ``SGD`` follow ``torch.optim`` by
default and take ``convention="keras"`` for Keras's update formulas; ``AdamW`` defaults to Keras's form;
``RMSprop``, ``Adagrad`` and ``Nadam`` are Keras's (argument names, defaults and formulas).

Common to every optimizer, with Keras's semantics:

- ``learning_rate``: a number or a :class:`fastconv.nn.schedules.LearningRateSchedule`, evaluated at
  ``iterations`` (the steps already taken) before each step.  ``optimizer.learning_rate`` reads the current
  value as a float; assigning a number sets it (TypeError when the optimizer holds a schedule, as Keras).
- ``clipnorm`` (each variable's gradient to norm <= clipnorm; the variables are the ``segments`` given to
  ``bind``, the whole buffer when none are), ``global_clipnorm`` (all gradients together), ``clipvalue``
  (each element to [-clipvalue, clipvalue]); at most one of the three.  The Keras-form kernels clip as they
  read the gradient; the torch forms read a clipped copy.
- Keras forms apply ``weight_decay`` as Keras's base optimizer does, before the update:
  ``p = p - p * weight_decay * lr``; the torch forms add it to the gradient (L2), or ``p *= 1 - lr*wd``
  for torch's AdamW.
"""
import numbers

import numpy as np

from .. import ops
from . import schedules

__all__ = ["Optimizer", "Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Nadam", "get"]


def _real(value, name, low=None, high=None, high_open=False):
    """``value`` as a float in [low, high] (or [low, high)); raises naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        hint = (" (learning-rate schedules are not supported as plain callables: pass a "
                "fastconv.nn.schedules.LearningRateSchedule)") if callable(value) else ""
        raise TypeError(f"{name} must be a real number, got {value!r}{hint}")
    value = float(value)
    if value != value or (low is not None and value < low) or (high is not None and (
            value > high or (high_open and value == high))):
        bound = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {'in ' if high is not None else ''}{bound}, got {value}")
    return value


def _convention(value):
    if value not in ("torch", "keras"):
        raise ValueError(f"convention must be 'torch' or 'keras', got {value!r}")
    return value


def _clip_arg(value, name):
    return None if value is None else _real(value, name, 0.0)


class Optimizer:
    """Base class: ``build(n, dtype)`` allocates state; ``step(params, grads)`` updates params in place;
    ``bind(params, grads, segments=None)`` gives the bound per-batch update."""

    _STATE = ()          # names of the state arrays (attributes), in state() order

    def _init_common(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None):
        self._learning_rate = None
        self.learning_rate = learning_rate
        if not isinstance(self._learning_rate, schedules.LearningRateSchedule):
            self._learning_rate = _real(self._learning_rate, "learning_rate", 0.0)
        self.clipnorm = _clip_arg(clipnorm, "clipnorm")
        self.clipvalue = _clip_arg(clipvalue, "clipvalue")
        self.global_clipnorm = _clip_arg(global_clipnorm, "global_clipnorm")
        ops.clip_settings(self.clipnorm, self.clipvalue, self.global_clipnorm)   # at most one (Keras)
        self.iterations = 0
        self._bound = None
        for name in self._STATE:
            setattr(self, name, None)

    # -------------------------------------------------------------------------------- learning rate
    @property
    def learning_rate(self):
        """The current learning rate: the number set, or the schedule's value at ``iterations``."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self.iterations))
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, schedules.LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(getattr(self, "_learning_rate", None), schedules.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not settable. "
                            "If you need the learning rate to be settable, you should instantiate the "
                            "optimizer with a float `learning_rate` argument.")
        self._learning_rate = value      # checked when the next step reads it

    def _lr(self):
        """The learning rate of the step about to run (a schedule at ``iterations``), checked."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = lr(self.iterations)
        return lr if type(lr) is float and lr >= 0 else _real(lr, "learning_rate", 0.0)

    def _clip_kwargs(self):
        return {"clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    def _clips(self):
        return ops.clip_settings(self.clipnorm, self.clipvalue, self.global_clipnorm)[0] is not None

    # ------------------------------------------------------------------------------------------ state
    def build(self, size, dtype):
        self.iterations = 0
        self._bound = None

    def _require_built(self):
        if any(getattr(self, name) is None for name in self._required_state()):
            raise RuntimeError("the optimizer has no state yet: build the model (or call optimizer.build) first")

    def _required_state(self):
        """The state arrays this optimizer's settings use (all of ``_STATE`` unless a subclass says less)."""
        return self._STATE

    def state(self):
        s = {"iterations": self.iterations}
        for name in self._STATE:
            if getattr(self, name) is not None:
                s[name] = getattr(self, name)
        return s

    def set_state(self, state):
        for key, value in state.items():
            if key == "iterations":
                self.iterations = int(value)
            else:
                getattr(self, key)[...] = value

    # ----------------------------------------------------------------------------------------- config
    def _config_learning_rate(self):
        lr = self._learning_rate
        return schedules.serialize(lr) if isinstance(lr, schedules.LearningRateSchedule) else lr

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(), **self._clip_kwargs()}

    @classmethod
    def from_config(cls, config):
        """The optimizer ``get_config()`` described (a serialized schedule becomes a schedule again)."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    # ------------------------------------------------------------------------------------------- bind
    def bind(self, params, grads, segments=None):
        """The bound update on flat ``params``/``grads``; ``segments``: the (start, stop) offsets of each
        variable in the buffer (what ``clipnorm`` clips one by one)."""
        self._require_built()
        segs = None if segments is None else tuple((int(a), int(b)) for a, b in segments)
        arrays = (params, grads) + tuple(getattr(self, name) for name in self._STATE)
        config = self.get_config()
        config.pop("learning_rate")
        hyper = (tuple(sorted(config.items())), segs, ops.get_num_threads())
        bound = self._bound
        if bound is None or len(bound[0]) != len(arrays) or any(a is not b for a, b in zip(bound[0], arrays)) \
                or bound[1] != hyper:
            self._bound = (arrays, hyper, self._make_update(params, grads, segs))
        return self._bound[2]

    def _torch_grad(self, grads, segments):
        """(the gradient buffer the torch-form kernel reads, the bound clip or None)."""
        if not self._clips():
            return grads, None
        scratch = np.empty_like(grads)
        return scratch, ops.bind_clip_gradient(grads, scratch, segments=segments, **self._clip_kwargs())

    def _clipped(self, grads, segments):
        return ops.clip_gradient(grads, segments=segments, **self._clip_kwargs()) if self._clips() else grads


class Adam(Optimizer):
    """Adam (``torch.optim.Adam`` semantics and defaults by default; Keras argument names).

    convention="torch" (default)::

        g = grad + weight_decay * p             (L2; decoupled=True: p *= 1 - lr * weight_decay, AdamW)
        m = beta_1*m + (1-beta_1)*g;  v = beta_2*v + (1-beta_2)*g*g
        p -= lr/(1-beta_1**t) * m / (sqrt(v)/sqrt(1-beta_2**t) + epsilon)

    ``epsilon_hat=True`` is the Kingma-Ba form seed 000 uses: ``p -= alpha * m / (sqrt(v) + epsilon)``,
    ``alpha = lr*sqrt(1-beta_2**t)/(1-beta_1**t)``; ``amsgrad`` keeps ``max(v)``.

    convention="keras": ``keras.optimizers.Adam``'s formula exactly: ``m += (g - m)*(1-beta_1)``,
    ``v += (g*g - v)*(1-beta_2)``, ``p -= m*alpha / (sqrt(v) + epsilon)`` (epsilon-hat), and weight decay
    ``p -= p*weight_decay*lr`` before the update.  Pass ``epsilon=1e-7`` for Keras's default (the default
    here stays torch's 1e-8); ``epsilon_hat`` and ``decoupled`` belong to the torch convention.
    """

    _STATE = ("m", "v", "vmax")

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                 decoupled=False, amsgrad=False, epsilon_hat=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, convention="torch"):
        self._init_common(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay", 0.0)
        self.decoupled = ops.as_bool(decoupled, "decoupled")
        self.amsgrad = ops.as_bool(amsgrad, "amsgrad")
        self.epsilon_hat = ops.as_bool(epsilon_hat, "epsilon_hat")
        self.convention = _convention(convention)
        if self.convention == "keras" and (self.epsilon_hat or self.decoupled):
            raise ValueError("epsilon_hat and decoupled select torch-form variants; convention='keras' already "
                             "uses epsilon-hat and Keras's decoupled weight decay (leave them False)")

    def build(self, size, dtype):
        super().build(size, dtype)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.vmax = np.zeros(size, dtype) if self.amsgrad else None

    def _required_state(self):
        return ("m", "v") + (("vmax",) if self.amsgrad else ())

    def step(self, params, grads, segments=None):
        lr = self._lr()
        self.iterations += 1
        if self.convention == "keras":
            ops.adam_keras_update(params, grads, self.m, self.v, step=self.iterations, lr=lr, beta1=self.beta_1,
                                  beta2=self.beta_2, epsilon=self.epsilon, weight_decay=self.weight_decay,
                                  amsgrad=self.amsgrad, vhat=self.vmax, segments=segments, **self._clip_kwargs())
            return
        ops.adam_update(params, self._clipped(grads, segments), self.m, self.v, step=self.iterations, lr=lr,
                        beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, weight_decay=self.weight_decay,
                        decoupled=self.decoupled, amsgrad=self.amsgrad, vmax=self.vmax, eps_hat=self.epsilon_hat)

    def _make_update(self, params, grads, segments):
        if self.convention == "keras":
            kernel = ops.bind_adam_keras_update(params, grads, self.m, self.v, self.vmax, beta1=self.beta_1,
                                                beta2=self.beta_2, epsilon=self.epsilon,
                                                weight_decay=self.weight_decay, segments=segments,
                                                **self._clip_kwargs())

            def update():
                lr = self._lr()
                self.iterations += 1
                kernel(self.iterations, lr)

            return update
        g, clip = self._torch_grad(grads, segments)
        kernel = ops.bind_adam_update(params, g, self.m, self.v, self.vmax, beta1=self.beta_1, beta2=self.beta_2,
                                      eps=self.epsilon, weight_decay=self.weight_decay, decoupled=self.decoupled,
                                      eps_hat=self.epsilon_hat)

        def update():
            lr = self._lr()
            self.iterations += 1
            if clip is not None:
                clip()
            kernel(self.iterations, lr)

        return update

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay, "decoupled": self.decoupled,
                "amsgrad": self.amsgrad, "epsilon_hat": self.epsilon_hat, **self._clip_kwargs(),
                "convention": self.convention}


class AdamW(Adam):
    """AdamW with Keras 3's arguments and defaults (``keras.optimizers.AdamW``).

    convention="keras" (default): Keras's formula, ``p -= p*weight_decay*lr`` and then Keras's Adam step
    (:class:`Adam` with convention="keras").  convention="torch": ``torch.optim.AdamW``'s formula,
    ``p *= 1 - lr*weight_decay`` and torch's Adam step (epsilon added after the bias correction); the
    defaults stay Keras's (torch's own are weight_decay=0.01, epsilon=1e-8).
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, convention="keras"):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        convention = _convention(convention)
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, decoupled=convention == "torch",
                         amsgrad=amsgrad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         convention=convention)

    def get_config(self):
        config = super().get_config()
        del config["decoupled"], config["epsilon_hat"]
        return config


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum; ``convention`` picks torch's or Keras's formula.

    convention="torch" (default, ``torch.optim.SGD``, no dampening)::

        d = grad + weight_decay * p;  buf = momentum*buf + d;  p -= lr * (d + momentum*buf if nesterov else buf)

    convention="keras" (``keras.optimizers.SGD``: the velocity carries the learning rate; momentum in [0, 1])::

        p -= p * weight_decay * lr;  v = momentum*v - lr*g;  p += momentum*v - lr*g if nesterov else v

    Defaults (learning_rate=0.01, momentum=0) are the same in both.
    """

    _STATE = ("velocity",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, convention="torch"):
        self._init_common(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.convention = _convention(convention)
        self.momentum = _real(momentum, "momentum", 0.0, 1.0 if self.convention == "keras" else None)
        self.nesterov = ops.as_bool(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0 (as torch.optim.SGD)")
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay", 0.0)

    def build(self, size, dtype):
        super().build(size, dtype)
        self.velocity = np.zeros(size, dtype) if self.momentum else None

    def _required_state(self):
        return ("velocity",) if self.momentum else ()

    def step(self, params, grads, segments=None):
        lr = self._lr()
        self.iterations += 1
        if self.convention == "keras":
            ops.sgd_keras_update(params, grads, self.velocity, lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                                 weight_decay=self.weight_decay, segments=segments, **self._clip_kwargs())
            return
        ops.sgd_update(params, self._clipped(grads, segments), self.velocity, lr=lr, momentum=self.momentum,
                       nesterov=self.nesterov, weight_decay=self.weight_decay)

    def _make_update(self, params, grads, segments):
        if self.convention == "keras":
            kernel = ops.bind_sgd_keras_update(params, grads, self.velocity, momentum=self.momentum,
                                               nesterov=self.nesterov, weight_decay=self.weight_decay,
                                               segments=segments, **self._clip_kwargs())
            clip = None
        else:
            g, clip = self._torch_grad(grads, segments)
            kernel = ops.bind_sgd_update(params, g, self.velocity, momentum=self.momentum, nesterov=self.nesterov,
                                         weight_decay=self.weight_decay)

        def update():
            lr = self._lr()
            self.iterations += 1
            if clip is not None:
                clip()
            kernel(lr)

        return update

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, **self._clip_kwargs(), "convention": self.convention}


class RMSprop(Optimizer):
    """RMSprop with Keras 3's formula, arguments and defaults (``keras.optimizers.RMSprop``)::

        v = rho*v + (1-rho)*g*g
        d = v + epsilon                 centered: a = rho*a + (1-rho)*g;  d = v - a*a + epsilon
        inc = lr*g / sqrt(d)            (epsilon inside the square root)
        momentum > 0: b = momentum*b + inc;  p -= b        else: p -= inc

    with ``p -= p*weight_decay*lr`` first.  ``torch.optim.RMSprop`` differs: it adds epsilon after the
    square root and keeps the learning rate out of its momentum buffer (the two agree for epsilon = 0 and
    a constant learning rate).
    """

    _STATE = ("velocity", "momentum_buffer", "average_grad")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        self._init_common(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.rho = _real(rho, "rho", 0.0, 1.0)
        self.momentum = _real(momentum, "momentum", 0.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.centered = ops.as_bool(centered, "centered")
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay", 0.0)

    def build(self, size, dtype):
        super().build(size, dtype)
        self.velocity = np.zeros(size, dtype)
        self.momentum_buffer = np.zeros(size, dtype) if self.momentum > 0 else None
        self.average_grad = np.zeros(size, dtype) if self.centered else None

    def _required_state(self):
        return (("velocity",) + (("momentum_buffer",) if self.momentum > 0 else ())
                + (("average_grad",) if self.centered else ()))

    def _hyper(self):
        return dict(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered,
                    weight_decay=self.weight_decay, **self._clip_kwargs())

    def step(self, params, grads, segments=None):
        lr = self._lr()
        self.iterations += 1
        ops.rmsprop_update(params, grads, self.velocity, self.momentum_buffer, self.average_grad, lr=lr,
                           segments=segments, **self._hyper())

    def _make_update(self, params, grads, segments):
        kernel = ops.bind_rmsprop_update(params, grads, self.velocity, self.momentum_buffer, self.average_grad,
                                         segments=segments, **self._hyper())

        def update():
            lr = self._lr()
            self.iterations += 1
            kernel(lr)

        return update

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(), **self._hyper()}


class Adagrad(Optimizer):
    """Adagrad with Keras 3's formula, arguments and defaults (``keras.optimizers.Adagrad``)::

        acc = acc + g*g                 (acc starts at initial_accumulator_value)
        p -= lr*g / sqrt(acc + epsilon)

    with ``p -= p*weight_decay*lr`` first.  ``torch.optim.Adagrad`` adds epsilon after the square root and
    starts the accumulator at 0 (the two agree for epsilon = 0 and the same initial value).
    """

    _STATE = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=0.0,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        self._init_common(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.initial_accumulator_value = _real(initial_accumulator_value, "initial_accumulator_value", 0.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay", 0.0)

    def build(self, size, dtype):
        super().build(size, dtype)
        self.accumulator = np.full(size, self.initial_accumulator_value, dtype)

    def step(self, params, grads, segments=None):
        lr = self._lr()
        self.iterations += 1
        ops.adagrad_update(params, grads, self.accumulator, lr=lr, epsilon=self.epsilon,
                           weight_decay=self.weight_decay, segments=segments, **self._clip_kwargs())

    def _make_update(self, params, grads, segments):
        kernel = ops.bind_adagrad_update(params, grads, self.accumulator, epsilon=self.epsilon,
                                         weight_decay=self.weight_decay, segments=segments, **self._clip_kwargs())

        def update():
            lr = self._lr()
            self.iterations += 1
            kernel(lr)

        return update

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(),
                "initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay, **self._clip_kwargs()}


class Nadam(Optimizer):
    """Nadam with Keras 3's formula, arguments and defaults (``keras.optimizers.Nadam``)::

        u_t = beta_1*(1 - 0.5*0.96**t);  u_prod_t = u_prod_{t-1} * u_t   (state ``u_product``, from 1)
        m += (g - m)*(1-beta_1);  v += (g*g - v)*(1-beta_2)
        m_hat = u_{t+1}*m/(1 - u_prod_t*u_{t+1}) + (1-u_t)*g/(1 - u_prod_t);  v_hat = v/(1-beta_2**t)
        p -= m_hat*lr / (sqrt(v_hat) + epsilon)

    with ``p -= p*weight_decay*lr`` first.  ``torch.optim.NAdam`` uses the same momentum schedule with
    ``momentum_decay=0.004`` and epsilon after the bias correction.
    """

    _STATE = ("m", "v", "u_product")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        self._init_common(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.weight_decay = 0.0 if weight_decay is None else _real(weight_decay, "weight_decay", 0.0)

    def build(self, size, dtype):
        super().build(size, dtype)
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self.u_product = np.ones((), np.float64)

    def step(self, params, grads, segments=None):
        lr = self._lr()
        self.iterations += 1
        self.u_product[...] = ops.nadam_update(
            params, grads, self.m, self.v, step=self.iterations, u_product=float(self.u_product), lr=lr,
            beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon, weight_decay=self.weight_decay,
            segments=segments, **self._clip_kwargs())

    def _make_update(self, params, grads, segments):
        kernel = ops.bind_nadam_update(params, grads, self.m, self.v, beta1=self.beta_1, beta2=self.beta_2,
                                       epsilon=self.epsilon, weight_decay=self.weight_decay, segments=segments,
                                       **self._clip_kwargs())
        u = self.u_product

        def update():
            lr = self._lr()
            self.iterations += 1
            u[...] = kernel(self.iterations, lr, float(u))

        return update

    def get_config(self):
        return {"learning_rate": self._config_learning_rate(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay, **self._clip_kwargs()}


_OPTIMIZERS = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adamw": AdamW, "nadam": Nadam}


def get(identifier):
    """An optimizer from a name ("adam", "sgd", "rmsprop", "adagrad", "adamw", "nadam"; any case), an
    Optimizer class (instantiated with its defaults) or an instance (returned as it is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer) and identifier is not Optimizer:
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; valid choices: {', '.join(_OPTIMIZERS)} "
                     "or an Optimizer instance")
