"""PyTorch interop: parameter names, and conversion of whole models to and from ``torch.nn.Sequential``.

fastconv's core already uses PyTorch's layouts (NCHW activations, conv weights ``(out, in, kh, kw)``,
dense weights ``(out, in)``), so conversion only renames: every fastconv layer becomes the torch modules
that compute the same function, in order, and a parameter is named ``"{index}.{name}"`` after the module
that holds it in that ``torch.nn.Sequential`` -- exactly the keys of ``to_torch(model).state_dict()``.
An activation inside a layer becomes a module of its own: ``Conv2D(8, 3, activation="relu")`` is
``Conv2d`` (index i, params ``"{i}.weight"``, ``"{i}.bias"``) then ``ReLU`` (index i + 1).

=====================================  ==============================================================
fastconv layer                         torch modules
=====================================  ==============================================================
Conv2D                                 ``Conv2d`` (asymmetric pads: ``ZeroPad2d`` + ``Conv2d(padding=0)``)
Dense                                  ``Linear``
Flatten                                ``Flatten``
MaxPool2D                              ``MaxPool2d`` (pads torch cannot take: ``ConstantPad2d(-inf)`` first)
AveragePooling2D                       ``AvgPool2d`` (asymmetric pads: ``ZeroPad2d`` when they count)
GlobalAveragePooling2D / MaxPooling    ``AdaptiveAvgPool2d(1)`` / ``AdaptiveMaxPool2d(1)`` + ``Flatten``
BatchNormalization                     ``BatchNorm2d`` (4-D inputs) or ``BatchNorm1d``
Dropout                                ``Dropout(p=rate)``
Reshape                                ``Unflatten(1, shape)``, ``Flatten()`` or both
Activation / ``activation=``           ``ReLU``, ``Sigmoid``, ``Tanh``, ``Softmax(dim=1)``, ``ELU``, ``SELU``,
                                       ``GELU``, ``LeakyReLU``, ``SiLU``, ``Softplus``, ``Softsign``,
                                       ``ReLU6``, ``Hardsigmoid``; "linear" adds nothing
=====================================  ==============================================================

:func:`state_dict` and :func:`load_state_dict` work on NumPy arrays and never import torch (torch tensors
are accepted as values).  :func:`to_torch` and :func:`from_torch` import torch when called.  Anything that
has no exact counterpart raises ``NotImplementedError`` naming it.
"""
import collections
import math
import numbers

import numpy as np

from .nn import activations
from .nn import layers as layers_mod
from .nn.model import Sequential

__all__ = ["state_dict", "load_state_dict", "to_torch", "from_torch", "IncompatibleKeys"]

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What a non-strict :func:`load_state_dict` left out: keys missing and keys unexpected."

# activation name -> (torch module class name, kwargs from the activation object)
_TORCH_ACTIVATIONS = {
    "relu": ("ReLU", lambda fn: {}),
    "sigmoid": ("Sigmoid", lambda fn: {}),
    "tanh": ("Tanh", lambda fn: {}),
    "softmax": ("Softmax", lambda fn: {"dim": 1}),
    "elu": ("ELU", lambda fn: {"alpha": float(getattr(fn, "alpha", 1.0))}),
    "selu": ("SELU", lambda fn: {}),
    "gelu": ("GELU", lambda fn: {"approximate": str(getattr(fn, "approximate", "none"))}),
    "gelu_tanh": ("GELU", lambda fn: {"approximate": "tanh"}),
    "leaky_relu": ("LeakyReLU", lambda fn: {"negative_slope": float(getattr(fn, "negative_slope", 0.01))}),
    "silu": ("SiLU", lambda fn: {}),
    "swish": ("SiLU", lambda fn: {}),
    "softplus": ("Softplus", lambda fn: {}),
    "softsign": ("Softsign", lambda fn: {}),
    "relu6": ("ReLU6", lambda fn: {}),
    "hard_sigmoid": ("Hardsigmoid", lambda fn: {}),
}


# --------------------------------------------------------------------------------- the shared plan
class _Module:
    """One torch module of the plan: its class name in ``torch.nn``, constructor arguments, and its
    parameters and buffers in torch's order as ``(torch_name, source)``.  ``source`` is ``("param", key)``
    or ``("state", key)`` (a view of the fastconv layer), ``("const", value)`` (a fixed tensor fastconv
    does not have, e.g. the scale of a BatchNormalization with ``scale=False``) or ``("count", None)``
    (``num_batches_tracked``)."""

    def __init__(self, cls, kwargs=None, tensors=(), args=()):
        self.cls, self.args, self.kwargs, self.tensors = cls, tuple(args), dict(kwargs or {}), list(tensors)


