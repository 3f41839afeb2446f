# conv2d's plan and workspace: the sizes and index tables of the implicit GEMM for one geometry (see
# conv_implicit.pxi), cached per layer shape, each with a reusable scratch buffer and its batch-1 trials.
# Included by _conv.pyx only (its cimports and C declarations are in scope here).

# Workspaces up to this size are kept by the plan and reused (at batch 1, allocating and setting up the
# buffers would be a large part of a small convolution's time); larger ones are allocated per call.
WORKSPACE_CACHE_BYTES = 1 << 20
# The most elements a plan's buffers and tables may hold: far beyond any memory, and small enough that
# no index the loops form (an element count times the size of a double) overflows a Py_ssize_t.
cdef Py_ssize_t MAX_ELEMENTS = (<Py_ssize_t>1) << 48
# The forward takes the shifted layout (see _Plan.forward_plan) up to this many terms C * kh * kw:
# first layers (1 or 3 channels, kernels up to 5x5).  0 keeps every forward on its plan's layout.
FORWARD_SHIFT_MAX_TERMS = 75


cdef int _check_elements(str what, object n) except -1:
    """Refuse a geometry whose ``what`` would hold ``n`` (a Python int, so it cannot wrap) elements."""
    if n > MAX_ELEMENTS:
        raise MemoryError(f"conv2d: the {what} for this geometry would hold {n} elements")
    return 0


def _contiguous_tiles(cmap, Py_ssize_t NR):
    """Per tile of NR columns: 1 when the map sends it to NR consecutive outputs (vector stores)."""
    tiles = np.asarray(cmap).reshape(-1, NR)
    return np.ascontiguousarray(((tiles[:, 0] >= 0) & (np.diff(tiles, axis=1) == 1).all(axis=1)).astype(np.intc))


