# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Batch normalization over axis 1 of ``x`` seen as (N, C, S): S = H*W for NCHW, S = 1 for (N, D).

Each channel ``c`` normalises its ``M = N*S`` values.  Training forward::

    mean[c]   = sum(x[:, c, :]) / M
    var[c]    = sum((x[:, c, :] - mean[c])**2) / M                 (biased: the one that normalises)
    invstd[c] = 1 / sqrt(var[c] + eps)
    y         = (x - mean[c]) * (gamma[c] * invstd[c]) + beta[c]

Inference uses the running statistics for ``mean`` and ``var``.  Backward (xhat = (x - mean)*invstd)::

    dbeta[c]  = sum(dy)            dgamma[c] = sum(dy * xhat) = invstd * sum(dy * (x - mean))
    dx        = gamma*invstd * (dy - dbeta/M - xhat*dgamma/M)      (training: batch statistics)
    dx        = gamma*invstd * dy                                  (inference: frozen statistics)

Statistics are accumulated in double precision.  Every reduction runs in a fixed order that does not
depend on the thread count: each (n, c) plane is summed by one thread (eight interleaved accumulators),
then the N plane sums of a channel are added in order of n, so results are bit-identical on any number
of threads.  The running statistics are updated in double and rounded once:

    torch: running = (1 - momentum)*running + momentum*stat,  var stat unbiased (var * M/(M - 1))
    keras: running = momentum*running + (1 - momentum)*stat,  var stat biased (Keras 3 ``moments``)
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

# Below this many elements one thread is faster than waking the others.
PARALLEL_MIN = 1 << 14

# ``convention`` codes (fastconv.ops.BATCHNORM_CONVENTIONS.index)
cdef enum:
    CONVENTION_TORCH = 0
    CONVENTION_KERAS = 1


# Plane sums run over LANES interleaved accumulators (element i goes to accumulator i % LANES), added
# pairwise at the end: a fixed order, lane-wise independent, which the compiler vectorises.
cdef enum:
    LANES = 8


cdef inline double _combine(double *a) noexcept nogil:
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))


cdef inline double _sum(const floating *p, Py_ssize_t n) noexcept nogil:
    """sum(p[:n]) in double through LANES interleaved accumulators, added in a fixed order."""
    cdef double a[LANES]
    cdef Py_ssize_t i = 0, k
    for k in range(LANES):
        a[k] = 0
    while i + LANES <= n:
        for k in range(LANES):
            a[k] += p[i + k]
        i += LANES
    for k in range(n - i):
        a[k] += p[i + k]
    return _combine(a)


cdef inline double _centered_squares(const floating *p, Py_ssize_t n, double m) noexcept nogil:
    """sum((p[:n] - m)**2) in double, in the order of _sum."""
    cdef double a[LANES]
    cdef double d
    cdef Py_ssize_t i = 0, k
    for k in range(LANES):
        a[k] = 0
    while i + LANES <= n:
        for k in range(LANES):
            d = p[i + k] - m
            a[k] += d * d
        i += LANES
    for k in range(n - i):
        d = p[i + k] - m
        a[k] += d * d
    return _combine(a)


cdef inline void _grad_sums(const floating *dy, const floating *x, Py_ssize_t n, double m,
                            double *sdy, double *sdyx) noexcept nogil:
    """sdy = sum(dy[:n]), sdyx = sum(dy[:n] * (x[:n] - m)) in double, in the order of _sum."""
    cdef double a[LANES]
    cdef double b[LANES]
    cdef Py_ssize_t i = 0, k
    for k in range(LANES):
        a[k] = 0
        b[k] = 0
    while i + LANES <= n:
        for k in range(LANES):
            a[k] += dy[i + k]
            b[k] += dy[i + k] * (x[i + k] - m)
        i += LANES
    for k in range(n - i):
        a[k] += dy[i + k]
        b[k] += dy[i + k] * (x[i + k] - m)
    sdy[0] = _combine(a)
    sdyx[0] = _combine(b)


