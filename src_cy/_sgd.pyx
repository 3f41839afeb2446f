# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused SGD step with torch.optim.SGD semantics (momentum, Nesterov, L2 weight decay; no dampening).

Per element, in the parameter's precision, in this order (bit-identical to the reference):

    d = grad + weight_decay * p
    buf = momentum * buf + d          (when momentum != 0; buf starts at zero, so step 1 gives buf = d)
    d = d + momentum * buf if nesterov else buf
    p = p + (-lr) * d
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from fastconv._arrays cimport even_block, is_double, plain_like, plain_param, typenum, view
from fastconv._clip cimport CLIP_NONE, CLIP_NORM, CLIP_SCALE, CLIP_VALUE, clip_grad, read_pieces

cnp.import_array()

PARALLEL_MIN = 1 << 15


cdef enum:
    BLOCK = 8192   # elements per parallel work item


def plain_arrays(p, g, velocity):
    """True when param, grad and velocity (or None) are C-contiguous ndarrays of one float dtype and
    shape, param and velocity writable: the kernel takes them as they are."""
    return (plain_param(p) and plain_like(g, <cnp.ndarray>p, False)
            and (velocity is None or plain_like(velocity, <cnp.ndarray>p, True)))


def sgd_update(p, g, velocity, double lr, double momentum, bint nesterov, double weight_decay,
               int nthreads):
    """One step over C-contiguous ndarrays of one float dtype and size (velocity None: no momentum)."""
    if is_double(p, "sgd_update: param"):
        _update(<double>0, p, g, velocity, lr, momentum, nesterov, weight_decay, nthreads)
    else:
        _update(<float>0, p, g, velocity, lr, momentum, nesterov, weight_decay, nthreads)


