# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Reading ndarray and geometry arguments through the NumPy C API, shared by every kernel module (``cimport
fastconv._arrays``).

The kernels take raw pointers from ndarrays that ``fastconv.ops`` has validated; these helpers check the
few facts the loops rely on (type, byte order, contiguity, writability, dimensions) at C speed.  Typed
memoryview arguments with fused-type dispatch cost more per call than these checks.  Every check
requires native byte order: a byte-swapped array is never read as a native one.
"""
cimport numpy as cnp

cnp.import_array()


cdef inline bint _native_c_array(cnp.ndarray arr) noexcept:
    """C-contiguous, in native byte order."""
    return cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISNOTSWAPPED(arr)


cdef int view(object a, int typenum, int ndim, bint write, Py_ssize_t *shape, char **data,
              str what) except -1:
    """Shape and data pointer of ``a``, which must be a C-contiguous ndarray of ``typenum`` in native
    byte order with ``ndim`` dimensions (writable if ``write``); ``ndim=-1`` takes any number and gives
    the size in shape[0].  The ops layer guarantees this; anything else raises."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{what} must be an ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != typenum or (ndim >= 0 and cnp.PyArray_NDIM(arr) != ndim)
            or not _native_c_array(arr) or (write and not cnp.PyArray_ISWRITEABLE(arr))):
        raise ValueError(f"{what} must be a C-contiguous{' writable' if write else ''} "
                         f"{ndim if ndim >= 0 else 'N'}-D array of the kernel's dtype in native byte "
                         f"order, got dtype {a.dtype.str} and shape {a.shape}")
    cdef int i
    if ndim < 0:
        shape[0] = cnp.PyArray_SIZE(arr)
    for i in range(ndim):
        shape[i] = cnp.PyArray_DIMS(arr)[i]
    data[0] = <char *>cnp.PyArray_DATA(arr)
    return 0


cdef int plain_float(object a, int ndim) noexcept:
    """The type number of ``a`` when it is a C-contiguous native float32/float64 ndarray with ``ndim``
    non-empty dimensions, else -1."""
    if not cnp.PyArray_Check(a):
        return -1
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr), i
    if (t != cnp.NPY_DOUBLE and t != cnp.NPY_FLOAT) or cnp.PyArray_NDIM(arr) != ndim \
            or not _native_c_array(arr):
        return -1
    for i in range(ndim):
        if cnp.PyArray_DIMS(arr)[i] < 1:
            return -1
    return t


cdef bint plain_like(object a, cnp.ndarray like, bint write) noexcept:
    """True when ``a`` is a C-contiguous native ndarray of ``like``'s dtype and shape (writable if
    ``write``): the update kernels take such arrays as they are, so ops can skip its generic checks."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int k, nd = cnp.PyArray_NDIM(like)
    if (cnp.PyArray_TYPE(arr) != cnp.PyArray_TYPE(like) or cnp.PyArray_NDIM(arr) != nd
            or not _native_c_array(arr) or (write and not cnp.PyArray_ISWRITEABLE(arr))):
        return False
    for k in range(nd):
        if cnp.PyArray_DIMS(arr)[k] != cnp.PyArray_DIMS(like)[k]:
            return False
    return True


cdef bint plain_param(object p) noexcept:
    """True for a writable C-contiguous native float32 or float64 ndarray."""
    return (cnp.PyArray_Check(p) and (cnp.PyArray_TYPE(<cnp.ndarray>p) == cnp.NPY_FLOAT
                                      or cnp.PyArray_TYPE(<cnp.ndarray>p) == cnp.NPY_DOUBLE)
            and plain_like(p, <cnp.ndarray>p, True))


cdef bint is_double(object x, str what) except -1:
    """True for a float64 ndarray, False for float32 (anything else raises)."""
    if cnp.PyArray_Check(x):
        if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE:
            return True
        if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT:
            return False
    raise TypeError(f"{what} must be a float32 or float64 ndarray")


cdef Py_ssize_t one_window_stride(object stride, Py_ssize_t span) except -1:
    """``stride`` (a Python int >= 1) as a Py_ssize_t, clamped to ``span + 1`` where ``span`` (>= 0) is
    how far a window can move: any stride above that yields the one window at the origin, so every such
    stride gives the same result, and a huge one neither overflows nor sizes buffers by its value."""
    cdef Py_ssize_t s
    try:
        s = stride
    except OverflowError:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        return span + 1
    if s < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return span + 1 if s > span + 1 else s
