/* Register-blocked GEMM micro-kernels for fastconv's conv2d (src_cy/_conv.pyx and its conv_*.pxi).
 *
 * Two shapes of product cover forward and backward, both reading row k of B at base + boff[k]
 * (views into a phase-split input, rows of an im2col buffer, or rows of dy):
 *   nn: C[mr x NR] = A[mr x kd] @ B[kd x NR]  A packed as kd rows of FC_MR values (zero padded),
 *       NR = FC_NV vectors.  Used for y = W @ views, dx = W_phase @ views of dy, dcols = W^T @ dy.
 *   nt: C[FC_NT_MR x FC_NT_NR] += A[. x np] @ B[. x np]^T   dot products along contiguous rows
 *       (ntm: along the rows of several samples, summed once).  Used for dW = dy @ views^T.
 * GCC/Clang vector extensions keep the accumulators in registers (AVX-512 when the build targets it,
 * otherwise whatever the target has); other compilers get the plain scalar loops below.
 * The tiles fit the register file: 32 vector registers (AVX-512) hold an 8 x 2-vector nn tile and a
 * 4 x 4 nt tile; 16 (AVX2 and narrower) hold 4 x 3 and 2 x 4.  The AVX-512 shapes built for AVX2 kept
 * 3 (nn) and 8 (nt) accumulators on the stack, a load and a store each per step (seen in objdump).
 */
#ifndef FASTCONV_CONV_MICRO_H
#define FASTCONV_CONV_MICRO_H

#include <string.h>

/* The instruction set this build's kernels were compiled for (their register tiles and FMA follow it,
 * and with them the order and rounding of the conv sums): what the golden runs' build key names. */
#if defined(__AVX512F__)
#  define FC_BUILD_ISA "avx512f"
#elif defined(__AVX2__) && defined(__FMA__)
#  define FC_BUILD_ISA "avx2"
#elif defined(__FMA__)
#  define FC_BUILD_ISA "fma"
#elif defined(__AVX__)
#  define FC_BUILD_ISA "avx"
#elif defined(__ARM_NEON)
#  define FC_BUILD_ISA "neon"
#else
#  define FC_BUILD_ISA "baseline"
#endif

#if defined(__GNUC__) || defined(__clang__)
#  if defined(__AVX512F__)
#    define FC_VBYTES 64
#  else
#    define FC_VBYTES 32
#  endif
typedef double fc_vd __attribute__((vector_size(FC_VBYTES)));
typedef float fc_vs __attribute__((vector_size(FC_VBYTES)));
#  define FC_HAVE_VEC 1
#else
#  define FC_VBYTES 32
#  define FC_HAVE_VEC 0
#endif

#if FC_VBYTES == 64
#  define FC_MR 8    /* rows of C per nn tile */
#  define FC_NV 2    /* vectors of columns per nn tile */
#  define FC_NT_MR 4 /* rows of A per nt tile */
#  define FC_NT_NR 4 /* rows of B per nt tile */
#else
#  define FC_MR 4
#  define FC_NV 3
#  define FC_NT_MR 2
#  define FC_NT_NR 4
#endif
#define FC_NT (FC_NT_MR * FC_NT_NR) /* dot products per nt tile: 16 or 8 */

#define FC_LANES_D (FC_VBYTES / 8)
/* lane counts as plain tokens, for token pasting below */
#if FC_VBYTES == 64
#  define FC_NL_D 8
#  define FC_NL_S 16
#else
#  define FC_NL_D 4
#  define FC_NL_S 8
#endif
#define FC_LANES_S (FC_VBYTES / 4)
#define FC_NR_D (FC_NV * FC_LANES_D) /* columns of C per nn tile */
#define FC_NR_S (FC_NV * FC_LANES_S)

#if FC_HAVE_VEC
/* unaligned vector load/store */
#define FC_DEFINE_LOADS(T, S, V)                                                                   \
static inline V fc_load_##S(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }                 \
static inline void fc_store_##S(T *p, V v) { memcpy(p, &v, sizeof v); }
FC_DEFINE_LOADS(double, d, fc_vd)
FC_DEFINE_LOADS(float, s, fc_vs)

