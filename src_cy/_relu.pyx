# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ReLU forward and backward with PyTorch's semantics.

    y    = 0 where x <= 0 else x          (so NaN stays NaN)
    mask = not (x <= 0)                   (True for NaN, False at exactly 0)
    dx   = dy where mask else 0

Arrays arrive C-contiguous from ``fastconv.ops`` (any shape, one size); the mask is a bool array.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from fastconv._arrays cimport is_double, typenum, view

cnp.import_array()

# Below this many elements one thread is faster than waking the others.
PARALLEL_MIN = 1 << 15


# Elements per parallel work item; the inner loops are plain C loops with restrict pointers
# (fc_relu.h), which the compiler vectorises.
cdef enum:
    BLOCK = 4096


cdef extern from "fc_relu.h" nogil:
    void fc_relu_fwd_d(const double *x, double *y, unsigned char *mask, long n)
    void fc_relu_fwd_s(const float *x, float *y, unsigned char *mask, long n)
    void fc_relu_bwd_d(const double *dy, const unsigned char *mask, double *dx, long n)
    void fc_relu_bwd_s(const float *dy, const unsigned char *mask, float *dx, long n)


cdef inline void _fwd_block(const floating *x, floating *y, unsigned char *mask, Py_ssize_t n) noexcept nogil:
    if floating is double:
        fc_relu_fwd_d(x, y, mask, n)
    else:
        fc_relu_fwd_s(x, y, mask, n)


cdef inline void _bwd_block(const floating *dy, const unsigned char *mask, floating *dx,
                            Py_ssize_t n) noexcept nogil:
    if floating is double:
        fc_relu_bwd_d(dy, mask, dx, n)
    else:
        fc_relu_bwd_s(dy, mask, dx, n)


def relu_forward(x, y, mask, int nthreads):
    """Fill ``y`` and the bool ``mask`` from ``x`` (C-contiguous ndarrays of one size; y of x's dtype)."""
    if is_double(x, "relu: x"):
        _forward(<double>0, x, y, mask, nthreads)
    else:
        _forward(<float>0, x, y, mask, nthreads)


def relu_backward(dy, mask, dx, int nthreads):
    """dx = dy where mask else 0."""
    if is_double(dy, "relu: dy"):
        _backward(<double>0, dy, mask, dx, nthreads)
    else:
        _backward(<float>0, dy, mask, dx, nthreads)


cdef int _forward(floating tag, x_in, y_in, mask_in, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ny, nm, b
    cdef char *xd
    cdef char *yd
    cdef char *md
    view(x_in, T, -1, False, &n, &xd, "relu: x")
    view(y_in, T, -1, True, &ny, &yd, "relu: y")
    view(mask_in, cnp.NPY_BOOL, -1, True, &nm, &md, "relu: mask")
    if ny != n or nm != n:
        raise ValueError("relu_forward: buffers do not match x")
    cdef const floating *x = <const floating *>xd
    cdef floating *y = <floating *>yd
    cdef unsigned char *mask = <unsigned char *>md
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    if n < PARALLEL_MIN or nthreads <= 1:   # no OpenMP region: waking threads costs more
        with nogil:
            _fwd_block(x, y, mask, n)
        return 0
    for b in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
        _fwd_block(x + b * BLOCK, y + b * BLOCK, mask + b * BLOCK, min(BLOCK, n - b * BLOCK))
    return 0


cdef int _backward(floating tag, dy_in, mask_in, dx_in, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, nx, nm, b
    cdef char *dyd
    cdef char *dxd
    cdef char *md
    view(dy_in, T, -1, False, &n, &dyd, "relu: dy")
    view(mask_in, cnp.NPY_BOOL, -1, False, &nm, &md, "relu: mask")
    view(dx_in, T, -1, True, &nx, &dxd, "relu: dx")
    if nx != n or nm != n:
        raise ValueError("relu_backward: buffers do not match dy")
    cdef const floating *dy = <const floating *>dyd
    cdef floating *dx = <floating *>dxd
    cdef const unsigned char *mask = <const unsigned char *>md
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    if n < PARALLEL_MIN or nthreads <= 1:
        with nogil:
            _bwd_block(dy, mask, dx, n)
        return 0
    for b in prange(nb, schedule='static', num_threads=nthreads, nogil=True):
        _bwd_block(dy + b * BLOCK, mask + b * BLOCK, dx + b * BLOCK, min(BLOCK, n - b * BLOCK))
    return 0
