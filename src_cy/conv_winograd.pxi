# conv2d by Winograd F(2x2, 3x3).
# Included by _conv.pyx only (its cimports and C declarations are in scope here).

cdef extern from "fc_winograd.h" nogil:
    void fc_wino_filter_d(const double *w, long F, long C, long mr, double *up)
    void fc_wino_filter_s(const float *w, long F, long C, long mr, float *up)
    void fc_wino_input_d(const double *x, long HW, long W, long C, const long *base,
                         const unsigned short *mask, long nt, long tp, long ps, double *v)
    void fc_wino_input_s(const float *x, long HW, long W, long C, const long *base,
                         const unsigned short *mask, long nt, long tp, long ps, float *v)
    void fc_wino_output_d(const double *m, long pm, long n, double *yb)
    void fc_wino_output_s(const float *m, long pm, long n, float *yb)

# Winograd F(2x2, 3x3) (fc_winograd.h): the forward of a 3x3 stride-1 convolution with enough channels
# both ways and enough outputs, and the dx of one (a 3x3 stride-1 correlation of dy with the flipped,
# transposed filters), for finite inputs (a NaN or an infinity in a 4x4 patch would reach all four outputs
# of its tile). Tiles of 2x2 outputs go in chunks of WINOGRAD_TILE_VECTORS * NR (one work item each); per
# chunk: V[xi] (C x chunk) for all 16 xi = (a, b) of the 4x4 transform from the input, M[xi] = U[xi] @
# V[xi] on the nn micro-kernel, then the 2x2 outputs from the 16 M[xi].  Every output is computed the same
# way on any thread count.

# Switch Winograd off (tests compare it with the implicit GEMM): every call then takes the other paths.
WINOGRAD = True
# Where it beats the implicit GEMM: with fewer channels the transforms cost more than the products they
# save, and with fewer tiles the filter transform and the chunks' fixed costs are not amortised.
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
    # 2 outputs exist.  ps is one cache line more than a plane: with planes a power of two apart (C * tp
    # for 64 channels), the 16 planes the input transform writes at once map to the same L1 sets.
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
