# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fully connected layer for small batches: y = x @ w.T + b and its gradients (loops in fc_dense.h).

At batch 1 (seed 000's regime) a NumPy/BLAS product of a 648-vector with a 10 x 648 matrix costs more in
dispatch than in arithmetic; these loops run on the calling thread with no dispatch.  ``fastconv.ops``
sends batches above SMALL_BATCH to BLAS, validates, and allocates.  The functions here re-check the
shape relations they rely on, because the loops run with bounds checks off.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from fastconv._arrays cimport is_double, typenum, view

cnp.import_array()

cdef extern from "fc_dense.h" nogil:
    void fc_dense_fwd_d(const double *x, const double *w, const double *b, double *y, long N, long K, long U)
    void fc_dense_fwd_s(const float *x, const float *w, const float *b, float *y, long N, long K, long U)
    void fc_dense_bwd_d(const double *dy, const double *x, const double *w, double *dx, double *dw,
                        double *db, long N, long K, long U)
    void fc_dense_bwd_s(const float *dy, const float *x, const float *w, float *dx, float *dw, float *db,
                        long N, long K, long U)
    void fc_dense_fwd_rows_d(const double *x, const double *w, const double *b, double *y, long N, long K,
                             long U, long u0, long u1)
    void fc_dense_fwd_rows_s(const float *x, const float *w, const float *b, float *y, long N, long K,
                             long U, long u0, long u1)
    void fc_dense_bwd_w_d(const double *dy, const double *x, double *dw, double *db, long N, long K, long U,
                          long u0, long u1)
    void fc_dense_bwd_w_s(const float *dy, const float *x, float *dw, float *db, long N, long K, long U,
                          long u0, long u1)
    void fc_dense_bwd_x_d(const double *dy, const double *w, double *dx, long N, long K, long U, long k0,
                          long k1)
    void fc_dense_bwd_x_s(const float *dy, const float *w, float *dx, long N, long K, long U, long k0,
                          long k1)

# Batches up to this size use these loops; larger ones BLAS (fastconv.ops).  The loops run on one
# thread, with no dispatch cost; larger batches amortise BLAS's dispatch and its blocking wins.
SMALL_BATCH = 8

# From this many weights a layer's loops are split between the threads: rows of w (forward, dw, db) in
# groups of four and columns of dx, so that every element is computed as on one thread (same bits).
# Below, one thread is faster than waking the others.
PARALLEL_MIN = 1 << 14


cdef inline Py_ssize_t _part(Py_ssize_t n, int parts, int i, Py_ssize_t align) noexcept nogil:
    """Start of part ``i`` of ``parts`` of range(n), parts a multiple of ``align`` long (the last shorter)."""
    cdef Py_ssize_t size = ((n + parts - 1) // parts + align - 1) // align * align
    cdef Py_ssize_t start = i * size
    return start if start < n else n


def dense_forward(x, w, b, y, int nthreads=1):
    """y = x @ w.T (+ b) into the preallocated ``y``: C-contiguous ndarrays of one float dtype."""
    if is_double(x, "dense: x"):
        _forward(<double>0, x, w, b, y, nthreads)
    else:
        _forward(<float>0, x, w, b, y, nthreads)


def dense_backward(dy, x, w, dx, dw, db, int nthreads=1):
    """Fill ``dw``, ``db`` and, unless ``dx`` is None, ``dx``."""
    if is_double(x, "dense: x"):
        _backward(<double>0, dy, x, w, dx, dw, db, nthreads)
    else:
        _backward(<float>0, dy, x, w, dx, dw, db, nthreads)


cdef int _forward(floating tag, x, w, b, y, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t xsh[2]
    cdef Py_ssize_t wsh[2]
    cdef Py_ssize_t ysh[2]
    cdef Py_ssize_t bsh[1]
    cdef char *xd
    cdef char *wd
    cdef char *yd
    cdef char *bd = NULL
    view(x, T, 2, False, xsh, &xd, "dense: x")
    view(w, T, 2, False, wsh, &wd, "dense: w")
    view(y, T, 2, True, ysh, &yd, "dense: y")
    if wsh[1] != xsh[1] or ysh[0] != xsh[0] or ysh[1] != wsh[0]:
        raise ValueError("dense_forward: inconsistent shapes reached the compiled kernel")
    if b is not None:
        view(b, T, 1, False, bsh, &bd, "dense: b")
        if bsh[0] != wsh[0]:
            raise ValueError("dense_forward: bias length does not match w")
    cdef Py_ssize_t N = xsh[0], K = xsh[1], U = wsh[0], u0, u1
    cdef int i, nt = nthreads if U * K >= PARALLEL_MIN and U > 4 else 1
    if nt <= 1:
        with nogil:
            if floating is double:
                fc_dense_fwd_d(<double *>xd, <double *>wd, <double *>bd, <double *>yd, N, K, U)
            else:
                fc_dense_fwd_s(<float *>xd, <float *>wd, <float *>bd, <float *>yd, N, K, U)
        return 0
    for i in prange(nt, schedule='static', num_threads=nt, nogil=True):
        u0 = _part(U, nt, i, 4)
        u1 = _part(U, nt, i + 1, 4)
        if floating is double:
            fc_dense_fwd_rows_d(<double *>xd, <double *>wd, <double *>bd, <double *>yd, N, K, U, u0, u1)
        else:
            fc_dense_fwd_rows_s(<float *>xd, <float *>wd, <float *>bd, <float *>yd, N, K, U, u0, u1)
    return 0


cdef int _backward(floating tag, dy, x, w, dx, dw, db, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t dysh[2]
    cdef Py_ssize_t xsh[2]
    cdef Py_ssize_t wsh[2]
    cdef Py_ssize_t dxsh[2]
    cdef Py_ssize_t dwsh[2]
    cdef Py_ssize_t dbsh[1]
    cdef char *dyd
    cdef char *xd
    cdef char *wd
    cdef char *dxd = NULL
    cdef char *dwd
    cdef char *dbd
    view(dy, T, 2, False, dysh, &dyd, "dense: dy")
    view(x, T, 2, False, xsh, &xd, "dense: x")
    view(w, T, 2, False, wsh, &wd, "dense: w")
    view(dw, T, 2, True, dwsh, &dwd, "dense: dw")
    view(db, T, 1, True, dbsh, &dbd, "dense: db")
    if (wsh[1] != xsh[1] or dysh[0] != xsh[0] or dysh[1] != wsh[0] or dwsh[0] != wsh[0]
            or dwsh[1] != wsh[1] or dbsh[0] != wsh[0]):
        raise ValueError("dense_backward: inconsistent shapes reached the compiled kernel")
    if dx is not None:
        view(dx, T, 2, True, dxsh, &dxd, "dense: dx")
        if dxsh[0] != xsh[0] or dxsh[1] != xsh[1]:
            raise ValueError("dense_backward: dx buffer has the wrong shape")
    cdef Py_ssize_t N = xsh[0], K = xsh[1], U = wsh[0], u0, u1, k0, k1
    cdef int i, nt = nthreads if U * K >= PARALLEL_MIN and N > 0 else 1
    if nt <= 1:
        with nogil:
            if floating is double:
                fc_dense_bwd_d(<double *>dyd, <double *>xd, <double *>wd, <double *>dxd, <double *>dwd,
                               <double *>dbd, N, K, U)
            else:
                fc_dense_bwd_s(<float *>dyd, <float *>xd, <float *>wd, <float *>dxd, <float *>dwd,
                               <float *>dbd, N, K, U)
        return 0
    for i in prange(nt, schedule='static', num_threads=nt, nogil=True):   # rows of dw, then columns of dx
        u0 = _part(U, nt, i, 1)
        u1 = _part(U, nt, i + 1, 1)
        if floating is double:
            fc_dense_bwd_w_d(<double *>dyd, <double *>xd, <double *>dwd, <double *>dbd, N, K, U, u0, u1)
        else:
            fc_dense_bwd_w_s(<float *>dyd, <float *>xd, <float *>dwd, <float *>dbd, N, K, U, u0, u1)
        if dxd != NULL:
            k0 = _part(K, nt, i, 16)
            k1 = _part(K, nt, i + 1, 16)
            if floating is double:
                fc_dense_bwd_x_d(<double *>dyd, <double *>wd, <double *>dxd, N, K, U, k0, k1)
            else:
                fc_dense_bwd_x_s(<float *>dyd, <float *>wd, <float *>dxd, N, K, U, k0, k1)
    return 0