cdef inline void _normalize(const floating *x, floating *y, Py_ssize_t n, double m, double a,
                            double b) noexcept nogil:
    """y = (x - m)*a + b, in double, rounded once."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = <floating>((x[i] - m) * a + b)


cdef inline void _input_grad(const floating *dy, const floating *x, floating *dx, Py_ssize_t n, double m,
                             double k, double mdy, double mdyx) noexcept nogil:
    """dx = k*(dy - mdy - (x - m)*mdyx), in double, rounded once."""
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = <floating>(k * (dy[i] - mdy - (x[i] - m) * mdyx))


cdef inline void _scaled(const floating *dy, floating *dx, Py_ssize_t n, double k) noexcept nogil:
    """dx = k*dy, in double, rounded once."""
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = <floating>(k * dy[i])


def batchnorm_forward(const floating[:, :, ::1] x,          # IN  (N, C, S)
                      const floating[::1] gamma,             # IN  (C,)
                      const floating[::1] beta,              # IN  (C,)
                      floating[::1] running_mean,            # IN/OUT (C,): read at inference, updated in training
                      floating[::1] running_var,             # IN/OUT (C,)
                      floating[:, :, ::1] y,                 # OUT (N, C, S)
                      double[::1] mean,                      # OUT (C,): the mean used, for the backward
                      double[::1] invstd,                    # OUT (C,): 1/sqrt(var + eps) used
                      double[::1] work,                      # scratch (N*C,)
                      bint training, bint update, double eps, double momentum, int convention,
                      int nthreads):
    """y = batch norm of x; training: batch statistics (and, if ``update``, the running statistics are
    updated in ``convention``); otherwise the running statistics."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    if (gamma.shape[0] != C or beta.shape[0] != C or running_mean.shape[0] != C or running_var.shape[0] != C
            or y.shape[0] != N or y.shape[1] != C or y.shape[2] != S or mean.shape[0] != C
            or invstd.shape[0] != C or work.shape[0] < N * C or N * C * S == 0):
        raise ValueError("batchnorm_forward: inconsistent shapes reached the compiled kernel")
    cdef Py_ssize_t M = N * S, R = N * C, r, c, n
    if training and update and convention == CONVENTION_TORCH and M < 2:
        raise ValueError("batchnorm_forward: the unbiased running variance needs more than one value per channel")
    cdef int nt = nthreads if R * S >= PARALLEL_MIN and R > 1 else 1
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *yp = &y[0, 0, 0]
    cdef double *wp = &work[0]
    cdef double s, var, stat
    with nogil:
        if training:
            if nt == 1:
                for r in range(R):
                    wp[r] = _sum(xp + r * S, S)
            else:
                for r in prange(R, schedule='static', num_threads=nt):
                    wp[r] = _sum(xp + r * S, S)
            for c in range(C):
                s = 0
                for n in range(N):
                    s = s + wp[n * C + c]
                mean[c] = s / M
            if nt == 1:
                for r in range(R):
                    wp[r] = _centered_squares(xp + r * S, S, mean[r % C])
            else:
                for r in prange(R, schedule='static', num_threads=nt):
                    wp[r] = _centered_squares(xp + r * S, S, mean[r % C])
            for c in range(C):
                s = 0
                for n in range(N):
                    s = s + wp[n * C + c]
                var = s / M
                invstd[c] = 1.0 / sqrt(var + eps)
                if update:
                    if convention == CONVENTION_TORCH:
                        stat = var * M / (M - 1)
                        running_mean[c] = <floating>((1.0 - momentum) * running_mean[c] + momentum * mean[c])
                        running_var[c] = <floating>((1.0 - momentum) * running_var[c] + momentum * stat)
                    else:
                        running_mean[c] = <floating>(momentum * running_mean[c] + (1.0 - momentum) * mean[c])
                        running_var[c] = <floating>(momentum * running_var[c] + (1.0 - momentum) * var)
        else:
            for c in range(C):
                mean[c] = running_mean[c]
                invstd[c] = 1.0 / sqrt(<double>running_var[c] + eps)
        if nt == 1:
            for r in range(R):
                c = r % C
                _normalize(xp + r * S, yp + r * S, S, mean[c], gamma[c] * invstd[c], beta[c])
        else:
            for r in prange(R, schedule='static', num_threads=nt):
                _normalize(xp + r * S, yp + r * S, S, mean[r % C], gamma[r % C] * invstd[r % C], beta[r % C])


