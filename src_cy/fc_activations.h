/* Elementwise activation loops for src_cy/_activations.pyx, forward and backward, float and double.
 *
 * Two precision rules, the same in fastconv.reference:
 * - kinds built from +, -, *, /, comparisons only (leaky_relu, softsign, relu6, hard_sigmoid, and the
 *   backward of sigmoid and tanh, which read y) compute in the array's dtype;
 * - the transcendental kinds compute in double for either dtype and round once at the store, so a float32
 *   result is within one rounding of the double formula.  Their exp, expm1, tanh and log1p are the
 *   branch-free polynomials below (within 1, 1, 3 and 3 ulp of the C library's over their ranges), which
 *   vectorise; the reference repeats them operation by operation, so every kind is bit-identical to its
 *   twin except gelu, whose erf is the C library's (the twin calls math.erf, the same routine where
 *   CPython uses the platform's erf).
 * Each branch is PyTorch's (torch.nn.functional), condition and all, so kinks, signed zeros and NaN go the
 * way PyTorch sends them; the few places that differ say so.  Plain C with restrict pointers: the callers
 * pass arrays that do not overlap; the build has no fused multiply-add contraction (-ffp-contract=off). */
#ifndef FASTCONV_ACTIVATIONS_H
#define FASTCONV_ACTIVATIONS_H
#include <math.h>
#include <string.h>

enum {
    FC_SIGMOID = 0, FC_TANH, FC_ELU, FC_GELU, FC_GELU_TANH, FC_LEAKY_RELU, FC_SILU, FC_SOFTPLUS,
    FC_SOFTSIGN, FC_RELU6, FC_HARD_SIGMOID, FC_NUM_KINDS
};

/* Exact decimal forms of the constants, written the same in fastconv/reference.py. */
#define FC_SQRT1_2 0.7071067811865476          /* 1/sqrt(2) */
#define FC_INV_SQRT_2PI 0.3989422804014327     /* 1/sqrt(2*pi) */
#define FC_SQRT_2_OVER_PI 0.7978845608028654   /* sqrt(2/pi) */
#define FC_GELU_KAPPA 0.044715

/* ---- exp, expm1 and tanh without branches, so that the loops calling them vectorise ----
 * exp(x) = 2**k * exp(r), k = rint(x/ln2), r = x - k*ln2 (ln2 in two parts, k*FC_LN2_HI exact), |r| <= 0.35,
 * exp(r) by its Taylor polynomial to r**13 (truncation below 1e-17 relative), 2**k applied in two halves so
 * that overflow, underflow and subnormal results round once.  fastconv/reference.py repeats every
 * operation in NumPy, so the kernels and the twin agree bit for bit. */
#define FC_INV_LN2 1.4426950408889634
#define FC_LN2_HI 0.6931471803691238
#define FC_LN2_LO 1.9082149292705877e-10
#define FC_ROUND_SHIFT 6755399441055744.0     /* 1.5 * 2**52: adding and subtracting it rounds to integer */

