# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Gradient norms for clipping, and the pieces the clipped optimizer kernels run over.

A flat buffer holds the model's variables one after another; ``segments`` are their ``(start, stop)``
offsets.  ``fastconv.ops`` cuts every segment into pieces of at most ``CHUNK`` elements, rows
``(start, stop, segment)`` of an int64 array.  The pieces do not depend on the thread count, so the sums of
squares below are bit-identical on any number of threads: each piece's sum is taken in double precision
with four interleaved accumulators (element i of the piece goes to accumulator i % 4), the piece's result
is ``(a0 + a1) + (a2 + a3)``, and a segment's sum adds its pieces' results in order
(``fastconv.reference.gradient_sumsq`` performs the same operations).
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from fastconv._arrays cimport is_double, typenum, view

cnp.import_array()

CHUNK = 4096            # elements per piece: the unit of the reductions and of the update's work items
PARALLEL_MIN = 1 << 15  # from this many elements the pieces are split between the threads


cdef int read_pieces(object pieces, object denoms, int T, Py_ssize_t n, int mode,
                     const long long **pc, Py_ssize_t *count, char **dd, str what) except -1:
    """Check the (k, 3) int64 piece table against a buffer of n elements (and, for CLIP_NORM, the
    per-segment denominators of type T); give its pointer, k and the denominators' pointer."""
    cdef Py_ssize_t shape[2]
    cdef char *data
    cdef Py_ssize_t nd = 0, i
    view(pieces, cnp.NPY_INT64, 2, False, shape, &data, what + ": pieces")
    if shape[1] != 3:
        raise ValueError(f"{what}: pieces must have 3 columns (start, stop, segment)")
    cdef const long long *p = <const long long *>data
    dd[0] = NULL
    if mode == CLIP_NORM:
        view(denoms, T, 1, False, &nd, dd, what + ": denominators")
    for i in range(shape[0]):
        if p[3 * i] < 0 or p[3 * i] > p[3 * i + 1] or p[3 * i + 1] > n or p[3 * i + 2] < 0 \
                or (mode == CLIP_NORM and p[3 * i + 2] >= nd):
            raise ValueError(f"{what}: piece {i} lies outside the buffer or its segments")
    pc[0] = p
    count[0] = shape[0]
    return 0


def sumsq(g, pieces, partials, out, int nthreads):
    """Per-segment sums of squares of the flat gradient ``g`` over ``pieces`` into ``out`` (float64);
    ``partials`` (float64, one per piece) receives each piece's sum."""
    if is_double(g, "sumsq: grad"):
        _sumsq(<double>0, g, pieces, partials, out, nthreads)
    else:
        _sumsq(<float>0, g, pieces, partials, out, nthreads)


