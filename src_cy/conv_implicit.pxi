# conv2d by implicit GEMM: the path every finite input takes that Winograd does not.
# Included by _conv.pyx only (its cimports and C declarations are in scope here).
#
# The padded input is split into its stride phases, xq[c, a, b][u, v] = x_pad[c, u*sh+a, v*sw+b] for the
# phases a < min(sh, kh), b < min(sw, kw) that some window reads (Hq x Wq, cut to the rows and columns a
# window reads), which turns any stride into stride 1.  Each phase
# plane is stored ns times, shifted left by s = 0..ns-1 columns and cut to a width Wc:
# xs[c, a, b, s][u, v] = xq[c, a, b][u, v + s] (Hq x Wc).
# Output (oh, ow) is column p = oh*Wc + ow, and term k = (c, i, j) reads, for every p at once, the
# contiguous view of xs that starts at boff[k]:
#   shifted (sw == 1 and Wq > 1.25 Wo; the forward of few channels at any stride, _Plan.forward_plan):
#       ns = ceil(kw / sw), Wc = Wo -- xs[c, i%sh, j%sw, j//sw][oh + i//sh, ow]: no wasted column, every
#       tile but the last a run of consecutive outputs, and xs is only ns times the input (an im2col is
#       kh*kw times);
#   grid (otherwise): ns = 1, Wc = Wq -- xq[c, i%sh, j%sw][oh + i//sh, ow + j//sw]: columns ow >= Wo are
#       computed and dropped (the output map sends them nowhere), and xs is the size of the input.
# y = W @ views and dW = dy_on_columns @ views^T (dy zero on dropped columns) read those views.  dx goes
# phase by phase: dx at phase (a, b) is the product of w's taps of that phase with shifted views of dy
# laid out on a Wq-wide grid with zero borders (a stride-1 "full" correlation).
# A dilation (dh, dw) only moves the taps: term (c, i, j) reads the phase and shift of padded offset
# (i*dh, j*dw) (the plan's tables); an asymmetric padding only changes how many rows and columns there are.
# Dropped columns and tile tails multiply stored zeros, so the fast path needs finite x (for dW) and
# finite w (for dx); anything else takes the im2col path (conv_im2col.pxi), whose products are exactly
# the reference's.


def _l2_bytes():
    """The L2 cache of one core in bytes, as the OS reports it (512 KiB where it does not say)."""
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (AttributeError, ValueError, OSError):
        size = 0
    return size if 64 << 10 <= size <= 64 << 20 else 512 << 10


# The implicit path's buffers per chunk: up to IMPLICIT_CHUNK_BYTES (forward) or BACKWARD_CHUNK_BYTES per
# thread (backward), but at least CHUNK_SAMPLES_PER_THREAD samples per thread, because splitting one
# sample between threads costs more than it saves.  The backward's buffers per thread are one L2 cache,
# because its second pass over them (dW and dx read what the fill wrote) runs faster from L2; the
# forward reads its buffer once per filter panel and keeps the larger chunk, which measured faster.
IMPLICIT_CHUNK_BYTES = 4 << 20
BACKWARD_CHUNK_BYTES = _l2_bytes()
CHUNK_SAMPLES_PER_THREAD = 4
# The backward's dW is summed into DW_SLOTS accumulators, each owned by one thread at a time and fed its
# work items in a fixed order, then the slots are added in order: the sums, and so the bits, do not
# depend on the thread count.  Its chunks and work items are sized for DW_THREADS threads whatever the
# thread count (they decide how the sums group), which is the layout that measured fastest on 2 cores.
cdef enum:
    DW_SLOTS = 8
    DW_THREADS = 2
    # Rows of dW products (a sample's outputs) shorter than DW_SHORT_ROW vectors are summed over several
    # samples, DW_RUN_VECTORS vectors or more, before their horizontal sums (which cost as much as a few
    # vectors of products); longer rows keep the per-sample items, whose buffers stay on one core
    DW_SHORT_ROW = 16
    DW_SHORT_MIN_F64_FILTERS = 32
    DW_RUN_VECTORS = 32


