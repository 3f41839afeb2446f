/* Winograd F(2x2, 3x3) transforms for fastconv's 3x3 stride-1 conv2d (src_cy/_conv.pyx).
 *
 * A 2x2 block of outputs of a 3x3 correlation is y = A^T [ (G g G^T) .* (B^T d B) ] A, with d the 4x4
 * input patch under it and
 *     G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *     A^T = [1 1 1 0; 0 1 -1 -1]
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).  Summed over channels, the
 * 16 elementwise products become 16 matrix products, U[xi] (F x C) @ V[xi] (C x tiles): 16 products of
 * length C per 4 outputs instead of 36, 2.25x fewer multiplications.
 */
#ifndef FASTCONV_FC_WINOGRAD_H
#define FASTCONV_FC_WINOGRAD_H

#include <string.h>

#define FC_DEFINE_WINOGRAD(T, S)                                                                          \
/* up[((xi * mb + m) * C + c) * mr + i] = (G g G^T)[xi] of filter f = m * mr + i, channel c: for each xi, \
 * the F x C matrix U[xi] in panels of mr rows, zero past row F (the nn kernel's packed A). */           \
static void fc_wino_filter_##S(const T *w, long F, long C, long mr, T *up)                               \
{                                                                                                         \
    long mb = (F + mr - 1) / mr, f, c, j, a, b;                                                           \
    T t[4][3], u[4][4];                                                                                   \
    memset(up, 0, (size_t)(16 * mb * C * mr) * sizeof(T));                                               \
    for (f = 0; f < F; f++)                                                                               \
        for (c = 0; c < C; c++) {                                                                         \
            const T *g = w + (f * C + c) * 9;                                                             \
            for (j = 0; j < 3; j++) {                                                                     \
                t[0][j] = g[j];                                                                           \
                t[1][j] = (g[j] + g[3 + j] + g[6 + j]) * (T)0.5;                                          \
                t[2][j] = (g[j] - g[3 + j] + g[6 + j]) * (T)0.5;                                          \
                t[3][j] = g[6 + j];                                                                       \
            }                                                                                             \
            for (a = 0; a < 4; a++) {                                                                     \
                u[a][0] = t[a][0];                                                                        \
                u[a][1] = (t[a][0] + t[a][1] + t[a][2]) * (T)0.5;                                         \
                u[a][2] = (t[a][0] - t[a][1] + t[a][2]) * (T)0.5;                                         \
                u[a][3] = t[a][2];                                                                        \
            }                                                                                             \
            for (a = 0; a < 4; a++)                                                                       \
                for (b = 0; b < 4; b++)                                                                   \
                    up[(((a * 4 + b) * mb + f / mr) * C + c) * mr + f % mr] = u[a][b];                     \
        }                                                                                                 \
}                                                                                                         \
                                                                                                          \
/* v[xi * ps + c * tp + t] = V[xi] of channel c, tile t < nt, all 16 xi at once (zero for nt <= t < tp;  \
 * ps >= C * tp, not a multiple of 4096 bytes: 16 planes at such a stride share one set of L1 lines).     \
 * Tile t's patch starts at x + c * HW + base[t]; bit r * 4 + s of mask[t] says whether its row r,       \
 * column s lies inside the image (outside: padding, zero). */                                           \
static void fc_wino_input_##S(const T *x, long HW, long W, long C, const long *base,                     \
                              const unsigned short *mask, long nt, long tp, long ps, T *v)               \
{                                                                                                         \
    long c, t;                                                                                            \
    int r, s, a;                                                                                          \
    T d[4][4], e[4][4];                                                                                   \
    for (c = 0; c < C; c++) {                                                                             \
        const T *xc = x + c * HW;                                                                         \
        T *vc = v + c * tp;                                                                               \
        for (t = 0; t < nt; t++) {                                                                        \
            const T *p = xc + base[t];                                                                    \
            unsigned m = mask[t];                                                                         \
            if (m == 0xFFFFu) {                                                                           \
                for (r = 0; r < 4; r++)                                                                   \
                    for (s = 0; s < 4; s++) d[r][s] = p[r * W + s];                                       \
            } else {                                                                                      \
                for (r = 0; r < 4; r++)                                                                   \
                    for (s = 0; s < 4; s++) d[r][s] = (m >> (r * 4 + s)) & 1u ? p[r * W + s] : (T)0;      \
            }                                                                                             \
            for (s = 0; s < 4; s++) {                               /* e = B^T d */                       \
                e[0][s] = d[0][s] - d[2][s];                                                              \
                e[1][s] = d[1][s] + d[2][s];                                                              \
                e[2][s] = d[2][s] - d[1][s];                                                              \
                e[3][s] = d[1][s] - d[3][s];                                                              \
            }                                                                                             \
            for (a = 0; a < 4; a++) {                               /* V = e B */                         \
                vc[(a * 4 + 0) * ps + t] = e[a][0] - e[a][2];                                             \
                vc[(a * 4 + 1) * ps + t] = e[a][1] + e[a][2];                                             \
                vc[(a * 4 + 2) * ps + t] = e[a][2] - e[a][1];                                             \
                vc[(a * 4 + 3) * ps + t] = e[a][1] - e[a][3];                                             \
            }                                                                                             \
        }                                                                                                 \
        for (t = nt; t < tp; t++)                                                                         \
            for (a = 0; a < 16; a++) vc[a * ps + t] = 0;                                                  \
    }                                                                                                     \
}                                                                                                         \
                                                                                                          \
/* The output transform: yb[(r * 2 + s) * n + k] = (A^T M A)[r][s] for the n = F * tp elements k, from    \
 * the 16 planes M[xi] at m + xi * pm (restrict: the loop vectorises, it never reassociates). */          \
static void fc_wino_output_##S(const T *restrict m, long pm, long n, T *restrict yb)                      \
{                                                                                                         \
    long k;                                                                                               \
    int b;                                                                                                \
    for (k = 0; k < n; k++) {                                                                             \
        T t0[4], t1[4];                                     /* the two rows of A^T M */                   \
        for (b = 0; b < 4; b++) {                                                                         \
            T m0 = m[b * pm + k], m1 = m[(4 + b) * pm + k], m2 = m[(8 + b) * pm + k];                     \
            T m3 = m[(12 + b) * pm + k];                                                                  \
            t0[b] = m0 + m1 + m2;                                                                         \
            t1[b] = m1 - m2 - m3;                                                                         \
        }                                                                                                 \
        yb[k] = t0[0] + t0[1] + t0[2];                                                                    \
        yb[n + k] = t0[1] - t0[2] - t0[3];                                                                \
        yb[2 * n + k] = t1[0] + t1[1] + t1[2];                                                            \
        yb[3 * n + k] = t1[1] - t1[2] - t1[3];                                                            \
    }                                                                                                     \
}

FC_DEFINE_WINOGRAD(double, d)
FC_DEFINE_WINOGRAD(float, s)

#endif
