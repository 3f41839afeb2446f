# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused Adam / AdamW / AMSGrad step: one pass over param, grad, m, v (and vmax).

Per element, in the parameter's precision, in exactly this order (``fastconv.reference.adam_update``
performs the same operations, so results are bit-identical):

    g = grad + weight_decay * p                  (L2, unless decoupled)
    p = p * (1 - lr * weight_decay)              (decoupled: AdamW)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    torch form:  vmax = max(vmax, v) if amsgrad;  denom = sqrt(v or vmax) / sqrt(1 - beta2**t) + eps
                 p = p - step_size * m / denom,   step_size = lr / (1 - beta1**t)
    eps-hat:     denom = sqrt(v or vmax) + eps;   p = p - lr_t * m / denom,
                 lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
The scalar coefficients are computed once in double precision by the caller and rounded to the
parameter's dtype.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

PARALLEL_MIN = 1 << 15


def adam_update(floating[::1] p, const floating[::1] g_in, floating[::1] m, floating[::1] v, vmax_in,
                double beta1, double one_minus_beta1, double beta2, double one_minus_beta2,
                double step_size, double bc2_sqrt, double eps, double weight_decay, double decay_factor,
                bint decoupled, bint eps_hat, int nthreads):
    cdef Py_ssize_t i, n = p.shape[0]
    if g_in.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError("adam_update: arrays of different lengths reached the compiled kernel")
    cdef floating[::1] vmax
    cdef bint amsgrad = vmax_in is not None
    if amsgrad:
        vmax = vmax_in
        if vmax.shape[0] != n:
            raise ValueError("adam_update: vmax length differs from param")
    cdef floating b1 = <floating>beta1, c1 = <floating>one_minus_beta1
    cdef floating b2 = <floating>beta2, c2 = <floating>one_minus_beta2
    cdef floating ss = <floating>step_size, bc2s = <floating>bc2_sqrt, e = <floating>eps
    cdef floating wd = <floating>weight_decay, df = <floating>decay_factor
    cdef floating g, pi, mi, vi, d
    cdef bint l2 = weight_decay != 0 and not decoupled
    cdef bint shrink = weight_decay != 0 and decoupled
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    for i in prange(n, schedule='static', num_threads=nt, nogil=True):
        pi = p[i]
        g = g_in[i]
        if l2:
            g = g + wd * pi
        if shrink:
            pi = pi * df
        mi = b1 * m[i] + c1 * g
        vi = b2 * v[i] + c2 * g * g
        m[i] = mi
        v[i] = vi
        if amsgrad:
            if vi > vmax[i] or vi != vi:
                vmax[i] = vi
            vi = vmax[i]
        if floating is double:
            d = sqrt(vi)
        else:
            d = sqrtf(vi)
        if not eps_hat:
            d = d / bc2s
        d = d + e
        p[i] = pi - ss * mi / d