cdef int _update(floating tag, p_in, g_in, velocity_in, double lr, double momentum, bint nesterov,
                 double weight_decay, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t i, n, ng, nb
    cdef char *pd
    cdef char *gd
    cdef char *bd = NULL
    view(p_in, T, -1, True, &n, &pd, "sgd_update: param")
    view(g_in, T, -1, False, &ng, &gd, "sgd_update: grad")
    if ng != n:
        raise ValueError("sgd_update: grad length differs from param")
    cdef bint use_momentum = velocity_in is not None
    if use_momentum:
        view(velocity_in, T, -1, True, &nb, &bd, "sgd_update: velocity")
        if nb != n:
            raise ValueError("sgd_update: velocity length differs from param")
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef floating *buf = <floating *>bd
    cdef floating neg_lr = <floating>(-lr), mom = <floating>momentum
    cdef floating wd = <floating>weight_decay
    cdef bint l2 = weight_decay != 0
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt == 1:                          # no OpenMP region: waking threads costs more
        with nogil:
            _sgd_block(p, g, buf, n, neg_lr, mom, wd, l2, use_momentum, nesterov)
        return 0
    cdef Py_ssize_t blk = even_block(n, nt, BLOCK)
    cdef Py_ssize_t nblk = (n + blk - 1) // blk
    for i in prange(nblk, schedule='static', num_threads=nt, nogil=True):
        _sgd_block(p + i * blk, g + i * blk, (buf + i * blk) if use_momentum else NULL,
                   min(blk, n - i * blk), neg_lr, mom, wd, l2, use_momentum, nesterov)
    return 0


cdef void _sgd_block(floating *p, const floating *g, floating *buf, Py_ssize_t n, floating neg_lr,
                     floating mom, floating wd, bint l2, bint use_momentum, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, b
    for i in range(n):
        d = g[i]
        if l2:
            d = d + wd * p[i]
        if use_momentum:
            b = mom * buf[i] + d
            buf[i] = b
            if nesterov:
                d = d + mom * b
            else:
                d = b
        p[i] = p[i] + neg_lr * d


# ---- Keras 3's form (keras.optimizers.SGD), gradient clipping included ----
# Per element, in the parameter's precision, in this order (fastconv.reference.sgd_keras_update):
#     g = clip(grad);  p = p - p * weight_decay * lr   (when weight_decay != 0: Keras's decoupled decay)
#     momentum:  v = v * momentum - g * lr;  p = p + (v * momentum - g * lr) if nesterov else p + v
#     else:      p = p - g * lr

def sgd_keras_update(p, g, velocity, pieces, denoms, int clip_mode, double clip_a, double lr,
                     double momentum, bint nesterov, double weight_decay, int nthreads):
    """One Keras-form step over C-contiguous arrays of one dtype and size (velocity None: no momentum)."""
    if is_double(p, "sgd_keras_update: param"):
        _keras_update(<double>0, p, g, velocity, pieces, denoms, clip_mode, clip_a, lr, momentum, nesterov,
                      weight_decay, nthreads)
    else:
        _keras_update(<float>0, p, g, velocity, pieces, denoms, clip_mode, clip_a, lr, momentum, nesterov,
                      weight_decay, nthreads)


cdef int _keras_update(floating tag, p_in, g_in, velocity_in, pieces, denoms, int mode, double clip_a,
                       double lr, double momentum, bint nesterov, double weight_decay,
                       int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, ng, nb, i, count, s
    cdef char *pd
    cdef char *gd
    cdef char *bd = NULL
    cdef char *dd
    cdef const long long *pc
    view(p_in, T, -1, True, &n, &pd, "sgd_keras_update: param")
    view(g_in, T, -1, False, &ng, &gd, "sgd_keras_update: grad")
    if ng != n:
        raise ValueError("sgd_keras_update: grad length differs from param")
    if velocity_in is not None:
        view(velocity_in, T, -1, True, &nb, &bd, "sgd_keras_update: velocity")
        if nb != n:
            raise ValueError("sgd_keras_update: velocity length differs from param")
    read_pieces(pieces, denoms, T, n, mode, &pc, &count, &dd, "sgd_keras_update")
    cdef floating *p = <floating *>pd
    cdef const floating *g = <const floating *>gd
    cdef floating *buf = <floating *>bd
    cdef const floating *den = <const floating *>dd
    cdef floating ca = <floating>clip_a, flr = <floating>lr, mom = <floating>momentum
    cdef floating wd = <floating>weight_decay
    cdef bint decay = weight_decay != 0
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt <= 1:
        with nogil:
            for i in range(count):
                s = pc[3 * i]
                _keras_block(p + s, g + s, (buf + s) if buf != NULL else NULL, pc[3 * i + 1] - s, mode, ca,
                             den[pc[3 * i + 2]] if mode == CLIP_NORM else 1, flr, mom, nesterov, wd, decay)
    else:
        for i in prange(count, schedule='static', num_threads=nt, nogil=True):
            _keras_block(p + pc[3 * i], g + pc[3 * i], (buf + pc[3 * i]) if buf != NULL else NULL,
                         pc[3 * i + 1] - pc[3 * i], mode, ca, den[pc[3 * i + 2]] if mode == CLIP_NORM else 1,
                         flr, mom, nesterov, wd, decay)
    return 0


cdef void _keras_block(floating *p, const floating *g_in, floating *buf, Py_ssize_t n, int mode, floating ca,
                       floating cb, floating lr, floating mom, bint nesterov, floating wd,
                       bint decay) noexcept nogil:
    # one loop per clip mode, the mode folded in as a constant (so that each loop vectorises)
    if mode == CLIP_NONE:
        _keras_loop(p, g_in, buf, n, CLIP_NONE, ca, cb, lr, mom, nesterov, wd, decay)
    elif mode == CLIP_VALUE:
        _keras_loop(p, g_in, buf, n, CLIP_VALUE, ca, cb, lr, mom, nesterov, wd, decay)
    elif mode == CLIP_SCALE:
        _keras_loop(p, g_in, buf, n, CLIP_SCALE, ca, cb, lr, mom, nesterov, wd, decay)
    else:
        _keras_loop(p, g_in, buf, n, CLIP_NORM, ca, cb, lr, mom, nesterov, wd, decay)


cdef inline void _keras_loop(floating *p, const floating *g_in, floating *buf, Py_ssize_t n, int mode, floating ca,
                             floating cb, floating lr, floating mom, bint nesterov, floating wd,
                             bint decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, pi, b
    for i in range(n):
        g = clip_grad(g_in[i], mode, ca, cb)
        pi = p[i]
        if decay:
            pi = pi - pi * wd * lr
        if buf != NULL:
            b = buf[i] * mom - g * lr
            buf[i] = b
            if nesterov:
                p[i] = pi + (b * mom - g * lr)
            else:
                p[i] = pi + b
        else:
            p[i] = pi - g * lr
