# Declarations of fastconv._runtime (src_cy/_runtime.pyx), found by ``cimport fastconv._runtime``: the
# OpenMP facts and the one autotune state that every kernel module shares.

cdef class Trials:
    """Chooses between one thread and all threads for one operation by timing both (see _runtime.pyx)."""
    cdef int calls           # trial calls started
    cdef int serial          # -1 undecided, 1 one thread, 0 all threads
    cdef long since          # calls since the decision
    cdef double best[2]      # shortest interval in seconds after a one-thread / all-threads call
    cdef double last         # start of the previous trial call
    cdef int last_used       # its thread count
    cdef readonly str kernel  # the kernel and operation, e.g. "conv2d" / "forward", and its shape key
    cdef readonly str op
    cdef readonly object key

    cdef void reset(self) noexcept
    cdef int threads(self, int nthreads) except -1


cdef Trials trials_for(str kernel, str op, object key)
cdef int omp_max_threads() noexcept nogil
cdef bint omp_available() noexcept nogil
