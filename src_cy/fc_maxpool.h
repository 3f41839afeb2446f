/* The 2x2, stride-2 max-pool row for src_cy/_maxpool.pyx (the pooling of most convnets).  Plain C with
 * restrict pointers and the window's four elements read at constant offsets, so that the compiler
 * vectorises it (the general loop in the .pyx reads at a run-time stride and stays scalar).  Same rule as
 * the general loop: the window's elements in row-major order, a later one wins only if it is larger or a
 * NaN over a number, so the first maximum wins and NaN propagates. */
#ifndef FASTCONV_MAXPOOL_H
#define FASTCONV_MAXPOOL_H

#define FC_TAKES(v, m) ((v) > (m) || ((v) != (v) && (m) == (m)))

/* One output row: r0, r1 the window's two input rows (r1 = r0 + W), base the flat position of r0[0] in
 * its plane; y[i] and idx[i] for the Wo windows of the row. */
#define FC_DEFINE_POOL2(T, S)                                                                      \
static inline void fc_pool2_row_##S(const T *restrict r0, const T *restrict r1, T *restrict y,     \
                                    long long *restrict idx, long Wo, long long base, long W)      \
{                                                                                                  \
    long i;                                                                                        \
    for (i = 0; i < Wo; i++) {                                                                     \
        T a = r0[2 * i], b = r0[2 * i + 1], c = r1[2 * i], d = r1[2 * i + 1];                     \
        T m = a;                                                                                   \
        long long k = 0;                                                                           \
        if (FC_TAKES(b, m)) { m = b; k = 1; }                                                      \
        if (FC_TAKES(c, m)) { m = c; k = W; }                                                      \
        if (FC_TAKES(d, m)) { m = d; k = W + 1; }                                                  \
        y[i] = m;                                                                                  \
        idx[i] = base + 2 * i + k;                                                                 \
    }                                                                                              \
}

FC_DEFINE_POOL2(double, d)
FC_DEFINE_POOL2(float, s)

#endif /* FASTCONV_MAXPOOL_H */
