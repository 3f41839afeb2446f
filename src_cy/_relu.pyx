# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ReLU forward and backward with PyTorch's semantics.

    y    = 0 where x <= 0 else x          (so NaN stays NaN)
    mask = not (x <= 0)                   (True for NaN, False at exactly 0)
    dx   = dy where mask else 0

Arrays arrive flattened and C-contiguous from ``fastconv.ops``; the mask is uint8 (a view of bool).
"""
from cython cimport floating
from cython.parallel cimport prange

# Below this many elements one thread is faster than waking the others.
PARALLEL_MIN = 1 << 15


def relu_forward(const floating[::1] x, floating[::1] y, unsigned char[::1] mask, int nthreads):
    """Fill ``y`` and ``mask`` from ``x``."""
    cdef Py_ssize_t i, n = x.shape[0]
    if y.shape[0] != n or mask.shape[0] != n:
        raise ValueError("relu_forward: buffers do not match x")
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    cdef floating v
    for i in prange(n, schedule='static', num_threads=nt, nogil=True):
        v = x[i]
        if v <= 0:
            y[i] = 0
            mask[i] = 0
        else:
            y[i] = v
            mask[i] = 1


def relu_backward(const floating[::1] dy, const unsigned char[::1] mask, floating[::1] dx, int nthreads):
    """dx = dy where mask else 0."""
    cdef Py_ssize_t i, n = dy.shape[0]
    if mask.shape[0] != n or dx.shape[0] != n:
        raise ValueError("relu_backward: buffers do not match dy")
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    for i in prange(n, schedule='static', num_threads=nt, nogil=True):
        dx[i] = dy[i] if mask[i] else 0
