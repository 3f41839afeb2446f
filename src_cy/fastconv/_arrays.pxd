# Declarations of fastconv._arrays (src_cy/_arrays.pyx), found by ``cimport fastconv._arrays``: reading
# ndarray arguments through the NumPy C API, shared by every kernel module.
cimport numpy as cnp
from cython cimport floating


cdef inline int typenum(floating tag) noexcept nogil:
    """The NumPy type number of ``floating`` (``tag`` only selects the specialisation)."""
    if floating is double:
        return cnp.NPY_DOUBLE
    else:
        return cnp.NPY_FLOAT


cdef inline Py_ssize_t even_block(Py_ssize_t n, int nt, Py_ssize_t block) noexcept nogil:
    """Elements per work item for an elementwise pass over ``n`` elements on ``nt`` threads: about
    ``block`` (whole cache lines), in a multiple of nt items, so that a static split gives every thread
    the same share."""
    cdef Py_ssize_t nb = (n + block - 1) // block
    nb = (nb + nt - 1) // nt * nt
    return ((n + nb - 1) // nb + 15) // 16 * 16


cdef int view(object a, int typenum, int ndim, bint write, Py_ssize_t *shape, char **data,
              str what) except -1
cdef int plain_float(object a, int ndim) noexcept
cdef bint plain_like(object a, cnp.ndarray like, bint write) noexcept
cdef bint plain_param(object p) noexcept
cdef bint is_double(object x, str what) except -1
cdef Py_ssize_t one_window_stride(object stride, Py_ssize_t span) except -1
