# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""conv2d forward and backward: im2col into a zero-padded buffer, then register-blocked micro-kernels.

Layout (per chunk of ``cnt`` samples, ``K = C*kh*kw``, ``P = Ho*Wo`` padded to ``Ppad``, a multiple of
the tile width NR):

    cols[n, k, p]   = x_padded[n, c, oh*sh + i, ow*sw + j]    k = (c*kh + i)*kw + j, p = oh*Wo + ow
    y[n]            = W (F x K) @ cols[n] + b                 nn tiles, parallel over (n, p-tile, f-tile)
    dW              = sum_n dy[n] (F x P) @ cols[n]^T         nt tiles, thread-local dW summed at the end
    dcols[n]        = W^T (K x F) @ dy[n]                     nn tiles, then col2im scatters into dx

Samples are processed in chunks so the im2col buffer stays near cache size.  Every parallel loop splits
work that exists even at batch 1 (kernel rows, output tiles, blocks of output positions), so a single
image still uses every thread.  No BLAS is called, so OpenMP never runs beside a threaded BLAS.

Only ``fastconv.ops`` calls this module; it validates and allocates.  The functions here re-check the
shape relations they rely on, because the loops below run with bounds checks off.
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

cdef extern from "conv_micro.h" nogil:
    int FC_MR
    int FC_NR_D
    int FC_NR_S
    void fc_gemm_nn_d(int kd, const double *ap, const double *b, long ldb, double *c, long ldc,
                      int mr, int nc, const double *bias)
    void fc_gemm_nn_s(int kd, const float *ap, const float *b, long ldb, float *c, long ldc,
                      int mr, int nc, const float *bias)
    void fc_gemm_nt_d(int np_, const double *a, long lda, const double *b, long ldb, double *c,
                      long ldc, int mr, int nr)
    void fc_gemm_nt_s(int np_, const float *a, long lda, const float *b, long ldb, float *c,
                      long ldc, int mr, int nr)

cdef extern from "fc_omp.h" nogil:
    int fc_max_threads()
    int fc_have_openmp()

# Bytes of im2col buffer per chunk of samples; 4 MiB measured best of {1, 2, 4, 8} MiB on the bench shapes.
CHUNK_BYTES = 4 << 20
# Output positions per dW work item (a multiple of every tile width).
DW_BLOCK = 128


def max_threads():
    """Threads OpenMP would use by default (1 when built without OpenMP)."""
    return fc_max_threads()


def have_openmp():
    """True when the extension was compiled with OpenMP."""
    return bool(fc_have_openmp())


def tile_width(dtype):
    """Columns per nn tile for ``dtype`` (the padding unit of the im2col buffer)."""
    return FC_NR_D if np.dtype(dtype) == np.float64 else FC_NR_S


cdef inline Py_ssize_t _valid_lo(Py_ssize_t pad, Py_ssize_t j, Py_ssize_t stride) noexcept nogil:
    """First output index whose input index ``o*stride - pad + j`` is >= 0."""
    if pad - j <= 0:
        return 0
    return (pad - j + stride - 1) // stride


cdef inline Py_ssize_t _valid_hi(Py_ssize_t size, Py_ssize_t pad, Py_ssize_t j, Py_ssize_t stride,
                                 Py_ssize_t out) noexcept nogil:
    """One past the last output index whose input index is < size, clipped to [0, out]."""
    cdef Py_ssize_t top = size - 1 + pad - j
    if top < 0:
        return 0
    top = top // stride + 1
    return top if top < out else out


