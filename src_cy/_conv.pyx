# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""conv2d forward and backward on register-blocked micro-kernels (conv_micro.h); no BLAS.

This module is the dispatcher: it holds the Python-visible entry points and picks an algorithm, each in a
file of its own that only this module includes:

* conv_winograd.pxi -- Winograd F(2x2, 3x3) for the forward and the dx of 3x3 stride-1 convolutions with
  at least WINOGRAD_MIN_CHANNELS channels each way, WINOGRAD_MIN_TILES output tiles and finite inputs:
  2.25x fewer products.
* conv_implicit.pxi -- implicit GEMM, every other finite input.  The padded input is split into its stride
  phases, so the rows of the im2col matrix are shifted views of one small buffer and are never written
  out.  y = W @ views, dW = dy_grid @ views^T, dx (phase by phase) = W_phase @ views of dy.
* conv_dw_shifted.pxi -- dW and db without dx of few terms C*kh*kw (first layers): dot products of dy's
  rows with the rows of the shifted layout, read where they lie.
* conv_im2col.pxi -- im2col, the backward for non-finite x or w, whose products must match the
  reference's exactly.
* conv_plan.pxi -- the plan of a geometry (sizes, index tables, a reusable workspace), cached per layer
  shape; conv_kernels.pxi -- the micro-kernel wrappers and index helpers they share.

