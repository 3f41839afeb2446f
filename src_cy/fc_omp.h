/* OpenMP facts for the kernels; builds without OpenMP report one thread. */
#ifndef FASTCONV_FC_OMP_H
#define FASTCONV_FC_OMP_H
#ifdef _OPENMP
#include <omp.h>
static int fc_max_threads(void) { return omp_get_max_threads(); }
static int fc_have_openmp(void) { return 1; }
/* Where loops of one parallel region depend on each other, every thread must finish the first before
 * any starts the second.  Cython compiles a prange inside ``with parallel()`` to ``omp for nowait`` with
 * its index firstprivate and lastprivate, and both GCC and Clang start such a loop with a barrier (so
 * the lastprivate copy-out cannot race the firstprivate copy-in): GCC's lower_rec_input_clauses, Clang's
 * EmitOMPWorksharingLoop.  The kernels call fc_barrier() before every dependent loop anyway; it adds a
 * barrier only for other compilers, because a second one costs ~0.4 us a call on the 2-core Zen 1 (seed
 * conv1 float32 at batch 1: 1-3%). */
#if defined(__GNUC__)
static inline void fc_barrier(void) {}
#else
static inline void fc_barrier(void)
{
#pragma omp barrier
}
#endif
#else
static int fc_max_threads(void) { return 1; }
static int fc_have_openmp(void) { return 0; }
static inline void fc_barrier(void) {}
#endif
#endif