cdef void _im2col(const floating *x, floating *cols, Py_ssize_t cnt, Py_ssize_t C, Py_ssize_t H,
                  Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t Ppad,
                  int nthreads) noexcept nogil:
    """cols[n, (c*kh+i)*kw+j, oh*Wo+ow] = x_padded[n, c, oh*sh+i, ow*sw+j]; padding columns untouched."""
    cdef Py_ssize_t r, n, c, i, j, oh, ow, ih, lo, hi, K = C * kh * kw
    cdef floating *dst
    cdef const floating *src
    for r in prange(cnt * C * kh, schedule='static', num_threads=nthreads, nogil=True):
        n = r // (C * kh)
        c = (r // kh) % C
        i = r % kh
        for j in range(kw):
            dst = cols + (n * K + (c * kh + i) * kw + j) * Ppad
            lo = _valid_lo(pw, j, sw)
            hi = _valid_hi(W, pw, j, sw, Wo)
            if hi < lo:
                hi = lo
            for oh in range(Ho):
                ih = oh * sh - ph + i
                if ih < 0 or ih >= H:
                    for ow in range(Wo):
                        dst[oh * Wo + ow] = 0
                    continue
                src = x + ((n * C + c) * H + ih) * W
                for ow in range(lo):
                    dst[oh * Wo + ow] = 0
                if sw == 1:
                    for ow in range(lo, hi):
                        dst[oh * Wo + ow] = src[ow - pw + j]
                else:
                    for ow in range(lo, hi):
                        dst[oh * Wo + ow] = src[ow * sw - pw + j]
                for ow in range(hi, Wo):
                    dst[oh * Wo + ow] = 0


cdef void _col2im(const floating *dcols, floating *dx, Py_ssize_t cnt, Py_ssize_t C, Py_ssize_t H,
                  Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t Ppad,
                  int nthreads) noexcept nogil:
    """dx[n, c] += scatter of dcols (the adjoint of _im2col); dx must start at zero."""
    cdef Py_ssize_t r, n, c, i, j, oh, ow, ih, lo, hi, K = C * kh * kw
    cdef const floating *srcrow
    cdef floating *dxrow
    for r in prange(cnt * C, schedule='static', num_threads=nthreads, nogil=True):
        n = r // C
        c = r % C
        for i in range(kh):
            for j in range(kw):
                srcrow = dcols + (n * K + (c * kh + i) * kw + j) * Ppad
                lo = _valid_lo(pw, j, sw)
                hi = _valid_hi(W, pw, j, sw, Wo)
                for oh in range(Ho):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= H:
                        continue
                    dxrow = dx + ((n * C + c) * H + ih) * W
                    for ow in range(lo, hi):
                        dxrow[ow * sw - pw + j] += srcrow[oh * Wo + ow]


cdef void _gemm_nn(int kd, const floating *ap, const floating *b, long ldb, floating *c, long ldc,
                   int mr, int nc, const floating *bias) noexcept nogil:
    if floating is double:
        fc_gemm_nn_d(kd, ap, b, ldb, c, ldc, mr, nc, bias)
    else:
        fc_gemm_nn_s(kd, ap, b, ldb, c, ldc, mr, nc, bias)


cdef void _gemm_nt(int np_, const floating *a, long lda, const floating *b, long ldb, floating *c,
                   long ldc, int mr, int nr) noexcept nogil:
    if floating is double:
        fc_gemm_nt_d(np_, a, lda, b, ldb, c, ldc, mr, nr)
    else:
        fc_gemm_nt_s(np_, a, lda, b, ldb, c, ldc, mr, nr)


cdef void _nn_product(const floating *apack, Py_ssize_t M, Py_ssize_t kd, const floating *B,
                      floating *out, Py_ssize_t cnt, Py_ssize_t ldb, Py_ssize_t b_stride,
                      Py_ssize_t ldc, Py_ssize_t c_stride, Py_ssize_t ncols, Py_ssize_t NR,
                      const floating *bias, int nthreads) noexcept nogil:
    """out[n] (M x ncols, row stride ldc) = A (M x kd, packed) @ B[n] (kd x ncols, row stride ldb)."""
    cdef Py_ssize_t MR = FC_MR
    cdef Py_ssize_t mb = (M + MR - 1) // MR
    cdef Py_ssize_t nt = (ncols + NR - 1) // NR
    cdef Py_ssize_t t, n, rest, jt, m, mr, nc
    for t in prange(cnt * nt * mb, schedule='static', num_threads=nthreads, nogil=True):
        n = t // (nt * mb)
        rest = t % (nt * mb)
        jt = rest // mb
        m = rest % mb
        mr = M - m * MR
        if mr > MR:
            mr = MR
        nc = ncols - jt * NR
        if nc > NR:
            nc = NR
        _gemm_nn(<int>kd, apack + m * kd * MR, B + n * b_stride + jt * NR, ldb,
                 out + n * c_stride + m * MR * ldc + jt * NR, ldc, <int>mr, <int>nc,
                 (bias + m * MR) if bias != NULL else NULL)


cdef void _pack_a(const floating *A, Py_ssize_t rsa, Py_ssize_t csa, Py_ssize_t M, Py_ssize_t kd,
                  floating *out) noexcept nogil:
    """out[m, k, i] = A[(m*MR + i)*rsa + k*csa] (zero past row M): panels of MR rows for the nn kernel."""
    cdef Py_ssize_t MR = FC_MR, mb = (M + MR - 1) // MR, m, k, i, row
    for m in range(mb):
        for k in range(kd):
            for i in range(MR):
                row = m * MR + i
                out[(m * kd + k) * MR + i] = A[row * rsa + k * csa] if row < M else 0


def _geometry(x, w, stride, padding):
    N, C, H, W = x.shape
    F, Cw, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    if Cw != C or sh < 1 or sw < 1 or ph < 0 or pw < 0 or kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError("conv2d: inconsistent shapes reached the compiled kernel")
    return N, C, H, W, F, kh, kw, sh, sw, ph, pw, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, b,
                   floating[:, :, :, ::1] y, stride, padding, int nthreads):
    """y = conv2d(x, w) + b into the preallocated ``y``; ``b`` is None or a contiguous (F,) array."""
    cdef Py_ssize_t N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo
    N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x, w, stride, padding)
    if (y.shape[0], y.shape[1], y.shape[2], y.shape[3]) != (N, F, Ho, Wo):
        raise ValueError("conv2d_forward: output buffer has the wrong shape")
    dtype = np.float64 if floating is double else np.float32
    cdef Py_ssize_t K = C * kh * kw, P = Ho * Wo, NR = tile_width(dtype)
    cdef Py_ssize_t Ppad = (P + NR - 1) // NR * NR
    cdef Py_ssize_t nb = max(1, min(N, CHUNK_BYTES // (K * Ppad * np.dtype(dtype).itemsize)))
    cdef floating[:, :, ::1] cols = np.zeros((nb, K, Ppad), dtype=dtype)
    cdef floating[::1] apack = np.empty((F + FC_MR - 1) // FC_MR * FC_MR * K, dtype=dtype)
    _pack_a(&w[0, 0, 0, 0], K, 1, F, K, &apack[0])
    cdef const floating[::1] bias
    cdef const floating *bptr = NULL
    if b is not None:
        bias = b
        if bias.shape[0] != F:
            raise ValueError("conv2d_forward: bias length does not match the filters")
        bptr = &bias[0]
    cdef Py_ssize_t n0, cnt
    for n0 in range(0, N, nb):
        cnt = min(nb, N - n0)
        with nogil:
            _im2col(&x[n0, 0, 0, 0], &cols[0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo,
                    Ppad, nthreads)
            _nn_product(&apack[0], F, K, &cols[0, 0, 0], &y[n0, 0, 0, 0], cnt, Ppad, K * Ppad,
                        P, F * P, P, NR, bptr, nthreads)


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, dx_out, floating[:, :, :, ::1] dw,
                    floating[::1] db, stride, padding, int nthreads):
    """Fill ``dw``, ``db`` and, unless ``dx_out`` is None, the zero-initialised ``dx_out``."""
    cdef Py_ssize_t N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo
    N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x, w, stride, padding)
    if (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]) != (N, F, Ho, Wo) or (dw.shape[0], dw.shape[1], dw.shape[2], dw.shape[3]) != (F, C, kh, kw) or db.shape[0] != F:
        raise ValueError("conv2d_backward: buffers have the wrong shape")
    dtype = np.float64 if floating is double else np.float32
    cdef bint need_dx = dx_out is not None
    cdef floating[:, :, :, ::1] dx
    if need_dx:
        dx = dx_out
        if (dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]) != (N, C, H, W):
            raise ValueError("conv2d_backward: dx buffer has the wrong shape")
    cdef Py_ssize_t K = C * kh * kw, P = Ho * Wo, NR = tile_width(dtype)
    cdef Py_ssize_t Ppad = (P + NR - 1) // NR * NR
    cdef Py_ssize_t nb = max(1, min(N, CHUNK_BYTES // (K * Ppad * np.dtype(dtype).itemsize)))
    cdef int nt = max(1, nthreads)
    cdef floating[:, :, ::1] cols = np.zeros((nb, K, Ppad), dtype=dtype)
    cdef floating[:, :, ::1] dyp = np.zeros((nb, F, Ppad), dtype=dtype)
    cdef floating[:, :, ::1] dw_local = np.zeros((nt, F, K), dtype=dtype)
    cdef floating[::1] apack_t
    if need_dx:
        apack_t = np.empty((K + FC_MR - 1) // FC_MR * FC_MR * F, dtype=dtype)
        _pack_a(&w[0, 0, 0, 0], 1, K, K, F, &apack_t[0])  # A = W^T: element (k, f) at w[f*K + k]
    cdef Py_ssize_t n0, cnt, r, n, f, k, t, item, nhb, p0, blk, f0, k0, tid
    cdef Py_ssize_t HB = DW_BLOCK
    cdef floating acc
    nhb = (Ppad + HB - 1) // HB
    for n0 in range(0, N, nb):
        cnt = min(nb, N - n0)
        with nogil:
            _im2col(&x[n0, 0, 0, 0], &cols[0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo,
                    Ppad, nthreads)
            for r in prange(cnt * F, schedule='static', num_threads=nthreads):
                memcpy(&dyp[0, 0, 0] + r * Ppad, &dy[n0, 0, 0, 0] + r * P, P * sizeof(floating))
            for item in prange(cnt * nhb, schedule='static', num_threads=nthreads):
                tid = threadid()
                n = item // nhb
                p0 = (item % nhb) * HB
                blk = Ppad - p0
                if blk > HB:
                    blk = HB
                for f0 in range(0, F, 4):
                    for k0 in range(0, K, 4):
                        _gemm_nt(<int>blk, &dyp[n, f0, p0], Ppad, &cols[n, k0, p0], Ppad,
                                 &dw_local[tid, f0, k0], K, <int>min(4, F - f0), <int>min(4, K - k0))
            if need_dx:
                # dcols overwrites cols, which dW no longer needs for this chunk.
                _nn_product(&apack_t[0], K, F, &dyp[0, 0, 0], &cols[0, 0, 0], cnt, Ppad,
                            F * Ppad, Ppad, K * Ppad, Ppad, NR, NULL, nthreads)
                _col2im(&cols[0, 0, 0], &dx[n0, 0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, Ho,
                        Wo, Ppad, nthreads)
    cdef floating *dwp = &dw[0, 0, 0, 0]
    with nogil:
        for r in prange(F * K, schedule='static', num_threads=nthreads):
            acc = 0
            for t in range(nt):
                acc = acc + (&dw_local[0, 0, 0])[t * F * K + r]
            dwp[r] = acc
        for f in prange(F, schedule='static', num_threads=nthreads):
            acc = 0
            for n in range(N):
                for k in range(P):
                    acc = acc + (&dy[0, 0, 0, 0])[(n * F + f) * P + k]
            db[f] = acc