def _layer_name(index, layer):
    return f"layer {index} ({type(layer).__name__}{'' if layer.name is None else ' ' + repr(layer.name)})"


def _activation_of(layer):
    """The activation object of a layer (``activation_fn`` when the core has it, else from the name)."""
    fn = getattr(layer, "activation_fn", None)
    return activations.get(layer.activation) if fn is None else fn


def _activation_modules(fn, shape, where):
    """Torch modules for activation ``fn`` applied to per-sample ``shape`` (none for linear)."""
    name = getattr(fn, "name", None)
    if name in (None, "linear"):
        return []
    if name not in _TORCH_ACTIVATIONS:
        raise NotImplementedError(f"{where}: activation {name!r} has no torch module mapping")
    if name == "softmax" and len(shape) != 1:
        raise NotImplementedError(f"{where}: softmax on per-sample shape {tuple(shape)}: fastconv normalises over "
                                  "all per-sample values and torch.nn.Softmax over one dimension")
    cls, kwargs = _TORCH_ACTIVATIONS[name]
    return [_Module(cls, kwargs(fn))]


def _pads(layer, default=(0, 0, 0, 0)):
    """``(top, bottom, left, right)`` of a layer: ``.pads`` when the core sets it, else from ``.padding``."""
    pads = getattr(layer, "pads", None)
    if pads is not None:
        return tuple(int(p) for p in pads)
    padding = getattr(layer, "padding", None)
    if isinstance(padding, tuple) and len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return default


def _symmetric(pads):
    top, bottom, left, right = pads
    return top == bottom and left == right


def _conv_modules(layer, where):
    pads = _pads(layer)
    dilation = tuple(getattr(layer, "dilation_rate", (1, 1)))
    out, cin = layer.params["kernel"].shape[:2]
    modules = []
    if _symmetric(pads):
        padding = (pads[0], pads[2])
    else:
        top, bottom, left, right = pads
        modules.append(_Module("ZeroPad2d", {"padding": (left, right, top, bottom)}))
        padding = (0, 0)
    tensors = [("weight", ("param", "kernel"))] + ([("bias", ("param", "bias"))] if layer.use_bias else [])
    modules.append(_Module("Conv2d", {"in_channels": cin, "out_channels": out, "kernel_size": tuple(layer.kernel_size),
                                      "stride": tuple(layer.strides), "padding": padding, "dilation": dilation,
                                      "bias": layer.use_bias}, tensors))
    return modules + _activation_modules(_activation_of(layer), layer.output_shape, where)


def _dense_modules(layer, where):
    out, fin = layer.params["kernel"].shape
    tensors = [("weight", ("param", "kernel"))] + ([("bias", ("param", "bias"))] if layer.use_bias else [])
    return [_Module("Linear", {"in_features": fin, "out_features": out, "bias": layer.use_bias}, tensors)] + \
        _activation_modules(_activation_of(layer), layer.output_shape, where)


def _pool_padding(pads, kernel):
    """torch's symmetric ``padding`` for ``pads``, or None when torch's pooling cannot take them
    (asymmetric, or more than half the window)."""
    if not _symmetric(pads) or 2 * pads[0] > kernel[0] or 2 * pads[2] > kernel[1]:
        return None
    return (pads[0], pads[2])


def _maxpool_modules(layer, where):
    pads, kernel, ceil_mode = _pads(layer), tuple(layer.pool_size), bool(getattr(layer, "ceil_mode", False))
    padding, modules = _pool_padding(pads, kernel), []
    if padding is None:
        if ceil_mode:
            raise NotImplementedError(f"{where}: ceil_mode with pads {pads} that torch's MaxPool2d cannot take")
        top, bottom, left, right = pads
        modules.append(_Module("ConstantPad2d", {"padding": (left, right, top, bottom), "value": -math.inf}))
        padding = (0, 0)
    return modules + [_Module("MaxPool2d", {"kernel_size": kernel, "stride": tuple(layer.strides), "padding": padding,
                                            "ceil_mode": ceil_mode})]


def _avgpool_modules(layer, where):
    pads, kernel = _pads(layer), tuple(layer.pool_size)
    ceil_mode, include = bool(getattr(layer, "ceil_mode", False)), bool(getattr(layer, "count_include_pad", True))
    padding, modules = _pool_padding(pads, kernel), []
    if padding is None:
        if not include:
            raise NotImplementedError(f"{where}: pads {pads} with count_include_pad=False: torch's AvgPool2d takes "
                                      "symmetric padding of at most half the window only")
        if ceil_mode:
            raise NotImplementedError(f"{where}: ceil_mode with pads {pads} that torch's AvgPool2d cannot take")
        top, bottom, left, right = pads
        modules.append(_Module("ZeroPad2d", {"padding": (left, right, top, bottom)}))
        padding = (0, 0)
    return modules + [_Module("AvgPool2d", {"kernel_size": kernel, "stride": tuple(layer.strides), "padding": padding,
                                            "ceil_mode": ceil_mode, "count_include_pad": include})]


