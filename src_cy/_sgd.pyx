# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused SGD step with torch.optim.SGD semantics (momentum, Nesterov, L2 weight decay; no dampening).

Per element, in the parameter's precision, in this order (bit-identical to the reference):

    d = grad + weight_decay * p
    buf = momentum * buf + d          (when momentum != 0; buf starts at zero, so step 1 gives buf = d)
    d = d + momentum * buf if nesterov else buf
    p = p + (-lr) * d
"""
from cython cimport floating
from cython.parallel cimport prange

PARALLEL_MIN = 1 << 15


def sgd_update(floating[::1] p, const floating[::1] g_in, velocity_in, double lr, double momentum,
               bint nesterov, double weight_decay, int nthreads):
    cdef Py_ssize_t i, n = p.shape[0]
    if g_in.shape[0] != n:
        raise ValueError("sgd_update: grad length differs from param")
    cdef floating[::1] buf
    cdef bint use_momentum = velocity_in is not None
    if use_momentum:
        buf = velocity_in
        if buf.shape[0] != n:
            raise ValueError("sgd_update: velocity length differs from param")
    cdef floating neg_lr = <floating>(-lr), mom = <floating>momentum
    cdef floating wd = <floating>weight_decay
    cdef bint l2 = weight_decay != 0
    cdef floating d, b
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    for i in prange(n, schedule='static', num_threads=nt, nogil=True):
        d = g_in[i]
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
