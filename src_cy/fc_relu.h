/* ReLU loops for src_cy/_relu.pyx.  Plain C with restrict pointers so that the compiler vectorises them
 * (the same loops written in Cython, without restrict, stay scalar: the compiler cannot rule out that the
 * output overlaps the input).  The callers pass non-overlapping arrays. */
#ifndef FASTCONV_RELU_H
#define FASTCONV_RELU_H

#define FC_DEFINE_RELU(T, S)                                                                       \
static inline void fc_relu_fwd_##S(const T *restrict x, T *restrict y, unsigned char *restrict mask, \
                                   long n)                                                          \
{                                                                                                   \
    long i;                                                                                         \
    for (i = 0; i < n; i++) {                                                                       \
        T v = x[i];                                                                                 \
        y[i] = v <= 0 ? (T)0 : v;         /* NaN stays NaN */                                       \
        mask[i] = !(v <= 0);              /* True for NaN, False at exactly 0 */                    \
    }                                                                                               \
}                                                                                                   \
static inline void fc_relu_bwd_##S(const T *restrict dy, const unsigned char *restrict mask,        \
                                   T *restrict dx, long n)                                          \
{                                                                                                   \
    long i;                                                                                         \
    for (i = 0; i < n; i++) {         /* dy read unconditionally: no masked loads */                \
        T d = dy[i];                                                                                \
        dx[i] = mask[i] ? d : (T)0;                                                                 \
    }                                                                                               \
}

FC_DEFINE_RELU(double, d)
FC_DEFINE_RELU(float, s)

#endif /* FASTCONV_RELU_H */
