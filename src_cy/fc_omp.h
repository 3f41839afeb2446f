/* OpenMP facts and work sharing for the kernels; builds without OpenMP report one thread. */
#ifndef FASTCONV_FC_OMP_H
#define FASTCONV_FC_OMP_H
#ifdef _OPENMP
#include <omp.h>
static inline int fc_max_threads(void) { return omp_get_max_threads(); }
static inline int fc_have_openmp(void) { return 1; }
static inline int fc_thread_num(void) { return omp_get_thread_num(); }
static inline int fc_num_threads(void) { return omp_get_num_threads(); }
/* Inside a parallel region: every thread waits here until all have arrived, so a loop after it may read
 * what any thread wrote before it. */
static inline void fc_barrier(void)
{
#pragma omp barrier
}
#else
static inline int fc_max_threads(void) { return 1; }
static inline int fc_have_openmp(void) { return 0; }
static inline int fc_thread_num(void) { return 0; }
static inline int fc_num_threads(void) { return 1; }
static inline void fc_barrier(void) {}
#endif

/* Inside a parallel region: this thread's share [lo, hi) of n work items, split as OpenMP's
 * schedule(static) without a chunk size splits them (the first n % threads threads take one item more),
 * so a thread's items and their order do not depend on how the loop is written.  Unlike a worksharing
 * loop it has no barrier of its own: the caller places fc_barrier() where one loop reads what another
 * wrote. */
typedef struct { Py_ssize_t lo, hi; } fc_range;
static inline fc_range fc_share(Py_ssize_t n)
{
    Py_ssize_t nt = fc_num_threads(), t = fc_thread_num();
    Py_ssize_t q = n / nt, r = n % nt;
    fc_range share;
    if (t < r) {
        q++;
        r = 0;
    }
    share.lo = q * t + r;
    share.hi = share.lo + q;
    return share;
}
#endif