cdef int _sumsq(floating tag, g_in, pieces, partials_in, out_in, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, npart, nout, k, i
    cdef char *gd
    cdef char *qd
    cdef char *od
    cdef char *unused
    cdef const long long *pc
    view(g_in, T, -1, False, &n, &gd, "sumsq: grad")
    read_pieces(pieces, None, T, n, CLIP_NONE, &pc, &k, &unused, "sumsq")
    view(partials_in, cnp.NPY_DOUBLE, 1, True, &npart, &qd, "sumsq: partials")
    view(out_in, cnp.NPY_DOUBLE, 1, True, &nout, &od, "sumsq: out")
    if npart != k:
        raise ValueError("sumsq: partials must hold one value per piece")
    for i in range(k):
        if pc[3 * i + 2] >= nout:
            raise ValueError("sumsq: a piece names a segment beyond out")
    cdef const floating *g = <const floating *>gd
    cdef double *part = <double *>qd
    cdef double *seg = <double *>od
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt <= 1:
        with nogil:
            for i in range(k):
                part[i] = _piece_sumsq(g + pc[3 * i], pc[3 * i + 1] - pc[3 * i])
    else:
        for i in prange(k, schedule='static', num_threads=nt, nogil=True):
            part[i] = _piece_sumsq(g + pc[3 * i], pc[3 * i + 1] - pc[3 * i])
    with nogil:
        for i in range(nout):
            seg[i] = 0.0
        for i in range(k):         # in order: each segment's pieces are added first to last
            seg[pc[3 * i + 2]] = seg[pc[3 * i + 2]] + part[i]
    return 0


cdef double _piece_sumsq(const floating *g, Py_ssize_t n) noexcept nogil:
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, x
    cdef Py_ssize_t i, n4 = n - n % 4
    for i in range(0, n4, 4):
        x = g[i]
        a0 = a0 + x * x
        x = g[i + 1]
        a1 = a1 + x * x
        x = g[i + 2]
        a2 = a2 + x * x
        x = g[i + 3]
        a3 = a3 + x * x
    if n4 < n:
        x = g[n4]
        a0 = a0 + x * x
    if n4 + 1 < n:
        x = g[n4 + 1]
        a1 = a1 + x * x
    if n4 + 2 < n:
        x = g[n4 + 2]
        a2 = a2 + x * x
    return (a0 + a1) + (a2 + a3)


def clip_into(g, out, pieces, denoms, int mode, double a, int nthreads):
    """``out = clip(g)`` elementwise (the torch-form updates read the clipped copy; ``out`` may be ``g``)."""
    if is_double(g, "clip_into: grad"):
        _clip_into(<double>0, g, out, pieces, denoms, mode, a, nthreads)
    else:
        _clip_into(<float>0, g, out, pieces, denoms, mode, a, nthreads)


cdef int _clip_into(floating tag, g_in, out_in, pieces, denoms, int mode, double a, int nthreads) except -1:
    cdef int T = typenum(tag)
    cdef Py_ssize_t n, no, k, i
    cdef char *gd
    cdef char *od
    cdef char *dd
    cdef const long long *pc
    view(g_in, T, -1, False, &n, &gd, "clip_into: grad")
    view(out_in, T, -1, True, &no, &od, "clip_into: out")
    if no != n:
        raise ValueError("clip_into: out length differs from grad")
    if mode < CLIP_NONE or mode > CLIP_NORM:
        raise ValueError(f"clip_into: unknown clip mode {mode}")
    read_pieces(pieces, denoms, T, n, mode, &pc, &k, &dd, "clip_into")
    cdef const floating *g = <const floating *>gd
    cdef floating *o = <floating *>od
    cdef const floating *den = <const floating *>dd
    cdef floating fa = <floating>a
    cdef int nt = nthreads if n >= PARALLEL_MIN else 1
    if nt <= 1:
        with nogil:
            for i in range(k):
                _clip_piece(g, o, pc[3 * i], pc[3 * i + 1], mode, fa,
                            den[pc[3 * i + 2]] if mode == CLIP_NORM else 1)
    else:
        for i in prange(k, schedule='static', num_threads=nt, nogil=True):
            _clip_piece(g, o, pc[3 * i], pc[3 * i + 1], mode, fa,
                        den[pc[3 * i + 2]] if mode == CLIP_NORM else 1)
    return 0


cdef void _clip_piece(const floating *g, floating *o, Py_ssize_t s, Py_ssize_t e, int mode, floating a,
                      floating b) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(s, e):
        o[i] = clip_grad(g[i], mode, a, b)


def global_scale(double sumsq, double c, bint double_precision):
    """Keras's ``clip_by_global_norm`` factor ``c * min(1/norm, 1/c) + (norm - norm)`` in the parameter's
    precision (``norm = sqrt(sumsq)`` rounded to it; NaN propagates as in NumPy's minimum)."""
    if double_precision:
        return _global_scale(<double>0, sumsq, c)
    return _global_scale(<float>0, sumsq, c)


cdef double _global_scale(floating tag, double s, double c) noexcept:
    cdef floating norm = <floating>(sqrt(s) if s >= 0 else s)
    cdef floating inv = (<floating>1) / norm          # 1/0 = inf, as the tensor division
    cdef floating ic = <floating>(1.0 / c)
    cdef floating m = inv if (inv < ic or inv != inv) else ic
    return <floating>c * m + (norm - norm)


def norm_denominators(sums, double c, denoms):
    """``denoms[k] = max(sqrt(sums[k]) if sums[k] > 0 else sums[k], c)`` in the denominators' dtype
    (Keras's ``_clip_by_norm``; NaN propagates as in NumPy's maximum)."""
    cdef Py_ssize_t ns, nd
    cdef char *sd
    cdef char *dd
    view(sums, cnp.NPY_DOUBLE, 1, False, &ns, &sd, "norm_denominators: sums")
    if is_double(denoms, "norm_denominators: denoms"):
        view(denoms, cnp.NPY_DOUBLE, 1, True, &nd, &dd, "norm_denominators: denoms")
    else:
        view(denoms, cnp.NPY_FLOAT, 1, True, &nd, &dd, "norm_denominators: denoms")
    if nd != ns:
        raise ValueError("norm_denominators: one denominator per segment")
    if is_double(denoms, "norm_denominators: denoms"):
        _denoms(<double *>dd, <const double *>sd, ns, c)
    else:
        _denoms(<float *>dd, <const double *>sd, ns, c)


cdef void _denoms(floating *out, const double *sums, Py_ssize_t n, double c) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating l2, cf = <floating>c
    for k in range(n):
        l2 = <floating>(sqrt(sums[k]) if sums[k] > 0 else sums[k])
        out[k] = l2 if (l2 > cf or l2 != l2) else cf
