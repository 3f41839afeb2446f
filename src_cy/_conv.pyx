# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""conv2d forward and backward on register-blocked micro-kernels (conv_micro.h); no BLAS.

Three paths:

* Winograd F(2x2, 3x3) (fc_winograd.h) for the forward and the dx of 3x3 stride-1 convolutions with at
  least WINOGRAD_MIN_CHANNELS channels each way, WINOGRAD_MIN_TILES output tiles and finite inputs: 2.25x
  fewer products.
* Implicit GEMM (every other finite input; the bottom half of this file).  The padded input is split into its
  stride phases, so the rows of the im2col matrix are shifted views of one small buffer and are never
  written out.  y = W @ views, dW = dy_grid @ views^T, dx (phase by phase) = W_phase @ views of dy.
* im2col (the backward for non-finite x or w, whose products must match the reference's exactly):

    cols[n, k, p]   = x_padded[n, c, oh*sh + i, ow*sw + j]    k = (c*kh + i)*kw + j, p = oh*Wo + ow
    dW              = sum_n dy[n] (F x P) @ cols[n]^T         nt tiles, thread-local dW summed at the end
    dcols[n]        = W^T (K x F) @ dy[n]                     nn tiles, then col2im scatters into dx

Samples are processed in chunks so the buffers stay near cache size.  The parallel loops split work that
exists even at batch 1 (output tiles, tiles of dW), so one image can use every thread; whether it pays
is measured per layer shape on the machine at hand (fc_trials.pxi).  No BLAS is called, so OpenMP
never runs beside a threaded BLAS.

Only ``fastconv.ops`` calls this module; it validates and allocates.  The functions here re-check the
shape relations they rely on, because the loops below run with bounds checks off.
"""
import os

import numpy as np
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

cdef extern from "conv_micro.h" nogil:
    int FC_MR
    int FC_NT_MR
    int FC_NT_NR
    int FC_NR_D
    int FC_NR_S
    int FC_LANES_D
    int FC_LANES_S
    void fc_igemm_nn_d(int kd, const double *ap, const double *base, const long *boff, double *c,
                       long ldc, const long *cmap, int contig, int mr, const double *bias)
    void fc_igemm_nn_s(int kd, const float *ap, const float *base, const long *boff, float *c,
                       long ldc, const long *cmap, int contig, int mr, const float *bias)
    void fc_igemm_n1_d(int kd, const double *a, const double *base, const long *boff, double *c,
                       const long *cmap, const int *contig)
    void fc_igemm_n1_s(int kd, const float *a, const float *base, const long *boff, float *c,
                       const long *cmap, const int *contig)
    void fc_igemm_nt_d(int np_, const double *a, long lda, const double *base, const long *boff,
                       double *c, long ldc, int mr, int nr)
    void fc_igemm_nt_s(int np_, const float *a, long lda, const float *base, const long *boff,
                       float *c, long ldc, int mr, int nr)
    double fc_sum_d(const double *x, long n)
    float fc_sum_s(const float *x, long n)
    int fc_all_finite_d(const double *x, long n)
    int fc_all_finite_s(const float *x, long n)

cdef extern from "fc_winograd.h" nogil:
    void fc_wino_filter_d(const double *w, long F, long C, long mr, double *up)
    void fc_wino_filter_s(const float *w, long F, long C, long mr, float *up)
    void fc_wino_input_d(const double *x, long HW, long W, long C, const long *base,
                         const unsigned short *mask, long nt, long tp, long ps, double *v)
    void fc_wino_input_s(const float *x, long HW, long W, long C, const long *base,
                         const unsigned short *mask, long nt, long tp, long ps, float *v)
    void fc_wino_output_d(const double *m, long pm, long n, double *yb)
    void fc_wino_output_s(const float *m, long pm, long n, float *yb)

cdef extern from "fc_omp.h" nogil:
    int fc_max_threads()
    int fc_have_openmp()
    void fc_barrier()

def _l2_bytes():
    """The L2 cache of one core in bytes, as the OS reports it (512 KiB where it does not say)."""
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (AttributeError, ValueError, OSError):
        size = 0
    return size if 64 << 10 <= size <= 64 << 20 else 512 << 10


# Bytes of im2col buffer per chunk of samples; 4 MiB measured best of {1, 2, 4, 8} MiB on the bench shapes.
CHUNK_BYTES = 4 << 20
# The implicit path's buffers per chunk: up to IMPLICIT_CHUNK_BYTES (forward) or BACKWARD_CHUNK_BYTES per
# thread (backward), but at least CHUNK_SAMPLES_PER_THREAD samples per thread, because splitting one
# sample between threads costs more than it saves (3x3 64->64 float64 backward, batch 32: one 2.8 MB
# sample per chunk 38.1 ms, 8 samples per chunk 24.1-26.8 ms).  The backward's buffers per thread are one
# L2 cache: on a 2-core Zen 1 (512 KB L2) the batch-64 seed backward ran 10-20% faster with 1 MB chunks
# than with 4 MB (float64 conv1 2159 -> 1909 us, conv2 2988 -> 2523 us), while the forward ran 5% slower
# (seed conv1), so it keeps 4 MB.
IMPLICIT_CHUNK_BYTES = 4 << 20
BACKWARD_CHUNK_BYTES = _l2_bytes()
CHUNK_SAMPLES_PER_THREAD = 4
# Workspaces up to this size are kept by the plan and reused (at batch 1 the allocations and buffer
# set-up were ~1/3 of a seed conv's time); larger ones are allocated per call.
WORKSPACE_CACHE_BYTES = 1 << 20
# Output positions per dW work item of the im2col path (a multiple of every vector width).
DW_BLOCK = 128
# Batch 1: whether splitting one sample between threads pays depends on the machine (fc_trials.pxi), so
# each plan measures it per operation with a _Trials.  At batch 1 the work items are output tiles
# (forward, dx) and whole tiles of dW, each computed the same way on any thread, so the choice never
# changes the result's bits (tested).  Batches of 2 or more always split.
cdef enum:
    OP_FORWARD = 0
    OP_BACKWARD = 1       # no dx
    OP_BACKWARD_DX = 2


include "fc_arrays.pxi"
include "fc_trials.pxi"


def kernel_ready(a, dtype=None):
    """True for an ndarray (exactly) of native float32/float64 (``dtype`` if given), C-contiguous: what the
    kernels take as it is.  The layers call it several times a step (the Python version cost ~1 us)."""
    if not cnp.PyArray_CheckExact(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr)
    if (t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT) or not cnp.PyArray_IS_C_CONTIGUOUS(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    return dtype is None or <object>cnp.PyArray_DESCR(arr) is dtype or arr.dtype == dtype


def batch1_choices():
    """The batch-1 thread choices measured so far: {(C, H, W, F, kh, kw, sh, sw, ph, pw, NR): {op: ...}}."""
    choices = {key: plan.batch1_choice() for key, plan in _plans.items()}
    return {key: c for key, c in choices.items() if c}


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


cdef inline void _nn_tile(Py_ssize_t t, Py_ssize_t ntiles, Py_ssize_t M, Py_ssize_t kd,
                          const floating *apack, const floating *base, Py_ssize_t b_stride,
                          const long *boff, floating *out, Py_ssize_t c_stride, Py_ssize_t ldc,
                          const long *cmap, const int *contig, Py_ssize_t NR,
                          const floating *bias) noexcept nogil:
    """Work item t of out[n] = A (M x kd, packed) @ views of base[n]: (sample, column tile, row panel)."""
    cdef Py_ssize_t MR = FC_MR, mb = (M + FC_MR - 1) // FC_MR
    cdef Py_ssize_t n = t // (ntiles * mb), rest = t % (ntiles * mb)
    cdef Py_ssize_t jt = rest // mb, m = rest % mb
    cdef Py_ssize_t mr = M - m * MR
    if mr > MR:
        mr = MR
    _igemm_nn(<int>kd, apack + m * kd * MR, base + n * b_stride + jt * NR, boff,
              out + n * c_stride + m * MR * ldc, ldc, cmap + jt * NR, contig[jt], <int>mr,
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


cdef enum:
    FINISH_BLOCK = 512   # dW elements per item of the final reduction


cdef inline Py_ssize_t _finish_items(Py_ssize_t FK, Py_ssize_t F, bint reduce) noexcept nogil:
    """Work items of _finish_item: blocks of the dW reduction (when there is one), then one per filter."""
    return ((FK + FINISH_BLOCK - 1) // FINISH_BLOCK if reduce else 0) + F


cdef inline void _finish_item(Py_ssize_t r, const floating *dw_local, Py_ssize_t nt, floating *dw,
                              Py_ssize_t FK, const floating *dy, Py_ssize_t N, Py_ssize_t F, Py_ssize_t P,
                              floating *db, bint reduce) noexcept nogil:
    """Item r of the end of a backward: a block of dw = the sum of the nt thread-local dW (``reduce``;
    a single thread accumulates into dw itself), then db[f] = sum of dy[:, f]."""
    cdef Py_ssize_t t, n, f, i, lo, hi, nblk = (FK + FINISH_BLOCK - 1) // FINISH_BLOCK if reduce else 0
    cdef floating acc = 0
    if r < nblk:
        lo = r * FINISH_BLOCK
        hi = min(lo + FINISH_BLOCK, FK)
        for i in range(lo, hi):
            dw[i] = dw_local[i]
        for t in range(1, nt):
            for i in range(lo, hi):
                dw[i] = dw[i] + dw_local[t * FK + i]
    else:
        f = r - nblk
        for n in range(N):
            acc = acc + _sum(dy + (n * F + f) * P, P)
        db[f] = acc


def _backward_im2col(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, dx_out, floating[:, :, :, ::1] dw,
                    floating[::1] db, _Plan g, int nthreads):
    """im2col backward (the path for non-finite inputs); conv2d_backward checked the shapes against the
    plan ``g``, whose geometry this uses."""
    cdef Py_ssize_t N = x.shape[0], C = g.C, H = g.H, W = g.W, F = g.F, kh = g.kh, kw = g.kw
    cdef Py_ssize_t sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, Ho = g.Ho, Wo = g.Wo
    dtype = np.float64 if floating is double else np.float32
    cdef bint need_dx = dx_out is not None
    cdef floating[:, :, :, ::1] dx
    if need_dx:
        dx = dx_out
        dx[...] = 0
    cdef Py_ssize_t K = C * kh * kw, P = Ho * Wo, NR = tile_width(dtype)
    cdef Py_ssize_t Ppad = (P + NR - 1) // NR * NR
    cdef Py_ssize_t nb = max(1, min(N, CHUNK_BYTES // (K * Ppad * np.dtype(dtype).itemsize)))
    cdef int nt = max(1, nthreads)
    cdef floating[:, :, ::1] cols = np.zeros((nb, K, Ppad), dtype=dtype)
    cdef floating[:, :, ::1] dyp = np.zeros((nb, F, Ppad), dtype=dtype)
    cdef floating[:, :, ::1] dw_local = np.zeros((nt, F, K), dtype=dtype)
    cdef floating[::1] apack_t
    cdef Py_ssize_t MR = FC_MR, mbk = (K + FC_MR - 1) // FC_MR, ntl = Ppad // NR
    if need_dx:
        apack_t = np.empty(mbk * MR * F, dtype=dtype)
        _pack_a(&w[0, 0, 0, 0], 1, K, K, F, &apack_t[0])  # A = W^T: element (k, f) at w[f*K + k]
    # row offsets for the implicit-GEMM kernels: dy rows (dcols = W^T dy), cols rows (dW), one tile
    cdef long[::1] frow = np.arange(F, dtype=np.int64) * Ppad
    cdef long[::1] krow = np.arange(K, dtype=np.int64) * Ppad
    cdef long[::1] ident = np.arange(Ppad, dtype=np.int64)
    cdef int[::1] ones = np.ones(ntl, dtype=np.intc)
    cdef Py_ssize_t n0, cnt, r, n, t, item, nhb, p0, blk, tid
    cdef Py_ssize_t HB = DW_BLOCK
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
                _dw_tiles(<int>blk, &dyp[n, 0, p0], Ppad, &cols[n, 0, p0], &krow[0], &dw_local[tid, 0, 0], K, F, K)
            if need_dx:
                # dcols = W^T @ dy overwrites cols, which dW no longer needs for this chunk.
                for t in prange(cnt * ntl * mbk, schedule='static', num_threads=nthreads):
                    _nn_tile(t, ntl, K, F, &apack_t[0], &dyp[0, 0, 0], F * Ppad, &frow[0], &cols[0, 0, 0],
                             K * Ppad, Ppad, &ident[0], &ones[0], NR, NULL)
                _col2im(&cols[0, 0, 0], &dx[n0, 0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, Ho,
                        Wo, Ppad, nthreads)
    for r in prange(_finish_items(F * K, F, True), schedule='static', num_threads=nthreads, nogil=True):
        _finish_item(r, &dw_local[0, 0, 0], nt, &dw[0, 0, 0, 0], F * K, &dy[0, 0, 0, 0], N, F, P, &db[0],
                     True)


# ------------------------------------------------------------------------------------------------------
# Implicit GEMM (the path every finite input takes).
#
# The padded input is split into its sh*sw stride phases, xq[c, a, b][u, v] = x_pad[c, u*sh+a, v*sw+b]
# (Hq x Wq, cut to the rows and columns a window reads), which turns any stride into stride 1.  Each phase
# plane is stored ns times, shifted left by s = 0..ns-1 columns and cut to a width Wc:
# xs[c, a, b, s][u, v] = xq[c, a, b][u, v + s] (Hq x Wc).
# Output (oh, ow) is column p = oh*Wc + ow, and term k = (c, i, j) reads, for every p at once, the
# contiguous view of xs that starts at boff[k]:
#   shifted (sw == 1 and Wq > 1.25 Wo): ns = kw, Wc = Wo -- xs[c, i%sh, 0, j][oh + i//sh, ow]: no wasted
#       column, and xs is only kw times the input (an im2col is kh*kw times);
#   grid (otherwise): ns = 1, Wc = Wq -- xq[c, i%sh, j%sw][oh + i//sh, ow + j//sw]: columns ow >= Wo are
#       computed and dropped (the output map sends them nowhere), and xs is the size of the input.
# y = W @ views and dW = dy_on_columns @ views^T (dy zero on dropped columns) read those views.  dx goes
# phase by phase: dx at phase (a, b) is the product of w's taps of that phase with shifted views of dy
# laid out on a Wq-wide grid with zero borders (a stride-1 "full" correlation).
# Dropped columns and tile tails multiply stored zeros, so the fast path needs finite x (for dW) and
# finite w (for dx); anything else takes the im2col path above, whose products are exactly the
# reference's.
# ------------------------------------------------------------------------------------------------------

cdef void _igemm_nn(int kd, const floating *ap, const floating *base, const long *boff, floating *c,
                    long ldc, const long *cmap, int contig, int mr, const floating *bias) noexcept nogil:
    if floating is double:
        fc_igemm_nn_d(kd, ap, base, boff, c, ldc, cmap, contig, mr, bias)
    else:
        fc_igemm_nn_s(kd, ap, base, boff, c, ldc, cmap, contig, mr, bias)


cdef void _igemm_n1(int kd, const floating *a, const floating *base, const long *boff, floating *c,
                    const long *cmap, const int *contig) noexcept nogil:
    if floating is double:
        fc_igemm_n1_d(kd, a, base, boff, c, cmap, contig)
    else:
        fc_igemm_n1_s(kd, a, base, boff, c, cmap, contig)


cdef void _igemm_nt(int np_, const floating *a, long lda, const floating *base, const long *boff,
                    floating *c, long ldc, int mr, int nr) noexcept nogil:
    if floating is double:
        fc_igemm_nt_d(np_, a, lda, base, boff, c, ldc, mr, nr)
    else:
        fc_igemm_nt_s(np_, a, lda, base, boff, c, ldc, mr, nr)


cdef inline void _dw_tiles(int np_, const floating *a, long lda, const floating *base, const long *boff,
                           floating *c, long ldc, Py_ssize_t F, Py_ssize_t K) noexcept nogil:
    """c[F x K] += a[F x np_] @ B[K x np_]^T (row k of B at base + boff[k]), FC_NT_MR x FC_NT_NR tiles."""
    cdef Py_ssize_t ft, kt, f0, k0
    for ft in range((F + FC_NT_MR - 1) // FC_NT_MR):
        f0 = ft * FC_NT_MR
        for kt in range((K + FC_NT_NR - 1) // FC_NT_NR):
            k0 = kt * FC_NT_NR
            _igemm_nt(np_, a + f0 * lda, lda, base, boff + k0, c + f0 * ldc + k0, ldc,
                      <int>min(FC_NT_MR, F - f0), <int>min(FC_NT_NR, K - k0))


cdef floating _sum(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return fc_sum_d(x, n)
    else:
        return fc_sum_s(x, n)


cdef bint _all_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return fc_all_finite_d(x, n)
    else:
        return fc_all_finite_s(x, n)


cdef void _split_plane(const floating *xc, floating *dst, Py_ssize_t q, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Hq, Py_ssize_t Wo,
                       Py_ssize_t kwq) noexcept nogil:
    """Plane q = (a*sw + b)*kwq + s of one channel: dst[q*Hq*Wo + u*Wo + v] = x_pad[u*sh + a, (v + s)*sw + b]
    (``Wo`` and ``kwq`` here are the plan's column width Wc and shift count ns)."""
    cdef Py_ssize_t a = q // (sw * kwq), bb = q // kwq % sw, jj = q % kwq, u, v, row, lo, hi
    cdef Py_ssize_t off = jj * sw + bb            # column of the padded input at ow = 0
    cdef floating *d
    cdef const floating *src
    lo = _valid_lo(pw, off, sw)
    hi = _valid_hi(W, pw, off, sw, Wo)
    if lo > Wo:
        lo = Wo
    if hi < lo:
        hi = lo
    for u in range(Hq):
        d = dst + (q * Hq + u) * Wo
        row = u * sh + a - ph
        if row < 0 or row >= H:
            memset(d, 0, Wo * sizeof(floating))
            continue
        src = xc + row * W
        for v in range(lo):
            d[v] = 0
        if sw == 1:
            memcpy(d + lo, src + lo + off - pw, (hi - lo) * sizeof(floating))
        elif sw == 2:  # a constant stride vectorises (seed conv2 float64: 3.4 -> 2.5 us a sample)
            for v in range(lo, hi):
                d[v] = src[2 * v + off - pw]
        else:
            for v in range(lo, hi):
                d[v] = src[v * sw + off - pw]
        for v in range(hi, Wo):
            d[v] = 0


cdef inline void _split_item(Py_ssize_t r, Py_ssize_t C, const floating *x, floating *xs, Py_ssize_t Sx,
                             _Plan g) noexcept nogil:
    """Item r = (sample, channel, plane) of a chunk's split into the phase planes (and the zero tail of each
    sample).  One item per plane, not per channel, so that a one-channel input (seed conv1: 8 shifted
    copies) splits between threads too."""
    cdef Py_ssize_t npl = g.npl, q = r % npl, nc = r // npl, n = nc // C, c = nc % C, cblock = g.cblock
    _split_plane(x + nc * g.H * g.W, xs + n * Sx + c * cblock, q, g.H, g.W, g.sh, g.sw, g.ph, g.pw, g.Hq,
                 g.Wc, g.ns)
    if c == C - 1 and q == npl - 1 and Sx > C * cblock:
        memset(xs + n * Sx + C * cblock, 0, (Sx - C * cblock) * sizeof(floating))


def _contiguous_tiles(cmap, Py_ssize_t NR):
    """Per tile of NR columns: 1 when the map sends it to NR consecutive outputs (vector stores)."""
    tiles = np.asarray(cmap).reshape(-1, NR)
    return np.ascontiguousarray(((tiles[:, 0] >= 0) & (np.diff(tiles, axis=1) == 1).all(axis=1)).astype(np.intc))


cdef class _Plan:
    """Sizes and index tables of the implicit GEMM for one geometry (see the comment above)."""
    cdef public Py_ssize_t C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo
    cdef public Py_ssize_t K, P, NR, Hq, Wq, khq, kwq, ns, npl, Wc, cblock, Ppad, Sx, ntiles, Hcov, Wcov
    cdef long[::1] boff       # K: offset of the view of term (c, i, j) in xs
    cdef long[::1] ymap       # Ppad: output index of column p, or -1 (dropped column, tile tail)
    # backward: dy grid per filter is Sd long: T leading zeros, Ho rows Wq wide (zeros past Wo), zeros
    cdef public Py_ssize_t PX, T, Sd, nph, ntx, mbc, tot_a
    cdef Py_ssize_t[::1] kha, kwb           # per phase (a, b): taps i' with i'*sh+a < kh, j' with j'*sw+b < kw
    cdef Py_ssize_t[::1] kab, aoff, toff    # per phase: terms F*kha*kwb, offset of packed A, of its boff
    cdef long[::1] boffx      # terms (f, i', j') of every phase: offset into the dy grid
    cdef long[::1] cmapx      # nph * PX: dx index of phase-grid column p, or -1
    cdef Py_ssize_t[::1] xoff  # per phase: where its dx grid starts in the dy grid (after T)
    cdef int[::1] ycontig     # ntiles: tile of ymap is one contiguous run of outputs
    cdef int[::1] xcontig     # nph * ntx: same for the tiles of cmapx
    cdef tuple tune           # per operation (OP_*): the batch-1 thread choice
    # a reusable workspace (see workspace()); busy is only read and set while holding the GIL
    cdef object ws
    cdef unsigned char[::1] wsv
    cdef bint busy

    def __init__(self, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F, Py_ssize_t kh,
                 Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t NR):
        self.C, self.H, self.W, self.F, self.kh, self.kw = C, H, W, F, kh, kw
        self.sh, self.sw, self.ph, self.pw, self.NR = sh, sw, ph, pw, NR
        self.tune = (_Trials(), _Trials(), _Trials())
        self.Ho = (H + 2 * ph - kh) // sh + 1
        self.Wo = (W + 2 * pw - kw) // sw + 1
        self.K = C * kh * kw
        self.P = self.Ho * self.Wo
        self.khq = (kh + sh - 1) // sh
        self.kwq = (kw + sw - 1) // sw
        # phase planes keep the rows and columns some window reads: output (oh, ow) reads plane rows
        # oh + i//sh < Ho + khq - 1, which can be fewer than the padded input has at stride > 1 (seed
        # conv2: 10 of 11 each way; float32 tiles per sample 5 -> 4).  dx past them is zero.
        cdef Py_ssize_t Hq = min((H + 2 * ph + sh - 1) // sh, self.Ho + self.khq - 1)
        cdef Py_ssize_t Wq = min((W + 2 * pw + sw - 1) // sw, self.Wo + self.kwq - 1)
        self.Hq, self.Wq = Hq, Wq
        # dx rows >= Hcov and columns >= Wcov are in no window (the planes stop before them)
        self.Hcov, self.Wcov = min(H, Hq * sh - ph), min(W, Wq * sw - pw)
        if sw == 1 and 4 * Wq > 5 * self.Wo:
            # shifted copies pay when the grid would waste over a fifth of its columns (seed conv1:
            # 28 vs 21); at 3x3 pad 1 (34 vs 32) the 3x larger buffer cost more than it saved.
            self.ns, self.Wc = kw, self.Wo
        else:
            self.ns, self.Wc = 1, Wq
        cdef Py_ssize_t ns = self.ns, Wc = self.Wc
        self.npl = sh * sw * ns                # planes per input channel
        self.cblock = self.npl * Hq * Wc       # xs values per input channel
        self.Ppad = (self.Ho * Wc + NR - 1) // NR * NR
        self.ntiles = self.Ppad // NR
        self.boff = np.empty(self.K, dtype=np.int64)
        self.ymap = np.empty(self.Ppad, dtype=np.int64)
        cdef Py_ssize_t c, i, j, p, oh, ow
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    self.boff[(c * kh + i) * kw + j] = (
                        ((((c * sh + i % sh) * sw + j % sw) * ns + (j // sw if ns > 1 else 0)) * Hq + i // sh)
                        * Wc + (0 if ns > 1 else j // sw))
        for p in range(self.Ppad):
            oh, ow = p // Wc, p % Wc
            self.ymap[p] = oh * self.Wo + ow if oh < self.Ho and ow < self.Wo else -1
        # views are read for the whole padded tile width
        self.Sx = max(C * self.cblock, int(np.max(self.boff)) + self.Ppad)

        # dx of phase (a, b) is computed on grid rows u with 0 <= u*sh + a - ph < H only: the grid of
        # phase q starts at row xoff[q] / Wq (offset xoff[q] after T), every phase on ntx tiles (the
        # most any needs).  The 5x5 stride-2 stem on 32x32 spent 3 of 27 tiles per phase on rows that
        # map to the padding.
        self.nph = sh * sw
        self.xoff = np.zeros(self.nph, dtype=np.intp)
        cdef Py_ssize_t q, a, bb, f, ii, jj, u, v, yy, xx, tot_t = 0, ulo, uhi
        self.PX = 0
        for q in range(self.nph):
            a = q // sw
            ulo = min(Hq, max(0, (ph - a + sh - 1) // sh))
            uhi = max(ulo, min(Hq, (H - 1 + ph - a) // sh + 1)) if H - 1 + ph - a >= 0 else ulo
            self.xoff[q] = ulo * Wq
            self.PX = max(self.PX, ((uhi - ulo) * Wq + NR - 1) // NR * NR)
        self.T = self.khq * Wq
        self.Sd = self.T + max(int(np.max(self.xoff)) + self.PX, (Hq * Wq + NR - 1) // NR * NR)
        self.ntx = self.PX // NR
        self.mbc = (C + FC_MR - 1) // FC_MR
        self.kha = np.zeros(self.nph, dtype=np.intp)
        self.kwb = np.zeros(self.nph, dtype=np.intp)
        self.kab = np.zeros(self.nph, dtype=np.intp)
        self.aoff = np.zeros(self.nph, dtype=np.intp)
        self.toff = np.zeros(self.nph, dtype=np.intp)
        self.tot_a = 0
        for q in range(self.nph):
            a, bb = q // sw, q % sw
            self.kha[q] = (kh - a + sh - 1) // sh if a < kh else 0
            self.kwb[q] = (kw - bb + sw - 1) // sw if bb < kw else 0
            self.kab[q] = F * self.kha[q] * self.kwb[q]
            self.aoff[q] = self.tot_a
            self.toff[q] = tot_t
            self.tot_a += self.mbc * FC_MR * self.kab[q]
            tot_t += self.kab[q]
        self.boffx = np.empty(max(1, tot_t), dtype=np.int64)
        self.cmapx = np.empty(self.nph * self.PX, dtype=np.int64)
        for q in range(self.nph):
            a, bb = q // sw, q % sw
            for f in range(F):
                for ii in range(self.kha[q]):
                    for jj in range(self.kwb[q]):
                        self.boffx[self.toff[q] + (f * self.kha[q] + ii) * self.kwb[q] + jj] = \
                            f * self.Sd - (ii * Wq + jj)
            for p in range(self.PX):
                u, v = (self.xoff[q] + p) // Wq, p % Wq
                yy = u * sh + a - ph
                xx = v * sw + bb - pw
                self.cmapx[q * self.PX + p] = yy * W + xx if (u < Hq and 0 <= yy < H and 0 <= xx < W) else -1

        self.ycontig = _contiguous_tiles(self.ymap, NR)
        self.xcontig = _contiguous_tiles(self.cmapx, NR)

    cdef void pack_dx_weights(self, const floating *w, floating *apx) noexcept nogil:
        """apx, phase by phase: panels of FC_MR channels of A[c, (f, i', j')] = w[f, c, i'*sh+a, j'*sw+b]."""
        cdef Py_ssize_t q, a, bb, kha, kwb, f, ii, jj, tt, m, i, c, kq
        cdef Py_ssize_t C = self.C, kh = self.kh, kw = self.kw, sh = self.sh, sw = self.sw, MR = FC_MR
        for q in range(self.nph):
            a, bb = q // sw, q % sw
            kha, kwb, kq = self.kha[q], self.kwb[q], self.kab[q]
            for f in range(self.F):
                for ii in range(kha):
                    for jj in range(kwb):
                        tt = (f * kha + ii) * kwb + jj
                        for m in range(self.mbc):
                            for i in range(MR):
                                c = m * MR + i
                                apx[self.aoff[q] + (m * kq + tt) * MR + i] = \
                                    w[((f * C + c) * kh + ii * sh + a) * kw + jj * sw + bb] if c < C else 0

    cdef _Trials trials(self, Py_ssize_t N, int nthreads, int op):
        """The thread choice of a batch-1 ``op`` (None for several samples or one thread: all threads)."""
        if N != 1 or nthreads <= 1:
            return None
        return <_Trials>self.tune[op]

    def batch1_choice(self):
        """{operation: _Trials.report()} for the operations tried at batch 1."""
        return {name: (<_Trials>self.tune[op]).report() for op, name in
                enumerate(("forward", "backward", "backward_dx")) if (<_Trials>self.tune[op]).calls}

    cdef Py_ssize_t chunk(self, Py_ssize_t N, Py_ssize_t budget, Py_ssize_t bytes_per_sample, int nthreads):
        """Samples per chunk of ``budget`` bytes (see IMPLICIT_CHUNK_BYTES)."""
        return max(1, min(N, max(budget // max(1, bytes_per_sample),
                                 CHUNK_SAMPLES_PER_THREAD * nthreads)))

    cdef unsigned char *workspace(self, Py_ssize_t nbytes, list keep):
        """A 64-byte aligned scratch buffer of ``nbytes`` (uninitialised), called with the GIL held.

        Up to WORKSPACE_CACHE_BYTES the plan keeps its buffer and hands it to one call at a time
        (``keep`` gets the plan: the caller calls release() when done); a concurrent call or a larger
        request gets a fresh array, kept alive in ``keep``.
        """
        cdef unsigned char[::1] v
        cdef Py_ssize_t addr
        if nbytes <= WORKSPACE_CACHE_BYTES and not self.busy:
            if self.ws is None or self.wsv.shape[0] < nbytes + 64:
                self.ws = np.empty(nbytes + 64, dtype=np.uint8)
                self.wsv = self.ws
            self.busy = True
            keep.append(self)
            v = self.wsv
        else:
            arr = np.empty(nbytes + 64, dtype=np.uint8)
            keep.append(arr)
            v = arr
        addr = <Py_ssize_t>&v[0]
        return &v[0] + ((-addr) & 63)

    cdef void release(self):
        self.busy = False


_plans = {}
cdef list _recent = []
cdef enum:
    RECENT_PLANS = 8


cdef _Plan _plan(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F, Py_ssize_t Cw, Py_ssize_t kh,
                 Py_ssize_t kw, stride, padding, Py_ssize_t NR):
    """The cached plan for this geometry (a few tables; built once per layer shape), after checking
    the shape relations the loops rely on."""
    cdef Py_ssize_t sh, sw, ph, pw
    sh, sw = stride
    ph, pw = padding
    if Cw != C or sh < 1 or sw < 1 or ph < 0 or pw < 0 or kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError("conv2d: inconsistent shapes reached the compiled kernel")
    # the few most recent plans are compared field by field (a training step cycles through one plan
    # per layer); building the dict key and hashing it cost ~0.2 us a call
    cdef _Plan p
    cdef Py_ssize_t i
    for i in range(len(_recent)):
        p = <_Plan>_recent[i]
        if (p.C == C and p.H == H and p.W == W and p.F == F and p.kh == kh and p.kw == kw and p.sh == sh
                and p.sw == sw and p.ph == ph and p.pw == pw and p.NR == NR):
            return p
    key = (C, H, W, F, kh, kw, sh, sw, ph, pw, NR)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= 256:
            _plans.clear()
        plan = _plans[key] = _Plan(*key)
    _recent.insert(0, plan)
    if len(_recent) > RECENT_PLANS:
        _recent.pop()
    return plan


cdef inline Py_ssize_t _al(Py_ssize_t nbytes) noexcept nogil:
    """nbytes rounded up to a multiple of 64 (each workspace part starts on a cache line)."""
    return (nbytes + 63) & ~(<Py_ssize_t>63)


cdef inline void _release(list keep):
    if keep and isinstance(keep[0], _Plan):
        (<_Plan>keep[0]).release()


def conv2d_forward(x, w, b, y, stride, padding, int nthreads):
    """y = conv2d(x, w) + b into the preallocated ``y``: C-contiguous ndarrays of one float dtype, ``b``
    None or (F,)."""
    if _is_double(x, "conv2d: x"):
        _forward(<double>0, x, w, b, y, stride, padding, nthreads)
    else:
        _forward(<float>0, x, w, b, y, stride, padding, nthreads)


cdef int _forward(floating tag, x, w, b, y, stride, padding, int nthreads) except -1:
    cdef int T = _typenum(tag)
    cdef Py_ssize_t xsh[4], wsh[4], ysh[4], bsh[1]
    cdef char *xd, *wd, *yd, *bd
    _view(x, T, 4, False, xsh, &xd, "conv2d: x")
    _view(w, T, 4, False, wsh, &wd, "conv2d: w")
    _view(y, T, 4, True, ysh, &yd, "conv2d: y")
    cdef const floating *xp = <const floating *>xd
    cdef const floating *wp = <const floating *>wd
    cdef floating *yp = <floating *>yd
    cdef _Plan g = _plan(xsh[1], xsh[2], xsh[3], wsh[0], wsh[1], wsh[2], wsh[3],
                         stride, padding, FC_NR_D if floating is double else FC_NR_S)
    cdef Py_ssize_t N = xsh[0], C = g.C, F = g.F, K = g.K, P = g.P, NR = g.NR, Sx = g.Sx
    cdef _Trials trial = g.trials(N, nthreads, OP_FORWARD)
    if trial is not None:
        nthreads = trial.threads(nthreads)
    if ysh[0] != N or ysh[1] != F or ysh[2] != g.Ho or ysh[3] != g.Wo:
        raise ValueError("conv2d_forward: output buffer has the wrong shape")
    cdef const floating *bptr = NULL
    cdef bint finite
    if b is not None:
        _view(b, T, 1, False, bsh, &bd, "conv2d: b")
        if bsh[0] != F:
            raise ValueError("conv2d_forward: bias length does not match the filters")
        bptr = <const floating *>bd
    if _winograd_fits(g.kh, g.kw, g.sh, g.sw, N, C, F, g.Ho, g.Wo):
        with nogil:
            finite = _all_finite(xp, N * C * g.H * g.W) and _all_finite(wp, F * K)
        if finite:
            _winograd(xp, N, C, g.H, g.W, wp, F, g.ph, g.pw, bptr, yp, g.Ho, g.Wo, nthreads)
            return 0
    cdef Py_ssize_t nb = g.chunk(N, IMPLICIT_CHUNK_BYTES, Sx * sizeof(floating), nthreads)
    cdef Py_ssize_t MR = FC_MR, mb = (F + FC_MR - 1) // FC_MR
    cdef Py_ssize_t xs_bytes = _al(nb * Sx * sizeof(floating))
    cdef list keep = []
    cdef unsigned char *ws = g.workspace(xs_bytes + mb * MR * K * sizeof(floating), keep)
    cdef floating *xs = <floating *>ws                    # nb x Sx: the phase-split samples
    cdef floating *apack = <floating *>(ws + xs_bytes)    # W in panels of MR rows
    cdef Py_ssize_t n0, cnt, r, n, c, t
    cdef Py_ssize_t H = g.H, W = g.W, sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, Hq = g.Hq, Wq = g.Wq
    cdef Py_ssize_t cblock = g.cblock, ntiles = g.ntiles, Wc = g.Wc, ns = g.ns, npl = g.npl
    cdef const long *boff = &g.boff[0]
    cdef const long *ymap = &g.ymap[0]
    cdef const int *ycontig = &g.ycontig[0]
    cdef Py_ssize_t ci, nchunks = (N + nb - 1) // nb
    try:
        with nogil:
            _pack_a(wp, K, 1, F, K, apack)
            if nthreads == 1:   # no OpenMP region: a one-thread region costs a syscall
                for ci in range(nchunks):
                    n0 = ci * nb
                    cnt = min(nb, N - n0)
                    for r in range(cnt * C * npl):
                        _split_item(r, C, xp + n0 * C * H * W, xs, Sx, g)
                    for t in range(cnt * ntiles * mb):
                        _nn_tile(t, ntiles, F, K, apack, xs, Sx, boff, yp + n0 * F * P, F * P, P,
                                 ymap, ycontig, NR, bptr)
            else:
                with parallel(num_threads=nthreads):
                    for ci in range(nchunks):
                        n0 = ci * nb
                        cnt = min(nb, N - n0)
                        if ci > 0:
                            fc_barrier()     # the previous chunk's tiles are done with xs
                        for r in prange(cnt * C * npl, schedule='static'):
                            _split_item(r, C, xp + n0 * C * H * W, xs, Sx, g)
                        fc_barrier()         # xs is complete
                        for t in prange(cnt * ntiles * mb, schedule='static'):
                            _nn_tile(t, ntiles, F, K, apack, xs, Sx, boff, yp + n0 * F * P, F * P, P,
                                     ymap, ycontig, NR, bptr)
    finally:
        _release(keep)
    return 0


# ------------------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) (fc_winograd.h): the forward of a 3x3 stride-1 convolution with enough channels
# both ways and enough outputs, and the dx of one (a 3x3 stride-1 correlation of dy with the flipped,
# transposed filters), for finite inputs (a NaN or an infinity in a 4x4 patch would reach all four outputs
# of its tile). Tiles of 2x2 outputs go in chunks of WINOGRAD_TILE_VECTORS * NR (one work item each); per
# chunk: V[xi] (C x chunk) for all 16 xi = (a, b) of the 4x4 transform from the input, M[xi] = U[xi] @
# V[xi] on the nn micro-kernel, then the 2x2 outputs from the 16 M[xi].  Every output is computed the same
# way on any thread count.  3x3 64->64 on 32x32, batch 32, float64, 2 threads: see the commits.

# Switch Winograd off (tests compare it with the implicit GEMM): every call then takes the other paths.
WINOGRAD = True
# Where it pays (2 threads, Zen 1, forward and backward against the implicit GEMM): 64 -> 64 channels on
# 512 tiles 1.16-1.62x, 32 -> 32 on 1,568 tiles 1.08-1.24x; 16 -> 16 channels on 1,568 tiles 0.83-1.07x,
# 32 -> 32 on 196 tiles 0.73-1.02x, 64 -> 64 on 64 tiles (one 16x16 image) 0.54-0.88x (the filter
# transform and the chunks' fixed costs).
WINOGRAD_MIN_CHANNELS = 32     # input and output channels, each
WINOGRAD_MIN_TILES = 512       # 2x2 output tiles in the call
cdef enum:
    WINOGRAD_TILE_VECTORS = 2  # tiles per chunk: this many nn tile widths


def winograd_fits(N, C, F, kh, kw, sh, sw, Ho, Wo):
    """Whether a forward of this geometry (C input, F output channels, output Ho x Wo) goes through
    Winograd when its inputs are finite; a dx goes through it when ``winograd_fits(N, F, C, kh, kw, sh,
    sw, H, W)`` and the padding is at most 2 each way."""
    return _winograd_fits(kh, kw, sh, sw, N, C, F, Ho, Wo)


cdef bint _winograd_fits(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t N,
                         Py_ssize_t C, Py_ssize_t F, Py_ssize_t Ho, Py_ssize_t Wo):
    return (WINOGRAD and kh == 3 and kw == 3 and sh == 1 and sw == 1 and C >= WINOGRAD_MIN_CHANNELS
            and F >= WINOGRAD_MIN_CHANNELS and N * ((Ho + 1) // 2) * ((Wo + 1) // 2) >= WINOGRAD_MIN_TILES)


cdef void _winograd(const floating *x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                    const floating *w, Py_ssize_t F, Py_ssize_t ph, Py_ssize_t pw, const floating *bias,
                    floating *y, Py_ssize_t Ho, Py_ssize_t Wo, int nthreads):
    """y (N x F x Ho x Wo) = the 3x3 stride-1 correlation of x (N x C x H x W, padding ph, pw) with w
    (F x C x 3 x 3), plus bias (or NULL)."""
    cdef Py_ssize_t NR = FC_NR_D if floating is double else FC_NR_S, MR = FC_MR
    cdef Py_ssize_t tp = WINOGRAD_TILE_VECTORS * NR, mb = (F + MR - 1) // MR
    cdef Py_ssize_t th = (Ho + 1) // 2, tw = (Wo + 1) // 2, ntile = N * th * tw
    cdef Py_ssize_t nchunk = (ntile + tp - 1) // tp, nt = max(1, nthreads)
    cdef Py_ssize_t fs = sizeof(floating)
    # per thread: V (16 planes of C x tp, ps apart), M (16 planes of F x tp, pm apart), the chunk's
    # outputs (4 x F x tp); per tile its patch's offset and mask, its output's offset and which of its 2 x
    # 2 outputs exist.  ps is one cache line more than a plane: at C * tp (12 KB for 64 channels in
    # float64) the planes fell into one set of L1 lines, and the input transform took 145 cycles a channel
    # and tile.
    cdef Py_ssize_t ps = C * tp + 64 // fs, pm = F * tp + 64 // fs
    cdef Py_ssize_t o_m = _al(16 * ps * fs), o_y = o_m + _al(16 * pm * fs), o_base = o_y + _al(4 * F * tp * fs)
    cdef Py_ssize_t o_mask = o_base + _al(tp * sizeof(long)), o_ybase = o_mask + _al(tp * sizeof(unsigned short))
    cdef Py_ssize_t o_yin = o_ybase + _al(tp * sizeof(long)), per = o_yin + _al(tp)
    up_arr = np.empty(16 * mb * C * MR * fs + 64, np.uint8)
    ws_arr = np.empty(nt * per + 64, np.uint8)
    cboff_arr = np.arange(C, dtype=np.int64) * tp
    ident_arr = np.arange(tp, dtype=np.int64)
    cdef unsigned char[::1] upv = up_arr, wsv = ws_arr
    cdef long[::1] cbv = cboff_arr, idv = ident_arr
    cdef floating *up = <floating *>(&upv[0] + ((-<Py_ssize_t>&upv[0]) & 63))
    cdef unsigned char *ws = &wsv[0] + ((-<Py_ssize_t>&wsv[0]) & 63)
    cdef const long *cboff = &cbv[0]
    cdef const long *ident = &idv[0]
    cdef Py_ssize_t q, t, tt, n, i, j, r, s, f, xi, mt, jt, t0, cnt, rem
    cdef unsigned char *mine
    cdef floating *v
    cdef floating *mx
    cdef floating *yb
    cdef floating *yo
    cdef long *base
    cdef long *ybase
    cdef unsigned short *mask
    cdef unsigned char *yin
    cdef unsigned int bits
    cdef floating bf
    with nogil:
        if floating is double:
            fc_wino_filter_d(w, F, C, MR, up)
        else:
            fc_wino_filter_s(w, F, C, MR, up)
        for q in prange(nchunk, schedule='static', num_threads=nthreads):
            mine = ws + threadid() * per
            v = <floating *>mine
            mx = <floating *>(mine + o_m)
            yb = <floating *>(mine + o_y)
            base = <long *>(mine + o_base)
            mask = <unsigned short *>(mine + o_mask)
            ybase = <long *>(mine + o_ybase)
            yin = <unsigned char *>(mine + o_yin)
            t0 = q * tp
            cnt = min(tp, ntile - t0)
            for t in range(cnt):
                tt = t0 + t
                n = tt // (th * tw)
                rem = tt % (th * tw)
                i = rem // tw
                j = rem % tw
                base[t] = n * C * H * W + (2 * i - ph) * W + (2 * j - pw)
                ybase[t] = n * F * Ho * Wo + 2 * i * Wo + 2 * j
                yin[t] = (2 * i + 1 < Ho) + 2 * (2 * j + 1 < Wo)   # its second row, column exist
                bits = 0
                for r in range(4):
                    if 0 <= 2 * i - ph + r < H:
                        for s in range(4):
                            if 0 <= 2 * j - pw + s < W:
                                bits = bits | (1u << (r * 4 + s))
                mask[t] = <unsigned short>bits
            if floating is double:
                fc_wino_input_d(x, H * W, W, C, base, mask, cnt, tp, ps, v)
            else:
                fc_wino_input_s(x, H * W, W, C, base, mask, cnt, tp, ps, v)
            for xi in range(16):
                for mt in range(mb):
                    for jt in range(WINOGRAD_TILE_VECTORS):
                        _igemm_nn(<int>C, up + (xi * mb + mt) * C * MR, v + xi * ps + jt * NR, cboff,
                                  mx + xi * pm + mt * MR * tp, tp, ident + jt * NR, 1, <int>min(MR, F - mt * MR),
                                  NULL)
            if floating is double:
                fc_wino_output_d(mx, pm, F * tp, yb)
            else:
                fc_wino_output_s(mx, pm, F * tp, yb)
            for f in range(F):
                bf = bias[f] if bias != NULL else 0
                for t in range(cnt):
                    yo = y + ybase[t] + f * Ho * Wo
                    yo[0] = yb[f * tp + t] + bf
                    if yin[t] & 2:
                        yo[1] = yb[(F + f) * tp + t] + bf
                    if yin[t] & 1:
                        yo[Wo] = yb[(2 * F + f) * tp + t] + bf
                        if yin[t] & 2:
                            yo[Wo + 1] = yb[(3 * F + f) * tp + t] + bf


cdef bint _pair_ok(object v, Py_ssize_t minimum, Py_ssize_t *out):
    """``v`` is an int or a tuple of two ints, each in [minimum, 2**30): store them (else False)."""
    if type(v) is int:
        if not (minimum <= v < (1 << 30)):
            return False
        out[0] = out[1] = v
        return True
    if type(v) is tuple and len(<tuple>v) == 2:
        a, b = v
        if type(a) is int and type(b) is int and minimum <= a < (1 << 30) and minimum <= b < (1 << 30):
            out[0], out[1] = a, b
            return True
    return False


cdef int _plain(object a, int ndim) noexcept:
    """The typenum of ``a`` when it is a C-contiguous float32/float64 ndarray with ``ndim`` non-empty
    dimensions, else -1."""
    if not cnp.PyArray_Check(a):
        return -1
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr), i
    if (t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT) or cnp.PyArray_NDIM(arr) != ndim \
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return -1
    for i in range(ndim):
        if cnp.PyArray_DIMS(arr)[i] < 1:
            return -1
    return t


cdef bint _plain_geometry(x, w, stride, padding, Py_ssize_t *s, Py_ssize_t *p, cnp.npy_intp *yshape):
    """The common case of ``ops.conv2d_*``: x and w plain arrays of one dtype whose geometry is valid;
    fills stride, padding and the output shape (else False: ops validates and explains)."""
    cdef int t = _plain(x, 4)
    if t < 0 or _plain(w, 4) != t or not _pair_ok(stride, 1, s) or not _pair_ok(padding, 0, p):
        return False
    cdef cnp.npy_intp *xs = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef cnp.npy_intp *ws = cnp.PyArray_DIMS(<cnp.ndarray>w)
    if ws[1] != xs[1] or ws[2] > xs[2] + 2 * p[0] or ws[3] > xs[3] + 2 * p[1]:
        return False
    yshape[0], yshape[1] = xs[0], ws[0]
    yshape[2] = (xs[2] + 2 * p[0] - ws[2]) // s[0] + 1
    yshape[3] = (xs[3] + 2 * p[1] - ws[3]) // s[1] + 1
    return True


def forward_plain(x, w, b, stride, padding, int nthreads):
    """``ops.conv2d_forward`` for plain arguments (see _plain_geometry), or None to validate in Python.
    Checking here costs ~0.2 us where the Python checks cost ~1.2 us."""
    cdef Py_ssize_t s[2], p[2]
    cdef cnp.npy_intp ysh[4]
    if not _plain_geometry(x, w, stride, padding, s, p, ysh):
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if b is not None and (_plain(b, 1) != t or cnp.PyArray_DIMS(<cnp.ndarray>b)[0] != ysh[1]):
        return None
    y = cnp.PyArray_EMPTY(4, ysh, t, 0)
    if t == cnp.NPY_DOUBLE:
        _forward(<double>0, x, w, b, y, (s[0], s[1]), (p[0], p[1]), nthreads)
    else:
        _forward(<float>0, x, w, b, y, (s[0], s[1]), (p[0], p[1]), nthreads)
    return y


def backward_plain(dy, x, w, bint need_dx, stride, padding, int nthreads):
    """``ops.conv2d_backward`` for plain arguments, or None to validate in Python."""
    cdef Py_ssize_t s[2], p[2]
    cdef cnp.npy_intp ysh[4]
    if not _plain_geometry(x, w, stride, padding, s, p, ysh):
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x), i
    if _plain(dy, 4) != t:
        return None
    for i in range(4):
        if cnp.PyArray_DIMS(<cnp.ndarray>dy)[i] != ysh[i]:
            return None
    dx = cnp.PyArray_EMPTY(4, cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0) if need_dx else None
    dw = cnp.PyArray_EMPTY(4, cnp.PyArray_DIMS(<cnp.ndarray>w), t, 0)
    db = cnp.PyArray_EMPTY(1, &ysh[1], t, 0)
    if t == cnp.NPY_DOUBLE:
        _backward(<double>0, dy, x, w, dx, dw, db, (s[0], s[1]), (p[0], p[1]), nthreads)
    else:
        _backward(<float>0, dy, x, w, dx, dw, db, (s[0], s[1]), (p[0], p[1]), nthreads)
    return dx, dw, db


def conv2d_backward(dy, x, w, dx, dw, db, stride, padding, int nthreads):
    """Fill ``dw``, ``db`` and, unless ``dx`` is None, ``dx`` (every element is written); all C-contiguous
    ndarrays of one float dtype."""
    if _is_double(x, "conv2d: x"):
        _backward(<double>0, dy, x, w, dx, dw, db, stride, padding, nthreads)
    else:
        _backward(<float>0, dy, x, w, dx, dw, db, stride, padding, nthreads)


cdef int _backward(floating tag, dy, x, w, dx_out, dw_out, db_out, stride, padding, int nthreads) except -1:
    cdef int T = _typenum(tag)
    cdef Py_ssize_t xsh[4], wsh[4], dysh[4], dxsh[4], dwsh[4], dbsh[1]
    cdef char *xd, *wd, *dyd, *dxd = NULL, *dwd, *dbd
    _view(x, T, 4, False, xsh, &xd, "conv2d: x")
    _view(w, T, 4, False, wsh, &wd, "conv2d: w")
    _view(dy, T, 4, False, dysh, &dyd, "conv2d: dy")
    _view(dw_out, T, 4, True, dwsh, &dwd, "conv2d: dw")
    _view(db_out, T, 1, True, dbsh, &dbd, "conv2d: db")
    cdef _Plan g = _plan(xsh[1], xsh[2], xsh[3], wsh[0], wsh[1], wsh[2], wsh[3],
                         stride, padding, FC_NR_D if floating is double else FC_NR_S)
    cdef Py_ssize_t N = xsh[0], C = g.C, H = g.H, W = g.W, F = g.F, kh = g.kh, kw = g.kw
    if (dysh[0] != N or dysh[1] != F or dysh[2] != g.Ho or dysh[3] != g.Wo
            or dwsh[0] != F or dwsh[1] != C or dwsh[2] != kh or dwsh[3] != kw or dbsh[0] != F):
        raise ValueError("conv2d_backward: buffers have the wrong shape")
    cdef bint need_dx = dx_out is not None
    if need_dx:
        _view(dx_out, T, 4, True, dxsh, &dxd, "conv2d: dx")
        if dxsh[0] != N or dxsh[1] != C or dxsh[2] != H or dxsh[3] != W:
            raise ValueError("conv2d_backward: dx buffer has the wrong shape")
    cdef const floating *xp = <const floating *>xd
    cdef const floating *wp = <const floating *>wd
    cdef const floating *dyp_in = <const floating *>dyd
    cdef floating *dxp = <floating *>dxd
    cdef floating *dwp = <floating *>dwd
    cdef floating *dbp = <floating *>dbd
    cdef bint finite
    with nogil:
        finite = _all_finite(xp, N * C * H * W)
        if finite and need_dx:
            finite = _all_finite(wp, F * C * kh * kw)
    if not finite:
        _backward_im2col(dy, x, w, dx_out, dw_out, db_out, g, nthreads)
        return 0
    # dx of a 3x3 stride-1 convolution is one too: dy, padded by 2 - p, correlated with the filters
    # flipped and transposed (C x F x 3 x 3), which Winograd computes with 2.25x fewer products; dW and db
    # then take the path below as for need_dx=False
    cdef floating[:, :, :, ::1] wt
    if (need_dx and g.ph <= 2 and g.pw <= 2 and _winograd_fits(kh, kw, g.sh, g.sw, N, F, C, H, W)
            and _all_finite(dyp_in, N * F * g.Ho * g.Wo)):
        wt = np.ascontiguousarray(np.asarray(w)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        _winograd(dyp_in, N, F, g.Ho, g.Wo, &wt[0, 0, 0, 0], C, 2 - g.ph, 2 - g.pw, NULL, dxp, H, W, nthreads)
        need_dx = False

    cdef int op = OP_BACKWARD_DX if need_dx else OP_BACKWARD
    cdef _Trials trial = g.trials(N, nthreads, op)
    if trial is not None:
        nthreads = trial.threads(nthreads)
    cdef Py_ssize_t K = g.K, Sx = g.Sx, Ppad = g.Ppad
    cdef Py_ssize_t Sd = g.Sd if need_dx else 0
    # dW reads dy on the plan's columns: its own buffer, or (grid layout with dx) the dx grid itself.
    cdef bint own_dyp = not (need_dx and g.ns == 1)
    cdef Py_ssize_t Sp = F * Ppad if own_dyp else 0, Sf = F * Sd
    cdef Py_ssize_t nb = g.chunk(N, nthreads * BACKWARD_CHUNK_BYTES, (Sx + Sp + Sf) * sizeof(floating), nthreads)
    cdef int nt = max(1, nthreads)
    # dW accumulators: one per thread when samples are split between threads; at batch 1 each thread
    # computes whole elements of dW (see _backward_implicit) straight into dw
    cdef int nslot = nt if N > 1 else 1
    cdef Py_ssize_t fs = sizeof(floating)
    cdef Py_ssize_t o_dyp = _al(nb * Sx * fs), o_dyf = o_dyp + _al(nb * Sp * fs)
    cdef Py_ssize_t o_dwl = o_dyf + _al(nb * Sf * fs)
    cdef Py_ssize_t o_apx = o_dwl + (_al(nslot * F * K * fs) if nslot > 1 else 0)
    cdef list keep = []
    cdef unsigned char *ws = g.workspace(o_apx + g.tot_a * fs, keep)
    cdef floating *xs = <floating *>ws                 # nb x Sx: the phase-split samples
    cdef floating *dyp = <floating *>(ws + o_dyp)      # nb x Sp: dy on the plan's columns (dW)
    cdef floating *dyf = <floating *>(ws + o_dyf)      # nb x Sf: dy on the dx grid
    # nslot x F x K: per-thread dW; a single slot is dw itself
    cdef floating *dwl = <floating *>(ws + o_dwl) if nslot > 1 else dwp
    cdef floating *apx = <floating *>(ws + o_apx)      # w packed phase by phase (dx)
    try:
        with nogil:
            if need_dx:
                g.pack_dx_weights(wp, apx)
            _backward_implicit(g, dyp_in, xp, dxp, dwp, dbp, N, nb, nt, nslot, own_dyp, need_dx, xs, dyp,
                               dyf, dwl, apx)
    finally:
        _release(keep)
    return 0


cdef void _backward_implicit(_Plan g, const floating *dy, const floating *x, floating *dx, floating *dwp,
                             floating *db, Py_ssize_t N, Py_ssize_t nb, int nt, int nslot, bint own_dyp,
                             bint need_dx, floating *xs, floating *dyp, floating *dyf, floating *dwl,
                             const floating *apx) noexcept nogil:
    """The parallel part of conv2d_backward on the workspace it laid out.

    dW work items: with several samples, whole samples or blocks of output positions, each thread adding
    into its own slot of ``dwl`` (nslot = nt).  At batch 1 (nslot = 1), ranges of FC_NT_MR x FC_NT_NR
    tiles of dW, each a dot product over every position written straight into dw: every element is
    then computed the same way whatever the thread count, so the batch-1 thread choice (_Plan.threads)
    never changes a bit."""
    cdef int nthreads = nt
    cdef Py_ssize_t C = g.C, H = g.H, W = g.W, F = g.F
    cdef Py_ssize_t K = g.K, P = g.P, NR = g.NR, Sx = g.Sx, Ho = g.Ho, Wo = g.Wo
    cdef Py_ssize_t sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, Hq = g.Hq, Wq = g.Wq
    cdef Py_ssize_t cblock = g.cblock, ns = g.ns, Wc = g.Wc, Ppad = g.Ppad, T = g.T, Hcov = g.Hcov, Wcov = g.Wcov
    cdef Py_ssize_t npl = g.npl, CP = C * g.npl     # split items per sample: one per plane of each channel
    cdef Py_ssize_t Sd = g.Sd if need_dx else 0, Sf = F * Sd, Sp = F * Ppad if own_dyp else 0
    cdef Py_ssize_t MR = FC_MR, mbc = g.mbc, nph = g.nph, ntx = g.ntx, PX = g.PX
    # dx items per phase: tiles x panels of FC_MR channels; one channel (a C = 1 panel would compute
    # FC_MR - 1 zero rows) goes FC_MR tiles per item (ng1 of them), then the remaining single tiles
    cdef Py_ssize_t ng1 = ntx // FC_MR if C == 1 else 0
    cdef Py_ssize_t nxq = ng1 + ntx % FC_MR if C == 1 else ntx * mbc
    cdef Py_ssize_t Sa = Ppad if own_dyp else Sd, Ta = 0 if own_dyp else T
    # dW dot products stop at the last vector holding a real column, not at the tile tail (seed conv2
    # float32: 112 of 128 columns)
    cdef Py_ssize_t L = FC_LANES_D if floating is double else FC_LANES_S
    cdef Py_ssize_t Pl = (Ho * Wc + L - 1) // L * L
    cdef const Py_ssize_t *kab = &g.kab[0]
    cdef const Py_ssize_t *aoff = &g.aoff[0]
    cdef const Py_ssize_t *toff = &g.toff[0]
    cdef const long *boffx = &g.boffx[0]
    cdef const long *cmapx = &g.cmapx[0]
    cdef const Py_ssize_t *xoff = &g.xoff[0]
    cdef const int *xcontig = &g.xcontig[0]
    cdef const long *boff = &g.boff[0]
    cdef Py_ssize_t n0, cnt, r, n, c, f, q, item, nhb, p0, blk, f0, k0, tid, t, rest, jt, m, mr, oh, HB
    cdef Py_ssize_t nfill, nx, spread, tile, tile_hi, tpi = 0
    cdef Py_ssize_t nkt = (K + FC_NT_NR - 1) // FC_NT_NR, ntt = (F + FC_NT_MR - 1) // FC_NT_MR * nkt
    cdef floating *d
    cdef Py_ssize_t ci, nchunks = (N + nb - 1) // nb
    with parallel(num_threads=nthreads):
        for ci in range(nchunks):
            n0 = ci * nb
            cnt = min(nb, N - n0)
            # dW items: whole samples (long dot products, few horizontal sums) unless there are too
            # few samples to keep every thread busy; then blocks of output positions.
            if nslot == 1 and cnt == 1:
                nhb = min(2 * nt, ntt)        # items of tpi whole dW tiles
                tpi = (ntt + nhb - 1) // nhb
                nhb = (ntt + tpi - 1) // tpi
                HB = 0
            else:
                nhb = (2 * nt + cnt - 1) // cnt
                if nhb > g.ntiles:
                    nhb = g.ntiles
                HB = ((Ppad + nhb - 1) // nhb + NR - 1) // NR * NR
                nhb = (Ppad + HB - 1) // HB
            # Work is ordered sample by sample and split statically, so the thread that fills a
            # sample's buffers is the one that reads them (they stay in its cache).
            nfill = cnt * (CP + F) + (nslot if n0 == 0 else 0)
            if ci > 0:
                fc_barrier()             # the previous chunk's items are done with the buffers
            for r in prange(nfill, schedule='static'):
                n = r // (CP + F)
                c = r % (CP + F)
                if n >= cnt:             # the per-thread dW accumulators, once per call
                    memset(dwl + (r - cnt * (CP + F)) * F * K, 0, F * K * sizeof(floating))
                elif c < CP:             # shifted phase planes (and the zero tail of each sample)
                    _split_item(n * CP + c, C, x + n0 * C * H * W, xs, Sx, g)
                    if need_dx and c % npl == 0 and (Hcov < H or Wcov < W):   # dx in no window
                        d = dx + ((n0 + n) * C + c // npl) * H * W
                        for oh in range(Hcov):
                            memset(d + oh * W + Wcov, 0, (W - Wcov) * sizeof(floating))
                        memset(d + Hcov * W, 0, (H - Hcov) * W * sizeof(floating))
                else:                    # dy rows for dW; dy on the dx grid
                    f = c - CP
                    if own_dyp:
                        d = dyp + n * Sp + f * Ppad
                        if Wc == Wo:
                            memcpy(d, dy + ((n0 + n) * F + f) * P, P * sizeof(floating))
                        else:
                            for oh in range(Ho):
                                memcpy(d + oh * Wc, dy + ((n0 + n) * F + f) * P + oh * Wo, Wo * sizeof(floating))
                                memset(d + oh * Wc + Wo, 0, (Wc - Wo) * sizeof(floating))
                        memset(d + Ho * Wc, 0, (Ppad - Ho * Wc) * sizeof(floating))
                    if need_dx:
                        d = dyf + n * Sf + f * Sd
                        memset(d, 0, T * sizeof(floating))
                        for oh in range(Ho):
                            memcpy(d + T + oh * Wq, dy + ((n0 + n) * F + f) * P + oh * Wo, Wo * sizeof(floating))
                            memset(d + T + oh * Wq + Wo, 0, (Wq - Wo) * sizeof(floating))
                        memset(d + T + Ho * Wq, 0, (Sd - T - Ho * Wq) * sizeof(floating))
            fc_barrier()                 # the buffers are filled, the accumulators zeroed
            nx = nph * nxq if need_dx else 0   # dx items per sample
            spread = (nhb + nx) // nhb
            for item in prange(cnt * (nhb + nx), schedule='static'):
                # Within a sample the nhb dW blocks are spread evenly among the dx items, so a
                # static split balances them even at batch 1.
                n = item // (nhb + nx)
                t = item % (nhb + nx)
                if t % spread == 0 and t // spread < nhb and HB == 0:
                    tile_hi = min(ntt, (t // spread + 1) * tpi)
                    for tile in range((t // spread) * tpi, tile_hi):
                        f0 = tile // nkt * FC_NT_MR
                        k0 = tile % nkt * FC_NT_NR
                        _igemm_nt(<int>Pl, (dyp + n * Sp if own_dyp else dyf + n * Sf) + f0 * Sa + Ta, Sa,
                                  xs + n * Sx, boff + k0, dwl + f0 * K + k0, K, <int>min(FC_NT_MR, F - f0),
                                  <int>min(FC_NT_NR, K - k0))
                elif t % spread == 0 and t // spread < nhb:
                    tid = threadid() if nslot > 1 else 0
                    p0 = (t // spread) * HB
                    blk = Pl - p0
                    if blk > HB:
                        blk = HB
                    _dw_tiles(<int>blk, (dyp + n * Sp if own_dyp else dyf + n * Sf) + Ta + p0, Sa,
                              xs + n * Sx + p0, boff, dwl + tid * F * K, K, F, K)
                else:
                    rest = t - min(nhb, t // spread + 1)
                    q = rest // nxq
                    rest = rest % nxq
                    if C == 1 and rest < ng1:    # FC_MR tiles of the one channel at once
                        jt = rest * MR
                        _igemm_n1(<int>kab[q], apx + aoff[q], dyf + n * Sf + T + xoff[q] + jt * NR,
                                  boffx + toff[q], dx + (n0 + n) * H * W, cmapx + q * PX + jt * NR,
                                  xcontig + q * ntx + jt)
                        continue
                    if C == 1:
                        jt = ng1 * MR + rest - ng1
                        m = 0
                    else:
                        jt = rest // mbc
                        m = rest % mbc
                    mr = C - m * MR
                    if mr > MR:
                        mr = MR
                    _igemm_nn(<int>kab[q], apx + aoff[q] + m * kab[q] * MR,
                              dyf + n * Sf + T + xoff[q] + jt * NR, boffx + toff[q],
                              dx + ((n0 + n) * C + m * MR) * H * W, H * W, cmapx + q * PX + jt * NR,
                              xcontig[q * ntx + jt], <int>mr, NULL)
        fc_barrier()                     # every dW item is done
        for r in prange(_finish_items(F * K, F, nslot > 1), schedule='static'):
            _finish_item(r, dwl, nslot, dwp, F * K, dy, N, F, P, db, nslot > 1)