/* FC_NT (16 or 8) horizontal sums at once: out[v] = sum of the lanes of acc[v].  Summing each vector on its own
 * costs L-1 dependent scalar adds plus lane extracts, a chain of dozens of instructions per sum for float32
 * on AVX-512, more than the dot products of a small batch-1 tile.  Instead pairs of vectors are folded
 * together: one level adds the two halves of each block of s lanes of a and of b into one vector (two
 * shuffles, one add), so log2(L) levels leave all FC_NT sums in FC_NT/L vectors, a few instructions a
 * sum.  Feeding the vectors
 * in bit-reversed order within groups of L puts the sums in natural order. */
#if defined(__clang__) || __GNUC__ >= 12
#  define FC_HAVE_SHUFFLE 1
#  define FC_LO(o, s, L) ((o) % (s) < (s) / 2 ? (o) / (s) * (s) + (o) % (s) \
                                              : (L) + (o) / (s) * (s) + (o) % (s) - (s) / 2)
#  define FC_HI(o, s, L) (FC_LO(o, s, L) + (s) / 2)
#  define FC_I4(M, s, L) M(0, s, L), M(1, s, L), M(2, s, L), M(3, s, L)
#  define FC_I8(M, s, L) FC_I4(M, s, L), M(4, s, L), M(5, s, L), M(6, s, L), M(7, s, L)
#  define FC_I16(M, s, L) FC_I8(M, s, L), M(8, s, L), M(9, s, L), M(10, s, L), M(11, s, L), \
                          M(12, s, L), M(13, s, L), M(14, s, L), M(15, s, L)
#  define FC_FOLD(N, a, b, s) (__builtin_shufflevector(a, b, FC_I##N(FC_LO, s, N)) \
                               + __builtin_shufflevector(a, b, FC_I##N(FC_HI, s, N)))
#  define FC_LEVEL(N, w, n, s) for (m = 0; m < (n) / 2; m++) w[m] = FC_FOLD(N, w[2 * m], w[2 * m + 1], s);
#  if FC_VBYTES == 64   /* 16 sums */
#    define FC_FOLD_ALL(N, w) do { if (N == 16) { FC_LEVEL(N, w, 16, 16) FC_LEVEL(N, w, 8, 8)          \
                                       FC_LEVEL(N, w, 4, 4) FC_LEVEL(N, w, 2, 2) }                 \
                                   else { FC_LEVEL(N, w, 16, 8) FC_LEVEL(N, w, 8, 4)                  \
                                       FC_LEVEL(N, w, 4, 2) } } while (0)
#  else                 /* 8 sums */
#    define FC_FOLD_ALL(N, w) do { if (N == 8) { FC_LEVEL(N, w, 8, 8) FC_LEVEL(N, w, 4, 4)             \
                                       FC_LEVEL(N, w, 2, 2) }                                        \
                                   else { FC_LEVEL(N, w, 8, 4) FC_LEVEL(N, w, 4, 2) } } while (0)