def _torch_momentum(layer, where):
    momentum, convention = float(layer.momentum), getattr(layer, "convention", "torch")
    if convention == "torch":
        return momentum
    if convention == "keras":
        return 1.0 - momentum
    raise NotImplementedError(f"{where}: BatchNormalization convention {convention!r}")


def _batchnorm_modules(layer, where):
    rank = len(layer.input_shape)
    if rank not in (1, 2, 3):
        raise NotImplementedError(f"{where}: BatchNormalization on per-sample shape {layer.input_shape}")
    channels = layer.input_shape[0]
    center, scale = bool(getattr(layer, "center", True)), bool(getattr(layer, "scale", True))
    affine = center or scale
    tensors = []
    if affine:
        tensors.append(("weight", ("param", "gamma") if scale else ("const", 1.0)))
        tensors.append(("bias", ("param", "beta") if center else ("const", 0.0)))
    tensors += [("running_mean", ("state", "moving_mean")), ("running_var", ("state", "moving_variance")),
                ("num_batches_tracked", ("count", None))]
    return [_Module("BatchNorm2d" if rank == 3 else "BatchNorm1d",
                    {"num_features": channels, "eps": float(layer.epsilon), "momentum": _torch_momentum(layer, where),
                     "affine": affine, "track_running_stats": True}, tensors)]


def _reshape_modules(layer, where):
    inp, out = tuple(layer.input_shape), tuple(layer.output_shape)
    if len(out) == 1:
        return [_Module("Flatten")]
    if len(inp) == 1:
        return [_Module("Unflatten", args=(1, out))]
    return [_Module("Flatten"), _Module("Unflatten", args=(1, out))]


def _layer_modules(index, layer):
    """The torch modules that compute fastconv ``layer`` (the model's ``index``-th)."""
    where = _layer_name(index, layer)
    kind = type(layer).__name__
    if isinstance(layer, layers_mod.Conv2D):
        return _conv_modules(layer, where)
    if isinstance(layer, layers_mod.Dense):
        return _dense_modules(layer, where)
    if isinstance(layer, layers_mod.Flatten):
        return [_Module("Flatten")]
    if isinstance(layer, layers_mod.MaxPool2D):
        return _maxpool_modules(layer, where)
    if isinstance(layer, layers_mod.Dropout):
        return [_Module("Dropout", {"p": layer.rate})]
    if isinstance(layer, layers_mod.Activation):
        return _activation_modules(_activation_of(layer), layer.input_shape, where)
    if kind == "BatchNormalization":
        return _batchnorm_modules(layer, where)
    if kind == "AveragePooling2D":
        return _avgpool_modules(layer, where)
    if kind == "GlobalAveragePooling2D":
        return [_Module("AdaptiveAvgPool2d", {"output_size": 1}), _Module("Flatten")]
    if kind == "GlobalMaxPooling2D":
        return [_Module("AdaptiveMaxPool2d", {"output_size": 1}), _Module("Flatten")]
    if kind == "Reshape":
        return _reshape_modules(layer, where)
    raise NotImplementedError(f"{where}: no torch module mapping for {kind}")


def _plan(model):
    """``[(layer, [_Module, ...]), ...]`` for a built model."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastconv.Sequential, got {type(model).__name__}")
    if not model.built:
        raise RuntimeError("the model is not built yet: call model.build(input_shape) (or fit or predict) first")
    return [(layer, _layer_modules(i, layer)) for i, layer in enumerate(model.layers)]


def _entries(model):
    """Every tensor of the model in torch's order: ``(key, layer, source)``."""
    out, index = [], 0
    for layer, modules in _plan(model):
        for module in modules:
            out += [(f"{index}.{name}", layer, source) for name, source in module.tensors]
            index += 1
    return out


def _source_value(layer, source, dtype):
    """The NumPy value of one tensor (a copy)."""
    kind, key = source
    if kind == "param":
        return layer.params[key].copy()
    if kind == "state":
        return np.array(layer.state[key], copy=True)
    if kind == "const":
        return np.full((layer.input_shape[0],), key, dtype)
    count = getattr(layer, "state", {}).get("num_batches_tracked")
    return np.array(0 if count is None else int(np.asarray(count)), np.int64)


