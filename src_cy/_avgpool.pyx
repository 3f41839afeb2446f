# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""2-D average pooling with PyTorch's semantics, and global average and global max pooling (NCHW).

Average pooling over kh x kw windows moved by (sh, sw) on the input padded by (top, bottom, left, right):
window (oh, ow) starts at ``h0 = oh*sh - top``, ``w0 = ow*sw - left`` and, as PyTorch computes it,

    pool_size = (min(h0 + kh, H + bottom) - h0) * (min(w0 + kw, W + right) - w0)   (padded-input part)
    count     = rows * cols of the window inside the input
    y         = sum(x over the window inside the input) / (pool_size if count_include_pad else count)

The sum runs in the input's precision, row by row, as PyTorch's CPU kernel does; backward adds
``dy / divisor`` to each input element of the window, output by output in row-major order, so
overlapping windows accumulate in the same order as the reference.

Global average pooling sums each (H, W) plane in double (four interleaved accumulators, a fixed
order) and divides by H*W; global max pooling keeps the first maximum of each plane (a NaN wins, so NaN
propagates) and its flat position ``h*W + w``, as MaxPool2D does.
"""
from cython cimport floating
from cython.parallel cimport prange

# Below this many elements one thread is faster than waking the others.
PARALLEL_MIN = 1 << 14


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline void _interior_columns(Py_ssize_t W, Py_ssize_t Wo, Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pl,
                                   Py_ssize_t *owa, Py_ssize_t *owb) noexcept nogil:
    """[owa, owb): the output columns whose windows lie inside the input's columns."""
    cdef Py_ssize_t a = (pl + sw - 1) // sw, b = 0
    if W + pl - kw >= 0:
        b = _imin(Wo, (W + pl - kw) // sw + 1)
    owa[0] = _imin(a, Wo)
    owb[0] = _imax(b, owa[0])


cdef void _avg_plane(const floating *xp, floating *yp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ho,
                     Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                     bint count_include_pad) noexcept nogil:
    """One plane, output row by output row.  The windows inside the input's columns are summed a whole
    row at a time (each window offset (i, j) in row-major order added to every window of the row: the
    same additions in the same order as one window at a time, in a loop the compiler vectorises); the
    windows that overhang the left or right edge are summed one by one."""
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, ph, pw, i, j, divisor, owa, owb
    cdef floating s, d
    cdef floating *yr
    cdef const floating *rp
    _interior_columns(W, Wo, kw, sw, pl, &owa, &owb)
    for oh in range(Ho):
        h0 = oh * sh - pt
        h1 = _imin(h0 + kh, H + pb)
        ph = h1 - h0
        h0 = _imax(h0, 0)
        h1 = _imin(h1, H)
        yr = yp + oh * Wo
        for ow in range(Wo):
            if owa <= ow < owb:
                continue
            w0 = ow * sw - pl
            w1 = _imin(w0 + kw, W + pr)
            pw = w1 - w0
            w0 = _imax(w0, 0)
            w1 = _imin(w1, W)
            if h0 >= h1 or w0 >= w1:
                yr[ow] = 0
                continue
            divisor = ph * pw if count_include_pad else (h1 - h0) * (w1 - w0)
            s = 0
            for i in range(h0, h1):
                for j in range(w0, w1):
                    s = s + xp[i * W + j]
            yr[ow] = s / <floating>divisor
        if owa == owb:
            continue
        if h0 >= h1:
            for ow in range(owa, owb):
                yr[ow] = 0
            continue
        for ow in range(owa, owb):
            yr[ow] = 0
        for i in range(h0, h1):
            for j in range(kw):
                rp = xp + i * W - pl + j
                for ow in range(owa, owb):
                    yr[ow] = yr[ow] + rp[ow * sw]
        d = <floating>(ph * kw if count_include_pad else (h1 - h0) * kw)
        for ow in range(owa, owb):
            yr[ow] = yr[ow] / d


cdef void _avg_plane_backward(const floating *dyp, floating *dxp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ho,
                              Py_ssize_t Wo, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                              bint count_include_pad) noexcept nogil:
    """One plane, outputs in row-major order.  When windows do not overlap along a row (kw <= sw) the
    interior windows of a row are spread a whole row at a time: each input element then gets at most one
    addition per output row, so the order of additions is that of one window at a time."""
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1, ph, pw, i, j, divisor, owa, owb
    cdef floating g, d
    cdef const floating *gr
    cdef floating *rp
    for i in range(H * W):
        dxp[i] = 0
    if kw <= sw:
        _interior_columns(W, Wo, kw, sw, pl, &owa, &owb)
    else:
        owa = owb = 0
    for oh in range(Ho):
        h0 = oh * sh - pt
        h1 = _imin(h0 + kh, H + pb)
        ph = h1 - h0
        h0 = _imax(h0, 0)
        h1 = _imin(h1, H)
        for ow in range(Wo):
            if owa <= ow < owb:
                continue
            w0 = ow * sw - pl
            w1 = _imin(w0 + kw, W + pr)
            pw = w1 - w0
            w0 = _imax(w0, 0)
            w1 = _imin(w1, W)
            if h0 >= h1 or w0 >= w1:
                continue
            divisor = ph * pw if count_include_pad else (h1 - h0) * (w1 - w0)
            g = dyp[oh * Wo + ow] / <floating>divisor
            for i in range(h0, h1):
                for j in range(w0, w1):
                    dxp[i * W + j] += g
        if owa == owb or h0 >= h1:
            continue
        d = <floating>(ph * kw if count_include_pad else (h1 - h0) * kw)
        gr = dyp + oh * Wo
        for i in range(h0, h1):
            for j in range(kw):
                rp = dxp + i * W - pl + j
                for ow in range(owa, owb):
                    rp[ow * sw] += gr[ow] / d


def avgpool2d_forward(const floating[:, :, :, ::1] x,  # IN  (N, C, H, W)
                      floating[:, :, :, ::1] y,        # OUT (N, C, Ho, Wo)
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                      bint count_include_pad, int nthreads):
    """y = average pooling of x (geometry checked by fastconv.ops; every window is clipped to the input)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3], r
    if (y.shape[0] != N or y.shape[1] != C or kh < 1 or kw < 1 or sh < 1 or sw < 1
            or pt < 0 or pb < 0 or pl < 0 or pr < 0):
        raise ValueError("avgpool2d_forward: inconsistent shapes reached the compiled kernel")
    if N * C * Ho * Wo == 0 or H * W == 0:
        return
    cdef int nt = nthreads if N * C * H * W >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    if nt == 1:
        with nogil:
            for r in range(N * C):
                _avg_plane(xp + r * H * W, yp + r * Ho * Wo, H, W, Ho, Wo, kh, kw, sh, sw, pt, pb, pl, pr,
                           count_include_pad)
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        _avg_plane(xp + r * H * W, yp + r * Ho * Wo, H, W, Ho, Wo, kh, kw, sh, sw, pt, pb, pl, pr,
                   count_include_pad)


def avgpool2d_backward(const floating[:, :, :, ::1] dy,  # IN  (N, C, Ho, Wo)
                       floating[:, :, :, ::1] dx,        # OUT (N, C, H, W), every element written
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                       bint count_include_pad, int nthreads):
    """dx = gradient of avgpool2d_forward: each window's dy / divisor added to its input elements."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t Ho = dy.shape[2], Wo = dy.shape[3], r
    if (dy.shape[0] != N or dy.shape[1] != C or kh < 1 or kw < 1 or sh < 1 or sw < 1
            or pt < 0 or pb < 0 or pl < 0 or pr < 0):
        raise ValueError("avgpool2d_backward: inconsistent shapes reached the compiled kernel")
    if N * C * H * W == 0:
        return
    if Ho * Wo == 0:
        dx[:, :, :, :] = 0
        return
    cdef int nt = nthreads if N * C * H * W >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0]
    if nt == 1:
        with nogil:
            for r in range(N * C):
                _avg_plane_backward(dyp + r * Ho * Wo, dxp + r * H * W, H, W, Ho, Wo, kh, kw, sh, sw,
                                    pt, pb, pl, pr, count_include_pad)
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        _avg_plane_backward(dyp + r * Ho * Wo, dxp + r * H * W, H, W, Ho, Wo, kh, kw, sh, sw,
                            pt, pb, pl, pr, count_include_pad)


