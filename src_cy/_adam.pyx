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
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastconv._arrays cimport even_block, is_double, plain_like, plain_param, typenum, view
from fastconv._clip cimport CLIP_NONE, CLIP_NORM, CLIP_SCALE, CLIP_VALUE, clip_grad, read_pieces
from fastconv._runtime cimport Trials, trials_for

cnp.import_array()

# From this many elements the update always splits between the threads; below, whether splitting pays
# depends on the machine, so it is measured per array length and dtype (fastconv._runtime's trials).
# Elementwise: any split gives the same bits.
PARALLEL_MIN = 1 << 15
cdef dict _trials = {}     # (length, typenum) -> Trials


# Elements per parallel work item.  The per-element loops below are plain C loops over raw pointers
# (no OpenMP bookkeeping inside, options fixed per loop), which the compiler vectorises; the square roots
# and divisions, which must stay exact for bit-identity with the reference, bound their speed.
cdef enum:
    BLOCK = 8192


cdef struct _Coef:
    double b1, c1, b2, c2, ss, bc2s, e, wd, df


cdef void _adam_block(floating *p, const floating *g_in, floating *m, floating *v, floating *vmax,
                      Py_ssize_t n, _Coef k, bint l2, bint shrink, bint eps_hat) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating b1 = <floating>k.b1, c1 = <floating>k.c1, b2 = <floating>k.b2, c2 = <floating>k.c2
    cdef floating ss = <floating>k.ss, bc2s = <floating>k.bc2s, e = <floating>k.e
    cdef floating wd = <floating>k.wd, df = <floating>k.df
    cdef floating g, pi, mi, vi, d
    if vmax != NULL or l2 or shrink:   # the general loop (AMSGrad, weight decay)
        for i in range(n):
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
            if vmax != NULL:
                if vi > vmax[i] or vi != vi:
                    vmax[i] = vi
                vi = vmax[i]
            d = _sqrt(vi)
            if not eps_hat:
                d = d / bc2s
            d = d + e
            p[i] = pi - ss * mi / d
    else:                               # torch defaults, or the Kingma-Ba/Keras form (seed 000)
        for i in range(n):              # (eps_hat is loop-invariant: the compiler unswitches it)
            g = g_in[i]
            mi = b1 * m[i] + c1 * g
            vi = b2 * v[i] + c2 * g * g
            m[i] = mi
            v[i] = vi
            d = _sqrt(vi)
            if not eps_hat:
                d = d / bc2s
            p[i] = p[i] - ss * mi / (d + e)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is double:
        return sqrt(x)
    else:
        return sqrtf(x)


def plain_arrays(p, g, m, v):
    """True when param, grad, m and v are C-contiguous ndarrays of one float dtype and shape, param, m
    and v writable: the kernel takes them as they are (ops.adam_update skips its checks and copies)."""
    return (plain_param(p) and plain_like(g, <cnp.ndarray>p, False) and plain_like(m, <cnp.ndarray>p, True)
            and plain_like(v, <cnp.ndarray>p, True))


def adam_update(p, g, m, v, vmax, double beta1, double one_minus_beta1, double beta2,
                double one_minus_beta2, double step_size, double bc2_sqrt, double eps, double weight_decay,
                double decay_factor, bint decoupled, bint eps_hat, int nthreads):
    """One step over C-contiguous ndarrays of one float dtype and size (vmax None unless amsgrad)."""
    if is_double(p, "adam_update: param"):
        _update(<double>0, p, g, m, v, vmax, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
                bc2_sqrt, eps, weight_decay, decay_factor, decoupled, eps_hat, nthreads)
    else:
        _update(<float>0, p, g, m, v, vmax, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
                bc2_sqrt, eps, weight_decay, decay_factor, decoupled, eps_hat, nthreads)