static inline double fc_pow2i(long j)         /* 2**j for -1022 <= j <= 1023 */
{
    unsigned long long bits = (unsigned long long)(j + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline double fc_expm1_poly(double r)  /* expm1(r) for |r| <= 0.35: r + r*r*(1/2! + r/3! + ...) */
{
    double q = 1.1470745597729725e-11;
    q = q * r + 1.6059043836821613e-10;
    q = q * r + 2.08767569878681e-09;
    q = q * r + 2.505210838544172e-08;
    q = q * r + 2.755731922398589e-07;
    q = q * r + 2.7557319223985893e-06;
    q = q * r + 2.48015873015873e-05;
    q = q * r + 0.0001984126984126984;
    q = q * r + 0.001388888888888889;
    q = q * r + 0.008333333333333333;
    q = q * r + 0.041666666666666664;
    q = q * r + 0.16666666666666666;
    q = q * r + 0.5;
    return r + (r * r) * q;
}

static inline double fc_exp(double x)
{
    double xc = x > 710.0 ? 710.0 : x;        /* beyond these exp is inf or 0 already */
    xc = xc < -746.0 ? -746.0 : xc;
    xc = x == x ? xc : 0.0;                   /* NaN: any finite value, replaced at the end */
    double kd = (xc * FC_INV_LN2 + FC_ROUND_SHIFT) - FC_ROUND_SHIFT;
    double r = (xc - kd * FC_LN2_HI) - kd * FC_LN2_LO;
    long k = (long)kd, k1 = k >> 1;
    double y = (1.0 + fc_expm1_poly(r)) * fc_pow2i(k1) * fc_pow2i(k - k1);
    return x == x ? y : x;
}

/* expm1(x) for x <= 0 (the only arguments elu and tanh give it): the polynomial at k = 0, else
 * 2**k * expm1(r) + (2**k - 1), which has no cancellation for k < 0; below -40 it is -1 in double. */
static inline double fc_expm1_neg(double x)
{
    double xc = x < -40.0 ? -40.0 : x;
    xc = x == x ? xc : 0.0;
    double kd = (xc * FC_INV_LN2 + FC_ROUND_SHIFT) - FC_ROUND_SHIFT;
    double r = (xc - kd * FC_LN2_HI) - kd * FC_LN2_LO;
    double p = fc_pow2i((long)kd);
    double y = p * fc_expm1_poly(r) + (p - 1.0);
    return (x == x && x != 0) ? y : x;        /* NaN and both zeros pass through */
}

/* tanh(x) = sign(x) * -e/(e + 2), e = expm1(-2|x|); signed zeros and NaN pass through. */
static inline double fc_tanh(double x)
{
    double e = fc_expm1_neg(-2.0 * fabs(x));
    double t = copysign(-e / (e + 2.0), x);
    return x == x ? t : x;
}

/* log1p(e) for 0 <= e <= 1 (softplus's argument) as 2*atanh(s), s = e/(2 + e) <= 1/3: its series
 * 2*s*(1 + s**2/3 + s**4/5 + ... + s**34/35) is complete to 1e-18 relative. */
static inline double fc_log1p_unit(double e)
{
    double s = e / (2.0 + e), s2 = s * s;
    double p = 0.02857142857142857;
    p = p * s2 + 0.030303030303030304;
    p = p * s2 + 0.03225806451612903;
    p = p * s2 + 0.034482758620689655;
    p = p * s2 + 0.037037037037037035;
    p = p * s2 + 0.04;
    p = p * s2 + 0.043478260869565216;
    p = p * s2 + 0.047619047619047616;
    p = p * s2 + 0.05263157894736842;
    p = p * s2 + 0.058823529411764705;
    p = p * s2 + 0.06666666666666667;
    p = p * s2 + 0.07692307692307693;
    p = p * s2 + 0.09090909090909091;
    p = p * s2 + 0.1111111111111111;
    p = p * s2 + 0.14285714285714285;
    p = p * s2 + 0.2;
    p = p * s2 + 0.3333333333333333;
    p = p * s2 + 1.0;
    return (2.0 * s) * p;
}

/* 1/(1+exp(-x)) where x >= 0, exp(x)/(1+exp(x)) elsewhere: exp never overflows; NaN stays NaN. */
static inline double fc_sigmoid(double x)
{
    double e = fc_exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* ---- forward formulas in double (a = alpha*scale for elu, b = scale) ---- */
static inline double fc_elu_f(double x, double c, double s)
{
    return x <= 0 ? c * fc_expm1_neg(x <= 0 ? x : 0.0) : s * x;
}
static inline double fc_gelu_f(double x) { return (x * 0.5) * (1.0 + erf(x * FC_SQRT1_2)); }
static inline double fc_gelu_tanh_f(double x)
{
    double inner = FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * (x * x * x));
    return (0.5 * x) * (1.0 + fc_tanh(inner));
}
static inline double fc_softplus_f(double x) { return (x > 0 ? x : 0.0) + fc_log1p_unit(fc_exp(-fabs(x))); }

/* ---- backward formulas in double: dx from dy and the input x ---- */
static inline double fc_elu_b(double d, double x, double c, double s)
{
    return x <= 0 ? d * (c * fc_exp(x)) : d * s;
}
static inline double fc_gelu_b(double d, double x)
{
    double cdf = 0.5 * (1.0 + erf(x * FC_SQRT1_2));
    double pdf = fc_exp((-0.5 * x) * x) * FC_INV_SQRT_2PI;
    return d * (cdf + x * pdf);
}
static inline double fc_gelu_tanh_b(double d, double x)
{
    double x_sq = x * x, x_cube = x_sq * x;
    double t = fc_tanh(FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * x_cube));
    double left = 0.5 * x, right = 1.0 + t;
    double inner_d = FC_SQRT_2_OVER_PI * (1.0 + 3.0 * FC_GELU_KAPPA * x_sq);
    return d * (0.5 * right + left * (1.0 - t * t) * inner_d);
}
static inline double fc_silu_b(double d, double x)
{
    double s = fc_sigmoid(x);
    return d * s * (1.0 + x * (1.0 - s));
}

/* One loop per kind and type.  WIDE loops compute in double and round once at the store; the others stay in T. */
#define FC_FWD_WIDE(NAME, T, S, EXPR)                                                                    \
static inline void fc_##NAME##_fwd_##S(const T *restrict x, T *restrict y, long n, double a, double b)   \
{                                                                                                       \
    long i;                                                                                             \
    (void)a; (void)b;                                                                                   \
    for (i = 0; i < n; i++) {                                                                           \
        double v = (double)x[i];                                                                        \
        y[i] = (T)(EXPR);                                                                               \
    }                                                                                                   \
}
#define FC_BWD_WIDE(NAME, T, S, EXPR)                                                                    \
static inline void fc_##NAME##_bwd_##S(const T *restrict dy, const T *restrict x, T *restrict dx,       \
                                       long n, double a, double b)                                      \
{                                                                                                       \
    long i;                                                                                             \
    (void)a; (void)b;                                                                                   \
    for (i = 0; i < n; i++) {                                                                           \
        double d = (double)dy[i], v = (double)x[i];                                                     \
        dx[i] = (T)(EXPR);                                                                              \
    }                                                                                                   \
}

