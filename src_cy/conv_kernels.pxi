# conv2d's shared pieces: the micro-kernels of conv_micro.h, typed for float and double, and the index
# helpers every algorithm uses.
# Included by _conv.pyx only (its cimports and C declarations are in scope here).

cdef extern from "conv_micro.h" nogil:
    const char *FC_BUILD_ISA
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
    void fc_igemm_ntm_d(int np_, const double *a, long lda, long sa, const double *base, long sb,
                        const long *boff, int ns, double *c, long ldc, int mr, int nr)
    void fc_igemm_ntm_s(int np_, const float *a, long lda, long sa, const float *base, long sb,
                        const long *boff, int ns, float *c, long ldc, int mr, int nr)
    double fc_sum_d(const double *x, long n)
    float fc_sum_s(const float *x, long n)
    int fc_all_finite_d(const double *x, long n)
    int fc_all_finite_s(const float *x, long n)


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


cdef void _igemm_ntm(int np_, const floating *a, long lda, long sa, const floating *base, long sb,
                     const long *boff, int ns, floating *c, long ldc, int mr, int nr) noexcept nogil:
    if floating is double:
        fc_igemm_ntm_d(np_, a, lda, sa, base, sb, boff, ns, c, ldc, mr, nr)
    else:
        fc_igemm_ntm_s(np_, a, lda, sa, base, sb, boff, ns, c, ldc, mr, nr)


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


cdef inline Py_ssize_t _al(Py_ssize_t nbytes) noexcept nogil:
    """nbytes rounded up to a multiple of 64 (each workspace part starts on a cache line)."""
    return (nbytes + 63) & ~(<Py_ssize_t>63)


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
