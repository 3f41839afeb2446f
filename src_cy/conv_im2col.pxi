# conv2d by im2col: the backward for non-finite x or w, whose products must match the reference's exactly.
# Included by _conv.pyx only (its cimports and C declarations are in scope here).
#
#     cols[n, k, p]   = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]    k = (c*kh + i)*kw + j, p = oh*Wo + ow
#     dW              = sum_n dy[n] (F x P) @ cols[n]^T         nt tiles into IM2COL_SLOTS sums, added in order
#     dcols[n]        = W^T (K x F) @ dy[n]                     nn tiles, then col2im scatters into dx

# Bytes of im2col buffer per chunk of samples: big enough to amortise each chunk's passes, small enough
# to stay in the outer caches.
CHUNK_BYTES = 4 << 20
# Output positions per dW work item (a multiple of every vector width).
DW_BLOCK = 128
# dW accumulators: each takes a fixed run of the work items, so the thread count changes no sum.
IM2COL_SLOTS = 8


cdef void _im2col(const floating *x, floating *cols, Py_ssize_t cnt, Py_ssize_t C, Py_ssize_t H,
                  Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dlw, Py_ssize_t Ho, Py_ssize_t Wo,
                  Py_ssize_t Ppad, int nthreads) noexcept nogil:
    """cols[n, (c*kh+i)*kw+j, oh*Wo+ow] = x_padded[n, c, oh*sh+i*dh, ow*sw+j*dlw] (ph rows and pw columns
    of zeros before x; the bottom and right padding only shape Ho, Wo), and zero in the padding
    columns P..Ppad-1 of each row: the dW tiles read them, and the dcols step of the chunk before may have
    left anything there (with an infinite w, NaN, which times the zero dy tail would be NaN in dW)."""
    cdef Py_ssize_t r, n, c, i, j, oh, ow, ih, lo, hi, jo, K = C * kh * kw
    cdef floating *dst
    cdef const floating *src
    for r in prange(cnt * C * kh, schedule='static', num_threads=nthreads, nogil=True):
        n = r // (C * kh)
        c = (r // kh) % C
        i = r % kh
        for j in range(kw):
            dst = cols + (n * K + (c * kh + i) * kw + j) * Ppad
            jo = j * dlw
            lo = _valid_lo(pw, jo, sw)
            hi = _valid_hi(W, pw, jo, sw, Wo)
            if lo > Wo:
                lo = Wo
            if hi < lo:
                hi = lo
            for oh in range(Ho):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= H:
                    for ow in range(Wo):
                        dst[oh * Wo + ow] = 0
                    continue
                src = x + ((n * C + c) * H + ih) * W
                for ow in range(lo):
                    dst[oh * Wo + ow] = 0
                if sw == 1:
                    for ow in range(lo, hi):
                        dst[oh * Wo + ow] = src[ow - pw + jo]
                else:
                    for ow in range(lo, hi):
                        dst[oh * Wo + ow] = src[ow * sw - pw + jo]
                for ow in range(hi, Wo):
                    dst[oh * Wo + ow] = 0
            for ow in range(Ho * Wo, Ppad):
                dst[ow] = 0


cdef void _col2im(const floating *dcols, floating *dx, Py_ssize_t cnt, Py_ssize_t C, Py_ssize_t H,
                  Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dlw, Py_ssize_t Ho, Py_ssize_t Wo,
                  Py_ssize_t Ppad, int nthreads) noexcept nogil:
    """dx[n, c] += scatter of dcols (the adjoint of _im2col); dx must start at zero."""
    cdef Py_ssize_t r, n, c, i, j, oh, ow, ih, lo, hi, jo, K = C * kh * kw
    cdef const floating *srcrow
    cdef floating *dxrow
    for r in prange(cnt * C, schedule='static', num_threads=nthreads, nogil=True):
        n = r // C
        c = r % C
        for i in range(kh):
            for j in range(kw):
                srcrow = dcols + (n * K + (c * kh + i) * kw + j) * Ppad
                jo = j * dlw
                lo = _valid_lo(pw, jo, sw)
                hi = _valid_hi(W, pw, jo, sw, Wo)
                for oh in range(Ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    dxrow = dx + ((n * C + c) * H + ih) * W
                    for ow in range(lo, hi):
                        dxrow[ow * sw - pw + jo] += srcrow[oh * Wo + ow]


def _backward_im2col(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                     const floating[:, :, :, ::1] w, dx_out, floating[:, :, :, ::1] dw,
                     floating[::1] db, _Plan g, int nthreads):
    """im2col backward (the path for non-finite inputs); conv2d_backward checked the shapes against the
    plan ``g``, whose geometry this uses."""
    cdef Py_ssize_t N = x.shape[0], C = g.C, H = g.H, W = g.W, F = g.F, kh = g.kh, kw = g.kw
    cdef Py_ssize_t sh = g.sh, sw = g.sw, ph = g.ph, pw = g.pw, Ho = g.Ho, Wo = g.Wo, dh = g.dh, dlw = g.dlw
    dtype = np.float64 if floating is double else np.float32
    cdef bint need_dx = dx_out is not None
    cdef floating[:, :, :, ::1] dx
    if need_dx:
        dx = dx_out
        dx[...] = 0
    cdef Py_ssize_t K = C * kh * kw, P = Ho * Wo, NR = tile_width(dtype)
    cdef Py_ssize_t Ppad = (P + NR - 1) // NR * NR
    cdef Py_ssize_t nb = max(1, min(N, CHUNK_BYTES // (K * Ppad * np.dtype(dtype).itemsize)))
    cdef floating[:, :, ::1] cols = np.zeros((nb, K, Ppad), dtype=dtype)
    cdef floating[:, :, ::1] dyp = np.zeros((nb, F, Ppad), dtype=dtype)
    # dW accumulators: IM2COL_SLOTS, each fed a fixed run of the work items by one thread (see below)
    cdef Py_ssize_t nslot = IM2COL_SLOTS
    cdef floating[:, :, ::1] dw_local = np.zeros((nslot, F, K), dtype=dtype)
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
    cdef Py_ssize_t n0, cnt, r, n, t, item, nhb, p0, blk, slot
    cdef Py_ssize_t HB = DW_BLOCK
    nhb = (Ppad + HB - 1) // HB
    for n0 in range(0, N, nb):
        cnt = min(nb, N - n0)
        with nogil:
            _im2col(&x[n0, 0, 0, 0], &cols[0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, dh, dlw, Ho, Wo,
                    Ppad, nthreads)
            for r in prange(cnt * F, schedule='static', num_threads=nthreads):
                memcpy(&dyp[0, 0, 0] + r * Ppad, &dy[n0, 0, 0, 0] + r * P, P * sizeof(floating))
            # the chunk's cnt * nhb dW items in nslot runs, each added in order into its slot by the one
            # thread that takes the slot: the sums do not depend on the thread count
            for slot in prange(nslot, schedule='static', num_threads=nthreads):
                for item in range(slot * cnt * nhb // nslot, (slot + 1) * cnt * nhb // nslot):
                    n = item // nhb
                    p0 = (item % nhb) * HB
                    blk = Ppad - p0
                    if blk > HB:
                        blk = HB
                    _dw_tiles(<int>blk, &dyp[n, 0, p0], Ppad, &cols[n, 0, p0], &krow[0], &dw_local[slot, 0, 0],
                              K, F, K)
            if need_dx:
                # dcols = W^T @ dy overwrites cols, which dW no longer needs for this chunk.
                for t in prange(cnt * ntl * mbk, schedule='static', num_threads=nthreads):
                    _nn_tile(t, ntl, K, F, &apack_t[0], &dyp[0, 0, 0], F * Ppad, &frow[0], &cols[0, 0, 0],
                             K * Ppad, Ppad, &ident[0], &ones[0], NR, NULL)
                _col2im(&cols[0, 0, 0], &dx[n0, 0, 0, 0], cnt, C, H, W, kh, kw, sh, sw, ph, pw, dh, dlw,
                        Ho, Wo, Ppad, nthreads)
    for r in prange(_finish_items(F * K, F, True), schedule='static', num_threads=nthreads, nogil=True):
        _finish_item(r, &dw_local[0, 0, 0], nslot, &dw[0, 0, 0, 0], F * K, &dy[0, 0, 0, 0], N, F, P, &db[0],
                     True)
