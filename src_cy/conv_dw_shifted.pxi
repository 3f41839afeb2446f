# conv2d's dW and db without dx for layers of few terms (first layers), on the shifted layout.
# Included by _conv.pyx only (its cimports and C declarations are in scope here).
#
# On the shifted layout (_Plan.shifted_plan: column width Wc = Wo) the view of term t = (c, i, j) is one
# contiguous run of the P = Ho*Wo outputs, in dy's own order:  xs[n][boff[t] + p] = x_pad[n, c, oh*sh +
# i*dh, ow*sw + j] for p = oh*Wo + ow.  So
#     dW[f, t] = sum_n sum_p dy[n, f, p] * xs[n][boff[t] + p]      db[f] = sum_n sum_p dy[n, f, p] * 1
# are dot products of long rows, dy read where it lies (the implicit GEMM copies it onto its grid), and db
# rides along as one more row of B, a row of ones.  fc_conv_dw.h's tiles keep up to 28 of those sums (4 x 5
# for a 3x3 kernel's 9 terms and db) in vector accumulators; with so few terms the implicit GEMM's 4 x 4
# tiles leave lanes idle, and its copy of dy onto its grid costs more than the products.
#
# The sums go into DW_SLOTS vector accumulators (lanes apart), each fed a fixed run of the work items
# (samples, or blocks of positions when there are fewer samples than 2 * DW_THREADS) in order by the one
# thread that owns it; at the end the slots are added in order and the lanes summed.  At batch 1 the work
# items are the tiles, each one run over every position.  Either way the order of every sum depends on the
# shapes alone, never on the thread count.

# The most terms C * kh * kw this path takes (0 turns it off); xs holds ceil(kw / sw) copies of the input.
# One sample takes it up to DW_SHIFT_MAX_TERMS_BATCH1 terms: with more (seed 000's 8x8 conv1) the
# implicit GEMM on one thread is as fast, and two threads for the backward alone slow the one-thread
# forward beside it more than they save.
DW_SHIFT_MAX_TERMS = 75
DW_SHIFT_MAX_TERMS_BATCH1 = 32


cdef extern from "fc_conv_dw.h" nogil:
    int FC_DW_MR
    int fc_dw_max_nr(int mr)
    void fc_dw_tile_d(int mr, int nr, long np_, const double *a, long lda, const double *base, const long *boff,
                      double *acc, long ldacc, int init, const double *pf)
    void fc_dw_tile_s(int mr, int nr, long np_, const float *a, long lda, const float *base, const long *boff,
                      float *acc, long ldacc, int init, const float *pf)
    void fc_dw_lane_sums_d(const double *v, long n, double *out)
    void fc_dw_lane_sums_s(const float *v, long n, float *out)


cdef inline void _dw_tile(int mr, int nr, long np_, const floating *a, long lda, const floating *base,
                          const long *boff, floating *acc, long ldacc, int init,
                          const floating *pf) noexcept nogil:
    if floating is double:
        fc_dw_tile_d(mr, nr, np_, a, lda, base, boff, acc, ldacc, init, pf)
    else:
        fc_dw_tile_s(mr, nr, np_, a, lda, base, boff, acc, ldacc, init, pf)


cdef inline void _dw_lane_sums(const floating *v, long n, floating *out) noexcept nogil:
    if floating is double:
        fc_dw_lane_sums_d(v, n, out)
    else:
        fc_dw_lane_sums_s(v, n, out)


cdef bint _dw_shifted_fits(_Plan g, Py_ssize_t N, bint need_dx):
    """The shifted dW takes backwards without dx of at most DW_SHIFT_MAX_TERMS terms (at batch 1,
    DW_SHIFT_MAX_TERMS_BATCH1) that have a shifted layout (no column dilation)."""
    return (not need_dx and g.K <= (DW_SHIFT_MAX_TERMS_BATCH1 if N == 1 else DW_SHIFT_MAX_TERMS)
            and g.K <= DW_SHIFT_MAX_TERMS and g.shifted_plan() is not None)