def batchnorm_backward(const floating[:, :, ::1] dy,        # IN  (N, C, S)
                       const floating[:, :, ::1] x,         # IN  (N, C, S): the forward's input
                       const floating[::1] gamma,           # IN  (C,)
                       const double[::1] mean,              # IN  (C,): from the forward
                       const double[::1] invstd,            # IN  (C,)
                       floating[:, :, ::1] dx,              # OUT (N, C, S), or None: not needed
                       floating[::1] dgamma,                # OUT (C,)
                       floating[::1] dbeta,                 # OUT (C,)
                       double[::1] work,                    # scratch (2*N*C,)
                       bint training, int nthreads):
    """dx, dgamma, dbeta of batchnorm_forward (``training``: through the batch statistics)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    cdef bint need_dx = dx is not None
    if (dy.shape[0] != N or dy.shape[1] != C or dy.shape[2] != S or gamma.shape[0] != C or mean.shape[0] != C
            or invstd.shape[0] != C or dgamma.shape[0] != C or dbeta.shape[0] != C or work.shape[0] < 2 * N * C
            or N * C * S == 0
            or (need_dx and (dx.shape[0] != N or dx.shape[1] != C or dx.shape[2] != S))):
        raise ValueError("batchnorm_backward: inconsistent shapes reached the compiled kernel")
    cdef Py_ssize_t M = N * S, R = N * C, r, c, n
    cdef int nt = nthreads if R * S >= PARALLEL_MIN and R > 1 else 1
    cdef const floating *dyp = &dy[0, 0, 0]
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0] if need_dx else NULL
    cdef double *wdy = &work[0]
    cdef double *wdyx = &work[R]
    cdef double sdy, sdyx
    with nogil:
        if nt == 1:
            for r in range(R):
                _grad_sums(dyp + r * S, xp + r * S, S, mean[r % C], wdy + r, wdyx + r)
        else:
            for r in prange(R, schedule='static', num_threads=nt):
                _grad_sums(dyp + r * S, xp + r * S, S, mean[r % C], wdy + r, wdyx + r)
        for c in range(C):
            sdy = 0
            sdyx = 0
            for n in range(N):
                sdy = sdy + wdy[n * C + c]
                sdyx = sdyx + wdyx[n * C + c]
            sdyx = sdyx * invstd[c]          # sum(dy * xhat)
            dbeta[c] = <floating>sdy
            dgamma[c] = <floating>sdyx
            wdy[c] = sdy / M                 # mean(dy), kept for the dx pass (wdy[:C] is read no more)
            wdyx[c] = sdyx * invstd[c] / M   # mean(dy * xhat) * invstd: the factor of (x - mean)
        if not need_dx:
            pass
        elif training:
            if nt == 1:
                for r in range(R):
                    c = r % C
                    _input_grad(dyp + r * S, xp + r * S, dxp + r * S, S, mean[c], gamma[c] * invstd[c],
                                wdy[c], wdyx[c])
            else:
                for r in prange(R, schedule='static', num_threads=nt):
                    _input_grad(dyp + r * S, xp + r * S, dxp + r * S, S, mean[r % C],
                                gamma[r % C] * invstd[r % C], wdy[r % C], wdyx[r % C])
        else:
            if nt == 1:
                for r in range(R):
                    _scaled(dyp + r * S, dxp + r * S, S, gamma[r % C] * invstd[r % C])
            else:
                for r in prange(R, schedule='static', num_threads=nt):
                    _scaled(dyp + r * S, dxp + r * S, S, gamma[r % C] * invstd[r % C])