# ------------------------------------------------------------------------------------- state dicts
def state_dict(model):
    """The model's parameters (and running statistics) under PyTorch's names.

    Parameters
    ----------
    model : fastconv.Sequential, built.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        Keys ``"{index}.{name}"`` in the order and with the names of ``to_torch(model).state_dict()``;
        values are copies in the model's dtype (conv weights ``(out, in, kh, kw)``, dense ``(out, in)``,
        biases ``(out,)``).  A BatchNormalization gives ``weight``, ``bias``, ``running_mean``,
        ``running_var`` and ``num_batches_tracked`` (an int64 0-d array: the layer's count when it keeps
        one, else 0; torch reads it only when ``momentum=None``).  Torch is not needed.

    Examples
    --------
    >>> from fastconv import Sequential, layers, interop
    >>> m = Sequential([layers.Conv2D(4, 3, activation="relu"), layers.Flatten(), layers.Dense(2)]).build((1, 5, 5))
    >>> list(interop.state_dict(m))
    ['0.weight', '0.bias', '3.weight', '3.bias']
    """
    return collections.OrderedDict((key, _source_value(layer, source, model.dtype))
                                   for key, layer, source in _entries(model))


def _as_numpy(value, key):
    """A NumPy array from a NumPy array, a torch tensor or an array-like."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor, without importing torch
        value = value.detach().cpu()
        try:
            value = value.numpy()
        except TypeError:                                     # bfloat16 and other types NumPy lacks
            value = value.double().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"state_dict[{key!r}] must be numeric, got dtype {arr.dtype}")
    return arr


def load_state_dict(model, state_dict, strict=True):
    """Copy ``state_dict`` (PyTorch names, as :func:`state_dict` gives) into the built ``model``.

    Parameters
    ----------
    model : fastconv.Sequential, built.
    state_dict : mapping of str -> numpy.ndarray, torch.Tensor or array-like
        E.g. ``torch_module.state_dict()`` of the ``torch.nn.Sequential`` :func:`to_torch` would build.
        Values are cast to the model's dtype; ``num_batches_tracked`` may be absent and is otherwise
        stored only where the layer keeps a count.
    strict : bool
        True: missing or unexpected keys raise ``KeyError`` listing them all.  False: they are skipped and
        returned.

    Returns
    -------
    IncompatibleKeys(missing_keys, unexpected_keys)

    Raises
    ------
    ValueError naming the key for a value of the wrong shape, or a fixed tensor (the scale of a
    BatchNormalization with ``scale=False``) with another value.  Nothing is written unless every check
    passes.
    """
    if not isinstance(state_dict, collections.abc.Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    for key in state_dict:
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be strings, got {key!r}")
    entries = _entries(model)
    expected = {key for key, _, _ in entries}
    missing = [key for key, _, source in entries if key not in state_dict and source[0] != "count"]
    unexpected = [key for key in state_dict if key not in expected]
    if strict and (missing or unexpected):
        raise KeyError("error loading the state dict into the fastconv model: "
                       + "; ".join(part for part in (
                           f"missing keys: {', '.join(missing)}" if missing else "",
                           f"unexpected keys: {', '.join(unexpected)}" if unexpected else "") if part))
    writes = []
    for key, layer, (kind, name) in entries:
        if key not in state_dict:
            continue
        value = _as_numpy(state_dict[key], key)
        if kind == "count":
            if value.shape not in ((), (1,)):
                raise ValueError(f"state_dict[{key!r}] must be a scalar count, got shape {value.shape}")
            if "num_batches_tracked" in getattr(layer, "state", {}):
                writes.append((layer.state["num_batches_tracked"], value.reshape(())))
            continue
        target = layer.params[name] if kind == "param" else layer.state[name] if kind == "state" else None
        shape = target.shape if target is not None else (layer.input_shape[0],)
        if value.shape != shape:
            raise ValueError(f"state_dict[{key!r}] has shape {value.shape}; the model expects {shape}")
        if kind == "const":
            if not np.all(value == name):
                raise ValueError(f"state_dict[{key!r}] must be all {name} (the layer has no such parameter: "
                                 f"{_layer_name(model.layers.index(layer), layer)})")
            continue
        writes.append((target, value))
    for target, value in writes:
        np.copyto(target, value, casting="unsafe")
    return IncompatibleKeys(missing, unexpected)


# --------------------------------------------------------------------------------------- to torch
def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("fastconv.interop.to_torch/from_torch need PyTorch: pip install torch") from exc
    return torch


_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def to_torch(model):
    """A ``torch.nn.Sequential`` computing what ``model`` computes, with copies of its weights.

    Parameters
    ----------
    model : fastconv.Sequential, built.

    Returns
    -------
    torch.nn.Sequential
        In the model's dtype (float32 -> torch.float32, float64 -> torch.float64), in training mode as torch
        builds modules (call ``.eval()`` to predict: dropout off, running statistics used).  Its
        ``state_dict()`` keys are :func:`state_dict`'s.  A fixed tensor fastconv lacks (the scale of a
        BatchNormalization with ``scale=False``) is a parameter with ``requires_grad=False``.

        BatchNormalization: convention "torch" keeps the momentum; "keras" gives torch
        ``momentum = 1 - keras_momentum``.  Keras updates its moving variance with the biased batch
        variance, torch with the unbiased one, so a converted "keras" model trained further in torch
        drifts from Keras's statistics by the factor n/(n-1) (inference is the same).
        Softplus: torch's ``Softplus`` returns x itself above x = 20 (a difference below 1e-9 relative).

    Raises
    ------
    NotImplementedError naming the layer and what torch cannot express.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from fastconv import Sequential, layers, interop
    >>> model = Sequential([layers.Conv2D(4, 3, activation="relu"), layers.Flatten(), layers.Dense(2)], seed=0)
    >>> net = interop.to_torch(model.build((1, 5, 5))).eval()
    >>> net
    Sequential(
      (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))
      (1): ReLU()
      (2): Flatten(start_dim=1, end_dim=-1)
      (3): Linear(in_features=36, out_features=2, bias=True)
    )
    >>> x = np.random.default_rng(0).standard_normal((3, 1, 5, 5)).astype(np.float32)
    >>> out = net(torch.from_numpy(x)).detach().numpy()
    >>> bool(np.allclose(out, model.predict(x), rtol=0, atol=1e-6))    # equal to float rounding
    True
    """
    torch = _torch()
    dtype = getattr(torch, _TORCH_DTYPES[model.dtype])
    plan = _plan(model)
    modules = []
    with torch.no_grad():
        for i, (layer, specs) in enumerate(plan):
            block = []
            for spec in specs:
                module = getattr(torch.nn, spec.cls)(*spec.args, **spec.kwargs).to(dtype)
                for name, source in spec.tensors:
                    value = torch.from_numpy(_source_value(layer, source, model.dtype))
                    current = getattr(module, name)
                    current.copy_(value)
                    if source[0] == "const":
                        current.requires_grad_(False)
                block.append(module)
            _check_shape(torch, block, layer, i, dtype)
            modules += block
    return torch.nn.Sequential(*modules)


def _check_shape(torch, block, layer, index, dtype):
    """The torch modules of one layer give the layer's output shape (a guard on the geometry rules)."""
    x = torch.zeros((2,) + tuple(layer.input_shape), dtype=dtype)
    for module in block:
        was = module.training
        module.eval()
        x = module(x)
        module.train(was)
    if tuple(x.shape[1:]) != tuple(layer.output_shape):
        raise NotImplementedError(f"{_layer_name(index, layer)}: torch's modules give per-sample shape "
                                  f"{tuple(x.shape[1:])}, the layer {tuple(layer.output_shape)}")


