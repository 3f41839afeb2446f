# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused RMSprop step in Keras 3's form (``keras.optimizers.RMSprop``), gradient clipping included.

Per element, in the parameter's precision, in this order (``fastconv.reference.rmsprop_update`` performs
the same operations, so results are bit-identical):

    g = clip(grad)                                  (fastconv._clip.clip_grad: clipvalue / clipnorm / global)
    p = p - p * weight_decay * lr                   (when weight_decay != 0: Keras's decoupled decay)
    v = rho * v + (1 - rho) * (g * g)
    centered:  a = rho * a + (1 - rho) * g;   d = (v - a * a) + epsilon
    else:      d = v + epsilon                      (epsilon inside the square root, as Keras)
    inc = (lr * g) / sqrt(d)
    momentum:  b = momentum * b + inc;  p = p - b    (the momentum buffer carries the learning rate)
    else:      p = p - inc
The scalars are given in double precision and rounded to the parameter's dtype.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastconv._arrays cimport is_double, typenum, view
from fastconv._clip cimport CLIP_NONE, CLIP_NORM, CLIP_SCALE, CLIP_VALUE, clip_grad, read_pieces

cnp.import_array()

PARALLEL_MIN = 1 << 15


cdef struct _Coef:
    double lr, rho, omr, mom, eps, wd


def rmsprop_update(p, g, v, b, a, pieces, denoms, int clip_mode, double clip_a, double lr, double rho,
                   double one_minus_rho, double momentum, double epsilon, double weight_decay, int nthreads):
    """One step over C-contiguous arrays of one float dtype and size (b: momentum buffer or None, a: the
    average gradient or None); ``pieces``/``denoms`` as fastconv._clip describes."""
    cdef _Coef k
    k.lr, k.rho, k.omr, k.mom, k.eps, k.wd = lr, rho, one_minus_rho, momentum, epsilon, weight_decay
    if is_double(p, "rmsprop_update: param"):
        _update(<double>0, p, g, v, b, a, pieces, denoms, clip_mode, clip_a, k, nthreads)
    else:
        _update(<float>0, p, g, v, b, a, pieces, denoms, clip_mode, clip_a, k, nthreads)


cdef char *_opt(object x, int T, Py_ssize_t n, str what) except? NULL:
    cdef Py_ssize_t m
    cdef char *d
    if x is None:
        return NULL
    view(x, T, -1, True, &m, &d, what)
    if m != n:
        raise ValueError(f"{what} length differs from param")
    return d


cdef int _update(floating tag, p_in, g_in, v_in, b_in, a_in, pieces, denoms, int mode, double clip_a,
                 _Coef k, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ng, i, count
    cdef char *pd
    cdef char *gd
    cdef char *dd
    cdef const long long *pc
    view(p_in, T, -1, True, &n, &pd, "rmsprop_update: param")
    view(g_in, T, -1, False, &ng, &gd, "rmsprop_update: grad")
    if ng != n:
        raise ValueError("rmsprop_update: grad length differs from param")
    cdef floating *v = <floating *>_opt(v_in, T, n, "rmsprop_update: velocity")
    if v == NULL:
        raise ValueError("rmsprop_update: velocity is required")
    cdef floating *b = <floating *>_opt(b_in, T, n, "rmsprop_update: momentum buffer")
    cdef floating *a = <floating *>_opt(a_in, T, n, "rmsprop_update: average gradient")
    read_pieces(pieces, denoms, T, n, mode, &pc, &count, &dd, "rmsprop_update")
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef const floating *den = <const floating *>dd
    cdef floating ca = <floating>clip_a
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    cdef Py_ssize_t s
    if nt <= 1:
        with nogil:
            for i in range(count):
                s = pc[3 * i]
                _block(p + s, g + s, v + s, (b + s) if b != NULL else NULL, (a + s) if a != NULL else NULL,
                       pc[3 * i + 1] - s, mode, ca, den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    else:
        for i in prange(count, schedule='static', num_threads=nt, nogil=True):
            _block(p + pc[3 * i], g + pc[3 * i], v + pc[3 * i], (b + pc[3 * i]) if b != NULL else NULL,
                   (a + pc[3 * i]) if a != NULL else NULL, pc[3 * i + 1] - pc[3 * i], mode, ca,
                   den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    return 0


cdef void _block(floating *p, const floating *g_in, floating *v, floating *b, floating *a, Py_ssize_t n,
                 int mode, floating ca, floating cb, _Coef k) noexcept nogil:
    # one loop per clip mode, the mode folded in as a constant (so that each loop vectorises)
    if mode == CLIP_NONE:
        _loop(p, g_in, v, b, a, n, CLIP_NONE, ca, cb, k)
    elif mode == CLIP_VALUE:
        _loop(p, g_in, v, b, a, n, CLIP_VALUE, ca, cb, k)
    elif mode == CLIP_SCALE:
        _loop(p, g_in, v, b, a, n, CLIP_SCALE, ca, cb, k)
    else:
        _loop(p, g_in, v, b, a, n, CLIP_NORM, ca, cb, k)


cdef inline void _loop(floating *p, const floating *g_in, floating *v, floating *b, floating *a, Py_ssize_t n,
                       int mode, floating ca, floating cb, _Coef k) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating lr = <floating>k.lr, rho = <floating>k.rho, omr = <floating>k.omr
    cdef floating mom = <floating>k.mom, eps = <floating>k.eps, wd = <floating>k.wd
    cdef bint decay = k.wd != 0
    cdef floating g, pi, vi, ai, d, inc
    for i in range(n):
        g = clip_grad(g_in[i], mode, ca, cb)
        pi = p[i]
        if decay:
            pi = pi - pi * wd * lr
        vi = rho * v[i] + omr * (g * g)
        v[i] = vi
        if a != NULL:
            ai = rho * a[i] + omr * g
            a[i] = ai
            d = (vi - ai * ai) + eps
        else:
            d = vi + eps
        inc = (lr * g) / _sqrt(d)
        if b != NULL:
            inc = mom * b[i] + inc
            b[i] = inc
        p[i] = pi - inc


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is double:
        return sqrt(x)
    else:
        return sqrtf(x)