cdef int _update(floating tag, p_in, g_in, m_in, v_in, vmax_in, double beta1, double one_minus_beta1,
                 double beta2, double one_minus_beta2, double step_size, double bc2_sqrt, double eps,
                 double weight_decay, double decay_factor, bint decoupled, bint eps_hat,
                 int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t b, n, ng, nm, nv, nx
    cdef char *pd
    cdef char *gd
    cdef char *md
    cdef char *vd
    cdef char *xd
    view(p_in, T, -1, True, &n, &pd, "adam_update: param")
    view(g_in, T, -1, False, &ng, &gd, "adam_update: grad")
    view(m_in, T, -1, True, &nm, &md, "adam_update: m")
    view(v_in, T, -1, True, &nv, &vd, "adam_update: v")
    if ng != n or nm != n or nv != n:
        raise ValueError("adam_update: arrays of different lengths reached the compiled kernel")
    cdef floating *vp = NULL
    if vmax_in is not None:
        view(vmax_in, T, -1, True, &nx, &xd, "adam_update: vmax")
        if nx != n:
            raise ValueError("adam_update: vmax length differs from param")
        vp = <floating *>xd
    if n == 0:
        return 0
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef floating *m = <floating *>md
    cdef floating *v = <floating *>vd
    cdef _Coef k
    k.b1, k.c1, k.b2, k.c2 = beta1, one_minus_beta1, beta2, one_minus_beta2
    k.ss, k.bc2s, k.e, k.wd, k.df = step_size, bc2_sqrt, eps, weight_decay, decay_factor
    cdef bint l2 = weight_decay != 0 and not decoupled
    cdef bint shrink = weight_decay != 0 and decoupled
    cdef int nt = nthreads
    cdef Trials trial = None
    if n < PARALLEL_MIN and nthreads > 1:
        trial = _trials.get((n, T))
        if trial is None:
            if len(_trials) >= 256:   # bounded, as the conv plans
                _trials.clear()
            trial = _trials[(n, T)] = trials_for("adam", "update",
                                                 (n, "float64" if floating is double else "float32"))
        nt = trial.threads(nthreads)
    cdef Py_ssize_t blk = even_block(n, nt, BLOCK)
    cdef Py_ssize_t nb = (n + blk - 1) // blk
    if nt == 1 or nb == 1:
        with nogil:
            _adam_block(p, g, m, v, vp, n, k, l2, shrink, eps_hat)
    else:
        for b in prange(nb, schedule='static', num_threads=nt, nogil=True):
            _adam_block(p + b * blk, g + b * blk, m + b * blk, v + b * blk,
                        (vp + b * blk) if vp != NULL else NULL, min(blk, n - b * blk), k, l2, shrink,
                        eps_hat)
    return 0


# ---- Keras 3's form (keras.optimizers.Adam / AdamW), gradient clipping included ----
# Per element, in the parameter's precision, in this order (fastconv.reference.adam_keras_update):
#     g = clip(grad);  p = p - p * weight_decay * lr   (when weight_decay != 0)
#     m = m + (g - m) * (1 - beta1);  v = v + (g * g - v) * (1 - beta2)
#     amsgrad: vhat = max(vhat, v), used for v
#     p = p - (m * alpha) / (sqrt(v) + eps),   alpha = lr * sqrt(1 - beta2**t) / (1 - beta1**t)

def adam_keras_update(p, g, m, v, vhat, pieces, denoms, int clip_mode, double clip_a, double lr,
                      double one_minus_beta1, double one_minus_beta2, double alpha, double eps,
                      double weight_decay, int nthreads):
    """One Keras-form step over C-contiguous arrays of one dtype and size (vhat None unless amsgrad)."""
    cdef _KCoef k
    k.lr, k.c1, k.c2, k.alpha, k.eps, k.wd = lr, one_minus_beta1, one_minus_beta2, alpha, eps, weight_decay
    if is_double(p, "adam_keras_update: param"):
        _keras_update(<double>0, p, g, m, v, vhat, pieces, denoms, clip_mode, clip_a, k, nthreads)
    else:
        _keras_update(<float>0, p, g, m, v, vhat, pieces, denoms, clip_mode, clip_a, k, nthreads)


cdef struct _KCoef:
    double lr, c1, c2, alpha, eps, wd


cdef int _keras_update(floating tag, p_in, g_in, m_in, v_in, vhat_in, pieces, denoms, int mode,
                       double clip_a, _KCoef k, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ng, nm, nv, nx, i, count, s
    cdef char *pd
    cdef char *gd
    cdef char *md
    cdef char *vd
    cdef char *xd
    cdef char *dd
    cdef const long long *pc
    view(p_in, T, -1, True, &n, &pd, "adam_keras_update: param")
    view(g_in, T, -1, False, &ng, &gd, "adam_keras_update: grad")
    view(m_in, T, -1, True, &nm, &md, "adam_keras_update: m")
    view(v_in, T, -1, True, &nv, &vd, "adam_keras_update: v")
    if ng != n or nm != n or nv != n:
        raise ValueError("adam_keras_update: arrays of different lengths reached the compiled kernel")
    cdef floating *vh = NULL
    if vhat_in is not None:
        view(vhat_in, T, -1, True, &nx, &xd, "adam_keras_update: vhat")
        if nx != n:
            raise ValueError("adam_keras_update: vhat length differs from param")
        vh = <floating *>xd
    read_pieces(pieces, denoms, T, n, mode, &pc, &count, &dd, "adam_keras_update")
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
                _keras_block(p + s, g + s, m + s, v + s, (vh + s) if vh != NULL else NULL, pc[3 * i + 1] - s,
                             mode, ca, den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    else:
        for i in prange(count, schedule='static', num_threads=nt, nogil=True):
            _keras_block(p + pc[3 * i], g + pc[3 * i], m + pc[3 * i], v + pc[3 * i],
                         (vh + pc[3 * i]) if vh != NULL else NULL, pc[3 * i + 1] - pc[3 * i], mode, ca,
                         den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, k)
    return 0


cdef void _keras_block(floating *p, const floating *g_in, floating *m, floating *v, floating *vh,
                       Py_ssize_t n, int mode, floating ca, floating cb, _KCoef k) noexcept nogil:
    # one loop per clip mode and AMSGrad flag, each folded in as a constant (so that each loop vectorises)
    if vh == NULL:
        if mode == CLIP_NONE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_NONE, ca, cb, k, False)
        elif mode == CLIP_VALUE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_VALUE, ca, cb, k, False)
        elif mode == CLIP_SCALE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_SCALE, ca, cb, k, False)
        else:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_NORM, ca, cb, k, False)
    else:
        if mode == CLIP_NONE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_NONE, ca, cb, k, True)
        elif mode == CLIP_VALUE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_VALUE, ca, cb, k, True)
        elif mode == CLIP_SCALE:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_SCALE, ca, cb, k, True)
        else:
            _keras_loop(p, g_in, m, v, vh, n, CLIP_NORM, ca, cb, k, True)


cdef inline void _keras_loop(floating *p, const floating *g_in, floating *m, floating *v, floating *vh,
                             Py_ssize_t n, int mode, floating ca, floating cb, _KCoef k, bint ams) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating lr = <floating>k.lr, c1 = <floating>k.c1, c2 = <floating>k.c2
    cdef floating alpha = <floating>k.alpha, eps = <floating>k.eps, wd = <floating>k.wd
    cdef bint decay = k.wd != 0
    cdef floating g, pi, mi, vi
    for i in range(n):
        g = clip_grad(g_in[i], mode, ca, cb)
        pi = p[i]
        if decay:
            pi = pi - pi * wd * lr
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        m[i] = mi
        v[i] = vi
        if ams:
            if vi > vh[i] or vi != vi:
                vh[i] = vi
            vi = vh[i]
        p[i] = pi - (mi * alpha) / (_sqrt(vi) + eps)
