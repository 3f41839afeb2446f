# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused Nadam step in Keras 3's form (``keras.optimizers.Nadam``), gradient clipping included.

With ``u_t = beta_1 * (1 - 0.5 * 0.96**t)`` and ``u_prod_t = u_1 * ... * u_t`` (computed by the caller
in double precision), per element, in the parameter's precision, in this order
(``fastconv.reference.nadam_update`` performs the same operations, so results are bit-identical):

    g = clip(grad)                                   (fastconv._clip.clip_grad)
    p = p - p * weight_decay * lr                    (when weight_decay != 0: Keras's decoupled decay)
    m = m + (g - m) * (1 - beta_1)
    v = v + (g * g - v) * (1 - beta_2)
    m_hat = (u_{t+1} * m) / (1 - u_prod_t * u_{t+1}) + ((1 - u_t) * g) / (1 - u_prod_t)
    v_hat = v / (1 - beta_2**t)
    p = p - (m_hat * lr) / (sqrt(v_hat) + epsilon)
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
    double lr, c1, c2, u_next, one_minus_prod_next, one_minus_u, one_minus_prod, bc2, eps, wd


def nadam_update(p, g, m, v, pieces, denoms, int clip_mode, double clip_a, double lr, double one_minus_beta1,
                 double one_minus_beta2, double u_next, double one_minus_prod_next, double one_minus_u,
                 double one_minus_prod, double bias_correction2, double epsilon, double weight_decay,
                 int nthreads):
    """One step over C-contiguous arrays of one float dtype and size; the scalars as the module says."""
    cdef _Coef k
    k.lr, k.c1, k.c2, k.u_next = lr, one_minus_beta1, one_minus_beta2, u_next
    k.one_minus_prod_next, k.one_minus_u, k.one_minus_prod = one_minus_prod_next, one_minus_u, one_minus_prod
    k.bc2, k.eps, k.wd = bias_correction2, epsilon, weight_decay
    if is_double(p, "nadam_update: param"):
        _update(<double>0, p, g, m, v, pieces, denoms, clip_mode, clip_a, k, nthreads)
    else:
        _update(<float>0, p, g, m, v, pieces, denoms, clip_mode, clip_a, k, nthreads)


cdef int _update(floating tag, p_in, g_in, m_in, v_in, pieces, denoms, int mode, double clip_a, _Coef k,
                 int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ng, nm, nv, i, count, s
    cdef char *pd
    cdef char *gd
    cdef char *md
    cdef char *vd
    cdef char *dd
    cdef const long long *pc
    view(p_in, T, -1, True, &n, &pd, "nadam_update: param")
    view(g_in, T, -1, False, &ng, &gd, "nadam_update: grad")
    view(m_in, T, -1, True, &nm, &md, "nadam_update: m")
    view(v_in, T, -1, True, &nv, &vd, "nadam_update: v")
    if ng != n or nm != n or nv != n:
        raise ValueError("nadam_update: arrays of different lengths reached the compiled kernel")
    read_pieces(pieces, denoms, T, n, mode, &pc, &count, &dd, "nadam_update")
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef floating *m = <floating *>md
    cdef floating *v = <floating *>vd
    cdef const floating *den = <const floating *>dd
    cdef floating ca = <floating>clip_a
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt <= 1:
        with nogil:
            for i in range(count):
                s = pc[3 * i]
                _block(p + s, g + s, m + s, v + s, pc[3 * i + 1] - s, mode, ca,
                       den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    else:
        for i in prange(count, schedule='static', num_threads=nt, nogil=True):
            _block(p + pc[3 * i], g + pc[3 * i], m + pc[3 * i], v + pc[3 * i], pc[3 * i + 1] - pc[3 * i], mode,
                   ca, den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    return 0


cdef void _block(floating *p, const floating *g_in, floating *m, floating *v, Py_ssize_t n, int mode,
                 floating ca, floating cb, _Coef k) noexcept nogil:
    # one loop per clip mode, the mode folded in as a constant (so that each loop vectorises)
    if mode == CLIP_NONE:
        _loop(p, g_in, m, v, n, CLIP_NONE, ca, cb, k)
    elif mode == CLIP_VALUE:
        _loop(p, g_in, m, v, n, CLIP_VALUE, ca, cb, k)
    elif mode == CLIP_SCALE:
        _loop(p, g_in, m, v, n, CLIP_SCALE, ca, cb, k)
    else:
        _loop(p, g_in, m, v, n, CLIP_NORM, ca, cb, k)


cdef inline void _loop(floating *p, const floating *g_in, floating *m, floating *v, Py_ssize_t n, int mode,
                       floating ca, floating cb, _Coef k) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating lr = <floating>k.lr, c1 = <floating>k.c1, c2 = <floating>k.c2, un = <floating>k.u_next
    cdef floating opn = <floating>k.one_minus_prod_next, omu = <floating>k.one_minus_u
    cdef floating op = <floating>k.one_minus_prod, bc2 = <floating>k.bc2, eps = <floating>k.eps
    cdef floating wd = <floating>k.wd
    cdef bint decay = k.wd != 0
    cdef floating g, pi, mi, vi, mh, vh
    for i in range(n):
        g = clip_grad(g_in[i], mode, ca, cb)
        pi = p[i]
        if decay:
            pi = pi - pi * wd * lr
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        m[i] = mi
        v[i] = vi
        mh = (un * mi) / opn + (omu * g) / op
        vh = vi / bc2
        p[i] = pi - (mh * lr) / (_sqrt(vh) + eps)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is double:
        return sqrt(x)
    else:
        return sqrtf(x)
