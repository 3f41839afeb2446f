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

from . import _adam, _conv, _dense, _maxpool, _relu, _sgd, _softmax_ce
from .runtime import get_num_threads, max_threads, openmp_enabled, set_num_threads

__all__ = [
    "conv2d_forward", "conv2d_backward", "dense_forward", "dense_backward", "relu_forward", "relu_backward",
    "maxpool2d_forward",
    "maxpool2d_backward", "adam_update", "sgd_update", "softmax_cross_entropy", "conv2d_output_shape",
    "set_num_threads", "get_num_threads", "openmp_enabled", "max_threads",
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

def maxpool2d_forward(x, *, size=2, stride=None):
    """Max-pooling over ``size`` windows (int or pair) moved by ``stride`` (default: ``size``), no padding.

    Returns ``(y, idx)``: y (N, C, Ho, Wo) with ``Ho = (H - kh)//sh + 1``; idx int64, the flat position
    ``h*W + w`` of each window's first maximum in its plane (a NaN in the window wins, so NaN propagates).
    """
    x = _float_array(x, "x", 4)
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride", 1)
    N, C, H, W = x.shape
    if kh > H or kw > W:
        raise ValueError(f"pool size {kh}x{kw} is larger than the input {H}x{W}")
    y = np.empty((N, C, (H - kh) // sh + 1, (W - kw) // sw + 1), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    if y.size:
        _maxpool.maxpool2d_forward(x, y, idx, kh, kw, sh, sw, get_num_threads())
    return y, idx


def maxpool2d_backward(dy, idx, x_shape):
    """Gradient of :func:`maxpool2d_forward`: ``dx`` of shape ``x_shape`` with dy added at idx."""
    dy = _float_array(dy, "dy", 4)
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"idx must be the integer array returned by maxpool2d_forward, got dtype {idx.dtype}")
    if idx.shape != dy.shape:
        raise ValueError(f"idx has shape {idx.shape} but dy has shape {dy.shape}")
    x_shape = _shape4(x_shape, "x_shape", "(N, C, H, W)")
    if x_shape[:2] != dy.shape[:2]:
        raise ValueError(f"x_shape {x_shape} does not match dy's batch and channels {dy.shape[:2]}")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    if dy.size:
        _maxpool.maxpool2d_backward(dy, np.ascontiguousarray(idx, dtype=np.int64), dx, get_num_threads())
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
    if type(step) is not int and (isinstance(step, (bool, np.bool_))
                                  or not isinstance(step, numbers.Integral)):
        raise TypeError(f"step must be an int (1-based step number), got {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the 1-based step number), got {step}")
    lr = _check_scalar(lr, "lr", 0.0)
    beta1 = _check_scalar(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = _check_scalar(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = _check_scalar(eps, "eps", 0.0)
    weight_decay = _check_scalar(weight_decay, "weight_decay", 0.0)
    step_size, bc2_sqrt, decay_factor = _adam_coefficients(int(step), lr, beta1, beta2, weight_decay, eps_hat)
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
        return _dense.dense_forward, (x, w, b, y)
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
        return _dense.dense_backward, (dy, x, w, dx, dw, db)
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


def bind_maxpool2d_forward(x, y, idx, *, size, stride):
    """``y, idx = maxpool2d_forward(x, size=size, stride=stride)`` into ``y`` and ``idx``, as a bound call."""
    kh, kw = _pair(size, "size", 1)
    sh, sw = _pair(stride, "stride", 1)
    N, C, H, W = x.shape
    shape = (N, C, (H - kh) // sh + 1, (W - kw) // sw + 1)
    _buffer(x, "x", x.shape, x.dtype)
    _buffer(y, "y", shape, x.dtype, write=True)
    _buffer(idx, "idx", shape, np.int64, write=True)
    return _maxpool.maxpool2d_forward, (x, y, idx, kh, kw, sh, sw, get_num_threads())


def _maxpool_backward_into(dy, idx, dx, nthreads):
    dx.fill(0)                   # the kernel adds each dy at its window's maximum
    _maxpool.maxpool2d_backward(dy, idx, dx, nthreads)


def bind_maxpool2d_backward(dy, idx, dx):
    """``dx = maxpool2d_backward(dy, idx, dx.shape)`` into ``dx``, as a bound call."""
    _buffer(idx, "idx", dy.shape, np.int64)
    _buffer(dx, "dx", dx.shape, dy.dtype, write=True)
    return _maxpool_backward_into, (_buffer(dy, "dy", dy.shape, dy.dtype), idx, dx, get_num_threads())


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