Samples are processed in chunks so the buffers stay near cache size.  The parallel loops split work that
exists even at batch 1 (output tiles, tiles of dW), so one image can use every thread; whether it pays
is measured per layer shape on the machine at hand (fastconv._runtime's trials).  No BLAS is called, so
OpenMP never runs beside a threaded BLAS.

Only ``fastconv.ops`` calls this module; it validates and allocates.  The functions here re-check the
shape relations they rely on, because the loops run with bounds checks off.
"""
import os

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from fastconv cimport _runtime
from fastconv._arrays cimport is_double, one_window_stride, plain_float, typenum, view
from fastconv._runtime cimport Trials, trials_for

cnp.import_array()

cdef extern from "fc_omp.h" nogil:
    ctypedef struct fc_range:
        Py_ssize_t lo
        Py_ssize_t hi
    void fc_barrier()
    fc_range fc_share(Py_ssize_t n)

# Batch 1: whether splitting one sample between threads pays depends on the machine, so each plan
# measures it per operation with a Trials (fastconv._runtime).  At batch 1 the work items are output
# tiles (forward, dx) and whole tiles of dW, each computed the same way on any thread, so the choice
# never changes the result's bits (tested).  Batches of 2 or more always split.
cdef enum:
    OP_FORWARD = 0
    OP_BACKWARD = 1       # no dx
    OP_BACKWARD_DX = 2

include "conv_kernels.pxi"
include "conv_plan.pxi"
include "conv_im2col.pxi"
include "conv_implicit.pxi"
include "conv_dw_shifted.pxi"
include "conv_winograd.pxi"


def kernel_ready(a, dtype=None):
    """True for an ndarray (exactly) of native float32/float64 (``dtype`` if given), C-contiguous: what the
    kernels take as it is.  The layers call it several times a step, so it is compiled."""
    if not cnp.PyArray_CheckExact(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr)
    if (t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT) or not cnp.PyArray_IS_C_CONTIGUOUS(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    return dtype is None or <object>cnp.PyArray_DESCR(arr) is dtype or arr.dtype == dtype


def batch1_choices():
    """The batch-1 thread choices measured so far: {(C, H, W, F, kh, kw, sh, sw, ph, pw, NR): {op: ...}}."""
    choices = {key: plan.batch1_choice() for key, plan in _plans.items()}
    return {key: c for key, c in choices.items() if c}


def max_threads():
    """Threads OpenMP would use by default (1 when built without OpenMP); as fastconv._runtime's."""
    return _runtime.omp_max_threads()


def have_openmp():
    """True when the extensions were compiled with OpenMP; as fastconv._runtime's."""
    return _runtime.omp_available()


# The instruction set the kernels were compiled for ("avx512f", "avx2", "fma", "avx", "neon", "baseline"):
# with -march=native the machine's own, with FASTCONV_NATIVE=0 the compiler's default.
BUILD_ISA = (<bytes>FC_BUILD_ISA).decode("ascii")


def tile_width(dtype):
    """Columns per nn tile for ``dtype`` (the padding unit of the im2col buffer)."""
    return FC_NR_D if np.dtype(dtype) == np.float64 else FC_NR_S


def dw_shifted_taken(xshape, wshape, stride, padding, dilation=1, bint need_dx=False):
    """True when conv2d_backward of finite inputs of these shapes (N, C, H, W) and (F, C, kh, kw) takes the
    shifted dW of few terms (conv_dw_shifted.pxi); stride, padding and dilation as ops takes them."""
    cdef Py_ssize_t s[2]
    cdef Py_ssize_t p[4]
    cdef Py_ssize_t d[2]
    if not (_pair_ok(stride, 1, s) and _pads_ok(padding, p) and _pair_ok(dilation, 1, d)):
        raise ValueError("dw_shifted_taken: bad stride, padding or dilation")
    cdef _Plan g = _plan(xshape[1], xshape[2], xshape[3], wshape[0], wshape[1], wshape[2], wshape[3],
                         (s[0], s[1]), _kernel_padding(p), _kernel_dilation(d), FC_NR_D)
    return _dw_shifted_fits(g, xshape[0], need_dx)


def conv2d_forward(x, w, b, y, stride, padding, int nthreads, dilation=None):
    """y = conv2d(x, w) + b into the preallocated ``y``: C-contiguous ndarrays of one float dtype, ``b``
    None or (F,); ``stride`` a pair, ``padding`` (ph, pw) or (top, bottom, left, right), ``dilation`` a
    pair or None (1, 1)."""
    if is_double(x, "conv2d: x"):
        _forward(<double>0, x, w, b, y, stride, padding, dilation, nthreads)
    else:
        _forward(<float>0, x, w, b, y, stride, padding, dilation, nthreads)


def conv2d_backward(dy, x, w, dx, dw, db, stride, padding, int nthreads, dilation=None):
    """Fill ``dw``, ``db`` and, unless ``dx`` is None, ``dx`` (every element is written); all C-contiguous
    ndarrays of one float dtype.  Geometry as conv2d_forward's."""
    if is_double(x, "conv2d: x"):
        _backward(<double>0, dy, x, w, dx, dw, db, stride, padding, dilation, nthreads)
    else:
        _backward(<float>0, dy, x, w, dx, dw, db, stride, padding, dilation, nthreads)


cdef int _forward(floating tag, x, w, b, y, stride, padding, dilation, int nthreads) except -1:
    """conv2d_forward for one dtype: Winograd where it fits (symmetric padding, no dilation) and the inputs
    are finite, else implicit GEMM."""
    cdef int T = typenum(tag)
    cdef Py_ssize_t xsh[4]
    cdef Py_ssize_t wsh[4]
    cdef Py_ssize_t ysh[4]
    cdef Py_ssize_t bsh[1]
    cdef char *xd
    cdef char *wd
    cdef char *yd
    cdef char *bd
    view(x, T, 4, False, xsh, &xd, "conv2d: x")
    view(w, T, 4, False, wsh, &wd, "conv2d: w")
    view(y, T, 4, True, ysh, &yd, "conv2d: y")
    cdef const floating *xp = <const floating *>xd
    cdef const floating *wp = <const floating *>wd
    cdef floating *yp = <floating *>yd
    cdef _Plan g = _plan(xsh[1], xsh[2], xsh[3], wsh[0], wsh[1], wsh[2], wsh[3],
                         stride, padding, dilation, FC_NR_D if floating is double else FC_NR_S)
    cdef Py_ssize_t N = xsh[0], C = g.C, F = g.F
    cdef Trials trial = g.trials(N, nthreads, OP_FORWARD)
    if trial is not None:
        nthreads = trial.threads(nthreads)
    if ysh[0] != N or ysh[1] != F or ysh[2] != g.Ho or ysh[3] != g.Wo:
        raise ValueError("conv2d_forward: output buffer has the wrong shape")
    cdef const floating *bptr = NULL
    cdef bint finite
    if b is not None:
        view(b, T, 1, False, bsh, &bd, "conv2d: b")
        if bsh[0] != F:
            raise ValueError("conv2d_forward: bias length does not match the filters")
        bptr = <const floating *>bd
    if g.winograd_ok and _winograd_fits(g.kh, g.kw, g.sh, g.sw, N, C, F, g.Ho, g.Wo):
        with nogil:
            finite = _all_finite(xp, N * C * g.H * g.W) and _all_finite(wp, F * g.K)
        if finite:
            _winograd(xp, N, C, g.H, g.W, wp, F, g.ph, g.pw, bptr, yp, g.Ho, g.Wo, nthreads)
            return 0
    return _forward_implicit(g.forward_plan(), xp, wp, bptr, yp, N, nthreads)


cdef int _backward(floating tag, dy, x, w, dx_out, dw_out, db_out, stride, padding, dilation,
                   int nthreads) except -1:
    """conv2d_backward for one dtype: im2col for non-finite x (or w, with dx), else implicit GEMM, its dx by
    Winograd where that fits."""
    cdef int T = typenum(tag)
    cdef Py_ssize_t xsh[4]
    cdef Py_ssize_t wsh[4]
    cdef Py_ssize_t dysh[4]
    cdef Py_ssize_t dxsh[4]
    cdef Py_ssize_t dwsh[4]
    cdef Py_ssize_t dbsh[1]
    cdef char *xd
    cdef char *wd
    cdef char *dyd
    cdef char *dxd = NULL
    cdef char *dwd
    cdef char *dbd
    view(x, T, 4, False, xsh, &xd, "conv2d: x")
    view(w, T, 4, False, wsh, &wd, "conv2d: w")
    view(dy, T, 4, False, dysh, &dyd, "conv2d: dy")
    view(dw_out, T, 4, True, dwsh, &dwd, "conv2d: dw")
    view(db_out, T, 1, True, dbsh, &dbd, "conv2d: db")
    cdef _Plan g = _plan(xsh[1], xsh[2], xsh[3], wsh[0], wsh[1], wsh[2], wsh[3],
                         stride, padding, dilation, FC_NR_D if floating is double else FC_NR_S)
    cdef Py_ssize_t N = xsh[0], C = g.C, H = g.H, W = g.W, F = g.F, kh = g.kh, kw = g.kw
    if (dysh[0] != N or dysh[1] != F or dysh[2] != g.Ho or dysh[3] != g.Wo
            or dwsh[0] != F or dwsh[1] != C or dwsh[2] != kh or dwsh[3] != kw or dbsh[0] != F):
        raise ValueError("conv2d_backward: buffers have the wrong shape")
    cdef bint need_dx = dx_out is not None
    if need_dx:
        view(dx_out, T, 4, True, dxsh, &dxd, "conv2d: dx")
        if dxsh[0] != N or dxsh[1] != C or dxsh[2] != H or dxsh[3] != W:
            raise ValueError("conv2d_backward: dx buffer has the wrong shape")
    cdef const floating *xp = <const floating *>xd
    cdef const floating *wp = <const floating *>wd
    cdef const floating *dyp = <const floating *>dyd
    cdef floating *dxp = <floating *>dxd
    cdef bint finite
    with nogil:
        finite = _all_finite(xp, N * C * H * W)
        if finite and need_dx:
            finite = _all_finite(wp, F * C * kh * kw)
    if not finite:
        _backward_im2col(dy, x, w, dx_out, dw_out, db_out, g, nthreads)
        return 0
    # dx of a 3x3 stride-1 convolution is one too: dy, padded by 2 - p, correlated with the filters
    # flipped and transposed (C x F x 3 x 3), which Winograd computes with 2.25x fewer products; dW and db
    # then take the implicit GEMM as for need_dx=False
    cdef floating[:, :, :, ::1] wt
    if (need_dx and g.winograd_ok and g.ph <= 2 and g.pw <= 2 and _winograd_fits(kh, kw, g.sh, g.sw, N, F, C, H, W)
            and _all_finite(dyp, N * F * g.Ho * g.Wo)):
        wt = np.ascontiguousarray(np.asarray(w)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        _winograd(dyp, N, F, g.Ho, g.Wo, &wt[0, 0, 0, 0], C, 2 - g.ph, 2 - g.pw, NULL, dxp, H, W, nthreads)
        need_dx = False
    cdef Trials trial = g.trials(N, nthreads, OP_BACKWARD_DX if need_dx else OP_BACKWARD)
    if trial is not None:
        nthreads = trial.threads(nthreads)
    if _dw_shifted_fits(g, N, need_dx):
        return _backward_dw_shifted(g, dyp, xp, <floating *>dwd, <floating *>dbd, N, nthreads)
    return _backward_implicit(g, dyp, xp, wp, dxp, <floating *>dwd, <floating *>dbd, N, need_dx, nthreads)


cdef bint _pair_ok(object v, Py_ssize_t minimum, Py_ssize_t *out):
    """``v`` is an int or a tuple of two ints, each in [minimum, 2**30): store them (else False)."""
    if type(v) is int:
        if not (minimum <= v < (1 << 30)):
            return False
        out[0] = out[1] = v
        return True
    if type(v) is tuple and len(<tuple>v) == 2:
        a, b = v
        if type(a) is int and type(b) is int and minimum <= a < (1 << 30) and minimum <= b < (1 << 30):
            out[0], out[1] = a, b
            return True
    return False


cdef bint _pads_ok(object v, Py_ssize_t *out):
    """``v`` is an int, a pair or a (top, bottom, left, right) 4-tuple of ints in [0, 2**30): store them
    as top, bottom, left, right (else False)."""
    cdef Py_ssize_t p[2]
    cdef int i
    if _pair_ok(v, 0, p):
        out[0] = out[1] = p[0]
        out[2] = out[3] = p[1]
        return True
    if type(v) is tuple and len(<tuple>v) == 4:
        for i in range(4):
            a = (<tuple>v)[i]
            if type(a) is not int or not (0 <= a < (1 << 30)):
                return False
            out[i] = a
        return True
    return False


cdef bint _plain_geometry(x, w, stride, padding, dilation, Py_ssize_t *s, Py_ssize_t *p, Py_ssize_t *d,
                          cnp.npy_intp *yshape):
    """The common case of ``ops.conv2d_*``: x and w plain arrays of one dtype whose geometry is valid;
    fills stride, padding (top, bottom, left, right), dilation and the output shape (else False: ops
    validates and explains)."""
    cdef int t = plain_float(x, 4)
    if t < 0 or plain_float(w, 4) != t or not _pair_ok(stride, 1, s) or not _pads_ok(padding, p):
        return False
    if not _pair_ok(dilation, 1, d):
        return False
    cdef cnp.npy_intp *xs = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef cnp.npy_intp *ws = cnp.PyArray_DIMS(<cnp.ndarray>w)
    if ws[1] != xs[1] or ws[2] < 1 or ws[3] < 1:
        return False
    cdef Py_ssize_t ekh = d[0] * (ws[2] - 1) + 1, ekw = d[1] * (ws[3] - 1) + 1
    if ekh > xs[2] + p[0] + p[1] or ekw > xs[3] + p[2] + p[3]:
        return False
    yshape[0], yshape[1] = xs[0], ws[0]
    yshape[2] = (xs[2] + p[0] + p[1] - ekh) // s[0] + 1
    yshape[3] = (xs[3] + p[2] + p[3] - ekw) // s[1] + 1
    return True


cdef object _kernel_dilation(Py_ssize_t *d):
    """The dilation argument of _plan: None for none (no tuple to build on the common path)."""
    if d[0] == 1 and d[1] == 1:
        return None
    return (d[0], d[1])


cdef tuple _kernel_padding(Py_ssize_t *p):
    """The padding argument of _plan: a pair when symmetric (the plans every earlier release made)."""
    if p[0] == p[1] and p[2] == p[3]:
        return (p[0], p[2])
    return (p[0], p[1], p[2], p[3])


def forward_plain(x, w, b, stride, padding, int nthreads, dilation=1):
    """``ops.conv2d_forward`` for plain arguments (see _plain_geometry), or None to validate in Python.
    Compiled, because these checks run on every call and cost several times more in Python."""
    cdef Py_ssize_t s[2]
    cdef Py_ssize_t p[4]
    cdef Py_ssize_t d[2]
    cdef cnp.npy_intp ysh[4]
    if not _plain_geometry(x, w, stride, padding, dilation, s, p, d, ysh):
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if b is not None and (plain_float(b, 1) != t or cnp.PyArray_DIMS(<cnp.ndarray>b)[0] != ysh[1]):
        return None
    y = cnp.PyArray_EMPTY(4, ysh, t, 0)
    if t == cnp.NPY_DOUBLE:
        _forward(<double>0, x, w, b, y, (s[0], s[1]), _kernel_padding(p), _kernel_dilation(d), nthreads)
    else:
        _forward(<float>0, x, w, b, y, (s[0], s[1]), _kernel_padding(p), _kernel_dilation(d), nthreads)
    return y


def backward_plain(dy, x, w, bint need_dx, stride, padding, int nthreads, dilation=1):
    """``ops.conv2d_backward`` for plain arguments, or None to validate in Python."""
    cdef Py_ssize_t s[2]
    cdef Py_ssize_t p[4]
    cdef Py_ssize_t d[2]
    cdef cnp.npy_intp ysh[4]
    if not _plain_geometry(x, w, stride, padding, dilation, s, p, d, ysh):
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x), i
    if plain_float(dy, 4) != t:
        return None
    for i in range(4):
        if cnp.PyArray_DIMS(<cnp.ndarray>dy)[i] != ysh[i]:
            return None
    dx = cnp.PyArray_EMPTY(4, cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0) if need_dx else None
    dw = cnp.PyArray_EMPTY(4, cnp.PyArray_DIMS(<cnp.ndarray>w), t, 0)
    db = cnp.PyArray_EMPTY(1, &ysh[1], t, 0)
    if t == cnp.NPY_DOUBLE:
        _backward(<double>0, dy, x, w, dx, dw, db, (s[0], s[1]), _kernel_padding(p), _kernel_dilation(d), nthreads)
    else:
        _backward(<float>0, dy, x, w, dx, dw, db, (s[0], s[1]), _kernel_padding(p), _kernel_dilation(d), nthreads)
    return dx, dw, db