cdef void _split_plane(const floating *xc, floating *dst, Py_ssize_t q, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t swa, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t Hq,
                       Py_ssize_t Wo, Py_ssize_t kwq) noexcept nogil:
    """Plane q = (a*swa + b)*kwq + s of one channel: dst[q*Hq*Wo + u*Wo + v] = x_pad[u*sh + a, (v + s)*sw + b]
    (``Wo`` and ``kwq`` here are the plan's column width Wc and shift count ns, ``swa`` its column phases)."""
    cdef Py_ssize_t a = q // (swa * kwq), bb = q // kwq % swa, jj = q % kwq, u, v, row, lo, hi
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
        elif sw == 2:  # a constant stride lets the compiler vectorise the gather
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
    sample).  One item per plane, not per channel, so that a one-channel input (seed conv1's shifted
    copies) splits between threads too."""
    cdef Py_ssize_t npl = g.npl, q = r % npl, nc = r // npl, n = nc // C, c = nc % C, cblock = g.cblock
    _split_plane(x + nc * g.H * g.W, xs + n * Sx + c * cblock, q, g.H, g.W, g.sh, g.sw, g.swa, g.ph,
                 g.pw, g.Hq, g.Wc, g.ns)
    if c == C - 1 and q == npl - 1 and Sx > C * cblock:
        memset(xs + n * Sx + C * cblock, 0, (Sx - C * cblock) * sizeof(floating))


cdef int _forward_implicit(_Plan g, const floating *xp, const floating *wp, const floating *bptr, floating *yp,
                           Py_ssize_t N, int nthreads) except -1:
    """y (N x F x Ho x Wo) = W @ views of the phase-split x (+ bias, or none for NULL), chunk by chunk."""
    cdef Py_ssize_t C = g.C, F = g.F, K = g.K, P = g.P, NR = g.NR, Sx = g.Sx, H = g.H, W = g.W
    cdef Py_ssize_t ntiles = g.ntiles, npl = g.npl
    cdef Py_ssize_t nb = g.chunk(N, IMPLICIT_CHUNK_BYTES, Sx * sizeof(floating), nthreads)
    cdef Py_ssize_t MR = FC_MR, mb = (F + FC_MR - 1) // FC_MR
    cdef Py_ssize_t xs_bytes = _al(nb * Sx * sizeof(floating))
    cdef list keep = []
    cdef unsigned char *ws = g.workspace(xs_bytes + mb * MR * K * sizeof(floating), keep)
    cdef floating *xs = <floating *>ws                    # nb x Sx: the phase-split samples
    cdef floating *apack = <floating *>(ws + xs_bytes)    # W in panels of MR rows
    cdef const long *boff = &g.boff[0]
    cdef const long *ymap = &g.ymap[0]
    cdef const int *ycontig = &g.ycontig[0]
    cdef Py_ssize_t ci = 0, n0 = 0, cnt = 0, r = 0, t = 0, nchunks = (N + nb - 1) // nb
    cdef fc_range share
    share.lo = share.hi = 0
    try:
        with nogil:
            _pack_a(wp, K, 1, F, K, apack)
            if nthreads == 1:   # no OpenMP region: even a one-thread region costs a system call
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
                            fc_barrier()     # every thread is done reading the previous chunk's xs
                        share = fc_share(cnt * C * npl)
                        for r in range(share.lo, share.hi):
                            _split_item(r, C, xp + n0 * C * H * W, xs, Sx, g)
                        fc_barrier()         # xs is complete
                        share = fc_share(cnt * ntiles * mb)
                        for t in range(share.lo, share.hi):
                            _nn_tile(t, ntiles, F, K, apack, xs, Sx, boff, yp + n0 * F * P, F * P, P,
                                     ymap, ycontig, NR, bptr)
    finally:
        _release(keep)
    return 0


cdef int _backward_implicit(_Plan g, const floating *dy, const floating *xp, const floating *wp, floating *dxp,
                            floating *dwp, floating *dbp, Py_ssize_t N, bint need_dx, int nthreads) except -1:
    """dW, db and (``need_dx``) dx by implicit GEMM: lays out the workspace, then runs _backward_parallel."""
    cdef Py_ssize_t F = g.F, K = g.K, Sx = g.Sx, Ppad = g.Ppad
    cdef Py_ssize_t Sd = g.Sd if need_dx else 0
    # dW reads dy on the plan's columns: its own buffer, or (grid layout with dx) the dx grid itself.
    cdef bint own_dyp = not (need_dx and g.ns == 1)
    cdef Py_ssize_t Sp = F * Ppad if own_dyp else 0, Sf = F * Sd
    cdef Py_ssize_t nb = g.chunk(N, DW_THREADS * BACKWARD_CHUNK_BYTES, (Sx + Sp + Sf) * sizeof(floating),
                                 DW_THREADS)
    cdef int nt = max(1, nthreads)
    # dW accumulators: DW_SLOTS when there are several samples; else (batch 1, or samples whose rows are
    # short and whose chunk fits its budget: small maps) each thread computes whole elements of dW (see
    # _backward_parallel) straight into dw
    cdef Py_ssize_t L = FC_LANES_D if floating is double else FC_LANES_S
    # (in float64 only with 32 filters or more: below, the per-sample items measured faster)
    cdef bint short_rows = (floating is float or g.F >= DW_SHORT_MIN_F64_FILTERS) and \
        (g.Ho * g.Wc + L - 1) // L < DW_SHORT_ROW and \
        nb * (Sx + Sp + Sf) * sizeof(floating) <= DW_THREADS * BACKWARD_CHUNK_BYTES
    cdef int nslot = DW_SLOTS if N > 1 and not short_rows else 1
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
            _backward_parallel(g, dy, xp, dxp, dwp, dbp, N, nb, nt, nslot, own_dyp, need_dx, xs, dyp,
                               dyf, dwl, apx)
    finally:
        _release(keep)
    return 0


cdef inline void _dx_item(_Plan g, Py_ssize_t n, Py_ssize_t rest, Py_ssize_t n0, Py_ssize_t C, Py_ssize_t ng1,
                          Py_ssize_t nxq, Py_ssize_t mbc, const floating *apx, const floating *dyf, Py_ssize_t Sf,
                          floating *dx) noexcept nogil:
    """dx item ``rest`` of sample ``n`` of the chunk at ``n0``: phase q, then tiles x panels of FC_MR
    channels (one channel: FC_MR tiles at once for the first ng1 items)."""
    cdef Py_ssize_t q = rest // nxq, jt, m, mr, MR = FC_MR, NR = g.NR, H = g.H, W = g.W, T = g.T
    cdef Py_ssize_t PX = g.PX, ntx = g.ntx
    rest = rest % nxq
    if C == 1 and rest < ng1:
        jt = rest * MR
        _igemm_n1(<int>g.kab[q], apx + g.aoff[q], dyf + n * Sf + T + g.xoff[q] + jt * NR,
                  &g.boffx[0] + g.toff[q], dx + (n0 + n) * H * W, &g.cmapx[0] + q * PX + jt * NR,
                  &g.xcontig[0] + q * ntx + jt)
        return
    if C == 1:
        jt = ng1 * MR + rest - ng1
        m = 0
    else:
        jt = rest // mbc
        m = rest % mbc
    mr = C - m * MR
    if mr > MR:
        mr = MR
    _igemm_nn(<int>g.kab[q], apx + g.aoff[q] + m * g.kab[q] * MR, dyf + n * Sf + T + g.xoff[q] + jt * NR,
              &g.boffx[0] + g.toff[q], dx + ((n0 + n) * C + m * MR) * H * W, H * W,
              &g.cmapx[0] + q * PX + jt * NR, g.xcontig[q * ntx + jt], <int>mr, NULL)

cdef inline void _row_zero_tail(floating *dst, const floating *src, Py_ssize_t n, Py_ssize_t width) noexcept nogil:
    """dst[:n] = src[:n], dst[n:width] = 0: a loop, not memcpy and memset (rows of a small map are a few
    dozen bytes, less than the calls cost)."""
    cdef Py_ssize_t v
    for v in range(n):
        dst[v] = src[v]
    for v in range(n, width):
        dst[v] = 0


cdef inline void _fill_item(_Plan g, Py_ssize_t n, Py_ssize_t c, Py_ssize_t n0, const floating *x,
                            const floating *dy, floating *dx, floating *xs, floating *dyp, floating *dyf,
                            bint need_dx, bint own_dyp) noexcept nogil:
    """Item c of sample n of the chunk at n0 in _backward_parallel's buffers: c < C * npl a phase plane of
    xs (and the dx in no window, zero), else filter c - C * npl's dy rows for dW and on the dx grid."""
    cdef Py_ssize_t C = g.C, H = g.H, W = g.W, F = g.F, P = g.P, Ho = g.Ho, Wo = g.Wo, Wq = g.Wq, Wc = g.Wc
    cdef Py_ssize_t npl = g.npl, CP = C * g.npl, Ppad = g.Ppad, T = g.T, Hcov = g.Hcov, Wcov = g.Wcov
    cdef Py_ssize_t Sd = g.Sd if need_dx else 0, Sf = F * Sd, Sp = F * Ppad if own_dyp else 0, oh, f
    cdef floating *d
    if c < CP:                   # shifted phase planes (and the zero tail of each sample)
        _split_item(n * CP + c, C, x + n0 * C * H * W, xs, g.Sx, g)
        if need_dx and c % npl == 0:   # dx in no window: zero
            d = dx + ((n0 + n) * C + c // npl) * H * W
            if g.dx_gaps:        # stride > kernel: the phases no window reads lie all over the plane
                memset(d, 0, H * W * sizeof(floating))
            elif Hcov < H or Wcov < W:
                for oh in range(Hcov):
                    memset(d + oh * W + Wcov, 0, (W - Wcov) * sizeof(floating))
                memset(d + Hcov * W, 0, (H - Hcov) * W * sizeof(floating))
        return
    f = c - CP                   # dy rows for dW; dy on the dx grid
    if own_dyp:
        d = dyp + n * Sp + f * Ppad
        if Wc == Wo:
            memcpy(d, dy + ((n0 + n) * F + f) * P, P * sizeof(floating))
        else:
            for oh in range(Ho):
                _row_zero_tail(d + oh * Wc, dy + ((n0 + n) * F + f) * P + oh * Wo, Wo, Wc)
        memset(d + Ho * Wc, 0, (Ppad - Ho * Wc) * sizeof(floating))
    if need_dx:
        d = dyf + n * Sf + f * Sd
        memset(d, 0, T * sizeof(floating))
        for oh in range(Ho):
            _row_zero_tail(d + T + oh * Wq, dy + ((n0 + n) * F + f) * P + oh * Wo, Wo, Wq)
        memset(d + T + Ho * Wq, 0, (Sd - T - Ho * Wq) * sizeof(floating))


cdef void _backward_parallel(_Plan g, const floating *dy, const floating *x, floating *dx, floating *dwp,
                             floating *db, Py_ssize_t N, Py_ssize_t nb, int nt, int nslot, bint own_dyp,
                             bint need_dx, floating *xs, floating *dyp, floating *dyf, floating *dwl,
                             const floating *apx) noexcept nogil:
    """The parallel part of conv2d_backward on the workspace it laid out.

    dW work items: with several samples of short rows (fewer than DW_SHORT_ROW vectors) whose chunk
    fits its budget (nslot = 1), the FC_NT_MR x FC_NT_NR tiles of dW, each thread its share of them, each
    a dot product over the positions of ng samples at once (their lanes summed once), added into dw
    group after group.  Otherwise, with several samples, whole samples or blocks of output positions
    (sized for DW_THREADS threads, not the thread count), the chunk's items cut into nslot = DW_SLOTS
    contiguous runs, each run added in order into its own slot of ``dwl`` by the one thread that owns the
    slot; the slots are then summed in order.  At batch 1, ranges of tiles of dW, each a dot product over
    every position written straight into dw.  Either way every element of dW is summed in an order that
    the thread count does not change: the results are the same bits on any number of threads (and the
    batch-1 thread choice, _Plan.trials, never changes one).  Where a loop reads what the loop before it
    wrote, an explicit fc_barrier() orders them; the loops share their items with fc_share (the split of
    schedule(static))."""
    cdef int nthreads = nt
    cdef Py_ssize_t C = g.C, F = g.F
    cdef Py_ssize_t K = g.K, P = g.P, NR = g.NR, Sx = g.Sx, Ho = g.Ho
    cdef Py_ssize_t Wc = g.Wc, Ppad = g.Ppad, T = g.T
    cdef Py_ssize_t CP = C * g.npl     # split items per sample: one per plane of each channel
    cdef Py_ssize_t Sd = g.Sd if need_dx else 0, Sf = F * Sd, Sp = F * Ppad if own_dyp else 0
    cdef Py_ssize_t mbc = g.mbc, nph = g.nph, ntx = g.ntx
    # dx items per phase: tiles x panels of FC_MR channels; one channel (a C = 1 panel would compute
    # FC_MR - 1 zero rows) goes FC_MR tiles per item (ng1 of them), then the remaining single tiles
    cdef Py_ssize_t ng1 = ntx // FC_MR if C == 1 else 0
    cdef Py_ssize_t nxq = ng1 + ntx % FC_MR if C == 1 else ntx * mbc
    cdef Py_ssize_t Sa = Ppad if own_dyp else Sd, Ta = 0 if own_dyp else T
    # dW dot products stop at the last vector holding a real column, not at the tile tail
    cdef Py_ssize_t L = FC_LANES_D if floating is double else FC_LANES_S
    cdef Py_ssize_t Pl = (Ho * Wc + L - 1) // L * L
    cdef const long *boff = &g.boff[0]
    # private to each thread in the parallel region (Cython makes them firstprivate: initialised here)
    cdef Py_ssize_t r = 0, n = 0, item = 0, p0 = 0, blk = 0, f0 = 0, k0 = 0, slot = 0
    cdef Py_ssize_t t = 0, tile = 0, tile_hi = 0, grp = 0
    cdef Py_ssize_t n0 = 0, cnt = 0, nhb = 0, HB = 0, nfill = 0, nx = 0, spread = 0, tpi = 0
    cdef Py_ssize_t nkt = (K + FC_NT_NR - 1) // FC_NT_NR, ntt = (F + FC_NT_MR - 1) // FC_NT_MR * nkt
    # samples per dW tile pass (several samples, nslot = 1): enough for DW_RUN_VECTORS vectors per row
    cdef Py_ssize_t ng = max(1, (DW_RUN_VECTORS * L + Pl - 1) // Pl)
    cdef Py_ssize_t ci = 0, nchunks = (N + nb - 1) // nb
    cdef fc_range share
    share.lo = share.hi = 0
    with parallel(num_threads=nthreads):
        for ci in range(nchunks):
            n0 = ci * nb
            cnt = min(nb, N - n0)
            # dW items: whole samples (long dot products, few horizontal sums) unless there are too
            # few samples to keep every thread busy; then blocks of output positions.
            if N == 1:
                nhb = min(2 * nt, ntt)        # items of tpi whole dW tiles
                tpi = (ntt + nhb - 1) // nhb
                nhb = (ntt + tpi - 1) // tpi
                HB = 0
            else:
                nhb = (2 * DW_THREADS + cnt - 1) // cnt
                if nhb > g.ntiles:
                    nhb = g.ntiles
                HB = ((Ppad + nhb - 1) // nhb + NR - 1) // NR * NR
                nhb = (Ppad + HB - 1) // HB
            # Work is ordered sample by sample and split statically, so the thread that fills a
            # sample's buffers is the one that reads them (they stay in its cache).
            nfill = cnt * (CP + F) + (nslot if n0 == 0 else 0)
            if ci > 0:
                fc_barrier()             # the previous chunk's items are done with the buffers
            if nslot > 1 or N == 1:
                share = fc_share(nfill)
                for r in range(share.lo, share.hi):
                    n = r // (CP + F)
                    if n >= cnt:         # the per-thread dW accumulators, once per call
                        memset(dwl + (r - cnt * (CP + F)) * F * K, 0, F * K * sizeof(floating))
                    else:
                        _fill_item(g, n, r % (CP + F), n0, x, dy, dx, xs, dyp, dyf, need_dx, own_dyp)
            else:
                # whole dW tiles over the chunk's samples: the dy rows are shared out filter by filter,
                # as the tiles are, so that a thread's tiles mostly read the rows it wrote
                share = fc_share(cnt * CP + (1 if n0 == 0 else 0))
                for r in range(share.lo, share.hi):
                    if r == cnt * CP:    # dw starts from zero
                        memset(dwl, 0, F * K * sizeof(floating))
                    else:
                        _fill_item(g, r // CP, r % CP, n0, x, dy, dx, xs, dyp, dyf, need_dx, own_dyp)
                share = fc_share(cnt * F)
                for r in range(share.lo, share.hi):
                    _fill_item(g, r % cnt, CP + r // cnt, n0, x, dy, dx, xs, dyp, dyf, need_dx, own_dyp)
            fc_barrier()                 # the buffers are filled, the accumulators zeroed
            nx = nph * nxq if need_dx else 0   # dx items per sample
            if nslot > 1:
                # dW: the chunk's cnt * nhb items in nslot runs, each thread taking whole slots; then
                # the dx items (no barrier between: they write dx, the runs write their slots)
                nfill = cnt * nhb
                share = fc_share(nslot)
                for slot in range(share.lo, share.hi):
                    for item in range(slot * nfill // nslot, (slot + 1) * nfill // nslot):
                        n = item // nhb
                        p0 = (item % nhb) * HB
                        blk = Pl - p0
                        if blk > HB:
                            blk = HB
                        _dw_tiles(<int>blk, (dyp + n * Sp if own_dyp else dyf + n * Sf) + Ta + p0, Sa,
                                  xs + n * Sx + p0, boff, dwl + slot * F * K, K, F, K)
                share = fc_share(cnt * nx)
                for item in range(share.lo, share.hi):
                    _dx_item(g, item // nx, item % nx, n0, C, ng1, nxq, mbc, apx, dyf, Sf, dx)
            elif N > 1:
                # dW: each thread its whole tiles, over groups of ng samples (each group's rows stay in
                # cache while the tiles read them); then the dx items, as above
                share = fc_share(ntt)
                for grp in range((cnt + ng - 1) // ng):
                    n = grp * ng
                    for tile in range(share.lo, share.hi):
                        f0 = tile // nkt * FC_NT_MR
                        k0 = tile % nkt * FC_NT_NR
                        _igemm_ntm(<int>Pl, (dyp + n * Sp if own_dyp else dyf + n * Sf) + f0 * Sa + Ta, Sa,
                                   Sp if own_dyp else Sf, xs + n * Sx, Sx, boff + k0, <int>min(ng, cnt - n),
                                   dwl + f0 * K + k0, K, <int>min(FC_NT_MR, F - f0), <int>min(FC_NT_NR, K - k0))
                share = fc_share(cnt * nx)
                for item in range(share.lo, share.hi):
                    _dx_item(g, item // nx, item % nx, n0, C, ng1, nxq, mbc, apx, dyf, Sf, dx)
            else:
                # one sample: the nhb dW items (ranges of tpi whole tiles) spread evenly among the dx
                # items, so that a static split balances them
                spread = (nhb + nx) // nhb
                share = fc_share(nhb + nx)
                for t in range(share.lo, share.hi):
                    if t % spread == 0 and t // spread < nhb:
                        tile_hi = min(ntt, (t // spread + 1) * tpi)
                        for tile in range((t // spread) * tpi, tile_hi):
                            f0 = tile // nkt * FC_NT_MR
                            k0 = tile % nkt * FC_NT_NR
                            _igemm_nt(<int>Pl, (dyp if own_dyp else dyf) + f0 * Sa + Ta, Sa, xs, boff + k0,
                                      dwl + f0 * K + k0, K, <int>min(FC_NT_MR, F - f0),
                                      <int>min(FC_NT_NR, K - k0))
                    else:
                        _dx_item(g, 0, t - min(nhb, t // spread + 1), n0, C, ng1, nxq, mbc, apx, dyf, Sf, dx)
        fc_barrier()                     # every dW item is done
        share = fc_share(_finish_items(F * K, F, nslot > 1))
        for r in range(share.lo, share.hi):
            _finish_item(r, dwl, nslot, dwp, F * K, dy, N, F, P, db, nslot > 1)