cdef inline double _sum(const floating *p, Py_ssize_t n) noexcept nogil:
    """sum(p[:n]) in double through four interleaved accumulators, added in a fixed order."""
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        a0 += p[i]
        a1 += p[i + 1]
        a2 += p[i + 2]
        a3 += p[i + 3]
        i += 4
    while i < n:
        a0 += p[i]
        i += 1
    return (a0 + a1) + (a2 + a3)


cdef inline void _plane_max(const floating *p, Py_ssize_t n, floating *best, long long *where) noexcept nogil:
    """The first maximum of p[:n] and its position; a NaN, once met, wins."""
    cdef floating b = p[0], v
    cdef long long k = 0
    cdef Py_ssize_t i
    for i in range(1, n):
        v = p[i]
        if v > b or (v != v and b == b):
            b = v
            k = i
    best[0] = b
    where[0] = k


def global_avgpool2d_forward(const floating[:, :, ::1] x,  # IN  (N, C, H*W)
                             floating[:, ::1] y,           # OUT (N, C)
                             int nthreads):
    """y[n, c] = mean of plane (n, c), summed in double."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], r
    if y.shape[0] != N or y.shape[1] != C or S == 0:
        raise ValueError("global_avgpool2d_forward: inconsistent shapes reached the compiled kernel")
    if N * C == 0:
        return
    cdef int nt = nthreads if N * C * S >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *yp = &y[0, 0]
    if nt == 1:
        with nogil:
            for r in range(N * C):
                yp[r] = <floating>(_sum(xp + r * S, S) / S)
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        yp[r] = <floating>(_sum(xp + r * S, S) / S)


def global_avgpool2d_backward(const floating[:, ::1] dy,   # IN  (N, C)
                              floating[:, :, ::1] dx,      # OUT (N, C, H*W)
                              int nthreads):
    """dx[n, c, :] = dy[n, c] / (H*W)."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], S = dx.shape[2], r, i
    if dy.shape[0] != N or dy.shape[1] != C or S == 0:
        raise ValueError("global_avgpool2d_backward: inconsistent shapes reached the compiled kernel")
    if N * C == 0:
        return
    cdef int nt = nthreads if N * C * S >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *dyp = &dy[0, 0]
    cdef floating *dxp = &dx[0, 0, 0]
    cdef floating g
    if nt == 1:
        with nogil:
            for r in range(N * C):
                g = dyp[r] / <floating>S
                for i in range(S):
                    dxp[r * S + i] = g
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        g = dyp[r] / <floating>S
        for i in range(S):
            dxp[r * S + i] = g


