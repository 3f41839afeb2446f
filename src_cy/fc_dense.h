/* Fully connected layer loops for src_cy/_dense.pyx (small batches; ops sends large ones to BLAS).
 *
 *   forward:  y[n, u] = sum_k x[n, k] * w[u, k] (+ b[u])       dot products along contiguous rows
 *   backward: dw[u, k] = sum_n dy[n, u] * x[n, k]             axpy along k, n in order
 *             db[u]    = sum_n dy[n, u]
 *             dx[n, k] = sum_u dy[n, u] * w[u, k]             axpy along k, u in order
 * The axpy loops are plain C with restrict pointers (the compiler vectorises them); the dot products
 * use the vector type of conv_micro.h, four rows of w at a time, with a scalar tail: nothing is read
 * past the end of a row.  All arrays are C-contiguous and do not overlap.
 */
#ifndef FASTCONV_DENSE_H
#define FASTCONV_DENSE_H

#include "conv_micro.h"

#if FC_HAVE_VEC
#define FC_DEFINE_DENSE_DOT(T, S, V, L)                                                            \
/* out[j] = dot(a, b_j) for the nb (1..4) rows b_j = b + j*K */                                    \
static inline void fc_dense_dot4_##S(const T *a, const T *b, long K, int nb, T *out)               \
{                                                                                                   \
    const T *b0 = b, *b1 = b + (nb > 1 ? K : 0), *b2 = b + (nb > 2 ? 2 * K : 0),                    \
            *b3 = b + (nb > 3 ? 3 * K : 0);                                                         \
    V a0 = (V){0}, a1 = (V){0}, a2 = (V){0}, a3 = (V){0};                                           \
    T s[4];                                                                                         \
    long k = 0;                                                                                     \
    int j, l;                                                                                       \
    for (; k + L <= K; k += L) {                                                                    \
        const V xv = fc_load_##S(a + k);                                                            \
        a0 += xv * fc_load_##S(b0 + k); a1 += xv * fc_load_##S(b1 + k);                             \
        a2 += xv * fc_load_##S(b2 + k); a3 += xv * fc_load_##S(b3 + k);                             \
    }                                                                                               \
    s[0] = s[1] = s[2] = s[3] = 0;                                                                  \
    for (l = 0; l < L; l++) { s[0] += a0[l]; s[1] += a1[l]; s[2] += a2[l]; s[3] += a3[l]; }         \
    for (; k < K; k++) {                                                                            \
        s[0] += a[k] * b0[k]; s[1] += a[k] * b1[k]; s[2] += a[k] * b2[k]; s[3] += a[k] * b3[k];      \
    }                                                                                               \
    for (j = 0; j < nb; j++) out[j] = s[j];                                                         \
}
FC_DEFINE_DENSE_DOT(double, d, fc_vd, FC_LANES_D)
FC_DEFINE_DENSE_DOT(float, s, fc_vs, FC_LANES_S)
#else
#define FC_DEFINE_DENSE_DOT(T, S)                                                                  \
static inline void fc_dense_dot4_##S(const T *a, const T *b, long K, int nb, T *out)               \
{                                                                                                   \
    int j; long k;                                                                                  \
    for (j = 0; j < nb; j++) { T s = 0; for (k = 0; k < K; k++) s += a[k] * b[j * K + k]; out[j] = s; } \
}
FC_DEFINE_DENSE_DOT(double, d)
FC_DEFINE_DENSE_DOT(float, s)
#endif

#define FC_DEFINE_DENSE(T, S)                                                                      \
/* y[:, u0:u1] (u0 a multiple of 4): the same groups of four rows of w as the whole loop, so a split     \
 * between threads gives the same bits */                                                        \