# ------------------------------------------------------------------------------------- from torch
def _core_layer(name, where, module):
    cls = getattr(layers_mod, name, None)
    if cls is None:
        raise NotImplementedError(f"{where} ({type(module).__name__}): needs fastconv.layers.{name}, which this "
                                  "fastconv does not have")
    return cls


def _pair(value):
    return (int(value), int(value)) if isinstance(value, numbers.Integral) else tuple(int(v) for v in value)


def _pad4(padding):
    """torch's (left, right, top, bottom) pad (int or 4-tuple) as fastconv's (top, bottom, left, right)."""
    if isinstance(padding, numbers.Integral):
        return (int(padding),) * 4
    left, right, top, bottom = (int(p) for p in padding)
    return (top, bottom, left, right)


def _activation_from_torch(torch, module, shape, where):
    """The fastconv activation (a name or an object) for a torch activation module, or None if none."""
    nn = torch.nn
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SELU: "selu", nn.SiLU: "silu",
              nn.Softsign: "softsign", nn.ReLU6: "relu6", nn.Hardsigmoid: "hard_sigmoid"}
    kind = type(module)
    if kind in simple:
        name = simple[kind]
    elif kind is nn.Softmax:
        if module.dim not in (1, -1) or len(shape) != 1:
            raise NotImplementedError(f"{where}: Softmax(dim={module.dim}) on per-sample shape {tuple(shape)}; "
                                      "fastconv's softmax normalises the features of (N, D) inputs")
        name = "softmax"
    elif kind is nn.Softplus:
        if module.beta != 1 or module.threshold != 20:
            raise NotImplementedError(f"{where}: Softplus(beta={module.beta}, threshold={module.threshold}); "
                                      "fastconv has beta=1 only")
        name = "softplus"
    elif kind is nn.ELU:
        return _parametrised("elu", "ELU", {"alpha": float(module.alpha)}, {"alpha": 1.0}, where)
    elif kind is nn.LeakyReLU:
        return _parametrised("leaky_relu", "LeakyReLU", {"negative_slope": float(module.negative_slope)},
                             {"negative_slope": 0.01}, where)
    elif kind is nn.GELU:
        return _parametrised("gelu", "GELU", {"approximate": module.approximate}, {"approximate": "none"}, where)
    else:
        return None
    if name not in activations.ACTIVATIONS:
        raise NotImplementedError(f"{where} ({kind.__name__}): needs activation {name!r}, which this fastconv "
                                  "does not have")
    return name


