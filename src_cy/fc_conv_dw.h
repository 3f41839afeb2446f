/* The dW (and db) micro-kernel of conv2d's shifted first-layer backward (src_cy/conv_dw_shifted.pxi).
 *
 * dW[f, t] = sum_p dy[f, p] * B[t, p]: dot products of long contiguous rows, dy's rows read where they
 * lie (row i at a + i*lda), row t of B at base + boff[t].  A tile of mr x nr of them (mr <= FC_DW_MR rows
 * of dy, nr <= FC_DW_NR(mr) rows of B) is kept in vector accumulators: each step loads mr + nr vectors
 * for mr * nr FMAs.  The accumulators are full vectors in memory (acc, one per element of the tile, lane
 * sums left to the caller), loaded before and stored after the run over the positions, so that a tile
 * adds one run of positions after another, in order, and the lanes are summed once at the end.
 * The caller picks the tile shape per layer (conv_dw_shifted.pxi, _dw_tile_rows).
 */
#ifndef FASTCONV_FC_CONV_DW_H
#define FASTCONV_FC_CONV_DW_H

#include <string.h>
#include "conv_micro.h"

/* tiles of mr x nr with mr * nr + mr + 1 vector registers at most (accumulators, rows of dy, one of B) */
#if FC_VBYTES == 64
#  define FC_DW_MR 6
#else
#  define FC_DW_MR 3
#endif

/* the most columns a tile of mr rows may have: 32 registers hold 1 x 14, 2 x 14, 3 x 9, 4 x 6, 5 x 5,
 * 6 x 4; 16 hold 1 x 6, 2 x 6, 3 x 3 */
static inline int fc_dw_max_nr(int mr)
{
#if FC_VBYTES == 64
    static const int nr[7] = {0, 14, 14, 9, 6, 5, 4};
#else
    static const int nr[4] = {0, 6, 6, 3};
#endif
    return nr[mr < 1 ? 1 : mr > FC_DW_MR ? FC_DW_MR : mr];
}

#if FC_HAVE_VEC
#if defined(__AVX512F__) || defined(__AVX2__)
#  include <immintrin.h>
#endif
/* the first n < L values at p, the other lanes zero; never reads past p + n (a row's neighbour or the
 * end of dy), so a NaN there cannot enter a sum */
static inline fc_vs fc_dw_tail_s(const float *p, long n)
{
#if defined(__AVX512F__)
    return (fc_vs)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#elif defined(__AVX2__) && FC_VBYTES == 32
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return (fc_vs)_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane));
#else
    float t[FC_LANES_S] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return fc_load_s(t);
#endif
}
static inline fc_vd fc_dw_tail_d(const double *p, long n)
{
#if defined(__AVX512F__)
    return (fc_vd)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p);
#elif defined(__AVX2__) && FC_VBYTES == 32
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    return (fc_vd)_mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lane));
#else
    double t[FC_LANES_D] = {0};
    memcpy(t, p, (size_t)n * sizeof(double));
    return fc_load_d(t);
#endif
}

/* acc[i*ldacc + j] (vectors, 64-byte aligned) += sum over p < np of a[i*lda + p] * base[boff[j] + p], or =
 * when init.  Rows of B are read up to np rounded up to a vector (finite values there meet zeros); rows
 * of a only up to np (fc_dw_tail).  pf, unless NULL, is the start of the mr rows of a the next tile
 * reads (lda apart): they are fetched into cache meanwhile, a line per row and step. */
