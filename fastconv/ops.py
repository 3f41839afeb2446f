"""Validated functional kernels on NumPy arrays (NCHW layout, PyTorch weight layout ``(F, C, kh, kw)``).

Every function checks its arguments (raising ``TypeError``/``ValueError`` that name the argument), makes
inputs C-contiguous, allocates outputs, and only then runs the compiled ``nogil`` loop.  Each has a slow
NumPy twin of the same signature in :mod:`fastconv.reference`.

Supported dtypes are float32 and float64; all floating inputs of one call must share the dtype.  Integer
or boolean arrays are rejected rather than silently converted: cast them explicitly (``x.astype(np.float32)``).
Non-native byte order is converted: a big-endian ``'>f8'`` input is read as the float64 it holds, outputs
are native, and the in-place updates (:func:`adam_update`, :func:`sgd_update`) update a byte-swapped
array through a native copy that is written back, as they do for a non-contiguous one.  The arrays an
update writes must not share memory with each other or with ``grad`` (``param`` and ``grad`` may be one
array).

Threads: the kernels use OpenMP when the build found it.  :mod:`fastconv.runtime` sets how many
(:func:`set_num_threads`, re-exported here; default: ``OMP_NUM_THREADS`` or the number of cores) and
switches the thread trials (:func:`fastconv.runtime.set_autotune`).
"""
import math
import numbers

import numpy as np

from . import (
    _activations,
    _adagrad,
    _adam,
    _avgpool,
    _batchnorm,
    _clip,
    _conv,
    _dense,
    _maxpool,
    _nadam,
    _relu,
    _rmsprop,
    _sgd,
    _softmax_ce,
)
from .runtime import get_num_threads, max_threads, openmp_enabled, set_num_threads

