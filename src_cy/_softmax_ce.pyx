# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax cross-entropy, fused and numerically stable (log-sum-exp with the row maximum subtracted).

For logits z (N, K) and class indices t:
    loss     = mean_n [ log sum_k exp(z[n,k] - max_n) - (z[n, t_n] - max_n) ]
    dlogits  = (softmax(z) - onehot(t)) / N
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log, expf, logf
from libc.stdlib cimport malloc, free

from fastconv._arrays cimport is_double, typenum, view

cnp.import_array()

PARALLEL_MIN = 1 << 14


def softmax_cross_entropy(z, labels, dz, int nthreads):
    """Fill ``dz`` (N, K) from logits ``z`` (N, K) and int64 ``labels`` (N,); return the mean loss as a
    Python float."""
    if is_double(z, "softmax_cross_entropy: logits"):
        return _sce(<double>0, z, labels, dz, nthreads)
    return _sce(<float>0, z, labels, dz, nthreads)


cdef double _sce(floating tag, z_in, labels_in, dz_in, int nthreads) except? -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t zs[2]
    cdef Py_ssize_t ds[2]
    cdef Py_ssize_t nl, N, K, n
    cdef char *zd
    cdef char *ld
    cdef char *dd
    view(z_in, T, 2, False, zs, &zd, "softmax_cross_entropy: logits")
    view(labels_in, cnp.NPY_INT64, 1, False, &nl, &ld, "softmax_cross_entropy: labels")
    view(dz_in, T, 2, True, ds, &dd, "softmax_cross_entropy: dlogits")
    N, K = zs[0], zs[1]
    if nl != N or ds[0] != N or ds[1] != K or K < 1:
        raise ValueError("softmax_cross_entropy: inconsistent shapes reached the compiled kernel")
    cdef const floating *z = <const floating *>zd
    cdef const long long *labels = <const long long *>ld
    cdef floating *dz = <floating *>dd
    for n in range(N):
        if labels[n] < 0 or labels[n] >= K:
            raise ValueError(f"labels must lie in [0, {K}), found {labels[n]} at row {n}")
    if N == 0:
        return 0.0
    cdef floating *row_loss = <floating *>malloc(N * sizeof(floating))
    if row_loss == NULL:
        raise MemoryError()
    cdef floating inv_n = <floating>(1.0 / N)
    cdef int nt = nthreads if N * K >= PARALLEL_MIN else 1
    cdef double total = 0
    try:
        if nt == 1:                      # no OpenMP region: waking threads costs more
            with nogil:
                for n in range(N):
                    _row(z + n * K, labels[n], dz + n * K, K, inv_n, &row_loss[n])
        else:
            for n in prange(N, schedule='static', num_threads=nt, nogil=True):
                _row(z + n * K, labels[n], dz + n * K, K, inv_n, &row_loss[n])
        for n in range(N):
            total += row_loss[n]
    finally:
        free(row_loss)
    return total / N


cdef void _row(const floating *z, long long t, floating *dz, Py_ssize_t K, floating inv_n,
               floating *loss) noexcept nogil:
    """One row: dz = (softmax(z) - onehot(t)) * inv_n, loss = log-sum-exp(z) - z[t]."""
    cdef Py_ssize_t k
    cdef floating mx = z[0], s = 0, lse
    for k in range(1, K):
        if z[k] > mx or z[k] != z[k]:
            mx = z[k]
    for k in range(K):
        if floating is double:
            dz[k] = exp(z[k] - mx)
        else:
            dz[k] = expf(z[k] - mx)
        s = s + dz[k]
    if floating is double:
        lse = log(s)
    else:
        lse = logf(s)
    loss[0] = lse - (z[t] - mx)
    for k in range(K):
        dz[k] = dz[k] / s * inv_n
    dz[t] = dz[t] - inv_n


def count_correct(z, labels):
    """How many rows of ``z`` (N, K) have their first maximum at ``labels`` (int64, N): numpy's
    ``count_nonzero(z.argmax(axis=1) == labels)``, NaN counting as the maximum; for the training loop's
    accuracy, where the three NumPy calls cost more than the step's softmax."""
    if is_double(z, "count_correct: z"):
        return _count(<double>0, z, labels)
    return _count(<float>0, z, labels)


cdef Py_ssize_t _count(floating tag, z_in, labels_in) except -1:
    cdef Py_ssize_t zs[2]
    cdef Py_ssize_t nl, n, k, best, hits = 0
    cdef char *zd
    cdef char *ld
    view(z_in, typenum(tag), 2, False, zs, &zd, "count_correct: z")
    view(labels_in, cnp.NPY_INT64, 1, False, &nl, &ld, "count_correct: labels")
    if nl != zs[0] or zs[1] < 1:
        raise ValueError("count_correct: inconsistent shapes")
    cdef const floating *z = <const floating *>zd
    cdef const long long *labels = <const long long *>ld
    cdef Py_ssize_t K = zs[1]
    for n in range(zs[0]):
        best = 0
        for k in range(K):
            if z[n * K + k] != z[n * K + k]:      # NaN: numpy's argmax stops at the first
                best = k
                break
            if z[n * K + k] > z[n * K + best]:
                best = k
        hits += best == labels[n]
    return hits
