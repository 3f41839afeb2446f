# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise activations, forward and backward, with PyTorch's formulas (the loops are in fc_activations.h).

    sigmoid       1/(1+exp(-x)), split by sign          dx = (dy*y)*(1-y)                  reads y
    tanh          tanh(x)                               dx = dy*(1-y*y)                    reads y
    elu           x <= 0 ? (alpha*scale)*expm1(x) : scale*x   (selu: PyTorch's alpha and scale)
                                                        dx = x <= 0 ? dy*((alpha*scale)*exp(x)) : dy*scale
    gelu          (x*0.5)*(1+erf(x/sqrt(2)))            dx = dy*(cdf + x*pdf)
    gelu_tanh     (0.5*x)*(1+tanh(sqrt(2/pi)*(x+0.044715*x**3)))   PyTorch's approximate="tanh"
    leaky_relu    x > 0 ? x : x*slope                   dx = x > 0 ? dy : dy*slope
    silu          x*sigmoid(x)                          dx = dy*s*(1+x*(1-s))
    softplus      max(x, 0) + log1p(exp(-|x|))          dx = dy*sigmoid(x)
    softsign      x/(1+|x|)                             dx = dy/(1+|x|)**2
    relu6         clamp(x, 0, 6)                        dx = 0 < x < 6 ? dy : 0 (NaN: dy)
    hard_sigmoid  clamp(x+3, 0, 6)/6                    dx = -3 < x < 3 ? dy/6 : 0

Every backward but sigmoid's and tanh's reads the input x.  Precision rules and the polynomial exp, expm1,
tanh and log1p are described in fc_activations.h.  Arrays arrive C-contiguous and native from
``fastconv.ops`` (any shape, one size, outputs not overlapping inputs).  ``a`` and ``b`` carry the
parameters: leaky_relu's slope in ``a``; elu's ``alpha*scale`` in ``a`` and ``scale`` in ``b``.
"""
cimport numpy as cnp
from cython.parallel cimport prange

from fastconv._arrays cimport is_double, view

cnp.import_array()

# Below these many elements one thread is faster than waking the others; the transcendental loops cost
# several times more per element, so they split smaller inputs.
PARALLEL_MIN = 1 << 15
PARALLEL_MIN_COSTLY = 1 << 12

# Elements per parallel work item.
cdef enum:
    BLOCK = 2048

cdef extern from "fc_activations.h" nogil:
    void fc_act_fwd_d(int kind, const double *x, double *y, long n, double a, double b)
    void fc_act_fwd_s(int kind, const float *x, float *y, long n, double a, double b)
    void fc_act_bwd_d(int kind, const double *dy, const double *x, const double *y, double *dx, long n,
                      double a, double b)
    void fc_act_bwd_s(int kind, const float *dy, const float *x, const float *y, float *dx, long n,
                      double a, double b)
    int fc_act_is_costly(int kind, int backward)
    int FC_NUM_KINDS

# The kernels' kind numbers, and which array each backward reads besides dy.
KINDS = {"sigmoid": 0, "tanh": 1, "elu": 2, "gelu": 3, "gelu_tanh": 4, "leaky_relu": 5, "silu": 6,
         "softplus": 7, "softsign": 8, "relu6": 9, "hard_sigmoid": 10}
BACKWARD_READS = {name: ("y" if name in ("sigmoid", "tanh") else "x") for name in KINDS}


cdef int _check_kind(int kind) except -1:
    if kind < 0 or kind >= FC_NUM_KINDS:
        raise ValueError(f"activation kind {kind} is not one of the kernel's 0..{FC_NUM_KINDS - 1}")
    return 0


cdef inline bint _parallel(int kind, bint backward, Py_ssize_t n, int nthreads) noexcept:
    if nthreads <= 1:
        return False
    return n >= (PARALLEL_MIN_COSTLY if fc_act_is_costly(kind, backward) else PARALLEL_MIN)


def activation_forward(int kind, x_in, y_in, double a, double b, int nthreads):
    """y = f(x) for the activation numbered ``kind`` (C-contiguous arrays of one size and dtype)."""
    _check_kind(kind)
    cdef int T = cnp.NPY_DOUBLE if is_double(x_in, "activation: x") else cnp.NPY_FLOAT
    cdef Py_ssize_t n, ny, nb, i
    cdef char *xd
    cdef char *yd
    view(x_in, T, -1, False, &n, &xd, "activation: x")
    view(y_in, T, -1, True, &ny, &yd, "activation: y")
    if ny != n:
        raise ValueError("activation_forward: y does not match x")
    nb = (n + BLOCK - 1) // BLOCK
    if T == cnp.NPY_DOUBLE:
        if not _parallel(kind, False, n, nthreads):   # no OpenMP region: waking threads costs more
            with nogil:
                fc_act_fwd_d(kind, <const double *>xd, <double *>yd, n, a, b)
            return
        for i in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
            fc_act_fwd_d(kind, <const double *>xd + i * BLOCK, <double *>yd + i * BLOCK,
                         min(BLOCK, n - i * BLOCK), a, b)
    else:
        if not _parallel(kind, False, n, nthreads):
            with nogil:
                fc_act_fwd_s(kind, <const float *>xd, <float *>yd, n, a, b)
            return
        for i in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
            fc_act_fwd_s(kind, <const float *>xd + i * BLOCK, <float *>yd + i * BLOCK,
                         min(BLOCK, n - i * BLOCK), a, b)


def activation_backward(int kind, dy_in, x_in, y_in, dx_in, double a, double b, int nthreads):
    """dx from dy and x (or y, for sigmoid and tanh: see ``BACKWARD_READS``; the other may be None)."""
    _check_kind(kind)
    cdef int T = cnp.NPY_DOUBLE if is_double(dy_in, "activation: dy") else cnp.NPY_FLOAT
    cdef Py_ssize_t n, nr, nx, nb, i
    cdef char *dyd
    cdef char *rd
    cdef char *dxd
    cdef bint reads_y = kind == 0 or kind == 1
    view(dy_in, T, -1, False, &n, &dyd, "activation: dy")
    if reads_y:
        view(y_in, T, -1, False, &nr, &rd, "activation: y")
    else:
        view(x_in, T, -1, False, &nr, &rd, "activation: x")
    view(dx_in, T, -1, True, &nx, &dxd, "activation: dx")
    if nr != n or nx != n:
        raise ValueError("activation_backward: buffers do not match dy")
    nb = (n + BLOCK - 1) // BLOCK
    # the array the kind reads goes in both the x and the y slot: each loop uses only its own one
    if T == cnp.NPY_DOUBLE:
        if not _parallel(kind, True, n, nthreads):
            with nogil:
                fc_act_bwd_d(kind, <const double *>dyd, <const double *>rd, <const double *>rd, <double *>dxd,
                             n, a, b)
            return
        for i in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
            fc_act_bwd_d(kind, <const double *>dyd + i * BLOCK, <const double *>rd + i * BLOCK,
                         <const double *>rd + i * BLOCK, <double *>dxd + i * BLOCK, min(BLOCK, n - i * BLOCK), a, b)
    else:
        if not _parallel(kind, True, n, nthreads):
            with nogil:
                fc_act_bwd_s(kind, <const float *>dyd, <const float *>rd, <const float *>rd, <float *>dxd,
                             n, a, b)
            return
        for i in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
            fc_act_bwd_s(kind, <const float *>dyd + i * BLOCK, <const float *>rd + i * BLOCK,
                         <const float *>rd + i * BLOCK, <float *>dxd + i * BLOCK, min(BLOCK, n - i * BLOCK), a, b)
