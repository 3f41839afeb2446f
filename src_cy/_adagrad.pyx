# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused Adagrad step in Keras 3's form (``keras.optimizers.Adagrad``), gradient clipping included.

Per element, in the parameter's precision, in this order (``fastconv.reference.adagrad_update`` performs
the same operations, so results are bit-identical):

    g = clip(grad)                                  (fastconv._clip.clip_grad)
    p = p - p * weight_decay * lr                   (when weight_decay != 0: Keras's decoupled decay)
    acc = acc + g * g                               (acc starts at initial_accumulator_value)
    p = p - (lr * g) / sqrt(acc + epsilon)          (epsilon inside the square root, as Keras)
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastconv._arrays cimport is_double, typenum, view
from fastconv._clip cimport CLIP_NONE, CLIP_NORM, CLIP_SCALE, CLIP_VALUE, clip_grad, read_pieces

cnp.import_array()

PARALLEL_MIN = 1 << 15


def adagrad_update(p, g, acc, pieces, denoms, int clip_mode, double clip_a, double lr, double epsilon,
                   double weight_decay, int nthreads):
    """One step over C-contiguous arrays of one float dtype and size; ``pieces``/``denoms`` as
    fastconv._clip describes."""
    if is_double(p, "adagrad_update: param"):
        _update(<double>0, p, g, acc, pieces, denoms, clip_mode, clip_a, lr, epsilon, weight_decay, nthreads)
    else:
        _update(<float>0, p, g, acc, pieces, denoms, clip_mode, clip_a, lr, epsilon, weight_decay, nthreads)


cdef int _update(floating tag, p_in, g_in, acc_in, pieces, denoms, int mode, double clip_a, double lr,
                 double epsilon, double weight_decay, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ng, na, i, count, s
    cdef char *pd
    cdef char *gd
    cdef char *ad
    cdef char *dd
    cdef const long long *pc
    view(p_in, T, -1, True, &n, &pd, "adagrad_update: param")
    view(g_in, T, -1, False, &ng, &gd, "adagrad_update: grad")
    view(acc_in, T, -1, True, &na, &ad, "adagrad_update: accumulator")
    if ng != n or na != n:
        raise ValueError("adagrad_update: arrays of different lengths reached the compiled kernel")
    read_pieces(pieces, denoms, T, n, mode, &pc, &count, &dd, "adagrad_update")
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef floating *acc = <floating *>ad
    cdef const floating *den = <const floating *>dd
    cdef floating ca = <floating>clip_a, flr = <floating>lr, feps = <floating>epsilon
    cdef floating fwd = <floating>weight_decay
    cdef bint decay = weight_decay != 0
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt <= 1:
        with nogil:
            for i in range(count):
                s = pc[3 * i]
                _block(p + s, g + s, acc + s, pc[3 * i + 1] - s, mode, ca,
                       den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, flr, feps, fwd, decay)
    else:
        for i in prange(count, schedule='static', num_threads=nt, nogil=True):
            _block(p + pc[3 * i], g + pc[3 * i], acc + pc[3 * i], pc[3 * i + 1] - pc[3 * i], mode, ca,
                   den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, flr, feps, fwd, decay)
    return 0


cdef void _block(floating *p, const floating *g_in, floating *acc, Py_ssize_t n, int mode, floating ca,
                 floating cb, floating lr, floating eps, floating wd, bint decay) noexcept nogil:
    # one loop per clip mode and decay flag, each with its constants folded in (so each vectorises)
    if decay:
        if mode == CLIP_NONE:
            _loop(p, g_in, acc, n, CLIP_NONE, ca, cb, lr, eps, wd, True)
        elif mode == CLIP_VALUE:
            _loop(p, g_in, acc, n, CLIP_VALUE, ca, cb, lr, eps, wd, True)
        elif mode == CLIP_SCALE:
            _loop(p, g_in, acc, n, CLIP_SCALE, ca, cb, lr, eps, wd, True)
        else:
            _loop(p, g_in, acc, n, CLIP_NORM, ca, cb, lr, eps, wd, True)
    else:
        if mode == CLIP_NONE:
            _loop(p, g_in, acc, n, CLIP_NONE, ca, cb, lr, eps, wd, False)
        elif mode == CLIP_VALUE:
            _loop(p, g_in, acc, n, CLIP_VALUE, ca, cb, lr, eps, wd, False)
        elif mode == CLIP_SCALE:
            _loop(p, g_in, acc, n, CLIP_SCALE, ca, cb, lr, eps, wd, False)
        else:
            _loop(p, g_in, acc, n, CLIP_NORM, ca, cb, lr, eps, wd, False)


cdef inline void _loop(floating *p, const floating *g_in, floating *acc, Py_ssize_t n, int mode, floating ca,
                       floating cb, floating lr, floating eps, floating wd, bint decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, pi, ai
    for i in range(n):
        g = clip_grad(g_in[i], mode, ca, cb)
        pi = p[i]
        if decay:
            pi = pi - pi * wd * lr
        ai = acc[i] + g * g
        acc[i] = ai
        p[i] = pi - (lr * g) / _sqrt(ai + eps)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is double:
        return sqrt(x)
    else:
        return sqrtf(x)