#define FC_DW_TILE(T, S, V, L, MR, NR)                                                             \
static void fc_dw_##S##_##MR##_##NR(long np, const T *a, long lda, const T *base, const long *boff, \
                                    V *acc, long ldacc, int init, const T *pf)                      \
{                                                                                                   \
    const T *ar[MR], *br[NR];                                                                       \
    V c[MR][NR];                                                                                    \
    long p, nfull = np / L * L;                                                                     \
    int i, j;                                                                                       \
    for (i = 0; i < MR; i++) ar[i] = a + i * lda;                                                   \
    for (j = 0; j < NR; j++) br[j] = base + boff[j];                                                \
    if (init) {                                                                                     \
        for (i = 0; i < MR; i++) for (j = 0; j < NR; j++) c[i][j] = (V){0};                          \
    } else {                                                                                        \
        for (i = 0; i < MR; i++) for (j = 0; j < NR; j++) c[i][j] = acc[i * ldacc + j];              \
    }                                                                                               \
    for (p = 0; p < nfull; p += L) {                                                                \
        V x[MR];                                                                                    \
        for (i = 0; i < MR; i++) x[i] = fc_load_##S(ar[i] + p);                                     \
        if (pf)                                                                                     \
            for (i = 0; i < MR; i++) __builtin_prefetch(pf + i * lda + p);                          \
        for (j = 0; j < NR; j++) {                                                                  \
            V y = fc_load_##S(br[j] + p);                                                           \
            for (i = 0; i < MR; i++) c[i][j] += x[i] * y;                                           \
        }                                                                                           \
    }                                                                                               \
    if (p < np) {                                                                                   \
        V x[MR];                                                                                    \
        for (i = 0; i < MR; i++) x[i] = fc_dw_tail_##S(ar[i] + p, np - p);                          \
        for (j = 0; j < NR; j++) {                                                                  \
            V y = fc_load_##S(br[j] + p);                                                           \
            for (i = 0; i < MR; i++) c[i][j] += x[i] * y;                                           \
        }                                                                                           \
    }                                                                                               \
    for (i = 0; i < MR; i++) for (j = 0; j < NR; j++) acc[i * ldacc + j] = c[i][j];                  \
}

#define FC_DW_T(S, MR, NR) FC_DW_TILE(FC_DW_T_##S, S, FC_DW_V_##S, FC_DW_L_##S, MR, NR)
#define FC_DW_T_s float
#define FC_DW_V_s fc_vs
#define FC_DW_L_s FC_LANES_S
#define FC_DW_T_d double
#define FC_DW_V_d fc_vd
#define FC_DW_L_d FC_LANES_D
/* tiles of MR rows and 1 to n columns */
#define FC_DW_UPTO3(S, MR) FC_DW_T(S, MR, 1) FC_DW_T(S, MR, 2) FC_DW_T(S, MR, 3)
#define FC_DW_UPTO4(S, MR) FC_DW_UPTO3(S, MR) FC_DW_T(S, MR, 4)
#define FC_DW_UPTO5(S, MR) FC_DW_UPTO4(S, MR) FC_DW_T(S, MR, 5)
#define FC_DW_UPTO6(S, MR) FC_DW_UPTO5(S, MR) FC_DW_T(S, MR, 6)
#define FC_DW_UPTO9(S, MR) FC_DW_UPTO6(S, MR) FC_DW_T(S, MR, 7) FC_DW_T(S, MR, 8) FC_DW_T(S, MR, 9)
#define FC_DW_UPTO14(S, MR) FC_DW_UPTO9(S, MR) FC_DW_T(S, MR, 10) FC_DW_T(S, MR, 11) FC_DW_T(S, MR, 12) \
    FC_DW_T(S, MR, 13) FC_DW_T(S, MR, 14)

#define FC_DW_C(S, MR, NR) case NR: fc_dw_##S##_##MR##_##NR(np, a, lda, base, boff, acc, ldacc, init, pf); return;
#define FC_DW_CUPTO3(S, MR) FC_DW_C(S, MR, 1) FC_DW_C(S, MR, 2) FC_DW_C(S, MR, 3)
#define FC_DW_CUPTO4(S, MR) FC_DW_CUPTO3(S, MR) FC_DW_C(S, MR, 4)
#define FC_DW_CUPTO5(S, MR) FC_DW_CUPTO4(S, MR) FC_DW_C(S, MR, 5)
#define FC_DW_CUPTO6(S, MR) FC_DW_CUPTO5(S, MR) FC_DW_C(S, MR, 6)
#define FC_DW_CUPTO9(S, MR) FC_DW_CUPTO6(S, MR) FC_DW_C(S, MR, 7) FC_DW_C(S, MR, 8) FC_DW_C(S, MR, 9)
#define FC_DW_CUPTO14(S, MR) FC_DW_CUPTO9(S, MR) FC_DW_C(S, MR, 10) FC_DW_C(S, MR, 11) FC_DW_C(S, MR, 12) \
    FC_DW_C(S, MR, 13) FC_DW_C(S, MR, 14)

#if FC_VBYTES == 64
#  define FC_DW_ROWS(S) FC_DW_UPTO14(S, 1) FC_DW_UPTO14(S, 2) FC_DW_UPTO9(S, 3) FC_DW_UPTO6(S, 4) \
                        FC_DW_UPTO5(S, 5) FC_DW_UPTO4(S, 6)
