/* OpenMP facts for the kernels; builds without OpenMP report one thread. */
#ifndef FASTCONV_FC_OMP_H
#define FASTCONV_FC_OMP_H
#ifdef _OPENMP
#include <omp.h>
static int fc_max_threads(void) { return omp_get_max_threads(); }
static int fc_have_openmp(void) { return 1; }
#else
static int fc_max_threads(void) { return 1; }
static int fc_have_openmp(void) { return 0; }
#endif
#endif