def global_maxpool2d_forward(const floating[:, :, ::1] x,   # IN  (N, C, H*W)
                             floating[:, ::1] y,            # OUT (N, C)
                             long long[:, ::1] idx,         # OUT (N, C): flat position h*W + w
                             int nthreads):
    """y[n, c] = the first maximum of plane (n, c) (NaN propagates); idx its position."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], r
    if y.shape[0] != N or y.shape[1] != C or idx.shape[0] != N or idx.shape[1] != C or S == 0:
        raise ValueError("global_maxpool2d_forward: inconsistent shapes reached the compiled kernel")
    if N * C == 0:
        return
    cdef int nt = nthreads if N * C * S >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *xp = &x[0, 0, 0]
    cdef floating *yp = &y[0, 0]
    cdef long long *ip = &idx[0, 0]
    if nt == 1:
        with nogil:
            for r in range(N * C):
                _plane_max(xp + r * S, S, yp + r, ip + r)
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        _plane_max(xp + r * S, S, yp + r, ip + r)


def global_maxpool2d_backward(const floating[:, ::1] dy,    # IN  (N, C)
                              const long long[:, ::1] idx,  # IN  (N, C)
                              floating[:, :, ::1] dx,       # OUT (N, C, H*W), every element written
                              int nthreads):
    """dx = 0 except dx[n, c, idx[n, c]] = dy[n, c]."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], S = dx.shape[2], r, i
    if dy.shape[0] != N or dy.shape[1] != C or idx.shape[0] != N or idx.shape[1] != C or S == 0:
        raise ValueError("global_maxpool2d_backward: inconsistent shapes reached the compiled kernel")
    cdef Py_ssize_t nbad = 0
    cdef long long k
    for r in range(N * C):
        k = idx[r // C, r % C]
        if k < 0 or k >= S:
            nbad += 1
    if nbad:
        raise ValueError(f"global_maxpool2d_backward: idx holds positions outside the {S}-element plane")
    if N * C == 0:
        return
    cdef int nt = nthreads if N * C * S >= PARALLEL_MIN and N * C > 1 else 1
    cdef const floating *dyp = &dy[0, 0]
    cdef const long long *ip = &idx[0, 0]
    cdef floating *dxp = &dx[0, 0, 0]
    if nt == 1:
        with nogil:
            for r in range(N * C):
                for i in range(S):
                    dxp[r * S + i] = 0
                dxp[r * S + ip[r]] = dyp[r]
        return
    for r in prange(N * C, schedule='static', num_threads=nt, nogil=True):
        for i in range(S):
            dxp[r * S + i] = 0
        dxp[r * S + ip[r]] = dyp[r]
