# Declarations of fastconv._clip (src_cy/_clip.pyx), found by ``cimport fastconv._clip``: the gradient
# clipping that the optimizer kernels apply to each gradient element as they read it (Keras semantics).
from cython cimport floating

cdef enum:
    CLIP_NONE = 0     # g
    CLIP_VALUE = 1    # min(max(g, -a), a)         (clipvalue; NaN stays NaN)
    CLIP_SCALE = 2    # g * a                      (global_clipnorm: a = the one scale)
    CLIP_NORM = 3     # (g * a) / b                (clipnorm: a = clipnorm, b = max(norm of g's variable, a))


cdef inline floating clip_grad(floating g, int mode, floating a, floating b) noexcept nogil:
    """One gradient element as Keras's ``_clip_gradients`` leaves it."""
    if mode == CLIP_VALUE:
        if g < -a:
            return -a
        if g > a:
            return a
        return g
    if mode == CLIP_SCALE:
        return g * a
    if mode == CLIP_NORM:
        return (g * a) / b
    return g


cdef int read_pieces(object pieces, object denoms, int typenum, Py_ssize_t n, int mode,
                     const long long **pc, Py_ssize_t *count, char **dd, str what) except -1