static inline void fc_dense_fwd_rows_##S(const T *x, const T *w, const T *b, T *y, long N, long K,     \
                                         long U, long u0, long u1)                                  \
{                                                                                                   \
    long n, u;                                                                                      \
    int j;                                                                                          \
    T s[4];                                                                                         \
    for (n = 0; n < N; n++)                                                                         \
        for (u = u0; u < u1; u += 4) {                                                              \
            int nb = u1 - u < 4 ? (int)(u1 - u) : 4;                                                \
            fc_dense_dot4_##S(x + n * K, w + u * K, K, nb, s);                                      \
            for (j = 0; j < nb; j++) y[n * U + u + j] = s[j] + (b ? b[u + j] : (T)0);               \
        }                                                                                           \
}                                                                                                   \
static inline void fc_dense_fwd_##S(const T *x, const T *w, const T *b, T *y, long N, long K, long U) \
{                                                                                                   \
    fc_dense_fwd_rows_##S(x, w, b, y, N, K, U, 0, U);                                               \
}                                                                                                   \
static inline void fc_dense_axpy_##S(T *restrict out, T a, const T *restrict v, long K, int first)  \
{                                                                                                   \
    long k;                                                                                         \
    if (first) for (k = 0; k < K; k++) out[k] = a * v[k];                                           \
    else for (k = 0; k < K; k++) out[k] += a * v[k];                                                \
}                                                                                                   \
/* dw[u0:u1] and db[u0:u1] (N >= 1) */                                                              \
static inline void fc_dense_bwd_w_##S(const T *dy, const T *x, T *dw, T *db, long N, long K, long U, \
                                      long u0, long u1)                                             \
{                                                                                                   \
    long n, u;                                                                                      \
    for (u = u0; u < u1; u++) {                                                                     \
        T acc = 0;                                                                                  \
        for (n = 0; n < N; n++) {                                                                   \
            fc_dense_axpy_##S(dw + u * K, dy[n * U + u], x + n * K, K, n == 0);                     \
            acc += dy[n * U + u];                                                                   \
        }                                                                                           \
        db[u] = acc;                                                                                \
    }                                                                                               \
}                                                                                                   \
/* out[k] (+)= a0*v0[k], then += a1*v1[k], a2*v2[k], a3*v3[k]: the same additions in the same order \
 * as four fc_dense_axpy calls, with one load and store of out instead of four */                  \
static inline void fc_dense_axpy4_##S(T *restrict out, const T *a, const T *restrict v0,          \
                                      const T *restrict v1, const T *restrict v2,                  \
                                      const T *restrict v3, long K, int first)                     \
{                                                                                                   \
    long k;                                                                                         \
    const T a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];                                            \
    if (first)                                                                                      \
        for (k = 0; k < K; k++) {                                                                   \
            T t = a0 * v0[k];                                                                       \
            t += a1 * v1[k]; t += a2 * v2[k]; t += a3 * v3[k];                                      \
            out[k] = t;                                                                             \
        }                                                                                           \
    else                                                                                            \
        for (k = 0; k < K; k++) {                                                                   \
            T t = out[k];                                                                           \
            t += a0 * v0[k]; t += a1 * v1[k]; t += a2 * v2[k]; t += a3 * v3[k];                     \
            out[k] = t;                                                                             \
        }                                                                                           \
}                                                                                                   \
/* dx[:, k0:k1]: each element summed over u in order, whatever the split */                         \
static inline void fc_dense_bwd_x_##S(const T *dy, const T *w, T *dx, long N, long K, long U,       \
                                      long k0, long k1)                                             \
{                                                                                                   \
    long n, u;                                                                                      \
    for (n = 0; n < N; n++) {                                                                       \
        T *out = dx + n * K + k0;                                                                   \
        const T *a = dy + n * U;                                                                    \
        const T *wk = w + k0;                                                                       \
        for (u = 0; u + 4 <= U; u += 4)                                                             \
            fc_dense_axpy4_##S(out, a + u, wk + u * K, wk + (u + 1) * K, wk + (u + 2) * K,          \
                               wk + (u + 3) * K, k1 - k0, u == 0);                                  \
        for (; u < U; u++)                                                                          \
            fc_dense_axpy_##S(out, a[u], wk + u * K, k1 - k0, u == 0);                              \
    }                                                                                               \
}                                                                                                   \
static inline void fc_dense_bwd_##S(const T *dy, const T *x, const T *w, T *dx, T *dw, T *db,      \
                                    long N, long K, long U)                                         \
{                                                                                                   \
    long u;                                                                                         \
    if (N == 0) {                     /* an empty batch: zero gradients */                         \
        memset(dw, 0, (size_t)(U * K) * sizeof(T));                                                 \
        for (u = 0; u < U; u++) db[u] = 0;                                                          \
        return;                                                                                     \
    }                                                                                               \
    fc_dense_bwd_w_##S(dy, x, dw, db, N, K, U, 0, U);                                               \
    if (dx) fc_dense_bwd_x_##S(dy, w, dx, N, K, U, 0, K);                                           \
}
FC_DEFINE_DENSE(double, d)
FC_DEFINE_DENSE(float, s)

#endif /* FASTCONV_DENSE_H */
