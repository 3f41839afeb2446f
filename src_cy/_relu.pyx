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


# Elements per parallel work item; the inner loops are plain C loops (no OpenMP lastprivate
# bookkeeping), which the compiler vectorises.
cdef enum:
    BLOCK = 4096


cdef void _fwd_block(const floating *x, floating *y, unsigned char *mask, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    for i in range(n):
        v = x[i]
        y[i] = 0 if v <= 0 else v
        mask[i] = not (v <= 0)


cdef void _bwd_block(const floating *dy, const unsigned char *mask, floating *dx, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] if mask[i] else 0


def relu_forward(const floating[::1] x, floating[::1] y, unsigned char[::1] mask, int nthreads):
    """Fill ``y`` and ``mask`` from ``x``."""
    cdef Py_ssize_t b, n = x.shape[0]
    if y.shape[0] != n or mask.shape[0] != n:
        raise ValueError("relu_forward: buffers do not match x")
    if n == 0:
        return
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb, schedule='static', num_threads=nt, nogil=True):
        _fwd_block(&x[b * BLOCK], &y[b * BLOCK], &mask[b * BLOCK], min(BLOCK, n - b * BLOCK))


def relu_backward(const floating[::1] dy, const unsigned char[::1] mask, floating[::1] dx, int nthreads):
    """dx = dy where mask else 0."""
    cdef Py_ssize_t b, n = dy.shape[0]
    if mask.shape[0] != n or dx.shape[0] != n:
        raise ValueError("relu_backward: buffers do not match dy")
    if n == 0:
        return
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    for b in prange(nb, schedule='static', num_threads=nt, nogil=True):
        _bwd_block(&dy[b * BLOCK], &mask[b * BLOCK], &dx[b * BLOCK], min(BLOCK, n - b * BLOCK))