#  endif
static const int fc_bitrev_4[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
static const int fc_bitrev_8[16] = {0, 4, 2, 6, 1, 5, 3, 7, 8, 12, 10, 14, 9, 13, 11, 15};
static const int fc_bitrev_16[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
#  define FC_BITREV_(N) fc_bitrev_##N
#  define FC_BITREV(N) FC_BITREV_(N)
#  define FC_DEFINE_REDUCE_NT(T, S, V, N)                                                           \
static inline void fc_reduce_nt_##S(const V *acc, T *out)                                             \
{                                                                                                   \
    V w[FC_NT];                                                                                     \
    int m;                                                                                          \
    for (m = 0; m < FC_NT; m++) w[m] = acc[FC_BITREV(N)[m]];                                        \
    FC_FOLD_ALL(N, w);                                                                              \
    memcpy(out, w, FC_NT * sizeof(T));                                                              \
}
FC_DEFINE_REDUCE_NT(double, d, fc_vd, FC_NL_D)
FC_DEFINE_REDUCE_NT(float, s, fc_vs, FC_NL_S)
#else
#  define FC_DEFINE_REDUCE_NT(T, S, V, N)                                                           \
static inline void fc_reduce_nt_##S(const V *acc, T *out)                                             \
{                                                                                                   \
    int v, l;                                                                                       \
    for (v = 0; v < FC_NT; v++) { out[v] = 0; for (l = 0; l < N; l++) out[v] += acc[v][l]; }        \
}
FC_DEFINE_REDUCE_NT(double, d, fc_vd, FC_NL_D)
FC_DEFINE_REDUCE_NT(float, s, fc_vs, FC_NL_S)
#endif

/* Row k of B starts at base + boff[k]; every row must be readable for the full tile width.
 *   igemm_nn: C[i, cmap[j]] = sum_k A[i, k] * B[k, j] (+ bias[i]), column j skipped when cmap[j] < 0;
 *             contig != 0 promises cmap[j] = cmap[0] + j for the whole tile (vector stores).
 *   igemm_nt: C[mr x nr] += A[mr x np] @ B[nr x np]^T with B rows base + boff[j], mr <= FC_NT_MR and
 *             nr <= FC_NT_NR (a 4 x 4 tile on AVX-512, 2 x 4 on AVX2 and narrower targets).          */
#define FC_NN_CASE(S, R) case R: fc_nn_rows_##S(R, kd, ap, base, boff, c, ldc, cmap, contig, bias); break;
#if FC_MR == 8
#  define FC_NN_CASES(S) FC_NN_CASE(S, 1) FC_NN_CASE(S, 2) FC_NN_CASE(S, 3) FC_NN_CASE(S, 4) \
                         FC_NN_CASE(S, 5) FC_NN_CASE(S, 6) FC_NN_CASE(S, 7)
#else
#  define FC_NN_CASES(S) FC_NN_CASE(S, 1) FC_NN_CASE(S, 2) FC_NN_CASE(S, 3)
#endif
#define FC_DEFINE_IKERNELS(T, S, V, L)                                                             \
/* one row of a tile (FC_NV vectors) + bias into c through cmap: vector stores when contig */        \
static inline void fc_put_row_##S(T *restrict c, const V *acc, const long *cmap, int contig, T bias) \
{                                                                                                   \
    int j, v;                                                                                       \
    if (contig) {                                                                                   \
        V bb = (V){0} + bias;                                                                       \
        for (v = 0; v < FC_NV; v++) fc_store_##S(c + cmap[0] + v * L, acc[v] + bb);                 \
    } else {                                                                                        \
        T tmp[FC_NV * L];                                                                           \
        for (v = 0; v < FC_NV; v++) fc_store_##S(tmp + v * L, acc[v]);                             \
        for (j = 0; j < FC_NV * L; j++)                                                             \
            if (cmap[j] >= 0) c[cmap[j]] = tmp[j] + bias;                                           \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* the nn tile on its first R rows (R a constant after inlining) */                                 \
static inline __attribute__((always_inline)) void                                                   \
fc_nn_rows_##S(const int R, int kd, const T *restrict ap, const T *base, const long *boff,          \
               T *restrict c, long ldc, const long *cmap, int contig, const T *bias)                \
{                                                                                                   \
    V acc[FC_MR][FC_NV];                                                                            \
    int i, k, v;                                                                                    \
    for (i = 0; i < R; i++) for (v = 0; v < FC_NV; v++) acc[i][v] = (V){0};                          \
    for (k = 0; k < kd; k++) {                                                                      \
        const T *b = base + boff[k];                                                                \
        V bv[FC_NV];                                                                                \
        const T *a = ap + (long)k * FC_MR;                                                          \
        for (v = 0; v < FC_NV; v++) bv[v] = fc_load_##S(b + v * L);                                 \
        for (i = 0; i < R; i++)                                                                     \
            for (v = 0; v < FC_NV; v++) acc[i][v] += a[i] * bv[v];                                  \
    }                                                                                               \
    for (i = 0; i < R; i++)                                                                         \
        fc_put_row_##S(c + (long)i * ldc, acc[i], cmap, contig, bias ? bias[i] : (T)0);              \
}                                                                                                   \
                                                                                                    \
/* mr < FC_MR rows (C % FC_MR channels of dx, F % FC_MR filters) compute only those rows */          \
static inline void fc_igemm_nn_##S(int kd, const T *restrict ap, const T *base, const long *boff,   \
                                   T *restrict c, long ldc, const long *cmap, int contig, int mr,   \
                                   const T *bias)                                                   \
{                                                                                                   \
    switch (mr) {                                                                                   \
    FC_NN_CASES(S)                                                                                  \
    default: fc_nn_rows_##S(FC_MR, kd, ap, base, boff, c, ldc, cmap, contig, bias);                 \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* ns samples at once: sample s reads A at a + s*sa and B at base + s*sb; the lanes accumulate over all  \
 * of them and are summed once (a row of 11 x 13 outputs is a few vectors: the sums would cost as much \
 * as the products) */                                                                              \
static inline void fc_igemm_ntm_##S(int np, const T *a, long lda, long sa, const T *base, long sb,  \
                                    const long *boff, int ns, T *c, long ldc, int mr, int nr)       \
{                                                                                                   \
    const T *ar[FC_NT_MR], *br[FC_NT_NR];                                                           \
    V acc[FC_NT_MR][FC_NT_NR];                                                                      \
    T sums[FC_NT];                                                                                  \
    int i, j, p, s;                                                                                 \
    for (i = 0; i < FC_NT_MR; i++) ar[i] = a + (i < mr ? i * lda : 0);                              \
    for (j = 0; j < FC_NT_NR; j++) br[j] = base + boff[j < nr ? j : 0];                              \
    for (i = 0; i < FC_NT_MR; i++) for (j = 0; j < FC_NT_NR; j++) acc[i][j] = (V){0};                \
    for (s = 0; s < ns; s++) {                                                                      \
        for (p = 0; p < np; p += L) {                                                               \
            V x[FC_NT_MR], y[FC_NT_NR];                                                             \
            for (i = 0; i < FC_NT_MR; i++) x[i] = fc_load_##S(ar[i] + p);                           \
            for (j = 0; j < FC_NT_NR; j++) y[j] = fc_load_##S(br[j] + p);                           \
            for (i = 0; i < FC_NT_MR; i++)                                                          \
                for (j = 0; j < FC_NT_NR; j++) acc[i][j] += x[i] * y[j];                            \
        }                                                                                           \
        for (i = 0; i < FC_NT_MR; i++) ar[i] += sa;                                                 \
        for (j = 0; j < FC_NT_NR; j++) br[j] += sb;                                                 \
    }                                                                                               \
    fc_reduce_nt_##S(&acc[0][0], sums);                                                             \
    for (i = 0; i < mr; i++)                                                                        \
        for (j = 0; j < nr; j++)                                                                    \
            c[(long)i * ldc + j] += sums[i * FC_NT_NR + j];                                         \
}                                                                                                   \
                                                                                                    \
/* one sample: the same sums, in a loop of its own (the pointer updates of ntm's cost a long row) */    \
static inline void fc_igemm_nt_##S(int np, const T *a, long lda, const T *base, const long *boff,   \
                                   T *c, long ldc, int mr, int nr)                                  \
{                                                                                                   \
    const T *ar[FC_NT_MR], *br[FC_NT_NR];                                                           \
    V acc[FC_NT_MR][FC_NT_NR];                                                                      \
    T sums[FC_NT];                                                                                  \
    int i, j, p;                                                                                    \
    for (i = 0; i < FC_NT_MR; i++) ar[i] = a + (i < mr ? i * lda : 0);                              \
    for (j = 0; j < FC_NT_NR; j++) br[j] = base + boff[j < nr ? j : 0];                              \
    for (i = 0; i < FC_NT_MR; i++) for (j = 0; j < FC_NT_NR; j++) acc[i][j] = (V){0};                \
    for (p = 0; p < np; p += L) {                                                                   \
        V x[FC_NT_MR], y[FC_NT_NR];                                                                 \
        for (i = 0; i < FC_NT_MR; i++) x[i] = fc_load_##S(ar[i] + p);                               \
        for (j = 0; j < FC_NT_NR; j++) y[j] = fc_load_##S(br[j] + p);                               \
        for (i = 0; i < FC_NT_MR; i++)                                                              \
            for (j = 0; j < FC_NT_NR; j++) acc[i][j] += x[i] * y[j];                                \
    }                                                                                               \
    fc_reduce_nt_##S(&acc[0][0], sums);                                                             \
    for (i = 0; i < mr; i++)                                                                        \
        for (j = 0; j < nr; j++)                                                                    \
            c[(long)i * ldc + j] += sums[i * FC_NT_NR + j];                                         \
}

FC_DEFINE_IKERNELS(double, d, fc_vd, FC_LANES_D)
FC_DEFINE_IKERNELS(float, s, fc_vs, FC_LANES_S)

/* igemm_n1: one row of A (a[k * FC_MR]) over FC_MR consecutive nn tiles (FC_MR * FC_NV vector
 * accumulators, the nn tile's register budget; every row of B readable for all of them), each tile
 * stored through its own cmap/contig as in igemm_nn.  A one-row product in the nn tile (dx of a
 * one-channel input) would leave FC_MR - 1 of its rows zero. */
#define FC_DEFINE_N1(T, S, V, L)                                                                   \
static inline void fc_igemm_n1_##S(int kd, const T *restrict a, const T *base, const long *boff,    \
                                   T *restrict c, const long *cmap, const int *contig)               \
{                                                                                                   \
    V acc[FC_MR * FC_NV];                                                                           \
    int k, v, t;                                                                                    \
    for (v = 0; v < FC_MR * FC_NV; v++) acc[v] = (V){0};                                             \
    for (k = 0; k < kd; k++) {                                                                      \
        const T *b = base + boff[k];                                                                \
        T ak = a[(long)k * FC_MR];                                                                  \
        for (v = 0; v < FC_MR * FC_NV; v++) acc[v] += ak * fc_load_##S(b + v * L);                  \
    }                                                                                               \
    for (t = 0; t < FC_MR; t++)                                                                     \
        fc_put_row_##S(c, acc + t * FC_NV, cmap + t * FC_NV * L, contig[t], (T)0);                   \
}
FC_DEFINE_N1(double, d, fc_vd, FC_LANES_D)
FC_DEFINE_N1(float, s, fc_vs, FC_LANES_S)

/* sum of x[0:n] in FC_VBYTES-wide partial sums (any order satisfies the tests' reduction bound). */
#define FC_DEFINE_SUM(T, S, V, L)                                                                  \
static inline T fc_sum_##S(const T *x, long n)                                                      \
{                                                                                                   \
    V a0 = (V){0}, a1 = (V){0};                                                                     \
    long i = 0;                                                                                     \
    int l;                                                                                          \
    T s = 0;                                                                                        \
    for (; i + 2 * L <= n; i += 2 * L) { a0 += fc_load_##S(x + i); a1 += fc_load_##S(x + i + L); }  \
    a0 += a1;                                                                                       \
    for (l = 0; l < L; l++) s += a0[l];                                                             \
    for (; i < n; i++) s += x[i];                                                                   \
    return s;                                                                                       \
}
FC_DEFINE_SUM(double, d, fc_vd, FC_LANES_D)
FC_DEFINE_SUM(float, s, fc_vs, FC_LANES_S)

#else /* scalar fallback, same contracts */
#define FC_DEFINE_IKERNELS(T, S, L)                                                                 \
static void fc_igemm_nn_##S(int kd, const T *ap, const T *base, const long *boff, T *c, long ldc,   \
                            const long *cmap, int contig, int mr, const T *bias)                    \
{                                                                                                   \
    int i, j, k;                                                                                    \
    for (i = 0; i < mr; i++)                                                                        \
        for (j = 0; j < FC_NV * L; j++) {                                                           \
            T s = 0;                                                                                \
            if (cmap[j] < 0) continue;                                                              \
            for (k = 0; k < kd; k++) s += ap[(long)k * FC_MR + i] * base[boff[k] + j];              \
            c[(long)i * ldc + cmap[j]] = s + (bias ? bias[i] : (T)0);                               \
        }                                                                                           \
}                                                                                                   \
static void fc_igemm_ntm_##S(int np, const T *a, long lda, long sa, const T *base, long sb,         \
                             const long *boff, int ns, T *c, long ldc, int mr, int nr)              \
{                                                                                                   \
    int i, j, p, n;                                                                                 \
    for (i = 0; i < mr; i++)                                                                        \
        for (j = 0; j < nr; j++) {                                                                  \
            T s = 0;                                                                                \
            for (n = 0; n < ns; n++)                                                                \
                for (p = 0; p < np; p++)                                                            \
                    s += a[n * sa + (long)i * lda + p] * base[n * sb + boff[j] + p];                \
            c[(long)i * ldc + j] += s;                                                              \
        }                                                                                           \
}                                                                                                   \
static void fc_igemm_nt_##S(int np, const T *a, long lda, const T *base, const long *boff, T *c,    \
                            long ldc, int mr, int nr)                                               \
{                                                                                                   \
    fc_igemm_ntm_##S(np, a, lda, 0, base, 0, boff, 1, c, ldc, mr, nr);                              \
}
FC_DEFINE_IKERNELS(double, d, FC_LANES_D)
FC_DEFINE_IKERNELS(float, s, FC_LANES_S)
#define FC_DEFINE_N1(T, S, L)                                                                       \
static void fc_igemm_n1_##S(int kd, const T *a, const T *base, const long *boff, T *c,              \
                            const long *cmap, const int *contig)                                    \
{                                                                                                   \
    int j, k;                                                                                       \
    (void)contig;                                                                                   \
    for (j = 0; j < FC_MR * FC_NV * L; j++) {                                                       \
        T s = 0;                                                                                    \
        if (cmap[j] < 0) continue;                                                                  \
        for (k = 0; k < kd; k++) s += a[(long)k * FC_MR] * base[boff[k] + j];                       \
        c[cmap[j]] = s;                                                                             \
    }                                                                                               \
}
FC_DEFINE_N1(double, d, FC_LANES_D)
FC_DEFINE_N1(float, s, FC_LANES_S)
static double fc_sum_d(const double *x, long n) { double s = 0; long i; for (i = 0; i < n; i++) s += x[i]; return s; }
static float fc_sum_s(const float *x, long n) { float s = 0; long i; for (i = 0; i < n; i++) s += x[i]; return s; }
#endif


/* 1 when no element of x[0:n] is inf or NaN (exponent bits all set); integer test, so it vectorises. */
static inline int fc_all_finite_d(const double *x, long n)
{
    unsigned long long bad = 0, u;
    long i;
    for (i = 0; i < n; i++) {
        memcpy(&u, x + i, sizeof u);
        bad |= ((u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL);
    }
    return bad == 0;
}
static inline int fc_all_finite_s(const float *x, long n)
{
    unsigned int bad = 0, u;
    long i;
    for (i = 0; i < n; i++) {
        memcpy(&u, x + i, sizeof u);
        bad |= ((u & 0x7f800000U) == 0x7f800000U);
    }
    return bad == 0;
}

#endif /* FASTCONV_CONV_MICRO_H */