def _parametrised(name, cls_name, kwargs, defaults, where):
    """A parametrised activation: the object when the core has the class, else the name at its defaults."""
    if kwargs == defaults and name in activations.ACTIVATIONS:
        return name
    cls = getattr(activations, cls_name, None)
    if cls is not None:
        return cls(**kwargs)
    raise NotImplementedError(f"{where}: activation {cls_name}({kwargs}) needs fastconv.nn.activations.{cls_name}, "
                              "which this fastconv does not have")


def _flat_children(torch, module, prefix=""):
    """The leaf modules of nested ``nn.Sequential``s, with their dotted names."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            out += _flat_children(torch, child, full + ".")
        else:
            out.append((full, child))
    return out


def _module_dtype(torch, module):
    dtypes = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if not dtypes:
        return np.float32
    if len(dtypes) > 1:
        raise NotImplementedError(f"the module mixes dtypes {sorted(str(d) for d in dtypes)}; fastconv models have one")
    dtype = dtypes.pop()
    if dtype not in (torch.float32, torch.float64):
        raise NotImplementedError(f"the module's dtype is {dtype}; fastconv takes float32 or float64")
    return np.float32 if dtype == torch.float32 else np.float64


def _per_sample(shape, first):
    if shape[0] is None:
        return tuple(shape[1:])
    if (first == "Linear" and len(shape) == 2) or len(shape) == 4:
        return tuple(shape[1:])
    return tuple(shape)


def _probe_shapes(torch, children, shape, dtype):
    """Each child's per-sample input shape, by running zeros through the module in eval mode."""
    # two samples: a module that normalises by batch statistics even in eval mode needs more than one
    x = torch.zeros((2,) + tuple(shape), dtype=torch.float32 if dtype == np.float32 else torch.float64)
    shapes = []
    with torch.no_grad():
        for name, child in children:
            shapes.append(tuple(x.shape[1:]))
            flags = [m.training for m in child.modules()]
            child.eval()
            try:
                x = child(x)
            except Exception as exc:
                raise ValueError(f"module {name} ({type(child).__name__}) fails on per-sample input shape "
                                 f"{shapes[-1]}: {exc}") from exc
            finally:
                for m, flag in zip(child.modules(), flags):
                    m.training = flag
            if not isinstance(x, torch.Tensor):
                raise NotImplementedError(f"module {name} ({type(child).__name__}) returns a {type(x).__name__}, "
                                          "not one tensor")
    shapes.append(tuple(x.shape[1:]))
    return shapes


def _check_common(module, where, checks):
    for attr, ok, text in checks:
        value = getattr(module, attr, None)
        if not ok(value):
            raise NotImplementedError(f"{where}: {attr}={value!r} ({text})")