__all__ = [
    "conv2d_forward", "conv2d_backward", "dense_forward", "dense_backward", "relu_forward", "relu_backward",
    "maxpool2d_forward",
    "maxpool2d_backward", "batchnorm_forward", "batchnorm_backward", "avgpool2d_forward", "avgpool2d_backward",
    "global_avgpool2d_forward", "global_avgpool2d_backward", "global_maxpool2d_forward", "global_maxpool2d_backward",
    "pool_padding", "pool_output_shape", "same_padding", "adam_update", "sgd_update", "softmax_cross_entropy",
    "conv2d_output_shape",
    "set_num_threads", "get_num_threads", "openmp_enabled", "max_threads",
    "rmsprop_update", "adagrad_update", "sgd_keras_update", "adam_keras_update", "nadam_update", "clip_gradient",
    "gradient_sumsq",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NATIVE_FLOAT_BY_SIZE = {dt.itemsize: dt for dt in _FLOAT_DTYPES}
_TooHardError = getattr(np, "exceptions", np).TooHardError  # NumPy < 1.25: np.TooHardError



def _fast_checks_take_swapped():
    """True when a compiled fast check takes a byte-swapped array as native (it compares NumPy's type
    number only): ops then sends such arrays down the converting path itself."""
    swapped = _FLOAT_DTYPES[1].newbyteorder()
    one, flat = np.zeros((1, 1, 1, 1), swapped), np.zeros(1, swapped)
    try:
        return (_conv.forward_plain(one, one, None, 1, 0, 1, 1) is not None
                or _conv.backward_plain(one, one, one, False, 1, 0, 1, 1) is not None
                or bool(_adam.plain_arrays(flat, flat, flat, flat)) or bool(_sgd.plain_arrays(flat, flat, None)))
    except (TypeError, ValueError):  # a check that rejects them outright: nothing for ops to decline
        return False


_DECLINE_SWAPPED = _fast_checks_take_swapped()
# True for an exact ndarray of native float32/float64, C-contiguous (one C call, cheaper than .dtype.isnative)
_native_ready = _conv.kernel_ready


# --------------------------------------------------------------------------------------------- checks

def _native_float(dtype):
    """The native float32/float64 dtype of ``dtype`` in either byte order, or None for any other dtype."""
    return _NATIVE_FLOAT_BY_SIZE.get(dtype.itemsize) if dtype.kind == "f" else None


def _float_array(a, name, ndim=None):
    """Return ``a`` as a native float32/float64 ndarray (C-contiguous; a byte-swapped one converted), or
    raise naming ``name``."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of floats, got {type(a).__name__}") from exc
    if a.dtype not in _FLOAT_DTYPES:
        native = _native_float(a.dtype)
        if native is None:
            if a.dtype.kind in "biuf":
                raise TypeError(
                    f"{name} has dtype {a.dtype}; fastconv kernels take float32 or float64 "
                    f"(convert explicitly, e.g. {name}.astype(np.float32))"
                )
            raise TypeError(f"{name} must be a numeric float array, got dtype {a.dtype}")
        a = np.asarray(a, dtype=native, order="C")  # non-native byte order: a native copy
    if ndim is not None:
        if a.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    elif not a.ndim:
        return np.asarray(a)  # 0-d is contiguous (ascontiguousarray would make it 1-D)
    return np.ascontiguousarray(a)


def _same_dtype(ref, ref_name, **arrays):
    for name, a in arrays.items():
        if a is not None and a.dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}; they must match")


def as_bool(value, name):
    """``value`` (a bool or NumPy bool) as a Python bool, or TypeError naming ``name``; the layers,
    losses, optimizers and schedules check their flags with it."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _pair(value, name, minimum):
    """An int or a pair of ints, each >= minimum, as a tuple of two Python ints."""
    if type(value) is int and value >= minimum:  # the common case, without the ABC checks below
        return (value, value)
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and value[0] >= minimum and value[1] >= minimum:
        return value
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        out.append(int(v))
    return tuple(out)


def _shape4(shape, name, layout):
    """``shape`` as a tuple of 4 Python ints >= 0, or raise naming ``name`` and its ``layout``."""
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of 4 ints {layout}, got {shape!r}") from None
    if len(items) != 4:
        raise ValueError(f"{name} must have 4 entries {layout}, got {shape!r}")
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must hold ints {layout}, got {shape!r}")
        if v < 0:
            raise ValueError(f"{name} must hold sizes >= 0 {layout}, got {shape!r}")
    return tuple(int(v) for v in items)


def _padding(value, name="padding"):
    """An int, a (height, width) pair or a (top, bottom, left, right) 4-tuple of ints >= 0, as the
    4-tuple (top, bottom, left, right) of Python ints."""
    if type(value) is int and value >= 0:  # the common case, without the ABC checks below
        return (value, value, value, value)
    items = value if isinstance(value, (tuple, list)) else (value,)
    if len(items) not in (1, 2, 4) or (len(items) == 1 and items is value):
        raise ValueError(f"{name} must be an int, a (height, width) pair or a (top, bottom, left, right) "
                         f"4-tuple, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
        if v < 0:
            raise ValueError(f"{name} must be >= 0 (no negative padding), got {value!r}")
        out.append(int(v))
    if len(out) == 1:
        return (out[0],) * 4
    if len(out) == 2:
        return (out[0], out[0], out[1], out[1])
    return tuple(out)


def as_padding(value, name="padding"):
    """``value`` (an int, an (h, w) pair or a (top, bottom, left, right) 4-tuple of ints >= 0; a list
    reads as the tuple) as the 4-tuple (top, bottom, left, right); raises naming ``name`` otherwise.
    The layers check their padding with it."""
    return _padding(value, name)


def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's "same" padding of one axis as (before, after), for convolution and pooling alike: the
    output has ceil(size / stride) positions, ``total = max((ceil(size/stride) - 1)*stride + (kernel - 1)*dilation
    + 1 - size, 0)`` zeros are added, ``total // 2`` before and the rest (one more when odd) after.

    >>> same_padding(28, 3, 2)
    (0, 1)
    >>> same_padding(28, 5, 1)
    (2, 2)
    """
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _kernel_dilation(dilation):
    """The dilation the compiled kernel takes: None for (1, 1)."""
    return None if dilation == (1, 1) else dilation


def _kernel_padding(pads):
    """The padding the compiled kernel takes: (ph, pw) when symmetric, else (top, bottom, left, right)."""
    top, bottom, left, right = pads
    return (top, left) if top == bottom and left == right else pads


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1):
    """(N, F, Ho, Wo) of conv2d_forward; validates the geometry.

    ``Ho = (H + top + bottom - dh*(kh - 1) - 1)//sh + 1`` (and Wo likewise).  ``input_shape`` is
    (N, C, H, W) and ``weight_shape`` (F, C, kh, kw), ints >= 0 (kh, kw >= 1); ``padding`` an int, a
    (height, width) pair or a (top, bottom, left, right) 4-tuple; ``stride`` and ``dilation`` ints or pairs.

    Examples
    --------
    >>> conv2d_output_shape((8, 3, 32, 32), (16, 3, 5, 5), stride=1, padding=2)
    (8, 16, 32, 32)
    >>> conv2d_output_shape((8, 3, 32, 32), (16, 3, 3, 3), stride=2, padding=(0, 1, 0, 1), dilation=2)
    (8, 16, 15, 15)
    """
    return _output_shape(_shape4(input_shape, "input_shape", "(N, C, H, W)"),
                         _shape4(weight_shape, "weight_shape", "(F, C, kh, kw)"),
                         _pair(stride, "stride", 1), _padding(padding), _pair(dilation, "dilation", 1))


def _output_shape(input_shape, weight_shape, stride, padding, dilation=(1, 1)):
    """conv2d_output_shape for stride, dilation (pairs) and padding (top, bottom, left, right) checked."""
    sh, sw = stride
    top, bottom, left, right = padding
    dh, dw = dilation
    N, C, H, W = input_shape
    F, Cw, kh, kw = weight_shape
    if Cw != C:
        raise ValueError(f"channel mismatch: x has {C} channels but w expects {Cw} (w shape {tuple(weight_shape)})")
    if kh < 1 or kw < 1:
        raise ValueError(f"w must have a non-empty kernel, got shape {tuple(weight_shape)}")
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    Hp, Wp = H + top + bottom, W + left + right
    if ekh > Hp or ekw > Wp:
        dilated = f" (dilation {(dh, dw)} spreads it over {ekh}x{ekw})" if (dh, dw) != (1, 1) else ""
        pads = (top, left) if top == bottom and left == right else (top, bottom, left, right)
        raise ValueError(
            f"kernel {kh}x{kw}{dilated} is larger than the padded input {Hp}x{Wp} "
            f"(input {H}x{W}, padding {pads})"
        )
    return N, F, (Hp - ekh) // sh + 1, (Wp - ekw) // sw + 1


# ----------------------------------------------------------------------------------------------- conv

def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1):
    """2-D convolution (cross-correlation, as PyTorch's ``conv2d``).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64 (non-native byte order is converted)
    w : ndarray, shape (F, C, kh, kw), same dtype
    b : ndarray, shape (F,), optional
    stride, dilation : int or (h, w) pair, each >= 1; a dilation d spreads the kernel's taps d apart.
    padding : int, (h, w) pair or (top, bottom, left, right) 4-tuple of zero rows/columns, each >= 0.
    With C = 0 (or F = 0, N = 0) there is nothing to multiply: y is the bias (or empty).

    Returns
    -------
    y : ndarray, shape (N, F, Ho, Wo), ``Ho = (H + top + bottom - dh*(kh - 1) - 1)//sh + 1``;
        ``y[n, f, i, j] = sum_{c,a,e} w[f, c, a, e] * x_pad[n, c, i*sh + a*dh, j*sw + e*dw] + b[f]``,
        ``x_pad`` being x with ``top`` zero rows above it and ``left`` zero columns before it.

    Examples
    --------
    >>> x = np.ones((1, 1, 4, 4)); w = np.ones((2, 1, 3, 3))
    >>> conv2d_forward(x, w, padding=1).shape
    (1, 2, 4, 4)
    >>> conv2d_forward(x, w, padding=(0, 1, 0, 1), stride=2).shape  # TensorFlow's "same" at stride 2
    (1, 2, 2, 2)
    >>> conv2d_forward(x, w, padding=2, dilation=2).shape
    (1, 2, 4, 4)
    """
    # the common case, checked in C (which takes a byte-swapped array for native: see _DECLINE_SWAPPED)
    if not _DECLINE_SWAPPED or (_native_ready(x) and _native_ready(w) and (b is None or _native_ready(b))):
        y = _conv.forward_plain(x, w, b, stride, padding, get_num_threads(), dilation)
        if y is not None:
            return y
    x = _float_array(x, "x", 4)
    w = _float_array(w, "w", 4)
    if w.dtype != x.dtype:
        _same_dtype(x, "x", w=w)
    stride = _pair(stride, "stride", 1)
    padding = _padding(padding)
    dilation = _pair(dilation, "dilation", 1)
    shape = _output_shape(x.shape, w.shape, stride, padding, dilation)
    if b is not None:
        b = _float_array(b, "b", 1)
        if b.dtype != x.dtype:
            _same_dtype(x, "x", b=b)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b has length {b.shape[0]} but w has {w.shape[0]} filters")
    y = np.empty(shape, dtype=x.dtype)
    if y.size and x.shape[1]:
        _conv.conv2d_forward(x, w, b, y, stride, _kernel_padding(padding), get_num_threads(),
                             _kernel_dilation(dilation))
    elif y.size:  # no input channels: no products, y is the bias (as the reference computes it)
        y.fill(0)
        if b is not None:
            y += b.reshape(-1, 1, 1)
    return y


def conv2d_backward(dy, x, w, *, stride=1, padding=0, dilation=1, need_dx=True):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, shape (N, F, Ho, Wo) -- gradient of the loss with respect to y.
    x, w, stride, padding, dilation : as given to the forward pass.
    need_dx : bool -- False skips the input gradient (a first layer never needs it).

    Returns
    -------
    dx : ndarray (N, C, H, W) or None;  dw : ndarray (F, C, kh, kw);  db : ndarray (F,)
    """
    if not _DECLINE_SWAPPED or (_native_ready(dy) and _native_ready(x) and _native_ready(w)):
        out = _conv.backward_plain(dy, x, w, bool(need_dx), stride, padding, get_num_threads(), dilation)
        if out is not None:
            return out
    x = _float_array(x, "x", 4)
    w = _float_array(w, "w", 4)
    dy = _float_array(dy, "dy", 4)
    if w.dtype != x.dtype or dy.dtype != x.dtype:
        _same_dtype(x, "x", w=w, dy=dy)
    stride = _pair(stride, "stride", 1)
    padding = _padding(padding)
    dilation = _pair(dilation, "dilation", 1)
    shape = _output_shape(x.shape, w.shape, stride, padding, dilation)
    if dy.shape != shape:
        raise ValueError(f"dy has shape {dy.shape} but the convolution output has shape {shape}")
    if dy.size and x.shape[1]:  # the kernel writes every element of dx, dw and db
        dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
        dw = np.empty(w.shape, dtype=x.dtype)
        db = np.empty(w.shape[0], dtype=x.dtype)
        _conv.conv2d_backward(dy, x, w, dx, dw, db, stride, _kernel_padding(padding), get_num_threads(),
                              _kernel_dilation(dilation))
        return dx, dw, db
    # no products (an empty batch, no filters or no input channels): zero dx and dw, db sums dy
    dx = np.zeros(x.shape, dtype=x.dtype) if need_dx else None
    return dx, np.zeros(w.shape, dtype=x.dtype), dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------------------- dense

def dense_forward(x, w, b=None):
    """Fully connected layer, PyTorch's ``linear``: ``y = x @ w.T + b``.

    Parameters
    ----------
    x : ndarray, shape (N, K), float32 or float64
    w : ndarray, shape (U, K), same dtype (PyTorch layout: one row per output unit)
    b : ndarray, shape (U,), optional

    Returns
    -------
    y : ndarray, shape (N, U).  Batches up to ``_dense.SMALL_BATCH`` run compiled loops on the calling
    thread (at batch 1 a BLAS call costs more in dispatch than in arithmetic); larger ones use NumPy's
    BLAS.

    Examples
    --------
    >>> dense_forward(np.ones((1, 3)), np.ones((2, 3)), np.array([0.0, 1.0]))
    array([[3., 4.]])
    """
    x = _float_array(x, "x", 2)
    w = _float_array(w, "w", 2)
    b = None if b is None else _float_array(b, "b", 1)
    _same_dtype(x, "x", w=w, b=b)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input features (shape {w.shape}) but x has {x.shape[1]} "
                         f"(shape {x.shape})")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b has length {b.shape[0]} but w has {w.shape[0]} output units")
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    kernel, args = _dense_forward_call(x, w, b, y)
    kernel(*args)
    return y


def dense_backward(dy, x, w, *, need_dx=True):
    """Gradients of :func:`dense_forward`: ``(dx, dw, db)``, ``dx`` None when ``need_dx`` is False."""
    x = _float_array(x, "x", 2)
    w = _float_array(w, "w", 2)
    dy = _float_array(dy, "dy", 2)
    _same_dtype(x, "x", w=w, dy=dy)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input features (shape {w.shape}) but x has {x.shape[1]} "
                         f"(shape {x.shape})")
    if dy.shape != (x.shape[0], w.shape[0]):
        raise ValueError(f"dy has shape {dy.shape} but the layer output has shape {(x.shape[0], w.shape[0])}")
    dx = np.empty_like(x) if need_dx else None
    dw = np.empty_like(w)
    db = np.empty(w.shape[0], dtype=x.dtype)
    kernel, args = _dense_backward_call(dy, x, w, dx, dw, db)
    kernel(*args)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------- relu

def relu_forward(x):
    """ReLU with PyTorch's semantics: ``y = 0 where x <= 0 else x`` (NaN stays NaN).

    Returns ``(y, mask)`` with ``mask = not (x <= 0)`` as a bool array of x's shape.
    """
    x = _float_array(x, "x")
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    _relu.relu_forward(x, y, mask, get_num_threads())
    return y, mask


def relu_backward(dy, mask):
    """``dx = dy where mask else 0`` (zero gradient at exactly 0, as PyTorch)."""
    dy = _float_array(dy, "dy")
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be the bool array returned by relu_forward, got dtype {mask.dtype}")
    if mask.shape != dy.shape:
        raise ValueError(f"mask has shape {mask.shape} but dy has shape {dy.shape}")
    mask = np.ascontiguousarray(mask)
    dx = np.empty_like(dy)
    _relu.relu_backward(dy, mask, dx, get_num_threads())
    return dx


# -------------------------------------------------------------------------------------------- maxpool

def maxpool2d_forward(x, *, size=2, stride=None, padding=0):
    """Max-pooling over ``size`` windows (int or pair) moved by ``stride`` (default: ``size``).

    ``padding``: an int, (h, w) pair, (top, bottom, left, right), "valid" or "same" (TensorFlow's rule);
    pads act as -inf (never selected) and each is at most half the window, as PyTorch requires.
    Returns ``(y, idx)``: y (N, C, Ho, Wo) with ``Ho = (H + top + bottom - kh)//sh + 1``; idx int64, the
    flat position ``h*W + w`` of each window's first maximum in its plane (a NaN in the window wins, so
    NaN propagates).
    """
    x = _float_array(x, "x", 4)
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride", 1)
    N, C, H, W = x.shape
    if padding != 0:
        (kh, kw), (sh, sw), pads, shape = _pool_geometry(x.shape, (kh, kw), (sh, sw), padding)
        if pads != (0, 0, 0, 0):
            y = np.empty(shape, dtype=x.dtype)
            idx = np.empty(shape, dtype=np.int64)
            _maxpool.maxpool2d_forward_padded(x, y, idx, kh, kw, sh, sw, pads[0], pads[2], get_num_threads())
            return y, idx
    if kh > H or kw > W:
        raise ValueError(f"pool size {kh}x{kw} is larger than the input {H}x{W}")
    y = np.empty((N, C, (H - kh) // sh + 1, (W - kw) // sw + 1), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    if y.size:
        _maxpool.maxpool2d_forward(x, y, idx, kh, kw, sh, sw, get_num_threads())
    return y, idx


def _argmax_indices(idx, dy, producer):
    """``idx``, the argmax positions ``producer`` returned, checked against ``dy`` and as C-contiguous int64."""
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"idx must be the integer array returned by {producer}, got dtype {idx.dtype}")
    if idx.shape != dy.shape:
        raise ValueError(f"idx has shape {idx.shape} but dy has shape {dy.shape}")
    return np.ascontiguousarray(idx, dtype=np.int64)


def maxpool2d_backward(dy, idx, x_shape):
    """Gradient of :func:`maxpool2d_forward`: ``dx`` of shape ``x_shape`` with dy added at idx."""
    dy = _float_array(dy, "dy", 4)
    idx = _argmax_indices(idx, dy, "maxpool2d_forward")
    x_shape = _shape4(x_shape, "x_shape", "(N, C, H, W)")
    if x_shape[:2] != dy.shape[:2]:
        raise ValueError(f"x_shape {x_shape} does not match dy's batch and channels {dy.shape[:2]}")
    dx = np.empty(x_shape, dtype=dy.dtype)
    _maxpool.maxpool2d_backward(dy, idx, dx, get_num_threads())   # zeroes dx, then adds dy at idx
    return dx


# ------------------------------------------------------------------------------------------ optimizers

def _writable_float(a, name, like=None, like_name="param"):
    """a: a writable float32/float64 array in either byte order (of ``like``'s shape and dtype)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array updated in place, got {type(a).__name__}")
    if _native_float(a.dtype) is None:
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; it is updated in place")
    if like is not None:
        if a.shape != like.shape:
            raise ValueError(f"{name} has shape {a.shape} but {like_name} has shape {like.shape}")
        if _native_float(a.dtype) is not _native_float(like.dtype):
            raise TypeError(f"{name} has dtype {a.dtype} but {like_name} has dtype {like.dtype}")
    return a


def _check_param_and_grad(param, grad):
    """param: a writable float array; grad: an array of the same shape and dtype."""
    _writable_float(param, "param")
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"grad must be a NumPy array, got {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {grad.shape} but param has shape {param.shape}")
    if _native_float(grad.dtype) is not _native_float(param.dtype):
        raise TypeError(f"grad has dtype {grad.dtype} but param has dtype {param.dtype}")


def _same_elements(a, b):
    """True when ndarrays ``a`` and ``b`` view the same elements in the same places."""
    return a is b or (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
                      and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _check_disjoint(*named):
    """Raise ValueError naming the first two of the (name, ndarray or None) pairs that share memory; the
    update kernels read and write them element by element, so an overlap gives neither array's value.
    ``param`` and ``grad`` may be one array: each element is read before it is written."""
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1:]:
            if a is None or b is None or not np.may_share_memory(a, b):
                continue
            if (name_a, name_b) == ("param", "grad") and _same_elements(a, b):
                continue
            # the bounds overlap; for two contiguous arrays that is the memory itself
            if not (a.flags.c_contiguous and b.flags.c_contiguous):
                try:
                    if not np.shares_memory(a, b, max_work=100_000):
                        continue
                except _TooHardError:  # too costly to decide: treat as overlapping
                    pass
            what = "are the same array" if a is b else "share memory"
            raise ValueError(f"{name_a} and {name_b} {what}; the update needs arrays that do not overlap "
                             f"(pass a copy, e.g. {name_b}.copy())")


def _check_scalar(value, name, low=None, high=None, low_open=False, high_open=False):
    if type(value) is not float:  # the common case skips the ABC checks, the costly part
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r}")
        value = float(value)
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _flat_views(arrays):
    """The arrays as the update kernels take them: C-contiguous and native, of any shape (they run over
    the size).  A non-contiguous or byte-swapped array becomes a native contiguous copy, which the caller
    writes back (_write_back)."""
    return [a if a.flags.c_contiguous and a.dtype.isnative else np.asarray(a, _native_float(a.dtype), order="C")
            for a in arrays]


def _write_back(originals, flats):
    for a, f in zip(originals, flats):
        if a is not f and a is not None:
            a[...] = f


def _step_number(step):
    """``step``, the 1-based step number, as a Python int, or raise naming it."""
    if type(step) is not int and (isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral)):
        raise TypeError(f"step must be an int (1-based step number), got {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the 1-based step number), got {step}")
    return int(step)


def _adam_coefficients(step, lr, beta1, beta2, weight_decay, eps_hat):
    """The per-step scalars in double precision: (step_size, sqrt(1 - beta2**step), 1 - lr*weight_decay).
    fastconv.reference keeps a twin of this function; the tests hold the two to the same bits."""
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    if eps_hat:
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
    else:
        step_size = lr / bias_correction1
    return step_size, math.sqrt(bias_correction2), 1.0 - lr * weight_decay


def adam_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, amsgrad=False, vmax=None, eps_hat=False):
    """One fused, in-place Adam step (``torch.optim.Adam`` semantics by default).

    Parameters
    ----------
    param, grad, m, v : ndarrays of one shape and dtype; param, m, v are updated in place.
        Non-contiguous or byte-swapped ones are updated through a native copy that is written back.
        No two may share memory (ValueError naming both), except that grad may be param itself.
    step : int >= 1 -- the 1-based step number (bias correction uses ``beta**step``).
    weight_decay : L2 added to the gradient, or (``decoupled=True``, AdamW) ``p *= 1 - lr*weight_decay``.
    amsgrad : keep ``vmax = max(vmax, v)`` (``vmax`` array required) and use it in the denominator.
    eps_hat : Kingma-Ba/Keras form used by seed 000:
        ``lr_t = lr*sqrt(1-beta2**t)/(1-beta1**t)``, ``p -= lr_t*m/(sqrt(v)+eps)``.
        Default (torch): ``p -= lr/(1-beta1**t) * m / (sqrt(v)/sqrt(1-beta2**t) + eps)``.
    """
    # The common call (C-contiguous arrays of one dtype and shape, no AMSGrad) goes to the kernel as it
    # is: one compiled check instead of the generic ones and the copies, which cost more than the update
    # of a small layer.
    plain = (not amsgrad and vmax is None and _adam.plain_arrays(param, grad, m, v)
             and (not _DECLINE_SWAPPED or (_native_ready(param) and _native_ready(grad) and _native_ready(m)
                                           and _native_ready(v))))
    if plain:
        # distinct arrays that own their memory cannot overlap: the exact check is for views and repeats
        if not (param.base is None and grad.base is None and m.base is None and v.base is None
                and m is not v and m is not param and v is not param and m is not grad and v is not grad):
            _check_disjoint(("param", param), ("grad", grad), ("m", m), ("v", v))
    else:
        _check_param_and_grad(param, grad)
        _writable_float(m, "m", param)
        _writable_float(v, "v", param)
        if amsgrad:
            if vmax is None:
                raise ValueError("amsgrad=True needs a vmax array (zeros of param's shape) to hold max(v)")
            _writable_float(vmax, "vmax", param)
        elif vmax is not None:
            raise ValueError("vmax is only used with amsgrad=True")
        _check_disjoint(("param", param), ("grad", grad), ("m", m), ("v", v), ("vmax", vmax))
    step = _step_number(step)
    lr = _check_scalar(lr, "lr", 0.0)
    beta1 = _check_scalar(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = _check_scalar(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = _check_scalar(eps, "eps", 0.0)
    weight_decay = _check_scalar(weight_decay, "weight_decay", 0.0)
    step_size, bc2_sqrt, decay_factor = _adam_coefficients(step, lr, beta1, beta2, weight_decay, eps_hat)
    if plain:   # its own call: sharing the one below through a tuple of arrays costs more than it saves
        _adam.adam_update(param, grad, m, v, None, beta1, 1.0 - beta1, beta2, 1.0 - beta2, step_size, bc2_sqrt,
                          eps, weight_decay, decay_factor, bool(decoupled), bool(eps_hat), get_num_threads())
        return
    arrays = [param, grad, m, v] + ([vmax] if amsgrad else [])
    flats = _flat_views(arrays)
    _adam.adam_update(flats[0], flats[1], flats[2], flats[3], flats[4] if amsgrad else None,
                      beta1, 1.0 - beta1, beta2, 1.0 - beta2, step_size, bc2_sqrt, eps, weight_decay,
                      decay_factor, bool(decoupled), bool(eps_hat), get_num_threads())
    _write_back([param, None, m, v] + ([vmax] if amsgrad else []), flats)


def _sgd_settings(momentum, nesterov, weight_decay, velocity):
    """momentum and weight_decay checked as floats; nesterov needs momentum, momentum needs a velocity."""
    momentum = _check_scalar(momentum, "momentum", 0.0)
    weight_decay = _check_scalar(weight_decay, "weight_decay", 0.0)
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True requires momentum > 0 (as torch.optim.SGD)")
    if momentum != 0 and velocity is None:
        raise ValueError("momentum != 0 needs a velocity array (zeros of param's shape)")
    return momentum, weight_decay


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One fused, in-place SGD step with ``torch.optim.SGD`` semantics.

    param and velocity are updated in place (a non-contiguous or byte-swapped one through a native copy
    that is written back); no two of param, grad, velocity may share memory, except grad is param.
    ``velocity`` (zeros at the start, same shape/dtype as param) is required when ``momentum != 0``:
    ``buf = momentum*buf + d`` (with buf starting at zero this equals torch's first-step ``buf = d``);
    the step uses ``d + momentum*buf`` (Nesterov) or ``buf``.  ``d = grad + weight_decay*param``.
    """
    # as in adam_update: no generic checks, no copies
    plain = (_sgd.plain_arrays(param, grad, velocity)
             and (not _DECLINE_SWAPPED or (_native_ready(param) and _native_ready(grad)
                                           and (velocity is None or _native_ready(velocity)))))
    if plain:
        if not (param.base is None and grad.base is None
                and (velocity is None or (velocity.base is None and velocity is not param and velocity is not grad))):
            _check_disjoint(("param", param), ("grad", grad), ("velocity", velocity))
    else:
        _check_param_and_grad(param, grad)
    lr = _check_scalar(lr, "lr", 0.0)
    momentum, weight_decay = _sgd_settings(momentum, nesterov, weight_decay, velocity)
    if not plain:
        if velocity is not None:
            _writable_float(velocity, "velocity", param)
        _check_disjoint(("param", param), ("grad", grad), ("velocity", velocity))
    use = momentum != 0
    if plain:
        _sgd.sgd_update(param, grad, velocity if use else None, lr, momentum, bool(nesterov), weight_decay,
                        get_num_threads())
        return
    arrays = [param, grad] + ([velocity] if use else [])
    flats = _flat_views(arrays)
    _sgd.sgd_update(flats[0], flats[1], flats[2] if use else None, lr, momentum,
                    bool(nesterov), weight_decay, get_num_threads())
    _write_back([param, None] + ([velocity] if use else []), flats)


# --------------------------------------------------------------------------------------------- losses

def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch, fused and stable (log-sum-exp).

    Parameters
    ----------
    logits : ndarray (N, K) float32/float64
    labels : integer ndarray (N,) of class indices in [0, K)

    Returns
    -------
    loss : float;  dlogits : ndarray (N, K) = (softmax(logits) - onehot(labels)) / N
    """
    logits = _float_array(logits, "logits", 2)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
    if labels.dtype.kind == "u" and labels.max() > np.iinfo(np.int64).max:
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), found {labels.max()}")
    # the kernel checks the range as it reads the labels (numpy's min and max would be a quarter of a call)
    return _softmax_cross_entropy_unchecked(logits, np.ascontiguousarray(labels, dtype=np.int64))


def _softmax_cross_entropy_unchecked(logits, labels):
    """softmax_cross_entropy for C-contiguous float logits (N, K) and int64 labels (N,); the kernel checks
    the lengths and that every label lies in [0, K)."""
    dlogits = np.empty_like(logits)
    loss = _softmax_ce.softmax_cross_entropy(logits, labels, dlogits, get_num_threads())
    return loss, dlogits


# ------------------------------------------------------------------------------------------------ bind
# The model layer's internal API: check a kernel's buffers once, when a training or inference step is
# compiled, and return the call as a ``(kernel, args)`` pair that the step runs as ``kernel(*args)`` on
# every batch.  Every buffer must be a native C-contiguous ndarray of the step's dtype and the shape the
# kernel needs (outputs writable); the thread count is the one in force when the step was compiled.

def _buffer(a, name, shape, dtype, write=False):
    """Check that ``a`` is a step buffer: an ndarray of ``shape`` and ``dtype``, native, C-contiguous."""
    if type(a) is not np.ndarray:
        raise TypeError(f"{name} must be an ndarray, got {type(a).__name__}")
    if a.dtype != dtype or not a.dtype.isnative:
        raise TypeError(f"{name} has dtype {a.dtype}; the step's buffers are native {np.dtype(dtype)}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}; the step needs {tuple(shape)}")
    if not a.flags.c_contiguous or (write and not a.flags.writeable):
        raise ValueError(f"{name} must be a C-contiguous{' writable' if write else ''} array")
    return a


def bind_conv2d_forward(x, w, b, y, *, stride, padding, dilation=1):
    """``y = conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation)`` into ``y``, as a
    bound call."""
    stride, padding, dilation = _pair(stride, "stride", 1), _padding(padding), _pair(dilation, "dilation", 1)
    shape = _output_shape(x.shape, w.shape, stride, padding, dilation)
    _buffer(x, "x", x.shape, w.dtype)
    _buffer(w, "w", w.shape, w.dtype)
    if b is not None:
        _buffer(b, "b", (w.shape[0],), w.dtype)
    _buffer(y, "y", shape, w.dtype, write=True)
    args = (x, w, b, y, stride, _kernel_padding(padding), get_num_threads())
    if dilation != (1, 1):  # dilation goes last; without it the call is the one of earlier releases
        args += (dilation,)
    return _conv.conv2d_forward, args


def bind_conv2d_backward(dy, x, w, dx, dw, db, *, stride, padding, dilation=1):
    """conv2d_backward into ``dx`` (None: not needed), ``dw`` and ``db``, as a bound call."""
    stride, padding, dilation = _pair(stride, "stride", 1), _padding(padding), _pair(dilation, "dilation", 1)
    shape = _output_shape(x.shape, w.shape, stride, padding, dilation)
    if shape[0] == 0:
        raise ValueError("a step needs a batch of at least one sample")
    _buffer(dy, "dy", shape, w.dtype)
    _buffer(x, "x", x.shape, w.dtype)
    if dx is not None:
        _buffer(dx, "dx", x.shape, w.dtype, write=True)
    _buffer(dw, "dw", w.shape, w.dtype, write=True)
    _buffer(db, "db", (w.shape[0],), w.dtype, write=True)
    args = (dy, x, w, dx, dw, db, stride, _kernel_padding(padding), get_num_threads())
    if dilation != (1, 1):
        args += (dilation,)
    return _conv.conv2d_backward, args


# Batches up to this many samples run the compiled dense loops; larger ones call NumPy's BLAS.
DENSE_SMALL_BATCH = _dense.SMALL_BATCH


def _dense_blas_forward(x, wt, b, y):
    np.matmul(x, wt, out=y)      # y = x @ w.T (+ b)
    if b is not None:
        y += b


def _dense_blas_backward(dy, x, w, dyt, dx, dw, db):
    np.matmul(dyt, x, out=dw)            # dw = dy.T @ x
    np.add.reduce(dy, axis=0, out=db)    # db = dy.sum(0)
    if dx is not None:
        np.matmul(dy, w, out=dx)         # dx = dy @ w


def bind_dense_forward(x, w, b, y):
    """``y = dense_forward(x, w, b)`` into ``y``, as a bound call (compiled loops up to
    ``_dense.SMALL_BATCH`` samples, NumPy's BLAS above, as :func:`dense_forward`)."""
    _buffer(x, "x", (x.shape[0], w.shape[1]), w.dtype)
    if b is not None:
        _buffer(b, "b", (w.shape[0],), w.dtype)
    _buffer(y, "y", (x.shape[0], w.shape[0]), w.dtype, write=True)
    return _dense_forward_call(x, w, b, y)


def _dense_forward_call(x, w, b, y):
    """The call that computes dense_forward into ``y``, for arrays already checked."""
    if x.shape[0] <= _dense.SMALL_BATCH:
        return _dense.dense_forward, (x, w, b, y, get_num_threads())
    return _dense_blas_forward, (x, w.T, b, y)


def bind_dense_backward(dy, x, w, dx, dw, db):
    """dense_backward into ``dx`` (None: not needed), ``dw`` and ``db``, as a bound call."""
    n = x.shape[0]
    _buffer(dy, "dy", (n, w.shape[0]), w.dtype)
    _buffer(x, "x", (n, w.shape[1]), w.dtype)
    if dx is not None:
        _buffer(dx, "dx", x.shape, w.dtype, write=True)
    _buffer(dw, "dw", w.shape, w.dtype, write=True)
    _buffer(db, "db", (w.shape[0],), w.dtype, write=True)
    return _dense_backward_call(dy, x, w, dx, dw, db)


def _dense_backward_call(dy, x, w, dx, dw, db):
    """The call that computes dense_backward into ``dx``, ``dw``, ``db``, for arrays already checked."""
    if x.shape[0] <= _dense.SMALL_BATCH:
        return _dense.dense_backward, (dy, x, w, dx, dw, db, get_num_threads())
    return _dense_blas_backward, (dy, x, w, dy.T, dx, dw, db)


def bind_relu_forward(x, y, mask):
    """``y, mask = relu_forward(x)`` into ``y`` and ``mask``, as a bound call."""
    _buffer(y, "y", x.shape, x.dtype, write=True)
    _buffer(mask, "mask", x.shape, np.bool_, write=True)
    return _relu.relu_forward, (_buffer(x, "x", x.shape, x.dtype), y, mask, get_num_threads())


def bind_relu_backward(dy, mask, dx):
    """``dx = relu_backward(dy, mask)`` into ``dx``, as a bound call."""
    _buffer(mask, "mask", dy.shape, np.bool_)
    _buffer(dx, "dx", dy.shape, dy.dtype, write=True)
    return _relu.relu_backward, (_buffer(dy, "dy", dy.shape, dy.dtype), mask, dx, get_num_threads())


def bind_maxpool2d_forward(x, y, idx, *, size, stride, padding=0):
    """``y, idx = maxpool2d_forward(x, size=size, stride=stride, padding=padding)`` into ``y`` and ``idx``,
    as a bound call (no padding: the unpadded kernel)."""
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride, "stride", 1)
    N, C, H, W = x.shape
    pads = (0, 0, 0, 0) if padding == 0 else pool_padding(padding, (kh, kw), (sh, sw), (H, W))
    if pads != (0, 0, 0, 0):
        shape = _pool_geometry(x.shape, (kh, kw), (sh, sw), pads)[3]
        _buffer(x, "x", x.shape, x.dtype)
        _buffer(y, "y", shape, x.dtype, write=True)
        _buffer(idx, "idx", shape, np.int64, write=True)
        return _maxpool.maxpool2d_forward_padded, (x, y, idx, kh, kw, sh, sw, pads[0], pads[2], get_num_threads())
    shape = (N, C, (H - kh) // sh + 1, (W - kw) // sw + 1)
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", shape, x.dtype, write=True)
    _buffer(idx, "idx", shape, np.int64, write=True)
    return _maxpool.maxpool2d_forward, (x, y, idx, kh, kw, sh, sw, get_num_threads())


def bind_maxpool2d_backward(dy, idx, dx):
    """``dx = maxpool2d_backward(dy, idx, dx.shape)`` into ``dx``, as a bound call."""
    _buffer(idx, "idx", dy.shape, np.int64)
    _buffer(dx, "dx", dx.shape, dy.dtype, write=True)
    return _maxpool.maxpool2d_backward, (_buffer(dy, "dy", dy.shape, dy.dtype), idx, dx, get_num_threads())


def bind_softmax_cross_entropy(logits, labels, dlogits):
    """``loss, dlogits = softmax_cross_entropy(logits, labels)`` into ``dlogits``; the bound call returns
    the loss.  ``labels`` is an int64 buffer; the kernel checks each label's range as it reads it."""
    _buffer(logits, "logits", logits.shape, logits.dtype)
    _buffer(labels, "labels", (logits.shape[0],), np.int64)
    _buffer(dlogits, "dlogits", logits.shape, logits.dtype, write=True)
    return _softmax_ce.softmax_cross_entropy, (logits, labels, dlogits, get_num_threads())


def bind_count_correct(logits, labels):
    """The number of rows whose first maximum sits at the label, as a bound call."""
    _buffer(logits, "logits", logits.shape, logits.dtype)
    _buffer(labels, "labels", (logits.shape[0],), np.int64)
    return _softmax_ce.count_correct, (logits, labels)


def bind_adam_update(param, grad, m, v, vmax, *, beta1, beta2, eps, weight_decay, decoupled, eps_hat):
    """A bound Adam step on flat buffers: ``update(step, lr)`` runs :func:`adam_update` with the
    hyperparameters given here (checked once) and the step number and learning rate given to it."""
    n = param.shape
    named = (("param", param), ("grad", grad), ("m", m), ("v", v), ("vmax", vmax))
    for name, a in named:
        if a is not None:
            _buffer(a, name, n, param.dtype, write=name != "grad")
    _check_disjoint(*named)
    beta1 = _check_scalar(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = _check_scalar(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = _check_scalar(eps, "eps", 0.0)
    weight_decay = _check_scalar(weight_decay, "weight_decay", 0.0)
    decoupled, eps_hat = bool(decoupled), bool(eps_hat)
    kernel, nt = _adam.adam_update, get_num_threads()

    def update(step, lr):
        step_size, bc2_sqrt, decay_factor = _adam_coefficients(step, lr, beta1, beta2, weight_decay, eps_hat)
        kernel(param, grad, m, v, vmax, beta1, 1.0 - beta1, beta2, 1.0 - beta2, step_size, bc2_sqrt, eps,
               weight_decay, decay_factor, decoupled, eps_hat, nt)

    return update


def bind_sgd_update(param, grad, velocity, *, momentum, nesterov, weight_decay):
    """A bound SGD step on flat buffers: ``update(lr)`` runs :func:`sgd_update` with these settings."""
    named = (("param", param), ("grad", grad), ("velocity", velocity))
    for name, a in named:
        if a is not None:
            _buffer(a, name, param.shape, param.dtype, write=name != "grad")
    _check_disjoint(*named)
    momentum, weight_decay = _sgd_settings(momentum, nesterov, weight_decay, velocity)
    velocity = velocity if momentum != 0 else None
    kernel, nesterov, nt = _sgd.sgd_update, bool(nesterov), get_num_threads()

    def update(lr):
        kernel(param, grad, velocity, lr, momentum, nesterov, weight_decay, nt)

    return update


def as_pair(value, name, minimum):
    """``value`` (an int or an (h, w) pair of ints, each >= ``minimum``) as a tuple of two ints; raises
    naming ``name`` otherwise.  The layers check their sizes with it."""
    return _pair(value, name, minimum)


# ---- activations ----
__all__ += ["ACTIVATION_KINDS", "activation_forward", "activation_backward", "activation_backward_reads",
            "bind_activation_forward", "bind_activation_backward"]

# PyTorch's SELU constants (torch.nn.SELU, Keras's selu): selu(x) = scale * elu(x, alpha).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# The kernel's kinds; selu runs the elu kernel with the constants above.
ACTIVATION_KINDS = ("sigmoid", "tanh", "elu", "selu", "gelu", "gelu_tanh", "leaky_relu", "silu", "softplus",
                    "softsign", "relu6", "hard_sigmoid")
_ACTIVATION_PARAMS = {"leaky_relu": {"negative_slope": 0.01}, "elu": {"alpha": 1.0}}


def _activation_call(kind, params):
    """The kernel number and its two scalars for ``kind`` with ``params``, all checked."""
    if not params and isinstance(kind, str):
        call = _ACTIVATION_DEFAULT_CALLS.get(kind)    # the common call, checked once at import
        if call is not None:
            return call
    if not isinstance(kind, str) or kind not in ACTIVATION_KINDS:
        raise ValueError(f"unknown activation kind {kind!r}; valid kinds: {', '.join(ACTIVATION_KINDS)}")
    allowed = _ACTIVATION_PARAMS.get(kind, {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no parameters"
        raise TypeError(f"activation {kind!r} {takes}; got {', '.join(unknown)}")
    values = dict(allowed)
    for name, value in params.items():
        value = _check_scalar(value, name)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite real number, got {value}")
        values[name] = value
    if kind == "leaky_relu":
        return _activations.KINDS[kind], values["negative_slope"], 0.0
    if kind == "elu":
        return _activations.KINDS[kind], values["alpha"] * 1.0, 1.0   # (alpha*scale, scale)
    if kind == "selu":
        return _activations.KINDS["elu"], SELU_ALPHA * SELU_SCALE, SELU_SCALE
    return _activations.KINDS[kind], 0.0, 0.0


_ACTIVATION_DEFAULT_CALLS = {}
_ACTIVATION_DEFAULT_CALLS.update((kind, _activation_call(kind, {})) for kind in ACTIVATION_KINDS)


def activation_backward_reads(kind):
    """"y" for the kinds whose backward reads the forward's output (sigmoid, tanh), "x" for the others."""
    _activation_call(kind, {})
    return "y" if kind in ("sigmoid", "tanh") else "x"


def activation_forward(x, kind, **params):
    """An elementwise activation ``y = f(x)``, compiled, with PyTorch's formulas.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64 (non-contiguous and byte-swapped inputs are copied)
    kind : one of :data:`ACTIVATION_KINDS`:

        ==============  ==========================================================
        sigmoid         ``1/(1+exp(-x))``
        tanh            ``tanh(x)``
        elu             ``x if x > 0 else alpha*expm1(x)``  (param ``alpha=1.0``)
        selu            ``scale*x if x > 0 else alpha*scale*expm1(x)``, PyTorch's alpha, scale
        gelu            ``0.5*x*(1 + erf(x/sqrt(2)))``
        gelu_tanh       ``0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3)))``
        leaky_relu      ``x if x > 0 else negative_slope*x``  (param ``negative_slope=0.01``)
        silu            ``x*sigmoid(x)`` (swish)
        softplus        ``max(x, 0) + log1p(exp(-|x|))``
        softsign        ``x/(1 + |x|)``
        relu6           ``min(max(x, 0), 6)``
        hard_sigmoid    ``relu6(x + 3)/6``
        ==============  ==========================================================

    params : ``negative_slope`` (leaky_relu), ``alpha`` (elu): finite reals.

    Returns
    -------
    y : ndarray of x's shape and dtype.  NaN stays NaN.  Every kind computes in x's dtype; the
    transcendental ones with vectorised exp, expm1, tanh, log1p and erf polynomials, a double set for
    float64 (within 1, 1, 3, 3 ulp and 3 eps of the C library's) and a float set for float32 (within 1, 1,
    3, 3 ulp and 3 eps of the exact values).  Every kind is bit-identical to
    :func:`fastconv.reference.activation_forward` (NaN payloads aside).

    Examples
    --------
    >>> activation_forward(np.array([-1.0, 0.0, 2.0]), "leaky_relu", negative_slope=0.5)
    array([-0.5,  0. ,  2. ])
    """
    k, a, b = _activation_call(kind, params)
    x = _float_array(x, "x")
    y = np.empty(x.shape, x.dtype)
    _activations.activation_forward(k, x.reshape(-1), y.reshape(-1), a, b, get_num_threads())
    return y


def activation_backward(dy, x, y, kind, **params):
    """The gradient ``dx = dy * f'(x)`` of :func:`activation_forward`.

    ``x`` is the forward's input and ``y`` its output; the backward of sigmoid (``(dy*y)*(1-y)``) and tanh
    (``dy*(1-y*y)``) reads ``y``, every other kind reads ``x`` (:func:`activation_backward_reads`), and the
    array it does not read may be None.  At the kinks the gradient is PyTorch's: leaky_relu takes the slope
    where ``x <= 0``; elu/selu the exponential branch where ``x <= 0``; relu6 passes dy only where
    ``0 < x < 6`` (and at NaN); hard_sigmoid gives ``dy/6`` where ``-3 < x < 3``, else 0.  Where PyTorch
    differs: its softplus returns x itself above x = 20 (here the formula holds everywhere), its
    hardsigmoid backward multiplies by the float32 1/6 even in float64, and its softsign gradient is NaN
    at +-inf (here 0, the limit).

    Returns
    -------
    dx : ndarray of dy's shape and dtype.
    """
    k, a, b = _activation_call(kind, params)
    reads = "y" if kind in ("sigmoid", "tanh") else "x"
    dy = _float_array(dy, "dy")
    src = _float_array(y if reads == "y" else x, reads)
    _same_dtype(dy, "dy", **{reads: src})
    if src.shape != dy.shape:
        raise ValueError(f"{reads} has shape {src.shape} but dy has shape {dy.shape}")
    dx = np.empty(dy.shape, dy.dtype)
    flat_x, flat_y = (None, src.reshape(-1)) if reads == "y" else (src.reshape(-1), None)
    _activations.activation_backward(k, dy.reshape(-1), flat_x, flat_y, dx.reshape(-1), a, b, get_num_threads())
    return dx


def bind_activation_forward(x, y, kind, **params):
    """``y = activation_forward(x, kind, **params)`` into ``y`` (not overlapping x), as a bound call."""
    k, a, b = _activation_call(kind, params)
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", x.shape, x.dtype, write=True)
    _check_disjoint(("x", x), ("y", y))
    return _activations.activation_forward, (k, x, y, a, b, get_num_threads())


def bind_activation_backward(dy, x, y, dx, kind, **params):
    """``dx = activation_backward(dy, x, y, kind, **params)`` into ``dx`` (not overlapping the inputs), as
    a bound call; the array the kind does not read may be None."""
    k, a, b = _activation_call(kind, params)
    reads = "y" if kind in ("sigmoid", "tanh") else "x"
    src = _buffer(y if reads == "y" else x, reads, dy.shape, dy.dtype)
    _buffer(dy, "dy", dy.shape, dy.dtype)
    _buffer(dx, "dx", dy.shape, dy.dtype, write=True)
    _check_disjoint(("dy", dy), ("dx", dx))
    _check_disjoint((reads, src), ("dx", dx))
    flat_x, flat_y = (None, src) if reads == "y" else (src, None)
    return _activations.activation_backward, (k, dy, flat_x, flat_y, dx, a, b, get_num_threads())
# ---- batch norm ----
# Batch normalization over axis 1: the channels of (N, C, H, W) or the features of (N, D).  The kernel
# sees x as (N, C, S) with S = H*W (or 1); statistics are accumulated in double and kept in double.

BATCHNORM_CONVENTIONS = ("torch", "keras")


def _bn_view(a):
    """``a`` (N, C, ...) as the kernel's (N, C, S) view."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


def _bn_channels(x, name="x"):
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must be (N, C, H, W) or (N, D), got shape {x.shape}")
    return x.shape[1]


def _bn_settings(momentum, eps, convention):
    momentum = _check_scalar(momentum, "momentum", 0.0, 1.0)
    eps = _check_scalar(eps, "eps", 0.0, low_open=True)
    if convention not in BATCHNORM_CONVENTIONS:
        raise ValueError(f"convention must be one of {BATCHNORM_CONVENTIONS}, got {convention!r}")
    return momentum, eps, BATCHNORM_CONVENTIONS.index(convention)


def _bn_vector(a, name, x, C):
    a = _float_array(a, name, 1)
    if a.dtype != x.dtype:
        _same_dtype(x, "x", **{name: a})
    if a.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},) (one value per channel of x {x.shape}), got {a.shape}")
    return a


def _bn_stat(a, name, x, C):
    """A running statistic: a writable float array of x's dtype and shape (C,), in either byte order."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array updated in place, got {type(a).__name__}")
    _writable_float(a, name)
    if _native_float(a.dtype) is not x.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but x has dtype {x.dtype}; they must match")
    if a.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},) (one value per channel of x {x.shape}), got {a.shape}")
    return a


def batchnorm_forward(x, gamma=None, beta=None, running_mean=None, running_var=None, *, training=True,
                      momentum=0.1, eps=1e-5, convention="torch"):
    """Batch normalization over axis 1 (channels of NCHW, features of (N, D)), as ``F.batch_norm``.

    Parameters
    ----------
    x : ndarray (N, C, H, W) or (N, D), float32 or float64
    gamma, beta : ndarrays (C,) of x's dtype, or None (scale 1, shift 0)
    running_mean, running_var : ndarrays (C,) of x's dtype, or None.  Inference reads them (required);
        training updates them in place when given:
        ``convention="torch"``: ``r = (1 - momentum)*r + momentum*stat`` with the unbiased batch variance
        ``var*M/(M - 1)`` (M = N*H*W values per channel; M = 1 raises, as PyTorch);
        ``convention="keras"``: ``r = momentum*r + (1 - momentum)*stat`` with the biased batch variance,
        as Keras 3's ``BatchNormalization`` (momentum 0.99 there).  Both are computed in double and rounded
        once to x's dtype (Keras computes in the variable's precision: the two agree to its rounding).
    training : bool -- batch statistics (True) or running statistics (False).
    momentum : float in [0, 1];  eps : float > 0, added to the variance inside the square root.

    Returns
    -------
    y : ndarray of x's shape, ``y = (x - mean)*gamma/sqrt(var + eps) + beta`` (var biased);
    mean, invstd : float64 (C,) -- the mean and ``1/sqrt(var + eps)`` used, for :func:`batchnorm_backward`.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> y, mean, invstd = batchnorm_forward(x)
    >>> mean
    array([3., 4.])
    """
    x = _float_array(x, "x")
    C = _bn_channels(x)
    momentum, eps, code = _bn_settings(momentum, eps, convention)
    gamma = np.ones(C, x.dtype) if gamma is None else _bn_vector(gamma, "gamma", x, C)
    beta = np.zeros(C, x.dtype) if beta is None else _bn_vector(beta, "beta", x, C)
    stats = [("running_mean", running_mean), ("running_var", running_var)]
    if not training and (running_mean is None or running_var is None):
        raise ValueError("inference (training=False) needs running_mean and running_var")
    if (running_mean is None) != (running_var is None):
        raise ValueError("pass both running_mean and running_var, or neither")
    update = bool(training) and running_mean is not None
    if running_mean is not None:
        for name, a in stats:
            _bn_stat(a, name, x, C)
        # the kernel updates them between reading x's statistics and normalising x
        _check_disjoint(("running_mean", running_mean), ("running_var", running_var), ("x", x), ("gamma", gamma),
                        ("beta", beta))
        flats = _flat_views([running_mean, running_var])
    else:
        flats = [np.zeros(C, x.dtype), np.ones(C, x.dtype)]
    if training and x.size // max(C, 1) == 0:
        raise ValueError(f"training needs at least one value per channel, got x of shape {x.shape}")
    if update and code == 0 and x.size // C < 2:
        raise ValueError(f"convention='torch' needs more than one value per channel in training (the unbiased "
                         f"running variance), got x of shape {x.shape}")
    y = np.empty_like(x)
    mean, invstd = np.empty(C, np.float64), np.empty(C, np.float64)
    if x.size:
        _batchnorm.batchnorm_forward(_bn_view(x), gamma, beta, flats[0], flats[1], _bn_view(y), mean, invstd,
                                     np.empty(x.shape[0] * C, np.float64), bool(training), update, eps,
                                     momentum, code, get_num_threads())
        if update:
            _write_back([running_mean, running_var], flats)
    else:
        mean[...] = flats[0]
        invstd[...] = 1.0 / np.sqrt(flats[1].astype(np.float64) + eps)
    return y, mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, *, training=True, need_dx=True):
    """Gradients of :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)`` (``dx`` None if not ``need_dx``).

    ``mean`` and ``invstd`` are the float64 (C,) arrays the forward returned; ``gamma`` None means 1.
    With ``xhat = (x - mean)*invstd`` and M values per channel::

        dbeta = sum(dy),  dgamma = sum(dy*xhat),
        dx = gamma*invstd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat))     (training: batch statistics)
        dx = gamma*invstd * dy                                         (training=False: fixed statistics)
    """
    x = _float_array(x, "x")
    dy = _float_array(dy, "dy")
    _same_dtype(x, "x", dy=dy)
    C = _bn_channels(x)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but x has shape {x.shape}")
    gamma = np.ones(C, x.dtype) if gamma is None else _bn_vector(gamma, "gamma", x, C)
    saved = []
    for name, a in (("mean", mean), ("invstd", invstd)):
        a = np.asarray(a)
        if a.dtype.kind != "f" or a.shape != (C,):
            raise ValueError(f"{name} must be the float64 ({C},) array batchnorm_forward returned, got "
                             f"{a.dtype} of shape {a.shape}")
        saved.append(np.ascontiguousarray(a, dtype=np.float64))
    dgamma, dbeta = np.empty(C, x.dtype), np.empty(C, x.dtype)
    dx = np.empty_like(x) if need_dx else None
    if x.size:
        _batchnorm.batchnorm_backward(_bn_view(dy), _bn_view(x), gamma, saved[0], saved[1],
                                      None if dx is None else _bn_view(dx), dgamma, dbeta,
                                      np.empty(2 * x.shape[0] * C, np.float64), bool(training), get_num_threads())
    else:
        dgamma.fill(0)
        dbeta.fill(0)
    return dx, dgamma, dbeta


def bind_batchnorm_forward(x, gamma, beta, running_mean, running_var, y, mean, invstd, work, *, training,
                           momentum, eps, convention, update=True):
    """:func:`batchnorm_forward` into ``y``, ``mean``, ``invstd`` (float64 (C,)), as a bound call; training
    updates ``running_mean``/``running_var`` in place when ``update``.  ``work``: float64 (N*C,) scratch."""
    momentum, eps, code = _bn_settings(momentum, eps, convention)
    C = _bn_channels(x)
    _buffer(x, "x", x.shape, x.dtype)
    for name, a in (("gamma", gamma), ("beta", beta)):
        _buffer(a, name, (C,), x.dtype)
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        _buffer(a, name, (C,), x.dtype, write=True)
    _buffer(y, "y", x.shape, x.dtype, write=True)
    for name, a in (("mean", mean), ("invstd", invstd)):
        _buffer(a, name, (C,), np.float64, write=True)
    _buffer(work, "work", (x.shape[0] * C,), np.float64, write=True)
    if x.size == 0:
        raise ValueError(f"a step needs at least one value per channel, got x of shape {x.shape}")
    if training and update and code == 0 and x.size // C < 2:
        raise ValueError(f"convention='torch' needs more than one value per channel in training (the unbiased "
                         f"running variance), got a batch of shape {x.shape}")
    return _batchnorm.batchnorm_forward, (_bn_view(x), gamma, beta, running_mean, running_var, _bn_view(y), mean,
                                          invstd, work, bool(training), bool(update), eps, momentum, code,
                                          get_num_threads())


def bind_batchnorm_backward(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, work, *, training=True):
    """:func:`batchnorm_backward` into ``dx`` (None: not needed), ``dgamma``, ``dbeta``, as a bound call.
    ``work``: float64 (2*N*C,) scratch."""
    C = _bn_channels(x)
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(dy, "dy", x.shape, x.dtype)
    _buffer(gamma, "gamma", (C,), x.dtype)
    for name, a in (("mean", mean), ("invstd", invstd)):
        _buffer(a, name, (C,), np.float64)
    if dx is not None:
        _buffer(dx, "dx", x.shape, x.dtype, write=True)
    for name, a in (("dgamma", dgamma), ("dbeta", dbeta)):
        _buffer(a, name, (C,), x.dtype, write=True)
    _buffer(work, "work", (2 * x.shape[0] * C,), np.float64, write=True)
    if x.size == 0:
        raise ValueError(f"a step needs at least one value per channel, got x of shape {x.shape}")
    return _batchnorm.batchnorm_backward, (_bn_view(dy), _bn_view(x), gamma, mean, invstd,
                                           None if dx is None else _bn_view(dx), dgamma, dbeta, work,
                                           bool(training), get_num_threads())


# ---- pooling ----
# Average pooling (PyTorch's AvgPool2d semantics, with asymmetric padding), global average and global max
# pooling, and the geometry they share with max-pooling's padding.

def pool_padding(padding, size, stride=None, input_hw=None):
    """Pooling pads ``(top, bottom, left, right)`` from an int, an (h, w) pair, a 4-tuple, ``"valid"`` or
    ``"same"``.

    ``"same"`` is TensorFlow's rule (needs ``input_hw``; :func:`same_padding` per axis): ``total =
    max((ceil(H/s) - 1)*s + k - H, 0)``, ``top = total//2`` and the extra row (column) at the bottom (right),
    so the output has ``ceil(H/s)`` rows.  Numeric padding is checked as :func:`as_padding` checks it.

    Examples
    --------
    >>> pool_padding("same", 2, 2, (5, 4))
    (0, 1, 0, 0)
    """
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride", 1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode != "same":
            raise ValueError(f"padding must be an int, a pair, a 4-tuple, 'valid' or 'same', got {padding!r}")
        if input_hw is None:
            raise ValueError("padding='same' needs the input's (H, W)")
        H, W = _pair(input_hw, "input_hw", 0)
        return same_padding(H, kh, sh) + same_padding(W, kw, sw)
    return _padding(padding)


def _pool_axis(n, k, s, lo, hi, ceil_mode, axis):
    """Output length along one axis, PyTorch's ``pooling_output_shape_pad_lr``: in ceil mode the last
    window must start inside the input or its leading padding."""
    if lo > k // 2 or hi > k // 2:
        raise ValueError(f"padding ({lo}, {hi}) along the {axis} must be at most half the pool size {k} "
                         "(as PyTorch), so that no window is padding only")
    span = n + lo + hi - k
    if span < 0:
        raise ValueError(f"pool size {k} is larger than the padded input {n + lo + hi} along the {axis}")
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _pool_geometry(x_shape, size, stride, padding, ceil_mode=False):
    """(kh, kw), (sh, sw), pads and the output shape (N, C, Ho, Wo) of a pooling on ``x_shape``."""
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride", 1)
    N, C, H, W = x_shape
    pads = pool_padding(padding, (kh, kw), (sh, sw), (H, W))
    ceil_mode = as_bool(ceil_mode, "ceil_mode")
    Ho = _pool_axis(H, kh, sh, pads[0], pads[1], ceil_mode, "height")
    Wo = _pool_axis(W, kw, sw, pads[2], pads[3], ceil_mode, "width")
    return (kh, kw), (sh, sw), pads, (N, C, Ho, Wo)


def pool_output_shape(input_shape, size, stride=None, padding=0, ceil_mode=False):
    """(N, C, Ho, Wo) of a 2-D pooling (average or max) on ``input_shape`` (N, C, H, W), as PyTorch:
    ``Ho = (H + top + bottom - kh + (sh - 1 if ceil_mode else 0))//sh + 1``, less one in ceil mode when
    the last window would start past the input and its top padding.

    >>> pool_output_shape((1, 3, 5, 5), 2, 2, 0, ceil_mode=True)
    (1, 3, 3, 3)
    """
    return _pool_geometry(_shape4(input_shape, "input_shape", "(N, C, H, W)"), size, stride, padding,
                          ceil_mode)[3]


def avgpool2d_forward(x, *, size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling with PyTorch's ``avg_pool2d`` semantics.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64
    size, stride : int or (h, w) pair (stride defaults to size)
    padding : int, (h, w) pair, (top, bottom, left, right), "valid" or "same" (TensorFlow's rule; use it
        with ``count_include_pad=False`` for TensorFlow's result); each pad at most half the window.
    ceil_mode : output size rounded up, the last window starting inside the input or its top/left padding.
    count_include_pad : divide by the window's size within the padded input (True) or by its number of
        input elements (False).

    Returns
    -------
    y : ndarray (N, C, Ho, Wo) (see :func:`pool_output_shape`);
        ``y = sum(x in window) / divisor``, the sum in x's precision in row-major order, as PyTorch.

    Examples
    --------
    >>> avgpool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    x = _float_array(x, "x", 4)
    (kh, kw), (sh, sw), pads, shape = _pool_geometry(x.shape, size, stride, padding, ceil_mode)
    y = np.empty(shape, x.dtype)
    _avgpool.avgpool2d_forward(x, y, kh, kw, sh, sw, *pads, as_bool(count_include_pad, "count_include_pad"),
                               get_num_threads())
    return y


def avgpool2d_backward(dy, x_shape, *, size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Gradient of :func:`avgpool2d_forward`: dx of ``x_shape``, each window's ``dy/divisor`` added to its
    input elements."""
    dy = _float_array(dy, "dy", 4)
    x_shape = _shape4(x_shape, "x_shape", "(N, C, H, W)")
    (kh, kw), (sh, sw), pads, shape = _pool_geometry(x_shape, size, stride, padding, ceil_mode)
    if dy.shape != shape:
        raise ValueError(f"dy has shape {dy.shape} but the pooling output has shape {shape}")
    dx = np.empty(x_shape, dy.dtype)
    _avgpool.avgpool2d_backward(dy, dx, kh, kw, sh, sw, *pads, as_bool(count_include_pad, "count_include_pad"),
                                get_num_threads())
    return dx


def bind_avgpool2d_forward(x, y, *, size, stride, padding, ceil_mode=False, count_include_pad=True):
    """``y = avgpool2d_forward(x, ...)`` into ``y``, as a bound call."""
    (kh, kw), (sh, sw), pads, shape = _pool_geometry(x.shape, size, stride, padding, ceil_mode)
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", shape, x.dtype, write=True)
    return _avgpool.avgpool2d_forward, (x, y, kh, kw, sh, sw, *pads,
                                        as_bool(count_include_pad, "count_include_pad"), get_num_threads())


def bind_avgpool2d_backward(dy, dx, *, size, stride, padding, ceil_mode=False, count_include_pad=True):
    """``dx = avgpool2d_backward(dy, dx.shape, ...)`` into ``dx``, as a bound call."""
    (kh, kw), (sh, sw), pads, shape = _pool_geometry(dx.shape, size, stride, padding, ceil_mode)
    _buffer(dy, "dy", shape, dx.dtype)
    _buffer(dx, "dx", dx.shape, dx.dtype, write=True)
    return _avgpool.avgpool2d_backward, (dy, dx, kh, kw, sh, sw, *pads,
                                         as_bool(count_include_pad, "count_include_pad"), get_num_threads())


def _planes(x, name):
    """(N, C, H, W) as the kernels' (N, C, H*W), refusing empty planes."""
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"{name} must have non-empty (H, W) planes, got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])


def global_avgpool2d_forward(x):
    """Global average pooling: ``y[n, c] = mean(x[n, c])`` (summed in double), (N, C, H, W) -> (N, C),
    as ``adaptive_avg_pool2d(x, 1)`` flattened."""
    x = _float_array(x, "x", 4)
    y = np.empty(x.shape[:2], x.dtype)
    _avgpool.global_avgpool2d_forward(_planes(x, "x"), y, get_num_threads())
    return y


def global_avgpool2d_backward(dy, x_shape):
    """Gradient of :func:`global_avgpool2d_forward`: ``dx[n, c, :, :] = dy[n, c] / (H*W)``."""
    dy = _float_array(dy, "dy", 2)
    x_shape = _shape4(x_shape, "x_shape", "(N, C, H, W)")
    if dy.shape != x_shape[:2]:
        raise ValueError(f"dy has shape {dy.shape} but x_shape {x_shape} pools to {x_shape[:2]}")
    dx = np.empty(x_shape, dy.dtype)
    _avgpool.global_avgpool2d_backward(dy, _planes(dx, "x_shape"), get_num_threads())
    return dx


def global_maxpool2d_forward(x):
    """Global max pooling, (N, C, H, W) -> (N, C): ``(y, idx)`` with idx int64 the flat position
    ``h*W + w`` of each plane's first maximum (a NaN wins, so NaN propagates), as MaxPool2D."""
    x = _float_array(x, "x", 4)
    y = np.empty(x.shape[:2], x.dtype)
    idx = np.empty(x.shape[:2], np.int64)
    _avgpool.global_maxpool2d_forward(_planes(x, "x"), y, idx, get_num_threads())
    return y, idx


def global_maxpool2d_backward(dy, idx, x_shape):
    """Gradient of :func:`global_maxpool2d_forward`: dx zero except ``dy`` at each plane's idx."""
    dy = _float_array(dy, "dy", 2)
    idx = _argmax_indices(idx, dy, "global_maxpool2d_forward")
    x_shape = _shape4(x_shape, "x_shape", "(N, C, H, W)")
    if dy.shape != x_shape[:2]:
        raise ValueError(f"dy has shape {dy.shape} but x_shape {x_shape} pools to {x_shape[:2]}")
    dx = np.empty(x_shape, dy.dtype)
    _avgpool.global_maxpool2d_backward(dy, idx, _planes(dx, "x_shape"), get_num_threads())
    return dx


def bind_global_avgpool2d_forward(x, y):
    """``y = global_avgpool2d_forward(x)`` into ``y``, as a bound call."""
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", x.shape[:2], x.dtype, write=True)
    return _avgpool.global_avgpool2d_forward, (_planes(x, "x"), y, get_num_threads())


def bind_global_avgpool2d_backward(dy, dx):
    """``dx = global_avgpool2d_backward(dy, dx.shape)`` into ``dx``, as a bound call."""
    _buffer(dx, "dx", dx.shape, dx.dtype, write=True)
    _buffer(dy, "dy", dx.shape[:2], dx.dtype)
    return _avgpool.global_avgpool2d_backward, (dy, _planes(dx, "dx"), get_num_threads())


def bind_global_maxpool2d_forward(x, y, idx):
    """``y, idx = global_maxpool2d_forward(x)`` into ``y`` and ``idx``, as a bound call."""
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", x.shape[:2], x.dtype, write=True)
    _buffer(idx, "idx", x.shape[:2], np.int64, write=True)
    return _avgpool.global_maxpool2d_forward, (_planes(x, "x"), y, idx, get_num_threads())


def bind_global_maxpool2d_backward(dy, idx, dx):
    """``dx = global_maxpool2d_backward(dy, idx, dx.shape)`` into ``dx``, as a bound call."""
    _buffer(dx, "dx", dx.shape, dx.dtype, write=True)
    _buffer(dy, "dy", dx.shape[:2], dx.dtype)
    _buffer(idx, "idx", dx.shape[:2], np.int64)
    return _avgpool.global_maxpool2d_backward, (dy, idx, _planes(dx, "dx"), get_num_threads())
# ---- optimizers (Keras forms) ----
# Keras 3's update formulas (keras/src/optimizers/*.py) as fused kernels over a flat buffer, with Keras's
# gradient clipping applied to each gradient element as the kernel reads it.  Keras's order: clip the
# gradients, then decay the weights (``p = p - p * weight_decay * lr``), then the update.  The norms for
# clipping are sums of squares in double precision over fixed pieces of the buffer (fastconv._clip), so
# they are bit-identical on any thread count; the clipping scalars then follow Keras's formulas in the
# parameter's dtype (fastconv._clip.global_scale / norm_denominators; fastconv.reference.clip_coefficients is
# the NumPy twin).

CLIP_CHUNK = _clip.CHUNK
_CLIP_MODE = {None: 0, "value": 1, "global": 2, "norm": 3}


def clip_settings(clipnorm=None, clipvalue=None, global_clipnorm=None):
    """``(kind, c)``: which clipping Keras applies and its bound; kind is None, "norm", "global" or "value".

    As Keras's base optimizer: at most one of the three may be given (ValueError otherwise); 0 means no
    clipping.  ``clipnorm`` clips each variable's gradient to norm <= c, ``global_clipnorm`` all of them
    together, ``clipvalue`` each element to [-c, c]."""
    given = [(name, v) for name, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                       ("global_clipnorm", global_clipnorm)) if v is not None]
    if len(given) > 1:
        raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                         f"clipnorm={clipnorm!r}, clipvalue={clipvalue!r}, global_clipnorm={global_clipnorm!r}")
    if not given:
        return None, 0.0
    name, value = given[0]
    c = _check_scalar(value, name, 0.0)
    if c == 0:
        return None, 0.0
    return {"clipnorm": "norm", "clipvalue": "value", "global_clipnorm": "global"}[name], c


def _segment_list(n, segments):
    """``segments`` checked: (start, stop) int pairs that tile [0, n) in order; None is one segment."""
    if segments is None:
        return [(0, n)]
    try:
        items = [tuple(s) for s in segments]
    except TypeError:
        raise TypeError(f"segments must be a sequence of (start, stop) pairs, got {segments!r}") from None
    out, pos = [], 0
    for k, item in enumerate(items):
        if len(item) != 2 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral)
                                 for v in item):
            raise TypeError(f"segments[{k}] must be a (start, stop) pair of ints, got {item!r}")
        start, stop = int(item[0]), int(item[1])
        if start != pos or stop < start:
            raise ValueError(f"segments must tile the buffer [0, {n}) in order; segments[{k}] is {item!r} "
                             f"where a segment starting at {pos} was expected")
        out.append((start, stop))
        pos = stop
    if pos != n:
        raise ValueError(f"segments must tile the buffer [0, {n}); they end at {pos}")
    return out


def clip_pieces(n, segments=None):
    """The (k, 3) int64 table of (start, stop, segment) pieces of at most CLIP_CHUNK elements that the
    clipped kernels and the norms run over, and the number of segments."""
    segs = _segment_list(n, segments)
    rows = [np.empty((0, 3), np.int64)]
    for k, (start, stop) in enumerate(segs):
        starts = np.arange(start, stop, CLIP_CHUNK, dtype=np.int64)
        rows.append(np.stack([starts, np.minimum(starts + CLIP_CHUNK, stop), np.full_like(starts, k)], axis=1))
    return np.ascontiguousarray(np.concatenate(rows)), len(segs)


class _Clipper:
    """The clipping of one bound update: pieces and scratch sized once; ``prepare()`` reads the gradient's
    norms (when the kind needs them) and gives the kernel's (pieces, denominators, mode, a)."""

    def __init__(self, grad, kind, c, segments):
        n = grad.size
        self.kind, self.c, self.grad, self.dtype = kind, c, grad, grad.dtype
        self.pieces, nseg = clip_pieces(n, segments if kind == "norm" else None)
        self.partials = np.zeros(len(self.pieces))
        self.sums = np.zeros(nseg)
        self.denoms = np.zeros(nseg, grad.dtype)
        self.double = grad.dtype == np.float64
        self.nt = get_num_threads()
        self.fixed = (self.pieces, None, _CLIP_MODE[kind], c)

    def prepare(self):
        if self.kind == "global":
            _clip.sumsq(self.grad, self.pieces, self.partials, self.sums, self.nt)
            return self.pieces, None, 2, _clip.global_scale(self.sums[0], self.c, self.double)
        if self.kind == "norm":
            _clip.sumsq(self.grad, self.pieces, self.partials, self.sums, self.nt)
            _clip.norm_denominators(self.sums, self.c, self.denoms)
            return self.pieces, self.denoms, 3, self.c
        return self.fixed


def _bind_buffers(named, like):
    for name, a in named:
        if a is not None:
            _buffer(a, name, like.shape, like.dtype, write=name != "grad")
    _check_disjoint(*named)


def _decay(weight_decay):
    return 0.0 if weight_decay is None else _check_scalar(weight_decay, "weight_decay", 0.0)


def gradient_sumsq(grad, segments=None):
    """Sums of squares of ``grad`` (any shape, read flat) per segment, in float64.

    ``segments``: (start, stop) offsets that tile the flat buffer (None: one segment).  Each segment is
    summed over pieces of CLIP_CHUNK elements with four interleaved accumulators, pieces added in order:
    the same bits on any thread count (``fastconv.reference.gradient_sumsq`` is the bit-identical twin).
    """
    g = _float_array(grad, "grad")
    pieces, nseg = clip_pieces(g.size, segments)
    out = np.zeros(nseg)
    _clip.sumsq(g, pieces, np.zeros(len(pieces)), out, get_num_threads())
    return out


def clip_gradient(grad, *, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """``grad`` clipped as Keras's optimizers clip it, as a new array (the update kernels do this fused).

    clipnorm (per segment, i.e. per variable): ``g * c / max(||g_segment||, c)``; global_clipnorm:
    ``g * (c * min(1/||g||, 1/c) + (||g|| - ||g||))``; clipvalue: ``min(max(g, -c), c)``.
    """
    g = _float_array(grad, "grad")
    kind, c = clip_settings(clipnorm, clipvalue, global_clipnorm)
    out = np.empty_like(g)
    clip = _Clipper(g, kind, c, segments)
    pieces, denoms, mode, a = clip.prepare()
    _clip.clip_into(g, out, pieces, denoms, mode, a, get_num_threads())
    return out


def bind_clip_gradient(grad, out, *, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """A bound ``out[...] = clip_gradient(grad, ...)`` (``out`` may be grad): ``clip()`` per step."""
    _buffer(grad, "grad", grad.shape, grad.dtype)
    _buffer(out, "out", grad.shape, grad.dtype, write=True)
    kind, c = clip_settings(clipnorm, clipvalue, global_clipnorm)
    clipper, kernel, nt = _Clipper(grad, kind, c, segments), _clip.clip_into, get_num_threads()

    def clip():
        pieces, denoms, mode, a = clipper.prepare()
        kernel(grad, out, pieces, denoms, mode, a, nt)

    return clip


def bind_rmsprop_update(param, grad, velocity, momentum_buffer=None, average_grad=None, *, rho=0.9, momentum=0.0,
                        epsilon=1e-7, centered=False, weight_decay=0.0, clipnorm=None, clipvalue=None,
                        global_clipnorm=None, segments=None):
    """A bound Keras RMSprop step on flat buffers: ``update(lr)`` (see :func:`rmsprop_update`)."""
    rho = _check_scalar(rho, "rho", 0.0, 1.0)
    momentum = _check_scalar(momentum, "momentum", 0.0)
    epsilon = _check_scalar(epsilon, "epsilon", 0.0)
    weight_decay = _decay(weight_decay)
    if momentum > 0 and momentum_buffer is None:
        raise ValueError("momentum > 0 needs a momentum_buffer array (zeros of param's shape)")
    if centered and average_grad is None:
        raise ValueError("centered=True needs an average_grad array (zeros of param's shape)")
    momentum_buffer = momentum_buffer if momentum > 0 else None
    average_grad = average_grad if centered else None
    _bind_buffers((("param", param), ("grad", grad), ("velocity", velocity), ("momentum_buffer", momentum_buffer),
                   ("average_grad", average_grad)), param)
    clipper = _Clipper(grad, *clip_settings(clipnorm, clipvalue, global_clipnorm), segments)
    kernel, nt = _rmsprop.rmsprop_update, get_num_threads()

    def update(lr):
        pieces, denoms, mode, a = clipper.prepare()
        kernel(param, grad, velocity, momentum_buffer, average_grad, pieces, denoms, mode, a, lr, rho, 1.0 - rho,
               momentum, epsilon, weight_decay, nt)

    return update


def bind_adagrad_update(param, grad, accumulator, *, epsilon=1e-7, weight_decay=0.0, clipnorm=None,
                        clipvalue=None, global_clipnorm=None, segments=None):
    """A bound Keras Adagrad step on flat buffers: ``update(lr)`` (see :func:`adagrad_update`)."""
    epsilon = _check_scalar(epsilon, "epsilon", 0.0)
    weight_decay = _decay(weight_decay)
    _bind_buffers((("param", param), ("grad", grad), ("accumulator", accumulator)), param)
    clipper = _Clipper(grad, *clip_settings(clipnorm, clipvalue, global_clipnorm), segments)
    kernel, nt = _adagrad.adagrad_update, get_num_threads()

    def update(lr):
        pieces, denoms, mode, a = clipper.prepare()
        kernel(param, grad, accumulator, pieces, denoms, mode, a, lr, epsilon, weight_decay, nt)

    return update


def _keras_sgd_settings(momentum, nesterov, velocity):
    momentum = _check_scalar(momentum, "momentum", 0.0, 1.0)
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True requires momentum > 0")
    if momentum != 0 and velocity is None:
        raise ValueError("momentum != 0 needs a velocity array (zeros of param's shape)")
    return momentum


def bind_sgd_keras_update(param, grad, velocity, *, momentum=0.0, nesterov=False, weight_decay=0.0, clipnorm=None,
                          clipvalue=None, global_clipnorm=None, segments=None):
    """A bound Keras SGD step on flat buffers: ``update(lr)`` (see :func:`sgd_keras_update`)."""
    momentum = _keras_sgd_settings(momentum, nesterov, velocity)
    weight_decay = _decay(weight_decay)
    velocity = velocity if momentum != 0 else None
    _bind_buffers((("param", param), ("grad", grad), ("velocity", velocity)), param)
    clipper = _Clipper(grad, *clip_settings(clipnorm, clipvalue, global_clipnorm), segments)
    kernel, nesterov, nt = _sgd.sgd_keras_update, bool(nesterov), get_num_threads()

    def update(lr):
        pieces, denoms, mode, a = clipper.prepare()
        kernel(param, grad, velocity, pieces, denoms, mode, a, lr, momentum, nesterov, weight_decay, nt)

    return update


def bind_adam_keras_update(param, grad, m, v, vhat=None, *, beta1=0.9, beta2=0.999, epsilon=1e-7, weight_decay=0.0,
                           clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """A bound Keras Adam/AdamW step on flat buffers: ``update(step, lr)`` (see :func:`adam_keras_update`)."""
    beta1 = _check_scalar(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = _check_scalar(beta2, "beta2", 0.0, 1.0, high_open=True)
    epsilon = _check_scalar(epsilon, "epsilon", 0.0)
    weight_decay = _decay(weight_decay)
    _bind_buffers((("param", param), ("grad", grad), ("m", m), ("v", v), ("vhat", vhat)), param)
    clipper = _Clipper(grad, *clip_settings(clipnorm, clipvalue, global_clipnorm), segments)
    kernel, nt = _adam.adam_keras_update, get_num_threads()

    def update(step, lr):
        alpha = _adam_coefficients(step, lr, beta1, beta2, 0.0, True)[0]
        pieces, denoms, mode, a = clipper.prepare()
        kernel(param, grad, m, v, vhat, pieces, denoms, mode, a, lr, 1.0 - beta1, 1.0 - beta2, alpha, epsilon,
               weight_decay, nt)

    return update


def nadam_coefficients(step, beta1, beta2, u_product):
    """Nadam's per-step scalars in double precision, as Keras forms them: returns
    ``(u_prod_t, u_{t+1}, 1 - u_prod_t * u_{t+1}, 1 - u_t, 1 - u_prod_t, 1 - beta2**t)`` with
    ``u_t = beta1 * (1 - 0.5 * 0.96**t)`` and ``u_prod_t = u_prod_{t-1} * beta1 * (1 - 0.5 * 0.96**t)``.
    fastconv.reference keeps a twin."""
    u_t = beta1 * (1.0 - 0.5 * 0.96 ** step)
    u_next = beta1 * (1.0 - 0.5 * 0.96 ** (step + 1))
    prod = u_product * beta1 * (1.0 - 0.5 * 0.96 ** step)
    return prod, u_next, 1.0 - prod * u_next, 1.0 - u_t, 1.0 - prod, 1.0 - beta2 ** step


def bind_nadam_update(param, grad, m, v, *, beta1=0.9, beta2=0.999, epsilon=1e-7, weight_decay=0.0, clipnorm=None,
                      clipvalue=None, global_clipnorm=None, segments=None):
    """A bound Keras Nadam step on flat buffers: ``update(step, lr, u_product)`` returns the new product
    (see :func:`nadam_update`)."""
    beta1 = _check_scalar(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = _check_scalar(beta2, "beta2", 0.0, 1.0, high_open=True)
    epsilon = _check_scalar(epsilon, "epsilon", 0.0)
    weight_decay = _decay(weight_decay)
    _bind_buffers((("param", param), ("grad", grad), ("m", m), ("v", v)), param)
    clipper = _Clipper(grad, *clip_settings(clipnorm, clipvalue, global_clipnorm), segments)
    kernel, nt = _nadam.nadam_update, get_num_threads()

    def update(step, lr, u_product):
        prod, u_next, omp_next, om_u, om_prod, bc2 = nadam_coefficients(step, beta1, beta2, u_product)
        pieces, denoms, mode, a = clipper.prepare()
        kernel(param, grad, m, v, pieces, denoms, mode, a, lr, 1.0 - beta1, 1.0 - beta2, u_next, omp_next, om_u,
               om_prod, bc2, epsilon, weight_decay, nt)
        return prod

    return update


def _unbound(param, grad, states, run):
    """Check an unbound update's arrays (param, grad, then (name, array or None) states), run
    ``run(param, grad, *states)`` on native contiguous copies where needed, and write them back."""
    _check_param_and_grad(param, grad)
    for name, a in states:
        if a is not None:
            _writable_float(a, name, param)
    _check_disjoint(("param", param), ("grad", grad), *states)
    arrays = [param, grad] + [a for _, a in states]
    flats = [None if a is None else f for a, f in zip(arrays, _flat_views([a if a is not None else param
                                                                          for a in arrays]))]
    if grad is param:
        flats[1] = flats[0]
    result = run(*flats)
    _write_back([param, None] + [a for _, a in states], flats)
    return result


def rmsprop_update(param, grad, velocity, momentum_buffer=None, average_grad=None, *, lr=1e-3, rho=0.9,
                   momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0, clipnorm=None, clipvalue=None,
                   global_clipnorm=None, segments=None):
    """One fused, in-place RMSprop step in Keras 3's form (``keras.optimizers.RMSprop``).

    Parameters
    ----------
    param, grad, velocity : ndarrays of one shape and dtype (float32/float64); param and velocity (and the
        optional buffers) are updated in place, through a native copy where needed.
    momentum_buffer : required when ``momentum > 0``; average_grad : required when ``centered``.
    lr, rho, momentum, epsilon, centered, weight_decay : Keras's hyperparameters.
    clipnorm, clipvalue, global_clipnorm, segments : Keras's gradient clipping (:func:`clip_gradient`).

    Per element: ``v = rho*v + (1-rho)*g*g``; ``d = v + eps`` (centered: ``a = rho*a + (1-rho)*g``,
    ``d = v - a*a + eps``); ``inc = lr*g / sqrt(d)``; ``b = momentum*b + inc; p -= b`` (momentum) or
    ``p -= inc``.  Weight decay first: ``p -= p*weight_decay*lr``.

    Examples
    --------
    >>> p, g, v = np.ones(3), np.full(3, 0.5), np.zeros(3)
    >>> rmsprop_update(p, g, v, lr=0.1)
    """
    lr = _check_scalar(lr, "lr", 0.0)
    return _unbound(param, grad, [("velocity", velocity), ("momentum_buffer", momentum_buffer),
                                  ("average_grad", average_grad)],
                    lambda p, g, v, b, a: bind_rmsprop_update(
                        p, g, v, b, a, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered,
                        weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                        global_clipnorm=global_clipnorm, segments=segments)(lr))


def adagrad_update(param, grad, accumulator, *, lr=1e-3, epsilon=1e-7, weight_decay=0.0, clipnorm=None,
                   clipvalue=None, global_clipnorm=None, segments=None):
    """One fused, in-place Adagrad step in Keras 3's form (``keras.optimizers.Adagrad``).

    ``accumulator`` starts at ``initial_accumulator_value`` (Keras: 0.1).  Per element:
    ``acc += g*g; p -= lr*g / sqrt(acc + epsilon)``, after ``p -= p*weight_decay*lr``; clipping as
    :func:`clip_gradient`.  Arrays as :func:`rmsprop_update`.
    """
    lr = _check_scalar(lr, "lr", 0.0)
    return _unbound(param, grad, [("accumulator", accumulator)],
                    lambda p, g, a: bind_adagrad_update(
                        p, g, a, epsilon=epsilon, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                        global_clipnorm=global_clipnorm, segments=segments)(lr))


def sgd_keras_update(param, grad, velocity=None, *, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                     clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One fused, in-place SGD step in Keras 3's form (``keras.optimizers.SGD``; :func:`sgd_update` is torch's).

    The velocity carries the learning rate: ``v = momentum*v - lr*g``; ``p += v``, or with Nesterov
    ``p += momentum*v - lr*g``; without momentum ``p -= lr*g``.  momentum in [0, 1] as Keras requires;
    weight decay ``p -= p*weight_decay*lr`` first; clipping as :func:`clip_gradient`.
    """
    lr = _check_scalar(lr, "lr", 0.0)
    return _unbound(param, grad, [("velocity", velocity)],
                    lambda p, g, b: bind_sgd_keras_update(
                        p, g, b, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, clipnorm=clipnorm,
                        clipvalue=clipvalue, global_clipnorm=global_clipnorm, segments=segments)(lr))


def adam_keras_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7, weight_decay=0.0,
                      amsgrad=False, vhat=None, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One fused, in-place Adam step in Keras 3's form (``keras.optimizers.Adam``; AdamW with weight_decay).

    ``m += (g - m)*(1-beta1)``; ``v += (g*g - v)*(1-beta2)`` (amsgrad: ``vhat = max(vhat, v)`` replaces v);
    ``p -= m*alpha / (sqrt(v) + epsilon)`` with ``alpha = lr*sqrt(1-beta2**step)/(1-beta1**step)``;
    weight decay ``p -= p*weight_decay*lr`` first (Keras's AdamW); clipping as :func:`clip_gradient`.
    :func:`adam_update` with ``eps_hat=True`` is the same formula with the moments written
    ``beta1*m + (1-beta1)*g`` (a different rounding) and L2 or ``p *= 1 - lr*wd`` decay.
    """
    step, lr = _step_number(step), _check_scalar(lr, "lr", 0.0)
    if amsgrad and vhat is None:
        raise ValueError("amsgrad=True needs a vhat array (zeros of param's shape) to hold max(v)")
    if not amsgrad and vhat is not None:
        raise ValueError("vhat is only used with amsgrad=True")
    return _unbound(param, grad, [("m", m), ("v", v), ("vhat", vhat)],
                    lambda p, g, m_, v_, vh: bind_adam_keras_update(
                        p, g, m_, v_, vh, beta1=beta1, beta2=beta2, epsilon=epsilon, weight_decay=weight_decay,
                        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                        segments=segments)(step, lr))


def nadam_update(param, grad, m, v, *, step, u_product, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7,
                 weight_decay=0.0, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One fused, in-place Nadam step in Keras 3's form (``keras.optimizers.Nadam``); returns the new
    momentum-cache product ``u_product`` (start with 1.0).

    ``m += (g - m)*(1-beta1)``; ``v += (g*g - v)*(1-beta2)``;
    ``m_hat = u_{t+1}*m / (1 - u_prod_t*u_{t+1}) + (1-u_t)*g / (1 - u_prod_t)``; ``v_hat = v/(1-beta2**t)``;
    ``p -= m_hat*lr / (sqrt(v_hat) + epsilon)`` (scalars: :func:`nadam_coefficients`); weight decay and
    clipping as :func:`adam_keras_update`.
    """
    step, lr = _step_number(step), _check_scalar(lr, "lr", 0.0)
    u_product = _check_scalar(u_product, "u_product")
    return _unbound(param, grad, [("m", m), ("v", v)],
                    lambda p, g, m_, v_: bind_nadam_update(
                        p, g, m_, v_, beta1=beta1, beta2=beta2, epsilon=epsilon, weight_decay=weight_decay,
                        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                        segments=segments)(step, lr, u_product))