cdef class _Plan:
    """Sizes and index tables of the implicit GEMM for one geometry (see conv_implicit.pxi).

    An asymmetric padding (pb != ph or pr != pw) only changes the sizes (Ho, Hq, ...): the tables start
    from the top and left padding as always.  A dilation (dh, dw) moves tap (i, j) to padded offset
    (i*dh, j*dw): its phase is (i*dh % sh, j*dw % sw) and its shift in the phase plane (i*dh // sh,
    j*dw // sw); the phase of a dx grid lists its taps (tapi, tapj).  With dilation 1 these are the
    tables of i % sh, i // sh as before.  Winograd takes neither (``winograd_ok``)."""
    cdef public Py_ssize_t C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo
    cdef public Py_ssize_t pb, pr, dh, dlw  # bottom and right padding (ph, pw are top, left), dilation
    cdef public bint winograd_ok            # symmetric padding, no dilation: Winograd may take it
    cdef public Py_ssize_t sha, swa         # phases some window reads: min(sh, kh) rows, min(sw, kw) columns
    cdef public bint dx_gaps                # some dx positions lie in no phase (stride > kernel)
    cdef public Py_ssize_t K, P, NR, Hq, Wq, khq, kwq, ns, npl, Wc, cblock, Ppad, Sx, ntiles, Hcov, Wcov
    cdef long[::1] boff       # K: offset of the view of term (c, i, j) in xs
    cdef long[::1] ymap       # Ppad: output index of column p, or -1 (dropped column, tile tail)
    # backward: dy grid per filter is Sd long: T leading zeros, Ho rows Wq wide (zeros past Wo), zeros
    cdef public Py_ssize_t PX, T, Sd, nph, ntx, mbc, tot_a
    cdef Py_ssize_t[::1] kha, kwb           # per phase (a, b): the taps i with i*dh % sh == a, j likewise
    cdef Py_ssize_t[:, ::1] tapi, tapj      # per row phase a: those taps i in order (tapj: per column phase)
    cdef Py_ssize_t[::1] kab, aoff, toff    # per phase: terms F*kha*kwb, offset of packed A, of its boff
    cdef long[::1] boffx      # terms (f, i', j') of every phase: offset into the dy grid
    cdef long[::1] cmapx      # nph * PX: dx index of phase-grid column p, or -1
    cdef Py_ssize_t[::1] xoff  # per phase: where its dx grid starts in the dy grid (after T)
    cdef int[::1] ycontig     # ntiles: tile of ymap is one contiguous run of outputs
    cdef int[::1] xcontig     # nph * ntx: same for the tiles of cmapx
    cdef tuple tune           # per operation (OP_*): the batch-1 thread choice (a _runtime.Trials)
    cdef _Plan fwd            # the shifted twin (see shifted_plan), or None
    # a reusable workspace (see workspace()); busy is only read and set while holding the GIL
    cdef object ws
    cdef unsigned char[::1] wsv
    cdef bint busy

    def __init__(self, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F, Py_ssize_t kh,
                 Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t NR,
                 Py_ssize_t pb=-1, Py_ssize_t pr=-1, Py_ssize_t dh=1, Py_ssize_t dlw=1, int shifted=-1):
        self.C, self.H, self.W, self.F, self.kh, self.kw = C, H, W, F, kh, kw
        self.sh, self.sw, self.ph, self.pw, self.NR = sh, sw, ph, pw, NR
        self.pb, self.pr, self.dh, self.dlw = ph if pb < 0 else pb, pw if pr < 0 else pr, dh, dlw
        cdef bint plain = dh == 1 and dlw == 1 and self.pb == ph and self.pr == pw
        self.winograd_ok = plain
        # the trials' key ends with NR, as fastconv.runtime reads it
        key = (C, H, W, F, kh, kw, sh, sw, ph, pw) + (() if plain else (self.pb, self.pr, dh, dlw)) + (NR,)
        # the padded input is H + ph + pb high (2 * ph when symmetric), W + pw + pr wide; the dilated
        # kernel spans ekh x ekw of it (kh x kw without dilation)
        cdef Py_ssize_t Hp = H + ph + self.pb, Wp = W + pw + self.pr
        cdef Py_ssize_t ekh = dh * (kh - 1) + 1, ekw = dlw * (kw - 1) + 1
        self.tune = tuple(trials_for("conv2d", op, key) for op in ("forward", "backward", "backward_dx"))
        self.Ho = (Hp - ekh) // sh + 1
        self.Wo = (Wp - ekw) // sw + 1
        self.K = C * kh * kw
        self.P = self.Ho * self.Wo
        self.khq = (ekh + sh - 1) // sh
        self.kwq = (ekw + sw - 1) // sw
        # phase planes keep the rows and columns some window reads: output (oh, ow) reads plane rows
        # oh + i//sh < Ho + khq - 1, which can be fewer than the padded input has at stride > 1 (fewer
        # tiles per sample).  dx past them is zero.
        cdef Py_ssize_t Hq = min((Hp + sh - 1) // sh, self.Ho + self.khq - 1)
        cdef Py_ssize_t Wq = min((Wp + sw - 1) // sw, self.Wo + self.kwq - 1)
        self.Hq, self.Wq = Hq, Wq
        # dx rows >= Hcov and columns >= Wcov are in no window (the planes stop before them)
        self.Hcov, self.Wcov = min(H, Hq * sh - ph), min(W, Wq * sw - pw)
        if shifted < 0:
            # shifted copies pay when the grid would waste over a fifth of its columns (seed conv1); with
            # less waste (3x3, pad 1) the kw times larger buffer costs more than the columns it saves
            # (the forward of few channels decides otherwise: forward_plan).
            shifted = sw == 1 and 4 * Wq > 5 * self.Wo
        if dlw == 1 and shifted:   # one copy per column shift j // sw a tap reads: kw at stride 1
            self.ns, self.Wc = self.kwq, self.Wo
        else:
            self.ns, self.Wc = 1, Wq
        cdef Py_ssize_t ns = self.ns, Wc = self.Wc
        # Only phases a < kh, b < kw hold taps: at a stride larger than the kernel the others are never
        # read, so they get no plane (and no dx grid: their dx is zero).
        cdef Py_ssize_t sha = min(sh, ekh), swa = min(sw, ekw)
        self.sha, self.swa, self.dx_gaps = sha, swa, sh > ekh or sw > ekw
        _check_elements("phase planes", C * (<object>sha) * swa * ns * Hq * Wc)
        _check_elements("output columns", (<object>self.Ho) * Wc + NR)
        self.npl = sha * swa * ns              # planes per input channel
        self.cblock = self.npl * Hq * Wc       # xs values per input channel
        self.Ppad = (self.Ho * Wc + NR - 1) // NR * NR
        self.ntiles = self.Ppad // NR
        self.boff = np.empty(self.K, dtype=np.int64)
        self.ymap = np.empty(self.Ppad, dtype=np.int64)
        cdef Py_ssize_t c, i, j, p, oh, ow, ii, jj
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    ii, jj = i * dh, j * dlw      # the tap's offset in the padded input
                    self.boff[(c * kh + i) * kw + j] = (
                        ((((c * sha + ii % sh) * swa + jj % sw) * ns + (jj // sw if ns > 1 else 0)) * Hq + ii // sh)
                        * Wc + (0 if ns > 1 else jj // sw))
        for p in range(self.Ppad):
            oh, ow = p // Wc, p % Wc
            self.ymap[p] = oh * self.Wo + ow if oh < self.Ho and ow < self.Wo else -1
        # views are read for the whole padded tile width
        self.Sx = max(C * self.cblock, int(np.max(self.boff)) + self.Ppad)

        # dx of phase (a, b) is computed on grid rows u with 0 <= u*sh + a - ph < H only: the grid of
        # phase q starts at row xoff[q] / Wq (offset xoff[q] after T), every phase on ntx tiles (the
        # most any needs), so no tile is spent on rows that map to the padding.
        self.nph = sha * swa
        self.xoff = np.zeros(self.nph, dtype=np.intp)
        cdef Py_ssize_t q, a, bb, f, u, v, yy, xx, tot_t = 0, ulo, uhi
        self.PX = 0
        for q in range(self.nph):
            a = q // swa
            ulo = min(Hq, max(0, (ph - a + sh - 1) // sh))
            uhi = max(ulo, min(Hq, (H - 1 + ph - a) // sh + 1)) if H - 1 + ph - a >= 0 else ulo
            self.xoff[q] = ulo * Wq
            self.PX = max(self.PX, ((uhi - ulo) * Wq + NR - 1) // NR * NR)
        self.T = self.khq * Wq
        _check_elements("dx grids", (<object>self.nph) * self.PX + F * (self.T + Hq * Wq + self.PX + NR))
        self.Sd = self.T + max(int(np.max(self.xoff)) + self.PX, (Hq * Wq + NR - 1) // NR * NR)
        self.ntx = self.PX // NR
        self.mbc = (C + FC_MR - 1) // FC_MR
        # taps of each row phase a < sha (i*dh % sh == a) and column phase, in order
        self.tapi = np.zeros((sha, kh), dtype=np.intp)
        self.tapj = np.zeros((swa, kw), dtype=np.intp)
        nti, ntj = [0] * sha, [0] * swa
        for i in range(kh):
            a = i * dh % sh
            self.tapi[a, nti[a]] = i
            nti[a] += 1
        for j in range(kw):
            bb = j * dlw % sw
            self.tapj[bb, ntj[bb]] = j
            ntj[bb] += 1
        self.kha = np.zeros(self.nph, dtype=np.intp)
        self.kwb = np.zeros(self.nph, dtype=np.intp)
        self.kab = np.zeros(self.nph, dtype=np.intp)
        self.aoff = np.zeros(self.nph, dtype=np.intp)
        self.toff = np.zeros(self.nph, dtype=np.intp)
        self.tot_a = 0
        for q in range(self.nph):
            a, bb = q // swa, q % swa
            self.kha[q] = nti[a]
            self.kwb[q] = ntj[bb]
            self.kab[q] = F * self.kha[q] * self.kwb[q]
            self.aoff[q] = self.tot_a
            self.toff[q] = tot_t
            self.tot_a += self.mbc * FC_MR * self.kab[q]
            tot_t += self.kab[q]
        self.boffx = np.empty(max(1, tot_t), dtype=np.int64)
        self.cmapx = np.empty(self.nph * self.PX, dtype=np.int64)
        for q in range(self.nph):
            a, bb = q // swa, q % swa
            for f in range(F):
                for ii in range(self.kha[q]):
                    for jj in range(self.kwb[q]):
                        self.boffx[self.toff[q] + (f * self.kha[q] + ii) * self.kwb[q] + jj] = \
                            f * self.Sd - (self.tapi[a, ii] * dh // sh * Wq + self.tapj[bb, jj] * dlw // sw)
            for p in range(self.PX):
                u, v = (self.xoff[q] + p) // Wq, p % Wq
                yy = u * sh + a - ph
                xx = v * sw + bb - pw
                self.cmapx[q * self.PX + p] = yy * W + xx if (u < Hq and 0 <= yy < H and 0 <= xx < W) else -1

        self.ycontig = _contiguous_tiles(self.ymap, NR)
        self.xcontig = _contiguous_tiles(self.cmapx, NR)

    cdef void pack_dx_weights(self, const floating *w, floating *apx) noexcept nogil:
        """apx, phase by phase: panels of FC_MR channels of A[c, (f, i', j')] = w[f, c, tapi[a, i'], tapj[b, j']]
        (without dilation: w[f, c, i'*sh + a, j'*sw + b])."""
        cdef Py_ssize_t q, a, bb, kha, kwb, f, ii, jj, tt, m, i, c, kq
        cdef Py_ssize_t C = self.C, kh = self.kh, kw = self.kw, sh = self.sh, sw = self.sw, MR = FC_MR
        cdef Py_ssize_t swa = self.swa
        for q in range(self.nph):
            a, bb = q // swa, q % swa
            kha, kwb, kq = self.kha[q], self.kwb[q], self.kab[q]
            for f in range(self.F):
                for ii in range(kha):
                    for jj in range(kwb):
                        tt = (f * kha + ii) * kwb + jj
                        for m in range(self.mbc):
                            for i in range(MR):
                                c = m * MR + i
                                apx[self.aoff[q] + (m * kq + tt) * MR + i] = \
                                    w[((f * C + c) * kh + self.tapi[a, ii]) * kw + self.tapj[bb, jj]] if c < C else 0

    cdef _Plan forward_plan(self):
        """The plan the forward runs on: this one, or its shifted twin (made on first use) when the grid's
        tiles cross output rows and there are at most FORWARD_SHIFT_MAX_TERMS terms C * kh * kw.  With few
        terms the products are cheap and the grid's scattered stores (tiles that cross rows) dominate;
        the shifted layout's tiles are runs of consecutive outputs (vector stores), and its ns-fold copy
        of few channels stays small.  Each output sums its terms in the same order on either layout, so
        the twin changes no bit of y."""
        if self.ns != 1 or self.Wc == self.Wo or self.dlw != 1 or self.K > FORWARD_SHIFT_MAX_TERMS:
            return self
        return self.shifted_plan()

    cdef _Plan shifted_plan(self):
        """A plan of this geometry whose columns are the outputs (Wc == Wo): this one or its shifted twin
        (made on first use); None with a column dilation, which the shifted copies do not take."""
        if self.Wc == self.Wo:
            return self
        if self.dlw != 1:
            return None
        if self.fwd is None:
            self.fwd = _Plan(self.C, self.H, self.W, self.F, self.kh, self.kw, self.sh, self.sw, self.ph,
                             self.pw, self.NR, self.pb, self.pr, self.dh, self.dlw, shifted=1)
        return self.fwd

    cdef Trials trials(self, Py_ssize_t N, int nthreads, int op):
        """The thread choice of a batch-1 ``op`` (None for several samples or one thread: all threads)."""
        if N != 1 or nthreads <= 1:
            return None
        return <Trials>self.tune[op]

    def batch1_choice(self):
        """{operation: Trials.report()} for the operations tried at batch 1."""
        return {(<Trials>t).op: (<Trials>t).report() for t in self.tune if (<Trials>t).report() is not None}

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
    MAX_PADDING = 1 << 30   # keeps H + 2 * padding and the plan's products far from overflow
    MAX_DILATION = 1 << 30  # and dilation * (kh - 1), with kh at most H + 2 * padding


cdef _Plan _plan(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F, Py_ssize_t Cw, Py_ssize_t kh,
                 Py_ssize_t kw, stride, padding, dilation, Py_ssize_t NR):
    """The cached plan for this geometry (a few tables; built once per layer shape), after checking
    the shape relations the loops rely on.  ``padding`` is (ph, pw) or (top, bottom, left, right) and
    ``dilation`` (dh, dw) or None for (1, 1).  A stride that only ever yields one window is clamped (see
    one_window_stride), so any stride, however large, is taken."""
    cdef Py_ssize_t sh, sw, ph, pw, pb, pr, dh, dlw
    if type(padding) is tuple and len(<tuple>padding) == 2:
        ph, pw = padding
        pb, pr = ph, pw
    else:
        ph, pb, pw, pr = padding
    if dilation is None:
        dh = dlw = 1
    else:
        dh, dlw = dilation
    if (Cw != C or ph < 0 or pw < 0 or pb < 0 or pr < 0 or ph > MAX_PADDING or pw > MAX_PADDING
            or pb > MAX_PADDING or pr > MAX_PADDING or dh < 1 or dlw < 1 or dh > MAX_DILATION
            or dlw > MAX_DILATION or dh * (kh - 1) + 1 > H + ph + pb or dlw * (kw - 1) + 1 > W + pw + pr):
        raise ValueError("conv2d: inconsistent shapes reached the compiled kernel")
    sh = one_window_stride(stride[0], H + ph + pb - dh * (kh - 1) - 1)
    sw = one_window_stride(stride[1], W + pw + pr - dlw * (kw - 1) - 1)
    # the few most recent plans are compared field by field (a training step cycles through one plan
    # per layer), which is cheaper than building the dict key and hashing it
    cdef _Plan p
    cdef Py_ssize_t i
    for i in range(len(_recent)):
        p = <_Plan>_recent[i]
        if (p.C == C and p.H == H and p.W == W and p.F == F and p.kh == kh and p.kw == kw and p.sh == sh
                and p.sw == sw and p.ph == ph and p.pw == pw and p.NR == NR and p.pb == pb and p.pr == pr
                and p.dh == dh and p.dlw == dlw):
            return p
    key = (C, H, W, F, kh, kw, sh, sw, ph, pw, NR)
    if dh != 1 or dlw != 1 or pb != ph or pr != pw:   # earlier releases' plans keep their keys
        key += (pb, pr, dh, dlw)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= 256:
            _plans.clear()
        plan = _plans[key] = _Plan(*key)
    _recent.insert(0, plan)
    if len(_recent) > RECENT_PLANS:
        _recent.pop()
    return plan


cdef inline void _release(list keep):
    if keep and isinstance(keep[0], _Plan):
        (<_Plan>keep[0]).release()