def from_torch(module, input_shape=None, seed=None):
    """A built fastconv ``Sequential`` computing what the ``torch.nn.Sequential`` ``module`` computes.

    Parameters
    ----------
    module : torch.nn.Sequential
        Of the modules :func:`to_torch` produces (nested ``nn.Sequential`` are flattened; ``nn.Identity``
        is dropped).  An activation module right after a ``Conv2d``/``Linear`` becomes that layer's
        ``activation``; a ``ZeroPad2d`` before a ``Conv2d`` (or a count-including ``AvgPool2d``) and a
        ``ConstantPad2d(-inf)`` before a ``MaxPool2d`` become the layer's padding; ``AdaptiveAvgPool2d(1)``
        / ``AdaptiveMaxPool2d(1)`` then ``Flatten`` become global pooling.
    input_shape : tuple, optional
        Per-sample input shape, with or without the batch dimension: ``(C, H, W)`` for a network that
        starts with a convolution (required there); a ``Linear`` first gives ``(in_features,)``.
    seed : int or None
        The fastconv model's seed (dropout masks, shuffling).

    Returns
    -------
    fastconv.Sequential
        Built, in the module's dtype (float32 or float64), holding copies of its parameters and running
        statistics.  BatchNorm becomes ``BatchNormalization(convention="torch")`` with the same momentum.

    Raises
    ------
    NotImplementedError naming the module and the setting fastconv cannot express (``groups != 1``,
    ``padding_mode != "zeros"``, ``momentum=None``, ``Dropout2d``, ...); ValueError when ``input_shape`` is
    needed and missing, or the module fails on it.

    Examples
    --------
    >>> import torch
    >>> from fastconv import interop
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 6 * 6, 3), torch.nn.Softmax(dim=1))
    >>> model = interop.from_torch(net, input_shape=(1, 6, 6))
    >>> [(type(layer).__name__, getattr(layer, "activation", None)) for layer in model.layers]
    [('Conv2D', 'relu'), ('Flatten', None), ('Dense', 'softmax')]
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    children = [(n, c) for n, c in _flat_children(torch, module) if not isinstance(c, nn.Identity)]
    if not children:
        raise ValueError("the module has no layers")
    dtype = _module_dtype(torch, module)
    if input_shape is None:
        first = children[0][1]
        if not isinstance(first, nn.Linear):
            raise ValueError(f"from_torch needs input_shape=(C, H, W) (per-sample) for a network that starts with "
                             f"{type(first).__name__}")
        input_shape = (first.in_features,)
    shape = _per_sample(tuple(input_shape), type(children[0][1]).__name__)
    shapes = _probe_shapes(torch, children, shape, dtype)

    built = []        # (fastconv layer, {(kind, key): torch tensor})
    i = 0
    while i < len(children):
        name, child = children[i]
        where = f"module {name}"
        pads, consumed = (0, 0, 0, 0), 1
        if type(child) in (nn.ZeroPad2d, nn.ConstantPad2d):
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            value = float(getattr(child, "value", 0.0))
            if value == 0:
                ok = isinstance(nxt, nn.Conv2d) or (isinstance(nxt, nn.AvgPool2d) and nxt.count_include_pad)
            else:
                ok = isinstance(nxt, nn.MaxPool2d) and value == -math.inf
            if not ok:
                raise NotImplementedError(f"{where}: {type(child).__name__}(value={value}) followed by "
                                          f"{type(nxt).__name__}; fastconv pads only inside Conv2D and pooling layers")
            pads = _pad4(child.padding)
            if min(pads) < 0:
                raise NotImplementedError(f"{where}: {type(child).__name__} with negative padding {child.padding} "
                                          "(cropping)")
            i += 1
            name, child = children[i]
            where = f"module {name}"
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        act = None
        if isinstance(child, (nn.Conv2d, nn.Linear)) and nxt is not None:
            act = _activation_from_torch(torch, nxt, shapes[i + 1], f"module {children[i + 1][0]}")
            consumed += act is not None
        if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            _from_torch_layer(torch, child, where, shapes[i], pads, None)   # checks the output size
            glob = "GlobalAveragePooling2D" if isinstance(child, nn.AdaptiveAvgPool2d) else "GlobalMaxPooling2D"
            built.append((_core_layer(glob, where, child)(), {}))
            if isinstance(nxt, nn.Flatten) and nxt.start_dim == 1 and nxt.end_dim == -1:
                consumed = 2
            else:
                built.append((_core_layer("Reshape", where, child)(shapes[i + 1]), {}))
        else:
            built.append(_from_torch_layer(torch, child, where, shapes[i], pads, act))
        i += consumed

    model = Sequential([layer for layer, _ in built], dtype=dtype, seed=seed).build(shape)
    with torch.no_grad():
        for layer, tensors in built:
            for (kind, key), tensor in tensors.items():
                target = layer.params[key] if kind == "param" else layer.state[key]
                np.copyto(target, tensor.detach().cpu().numpy(), casting="unsafe")
    if tuple(model.output_shape) != shapes[-1]:
        raise NotImplementedError(f"the fastconv model's output shape {model.output_shape} differs from the module's "
                                  f"{shapes[-1]}")
    return model


def _from_torch_layer(torch, child, where, shape, pads, activation):
    """``(fastconv layer, {(kind, key): tensor})`` for one torch module, with the ``pads`` of a pad module
    before it folded in and ``activation`` (Conv2d and Linear only) the activation module after it."""
    nn = torch.nn
    kind = type(child)
    if kind is nn.Conv2d:
        _check_common(child, where, [("groups", lambda v: v == 1, "fastconv convolutions are dense"),
                                     ("padding_mode", lambda v: v == "zeros", "fastconv pads with zeros")])
        kernel, stride, dilation = _pair(child.kernel_size), _pair(child.stride), _pair(child.dilation)
        if isinstance(child.padding, str):
            if child.padding == "valid":
                own = (0, 0, 0, 0)
            else:  # torch's "same" (stride 1): the extra row/column at the bottom/right, as TensorFlow
                th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
                own = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            ph, pw = _pair(child.padding)
            own = (ph, ph, pw, pw)
        total = tuple(a + b for a, b in zip(own, pads))
        kwargs = {"strides": stride, "use_bias": child.bias is not None, "activation": activation}
        if dilation != (1, 1):
            kwargs["dilation_rate"] = dilation
        kwargs["padding"] = (total[0], total[2]) if _symmetric(total) else total
        layer = layers_mod.Conv2D(child.out_channels, kernel, **kwargs)
        tensors = {("param", "kernel"): child.weight}
        if child.bias is not None:
            tensors[("param", "bias")] = child.bias
        return layer, tensors
    if kind is nn.Linear:
        tensors = {("param", "kernel"): child.weight}
        if child.bias is not None:
            tensors[("param", "bias")] = child.bias
        return layers_mod.Dense(child.out_features, use_bias=child.bias is not None, activation=activation), tensors
    if kind is nn.Flatten:
        if child.start_dim == 1 and child.end_dim in (-1, len(shape)):
            return layers_mod.Flatten(), {}
        cls = _core_layer("Reshape", where, child)
        return cls(tuple(child(torch.zeros((1,) + shape)).shape[1:])), {}
    if kind is nn.Unflatten:
        if child.dim not in (1, -1) or len(shape) != 1:
            raise NotImplementedError(f"{where}: Unflatten(dim={child.dim}) on per-sample shape {shape}")
        return _core_layer("Reshape", where, child)(tuple(int(s) for s in child.unflattened_size)), {}
    if kind is nn.MaxPool2d:
        _check_common(child, where, [("dilation", lambda v: _pair(v) == (1, 1), "fastconv pools without dilation"),
                                     ("return_indices", lambda v: not v, "fastconv returns the pooled values only")])
        ph, pw = _pair(child.padding)
        total = tuple(a + b for a, b in zip((ph, ph, pw, pw), pads))
        kwargs = {"strides": _pair(child.stride)}
        if total != (0, 0, 0, 0):
            kwargs["padding"] = total if not _symmetric(total) else (total[0], total[2])
        if child.ceil_mode:
            raise NotImplementedError(f"{where}: ceil_mode=True: fastconv's MaxPool2D floors")
        return layers_mod.MaxPool2D(_pair(child.kernel_size), **kwargs), {}
    if kind is nn.AvgPool2d:
        cls = _core_layer("AveragePooling2D", where, child)
        _check_common(child, where, [("divisor_override", lambda v: v is None, "fastconv divides by the window")])
        ph, pw = _pair(child.padding)
        total = tuple(a + b for a, b in zip((ph, ph, pw, pw), pads))
        padding = total if not _symmetric(total) else (total[0], total[2])
        return cls(_pair(child.kernel_size), strides=_pair(child.stride), padding=padding,
                   count_include_pad=bool(child.count_include_pad), ceil_mode=bool(child.ceil_mode)), {}
    if kind in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
        if _pair(child.output_size) != (1, 1):
            raise NotImplementedError(f"{where}: {kind.__name__}(output_size={child.output_size}); fastconv has "
                                      "global pooling (output size 1) only")
        return None, {}    # global pooling: the caller builds it (with or without the Flatten after it)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        cls = _core_layer("BatchNormalization", where, child)
        _check_common(child, where, [
            ("momentum", lambda v: v is not None, "fastconv keeps an exponential running average"),
            ("track_running_stats", lambda v: v, "fastconv keeps running statistics")])
        if kind is nn.BatchNorm2d and len(shape) != 3:
            raise NotImplementedError(f"{where}: BatchNorm2d on per-sample shape {shape}")
        layer = cls(momentum=float(child.momentum), epsilon=float(child.eps), center=child.affine,
                    scale=child.affine, convention="torch")
        tensors = {("state", "moving_mean"): child.running_mean, ("state", "moving_variance"): child.running_var}
        if child.affine:
            tensors[("param", "gamma")] = child.weight
            tensors[("param", "beta")] = child.bias
        return layer, tensors
    if kind is nn.Dropout:
        if child.p >= 1:
            raise NotImplementedError(f"{where}: Dropout(p={child.p}); fastconv's rate is in [0, 1)")
        return layers_mod.Dropout(float(child.p)), {}
    act = _activation_from_torch(torch, child, shape, where)
    if act is not None:
        return layers_mod.Activation(act), {}
    raise NotImplementedError(f"{where}: no fastconv layer for torch.nn.{kind.__name__}")