cdef int _dw_tile_rows(Py_ssize_t F, Py_ssize_t K1):
    """Rows of dy per tile (1 to FC_DW_MR): the fewest cycles, counting per vector step of a tile its
    FMAs and twice its loads (most cross a cache line), two of each per cycle."""
    cdef int mr, best = 1
    cdef Py_ssize_t nf, nk, cost, best_cost = -1, nr
    for mr in range(1, FC_DW_MR + 1):
        if mr > F:
            break
        nf = (F + mr - 1) // mr
        nk = (K1 + fc_dw_max_nr(mr) - 1) // fc_dw_max_nr(mr)
        nr = (K1 + nk - 1) // nk
        cost = nf * nk * max(mr * nr, 2 * (mr + nr))
        if best_cost < 0 or cost < best_cost:
            best, best_cost = mr, cost
    return best


cdef inline void _dw_fill(_Plan s, const floating *xn, floating *xs) noexcept nogil:
    """xs = the shifted planes of one sample on plan ``s`` (their zero tail included)."""
    cdef Py_ssize_t q
    for q in range(s.C * s.npl):
        _split_item(q, s.C, xn, xs, s.Sx, s)


cdef int _backward_dw_shifted(_Plan g, const floating *dy, const floating *xp, floating *dwp, floating *dbp,
                              Py_ssize_t N, int nthreads) except -1:
    """dW and db (no dx) of finite x by the dot products above; ``g`` is the call's plan."""
    cdef _Plan s = g.shifted_plan()
    cdef Py_ssize_t C = g.C, H = g.H, W = g.W, F = g.F, K = g.K, K1 = g.K + 1, P = g.P
    cdef Py_ssize_t L = FC_LANES_D if floating is double else FC_LANES_S
    cdef Py_ssize_t Pl = (P + L - 1) // L * L
    # a thread's sample: its planes, then the ones row (db's), on a cache line
    cdef Py_ssize_t Sxa = (s.Sx + 15) // 16 * 16, Sxo = Sxa + (Pl + 15) // 16 * 16
    cdef Py_ssize_t E = F * K1                 # accumulators (lanes apart): dW's, then db's column
    cdef int mr = _dw_tile_rows(F, K1)
    cdef Py_ssize_t nk = (K1 + fc_dw_max_nr(mr) - 1) // fc_dw_max_nr(mr)
    cdef Py_ssize_t nf = (F + mr - 1) // mr, ntt = nf * nk
    cdef Py_ssize_t fs = sizeof(floating)
    # work items: at batch 1 the tiles; else samples, each cut into nhb blocks of HB positions (a
    # multiple of the vector width) when the samples are too few to share between DW_THREADS threads
    cdef Py_ssize_t nhb = 1, HB = Pl, nitems, nslot
    if N == 1:
        nitems, nslot = ntt, 1
    else:
        nhb = min((2 * DW_THREADS + N - 1) // N, Pl // L)
        HB = ((Pl + nhb - 1) // nhb + L - 1) // L * L
        nhb = (P + HB - 1) // HB
        nitems, nslot = N * nhb, DW_SLOTS
    cdef int nt = <int>max(1, min(nthreads, nitems if N == 1 else nslot))
    cdef Py_ssize_t o_acc = _al(nt * Sxo * fs), o_sum = o_acc + _al(nslot * E * L * fs)
    cdef Py_ssize_t o_kt = o_sum + _al(E * fs), o_boff = o_kt + _al((nk + 1) * sizeof(Py_ssize_t))
    cdef list keep = []
    cdef unsigned char *ws = g.workspace(o_boff + K1 * sizeof(long), keep)
    cdef floating *xs = <floating *>ws                # nt x Sxo: each thread's sample
    cdef floating *acc = <floating *>(ws + o_acc)     # nslot x E x L
    cdef floating *sums = <floating *>(ws + o_sum)    # E: the finished sums
    cdef Py_ssize_t *kt = <Py_ssize_t *>(ws + o_kt)   # nk + 1: the first term of each column tile
    cdef long *boff = <long *>(ws + o_boff)           # K1: the rows of B in a sample (the ones row last)
    cdef Py_ssize_t i = 0, j
    for j in range(K):
        boff[j] = s.boff[j]
    boff[K] = Sxa
    for i in range(nk + 1):
        kt[i] = i * K1 // nk
    # private to each thread in the parallel region (Cython makes them firstprivate: initialised here)
    cdef Py_ssize_t r = 0, slot = 0, item = 0, lo = 0, hi = 0, n = 0, last = -1, p0 = 0, blk = 0
    cdef Py_ssize_t tile = 0, f0 = 0, t0 = 0, e = 0, f = 0, t = 0, ngrp = (E + 15) // 16
    cdef floating *mine = NULL
    cdef floating *sl = NULL
    cdef const floating *pf = NULL
    cdef fc_range share
    share.lo = share.hi = 0
    try:
        with nogil, parallel(num_threads=nt):
            mine = xs + threadid() * Sxo
            for i in range(Pl):
                mine[Sxa + i] = 1 if i < P else 0
            last = -1
            if N == 1:
                share = fc_share(ntt)
                if share.hi > share.lo:
                    _dw_fill(s, xp, mine)
                for tile in range(share.lo, share.hi):
                    f0 = tile // nk * mr
                    t0 = kt[tile % nk]
                    _dw_tile(<int>min(mr, F - f0), <int>(kt[tile % nk + 1] - t0), P, dy + f0 * P, P, mine,
                             boff + t0, acc + (f0 * K1 + t0) * L, K1, 1, NULL)
            else:
                share = fc_share(nslot)
                for slot in range(share.lo, share.hi):
                    lo = slot * nitems // nslot
                    hi = (slot + 1) * nitems // nslot
                    sl = acc + slot * E * L
                    for item in range(lo, hi):
                        n = item // nhb
                        p0 = item % nhb * HB
                        blk = min(HB, P - p0)
                        if n != last:
                            _dw_fill(s, xp + n * C * H * W, mine)
                            last = n
                        for tile in range(ntt):
                            f0 = tile // nk * mr
                            t0 = kt[tile % nk]
                            # the last column tile of a row tile fetches the next rows of dy
                            pf = NULL
                            if tile % nk == nk - 1 and (f0 + mr < F or n + 1 < N):
                                pf = dy + (n * F + f0 + mr) * P + p0
                            _dw_tile(<int>min(mr, F - f0), <int>(kt[tile % nk + 1] - t0), blk,
                                     dy + (n * F + f0) * P + p0, P, mine + p0, boff + t0,
                                     sl + (f0 * K1 + t0) * L, K1, item == lo, pf)
            fc_barrier()                 # every slot is complete
            # the slots in order (an empty run left its slot unwritten), then the lanes, 16 sums at a time
            share = fc_share(ngrp)
            for r in range(share.lo, share.hi):
                lo = r * 16
                hi = min(E, lo + 16)
                if nslot > 1:
                    t = 0
                    for slot in range(nslot):
                        if (slot + 1) * nitems // nslot > slot * nitems // nslot:
                            sl = acc + slot * E * L
                            if t == 0:
                                for e in range(lo * L, hi * L):
                                    acc[e] = sl[e]
                            else:
                                for e in range(lo * L, hi * L):
                                    acc[e] = acc[e] + sl[e]
                            t = t + 1
                _dw_lane_sums(acc + lo * L, hi - lo, sums + lo)
                f = lo // K1
                t = lo % K1
                for e in range(lo, hi):
                    if t < K:
                        dwp[f * K + t] = sums[e]
                        t = t + 1
                    else:
                        dbp[f] = sums[e]
                        f = f + 1
                        t = 0
    finally:
        _release(keep)
    return 0