#  define FC_DW_SWITCH(S) switch (mr) {                                                          \
    case 1: switch (nr) { FC_DW_CUPTO14(S, 1) } break;                                             \
    case 2: switch (nr) { FC_DW_CUPTO14(S, 2) } break;                                             \
    case 3: switch (nr) { FC_DW_CUPTO9(S, 3) } break;                                              \
    case 4: switch (nr) { FC_DW_CUPTO6(S, 4) } break;                                              \
    case 5: switch (nr) { FC_DW_CUPTO5(S, 5) } break;                                              \
    default: switch (nr) { FC_DW_CUPTO4(S, 6) } break; }
#else
#  define FC_DW_ROWS(S) FC_DW_UPTO6(S, 1) FC_DW_UPTO6(S, 2) FC_DW_UPTO3(S, 3)
#  define FC_DW_SWITCH(S) switch (mr) {                                                          \
    case 1: switch (nr) { FC_DW_CUPTO6(S, 1) } break;                                              \
    case 2: switch (nr) { FC_DW_CUPTO6(S, 2) } break;                                              \
    default: switch (nr) { FC_DW_CUPTO3(S, 3) } break; }
#endif

/* one tile of mr x nr (1 <= mr <= FC_DW_MR, 1 <= nr <= fc_dw_max_nr(mr)); acc holds L lanes per element */
#define FC_DEFINE_DW(T, S, V, L)                                                                   \
FC_DW_ROWS(S)                                                                                       \
static inline void fc_dw_tile_##S(int mr, int nr, long np, const T *a, long lda, const T *base,      \
                                  const long *boff, T *acc_lanes, long ldacc, int init, const T *pf) \
{                                                                                                   \
    V *acc = (V *)(void *)acc_lanes;                                                                \
    FC_DW_SWITCH(S)                                                                                 \
}                                                                                                   \
                                                                                                    \
/* out[e] = the sum of the L lanes of v[e] for e < n (FC_NT at a time, folded as fc_reduce_nt) */     \
static inline void fc_dw_lane_sums_##S(const T *v_lanes, long n, T *out)                             \
{                                                                                                   \
    V w[FC_NT];                                                                                     \
    T sums[FC_NT];                                                                                  \
    long e, m, k;                                                                                   \
    for (e = 0; e < n; e += FC_NT) {                                                                \
        k = n - e < FC_NT ? n - e : FC_NT;                                                          \
        for (m = 0; m < FC_NT; m++) w[m] = (V){0};                                                  \
        memcpy(w, v_lanes + e * L, (size_t)k * sizeof(V));                                          \
        fc_reduce_nt_##S(w, sums);                                                                  \
        memcpy(out + e, sums, (size_t)k * sizeof(T));                                               \
    }                                                                                               \
}
FC_DEFINE_DW(double, d, fc_vd, FC_LANES_D)
FC_DEFINE_DW(float, s, fc_vs, FC_LANES_S)

#else /* scalar fallback, same contracts: each element's sum goes to lane 0 of its accumulator */
#define FC_DEFINE_DW(T, S, L)                                                                      \
static void fc_dw_tile_##S(int mr, int nr, long np, const T *a, long lda, const T *base,            \
                           const long *boff, T *acc, long ldacc, int init, const T *pf)             \
{                                                                                                   \
    int i, j, l;                                                                                    \
    long p;                                                                                         \
    (void)pf;                                                                                       \
    for (i = 0; i < mr; i++)                                                                        \
        for (j = 0; j < nr; j++) {                                                                  \
            T *c = acc + (i * ldacc + j) * L;                                                       \
            if (init) for (l = 0; l < L; l++) c[l] = 0;                                             \
            for (p = 0; p < np; p++) c[0] += a[i * lda + p] * base[boff[j] + p];                    \
        }                                                                                           \
}                                                                                                   \
static void fc_dw_lane_sums_##S(const T *v, long n, T *out)                                          \
{                                                                                                   \
    long e;                                                                                         \
    int l;                                                                                          \
    for (e = 0; e < n; e++) { out[e] = 0; for (l = 0; l < L; l++) out[e] += v[e * L + l]; }         \
}
FC_DEFINE_DW(double, d, FC_LANES_D)
FC_DEFINE_DW(float, s, FC_LANES_S)
#endif

#endif /* FASTCONV_FC_CONV_DW_H */
