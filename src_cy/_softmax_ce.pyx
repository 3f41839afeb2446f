# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax cross-entropy, fused and numerically stable (log-sum-exp with the row maximum subtracted).

For logits z (N, K) and class indices t:
    loss     = mean_n [ log sum_k exp(z[n,k] - max_n) - (z[n, t_n] - max_n) ]
    dlogits  = (softmax(z) - onehot(t)) / N
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log, expf, logf

PARALLEL_MIN = 1 << 14


def softmax_cross_entropy(const floating[:, ::1] z, const long long[::1] labels, floating[:, ::1] dz,
                          int nthreads):
    """Fill ``dz`` and return the mean loss as a Python float."""
    cdef Py_ssize_t N = z.shape[0], K = z.shape[1], n, k
    if labels.shape[0] != N or dz.shape[0] != N or dz.shape[1] != K:
        raise ValueError("softmax_cross_entropy: inconsistent shapes reached the compiled kernel")
    for n in range(N):
        if labels[n] < 0 or labels[n] >= K:
            raise ValueError(f"softmax_cross_entropy: label {labels[n]} at row {n} is outside [0, {K})")
    cdef floating[::1] row_loss
    import numpy as np
    row_loss = np.empty(N, dtype=np.float64 if floating is double else np.float32)
    cdef floating mx, s, lse, inv_n = <floating>(1.0 / N)
    cdef int nt = nthreads if N * K >= PARALLEL_MIN else 1
    for n in prange(N, schedule='static', num_threads=nt, nogil=True):
        mx = z[n, 0]
        for k in range(1, K):
            if z[n, k] > mx or z[n, k] != z[n, k]:
                mx = z[n, k]
        s = 0
        for k in range(K):
            if floating is double:
                dz[n, k] = exp(z[n, k] - mx)
            else:
                dz[n, k] = expf(z[n, k] - mx)
            s = s + dz[n, k]
        if floating is double:
            lse = log(s)
        else:
            lse = logf(s)
        row_loss[n] = lse - (z[n, labels[n]] - mx)
        for k in range(K):
            dz[n, k] = dz[n, k] / s * inv_n
        dz[n, labels[n]] = dz[n, labels[n]] - inv_n
    cdef double total = 0
    for n in range(N):
        total += row_loss[n]
    return total / N