#define FC_DEFINE_ACTIVATIONS(T, S)                                                                      \
FC_FWD_WIDE(sigmoid, T, S, fc_sigmoid(v))                                                                \
FC_FWD_WIDE(tanh, T, S, fc_tanh(v))                                                                         \
FC_FWD_WIDE(elu, T, S, fc_elu_f(v, a, b))                                                                \
FC_FWD_WIDE(gelu, T, S, fc_gelu_f(v))                                                                    \
FC_FWD_WIDE(gelu_tanh, T, S, fc_gelu_tanh_f(v))                                                          \
FC_FWD_WIDE(silu, T, S, v * fc_sigmoid(v))                                                               \
FC_FWD_WIDE(softplus, T, S, fc_softplus_f(v))                                                            \
FC_BWD_WIDE(elu, T, S, fc_elu_b(d, v, a, b))                                                             \
FC_BWD_WIDE(gelu, T, S, fc_gelu_b(d, v))                                                                 \
FC_BWD_WIDE(gelu_tanh, T, S, fc_gelu_tanh_b(d, v))                                                       \
FC_BWD_WIDE(silu, T, S, fc_silu_b(d, v))                                                                 \
FC_BWD_WIDE(softplus, T, S, d * fc_sigmoid(v))                                                           \
/* sigmoid and tanh backward read y: dx = (dy*y)*(1-y) and dy*(1-y*y), NumPy's grouping in the model */ \
static inline void fc_sigmoid_bwd_##S(const T *restrict dy, const T *restrict y, T *restrict dx, long n)  \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = y[i];                                                                                     \
        dx[i] = (dy[i] * v) * ((T)1 - v);                                                               \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_tanh_bwd_##S(const T *restrict dy, const T *restrict y, T *restrict dx, long n)     \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = y[i];                                                                                     \
        dx[i] = dy[i] * ((T)1 - v * v);                                                                 \
    }                                                                                                   \
}                                                                                                       \
/* leaky_relu: x > 0 ? x : x*slope; the gradient takes the slope at 0 and at NaN (PyTorch) */          \
static inline void fc_leaky_relu_fwd_##S(const T *restrict x, T *restrict y, long n, T slope)           \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i];                                                                                     \
        y[i] = v > 0 ? v : v * slope;                                                                   \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_leaky_relu_bwd_##S(const T *restrict dy, const T *restrict x, T *restrict dx,     \
                                         long n, T slope)                                               \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T d = dy[i];                                                                                    \
        dx[i] = x[i] > 0 ? d : d * slope;                                                               \
    }                                                                                                   \
}                                                                                                       \
/* softsign: x/(1+|x|), dx = dy/((1+|x|)*(1+|x|)) (0 at +-inf, where PyTorch's autograd gives NaN) */    \
static inline void fc_softsign_fwd_##S(const T *restrict x, T *restrict y, long n)                      \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i];                                                                                     \
        y[i] = v / ((T)1 + (v < 0 ? -v : v));                                                           \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_softsign_bwd_##S(const T *restrict dy, const T *restrict x, T *restrict dx, long n) \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i], den = (T)1 + (v < 0 ? -v : v);                                                      \
        dx[i] = dy[i] / (den * den);                                                                    \
    }                                                                                                   \
}                                                                                                       \
/* relu6: PyTorch's clamp(x, 0, 6) (-0 and NaN pass through); gradient 0 unless 0 < x < 6, NaN passes */ \
static inline void fc_relu6_fwd_##S(const T *restrict x, T *restrict y, long n)                         \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i];                                                                                     \
        v = v < 0 ? (T)0 : v;                                                                           \
        y[i] = v > 6 ? (T)6 : v;                                                                        \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_relu6_bwd_##S(const T *restrict dy, const T *restrict x, T *restrict dx, long n)   \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i], d = dy[i];                                                                          \
        dx[i] = (v <= 0 || v >= 6) ? (T)0 : d;                                                          \
    }                                                                                                   \
}                                                                                                       \
/* hard_sigmoid: clamp(x + 3, 0, 6) / 6; gradient dy/6 where -3 < x < 3, else 0 (NaN: 0) */               \
static inline void fc_hard_sigmoid_fwd_##S(const T *restrict x, T *restrict y, long n)                  \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i] + (T)3;                                                                              \
        v = v < 0 ? (T)0 : v;                                                                           \
        v = v > 6 ? (T)6 : v;                                                                           \
        y[i] = v / (T)6;                                                                                \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_hard_sigmoid_bwd_##S(const T *restrict dy, const T *restrict x, T *restrict dx,   \
                                           long n)                                                      \
{                                                                                                       \
    long i;                                                                                             \
    for (i = 0; i < n; i++) {                                                                           \
        T v = x[i], d = dy[i];                                                                          \
        dx[i] = (v > -3 && v < 3) ? d / (T)6 : (T)0;                                                    \
    }                                                                                                   \
}                                                                                                       \
/* dispatch on the kind, outside the loops */                                                           \
static inline void fc_act_fwd_##S(int kind, const T *x, T *y, long n, double a, double b)                \
{                                                                                                       \
    switch (kind) {                                                                                     \
    case FC_SIGMOID: fc_sigmoid_fwd_##S(x, y, n, a, b); break;                                          \
    case FC_TANH: fc_tanh_fwd_##S(x, y, n, a, b); break;                                                \
    case FC_ELU: fc_elu_fwd_##S(x, y, n, a, b); break;                                                  \
    case FC_GELU: fc_gelu_fwd_##S(x, y, n, a, b); break;                                                \
    case FC_GELU_TANH: fc_gelu_tanh_fwd_##S(x, y, n, a, b); break;                                      \
    case FC_LEAKY_RELU: fc_leaky_relu_fwd_##S(x, y, n, (T)a); break;                                    \
    case FC_SILU: fc_silu_fwd_##S(x, y, n, a, b); break;                                                \
    case FC_SOFTPLUS: fc_softplus_fwd_##S(x, y, n, a, b); break;                                        \
    case FC_SOFTSIGN: fc_softsign_fwd_##S(x, y, n); break;                                              \
    case FC_RELU6: fc_relu6_fwd_##S(x, y, n); break;                                                    \
    case FC_HARD_SIGMOID: fc_hard_sigmoid_fwd_##S(x, y, n); break;                                      \
    default: break;                                                                                     \
    }                                                                                                   \
}                                                                                                       \
static inline void fc_act_bwd_##S(int kind, const T *dy, const T *x, const T *y, T *dx, long n,          \
                                  double a, double b)                                                   \
{                                                                                                       \
    switch (kind) {                                                                                     \
    case FC_SIGMOID: fc_sigmoid_bwd_##S(dy, y, dx, n); break;                                           \
    case FC_TANH: fc_tanh_bwd_##S(dy, y, dx, n); break;                                                 \
    case FC_ELU: fc_elu_bwd_##S(dy, x, dx, n, a, b); break;                                             \
    case FC_GELU: fc_gelu_bwd_##S(dy, x, dx, n, a, b); break;                                           \
    case FC_GELU_TANH: fc_gelu_tanh_bwd_##S(dy, x, dx, n, a, b); break;                                 \
    case FC_LEAKY_RELU: fc_leaky_relu_bwd_##S(dy, x, dx, n, (T)a); break;                               \
    case FC_SILU: fc_silu_bwd_##S(dy, x, dx, n, a, b); break;                                           \
    case FC_SOFTPLUS: fc_softplus_bwd_##S(dy, x, dx, n, a, b); break;                                   \
    case FC_SOFTSIGN: fc_softsign_bwd_##S(dy, x, dx, n); break;                                         \
    case FC_RELU6: fc_relu6_bwd_##S(dy, x, dx, n); break;                                               \
    case FC_HARD_SIGMOID: fc_hard_sigmoid_bwd_##S(dy, x, dx, n); break;                                 \
    default: break;                                                                                     \
    }                                                                                                   \
}

FC_DEFINE_ACTIVATIONS(double, d)
FC_DEFINE_ACTIVATIONS(float, s)

/* Transcendental loops: they cost several times more per element and pay for a parallel region sooner. */
static inline int fc_act_is_costly(int kind, int backward)
{
    if (kind == FC_LEAKY_RELU || kind == FC_SOFTSIGN || kind == FC_RELU6 || kind == FC_HARD_SIGMOID)
        return 0;
    return !(backward && (kind == FC_SIGMOID || kind == FC_TANH));
}

#endif /* FASTCONV_ACTIVATIONS_H */
