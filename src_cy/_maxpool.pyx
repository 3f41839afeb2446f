# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""2-D max-pooling forward and backward (NCHW), unpadded or padded.

Forward keeps, per window, the first maximum in row-major order; a NaN, once met, wins (NaN propagates).
``idx`` holds the flat position ``h*W + w`` of the winner inside its (H, W) plane, as PyTorch's
``return_indices``.  With padding the pads act as -inf: a window is clipped to the input and the first
maximum of its input elements wins (fastconv.ops keeps each pad below the window size, so no window is
padding only).  Backward scatter-adds ``dy`` at ``idx`` plane by plane in output order, so
overlapping windows (stride < size) accumulate in the same order as the reference; it zeroes dx
itself, plane by plane in the same parallel pass.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

from fastconv._arrays cimport one_window_stride

PARALLEL_MIN = 1 << 14  # input elements from which the planes are split between threads

cdef extern from "fc_maxpool.h" nogil:
    void fc_pool2_row_d(const double *r0, const double *r1, double *y, long long *idx, long Wo,
                        long long base, long W)
    void fc_pool2_row_s(const float *r0, const float *r1, float *y, long long *idx, long Wo,
                        long long base, long W)


def maxpool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, long long[:, :, :, ::1] idx,
                      Py_ssize_t kh, Py_ssize_t kw, stride_h, stride_w, int nthreads):
    """y, idx = max-pool of x over kh x kw windows moved by (stride_h, stride_w): Python ints >= 1 of any
    size (a stride that only ever yields one window is clamped, so a huge one is taken as it is)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3]
    if kh < 1 or kw < 1 or kh > H or kw > W:
        raise ValueError("maxpool2d_forward: inconsistent shapes reached the compiled kernel")
    cdef Py_ssize_t sh = one_window_stride(stride_h, H - kh), sw = one_window_stride(stride_w, W - kw)
    if (y.shape[0] != N or y.shape[1] != C
            or Ho != (H - kh) // sh + 1 or Wo != (W - kw) // sw + 1
            or idx.shape[0] != N or idx.shape[1] != C or idx.shape[2] != Ho or idx.shape[3] != Wo):
        raise ValueError("maxpool2d_forward: inconsistent shapes reached the compiled kernel")
    cdef Py_ssize_t r
    cdef int nt = nthreads if N * C * H * W >= PARALLEL_MIN else 1   # below: no region to wake
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        _pool_plane(&x[0, 0, 0, 0] + r * H * W, &y[0, 0, 0, 0] + r * Ho * Wo, &idx[0, 0, 0, 0] + r * Ho * Wo,
                    W, Ho, Wo, kh, kw, sh, sw)


cdef void _pool_plane(const floating *xp, floating *yp, long long *ip, Py_ssize_t W, Py_ssize_t Ho,
                      Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    """One plane, output row by output row: the row's windows start at their top-left element, then each
    window offset (i, j) in row-major order updates every window of the row at once (a loop over the
    output columns without branches, which the compiler vectorises): a later element wins only if it is
    larger, or a NaN over a number, so the first maximum of each window wins and NaN propagates."""
    cdef Py_ssize_t oh, ow, i, j, off
    cdef const floating *rp
    cdef floating *yr
    cdef long long *ir
    cdef floating v, b
    cdef bint take
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:    # the common 2x2 pool: a vectorised row (fc_maxpool.h)
        for oh in range(Ho):
            off = 2 * oh * W
            if floating is double:
                fc_pool2_row_d(xp + off, xp + off + W, yp + oh * Wo, ip + oh * Wo, Wo, off, W)
            else:
                fc_pool2_row_s(xp + off, xp + off + W, yp + oh * Wo, ip + oh * Wo, Wo, off, W)
        return
    for oh in range(Ho):
        yr = yp + oh * Wo
        ir = ip + oh * Wo
        off = oh * sh * W
        rp = xp + off
        for ow in range(Wo):
            yr[ow] = rp[ow * sw]
            ir[ow] = off + ow * sw
        for i in range(kh):
            for j in range(kw):
                if i == 0 and j == 0:
                    continue
                off = (oh * sh + i) * W + j
                rp = xp + off
                for ow in range(Wo):
                    v = rp[ow * sw]
                    b = yr[ow]
                    take = v > b or (v != v and b == b)
                    yr[ow] = v if take else b
                    ir[ow] = off + ow * sw if take else ir[ow]


def maxpool2d_forward_padded(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
                             floating[:, :, :, ::1] y,          # OUT (N, C, Ho, Wo)
                             long long[:, :, :, ::1] idx,       # OUT (N, C, Ho, Wo)
                             Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t pt, Py_ssize_t pl, int nthreads):
    """y, idx = max-pool of x padded with -inf (top ``pt``, left ``pl``; bottom and right follow from
    y's shape): each window clipped to the input; a window with no input element gets -inf and idx -1."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3]
    if (kh < 1 or kw < 1 or sh < 1 or sw < 1 or pt < 0 or pl < 0 or y.shape[0] != N or y.shape[1] != C
            or idx.shape[0] != N or idx.shape[1] != C or idx.shape[2] != Ho or idx.shape[3] != Wo):
        raise ValueError("maxpool2d_forward_padded: inconsistent shapes reached the compiled kernel")
    if N * C * Ho * Wo == 0 or H * W == 0:
        return
    cdef Py_ssize_t r
    cdef int nt = nthreads if N * C * H * W >= PARALLEL_MIN else 1
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        _pool_plane_padded(&x[0, 0, 0, 0] + r * H * W, &y[0, 0, 0, 0] + r * Ho * Wo,
                           &idx[0, 0, 0, 0] + r * Ho * Wo, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl)


cdef void _pool_plane_padded(const floating *xp, floating *yp, long long *ip, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                             Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """One plane, window by window over the window's input elements in row-major order."""
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, i, j
    cdef floating v, b
    cdef long long k
    for oh in range(Ho):
        h0 = oh * sh - pt
        h1 = h0 + kh
        h0 = h0 if h0 > 0 else 0
        h1 = h1 if h1 < H else H
        for ow in range(Wo):
            w0 = ow * sw - pl
            w1 = w0 + kw
            w0 = w0 if w0 > 0 else 0
            w1 = w1 if w1 < W else W
            if h0 >= h1 or w0 >= w1:
                yp[oh * Wo + ow] = -INFINITY
                ip[oh * Wo + ow] = -1
                continue
            b = xp[h0 * W + w0]
            k = h0 * W + w0
            for i in range(h0, h1):
                for j in range(w0, w1):
                    v = xp[i * W + j]
                    if v > b or (v != v and b == b):
                        b = v
                        k = i * W + j
            yp[oh * Wo + ow] = b
            ip[oh * Wo + ow] = k


def maxpool2d_backward(const floating[:, :, :, ::1] dy, const long long[:, :, :, ::1] idx,
                       floating[:, :, :, ::1] dx, int nthreads):
    """dx = dy scattered to idx: each plane of dx is zeroed, then each dy added at its flat position idx
    (in output order, so overlapping windows accumulate as the reference does).  dx's prior contents are
    never read."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t Ho = dy.shape[2], Wo = dy.shape[3]
    if (dy.shape[0] != N or dy.shape[1] != C or idx.shape[0] != N or idx.shape[1] != C
            or idx.shape[2] != Ho or idx.shape[3] != Wo):
        raise ValueError("maxpool2d_backward: inconsistent shapes reached the compiled kernel")
    if N * C * H * W == 0:
        return
    cdef Py_ssize_t r, HW = H * W, HWo = Ho * Wo
    cdef Py_ssize_t nbad = 0
    cdef int nt = nthreads if N * C * H * W >= PARALLEL_MIN else 1
    cdef floating *dxp = &dx[0, 0, 0, 0]
    cdef const floating *dyp = &dy[0, 0, 0, 0] if HWo else NULL
    cdef const long long *ip = &idx[0, 0, 0, 0] if HWo else NULL
    if nt == 1:
        with nogil:
            for r in range(N * C):
                nbad += _scatter_plane(dyp + r * HWo, ip + r * HWo, dxp + r * HW, HWo, HW)
    else:
        for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
            nbad += _scatter_plane(dyp + r * HWo, ip + r * HWo, dxp + r * HW, HWo, HW)
    if nbad:
        raise ValueError(f"maxpool2d_backward: idx holds positions outside the {H}x{W} input plane")


cdef Py_ssize_t _scatter_plane(const floating *dyp, const long long *ip, floating *dxp, Py_ssize_t HWo,
                               Py_ssize_t HW) noexcept nogil:
    """One plane: dxp[:HW] = 0, then dxp[ip[j]] += dyp[j] for j < HWo; returns how many ip were out of
    range (those are skipped)."""
    cdef Py_ssize_t j, bad = 0
    cdef long long k
    memset(dxp, 0, HW * sizeof(floating))
    for j in range(HWo):
        k = ip[j]
        if k < 0 or k >= HW:
            bad += 1
        else:
            dxp[k] += dyp[j]
    return bad
