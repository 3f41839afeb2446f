/* Elementwise activation loops for src_cy/_activations.pyx, forward and backward, float and double.
 *
 * Two precision rules, the same in fastconv.reference:
 * - kinds built from +, -, *, /, comparisons only (leaky_relu, softsign, relu6, hard_sigmoid, and the
 *   backward of sigmoid and tanh, which read y) compute in the array's dtype, so the compiler vectorises
 *   them and they are bit-identical to NumPy;
 * - kinds that call the C library (exp, expm1, log1p, tanh, erf) compute in double for either dtype and
 *   round once at the store, so a float32 result is within one rounding of the double formula.
 * Each branch is PyTorch's (torch.nn.functional), condition and all, so kinks, signed zeros and NaN go the
 * way PyTorch sends them; the few places that differ say so.  Plain C with restrict pointers: the callers
 * pass arrays that do not overlap. */
#ifndef FASTCONV_ACTIVATIONS_H
#define FASTCONV_ACTIVATIONS_H
#include <math.h>

enum {
    FC_SIGMOID = 0, FC_TANH, FC_ELU, FC_GELU, FC_GELU_TANH, FC_LEAKY_RELU, FC_SILU, FC_SOFTPLUS,
    FC_SOFTSIGN, FC_RELU6, FC_HARD_SIGMOID, FC_NUM_KINDS
};

/* Exact decimal forms of the constants, written the same in fastconv/reference.py. */
#define FC_SQRT1_2 0.7071067811865476          /* 1/sqrt(2) */
#define FC_INV_SQRT_2PI 0.3989422804014327     /* 1/sqrt(2*pi) */
#define FC_SQRT_2_OVER_PI 0.7978845608028654   /* sqrt(2/pi) */
#define FC_GELU_KAPPA 0.044715

/* 1/(1+exp(-x)) split by sign so that exp never overflows; NaN takes the second branch and stays NaN. */
static inline double fc_sigmoid(double x)
{
    double e;
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    e = exp(x);
    return e / (1.0 + e);
}

/* ---- forward formulas in double (a = alpha*scale for elu, b = scale) ---- */
static inline double fc_elu_f(double x, double c, double s) { return x <= 0 ? c * expm1(x) : s * x; }
static inline double fc_gelu_f(double x) { return (x * 0.5) * (1.0 + erf(x * FC_SQRT1_2)); }
static inline double fc_gelu_tanh_f(double x)
{
    double inner = FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * (x * x * x));
    return (0.5 * x) * (1.0 + tanh(inner));
}
static inline double fc_softplus_f(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

/* ---- backward formulas in double: dx from dy and the input x ---- */
static inline double fc_elu_b(double d, double x, double c, double s) { return x <= 0 ? d * (c * exp(x)) : d * s; }
static inline double fc_gelu_b(double d, double x)
{
    double cdf = 0.5 * (1.0 + erf(x * FC_SQRT1_2));
    double pdf = exp((-0.5 * x) * x) * FC_INV_SQRT_2PI;
    return d * (cdf + x * pdf);
}
static inline double fc_gelu_tanh_b(double d, double x)
{
    double x_sq = x * x, x_cube = x_sq * x;
    double t = tanh(FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * x_cube));
    double left = 0.5 * x, right = 1.0 + t;
    double inner_d = FC_SQRT_2_OVER_PI * (1.0 + 3.0 * FC_GELU_KAPPA * x_sq);
    return d * (0.5 * right + left * (1.0 - t * t) * inner_d);
}
static inline double fc_silu_b(double d, double x)
{
    double s = fc_sigmoid(x);
    return d * s * (1.0 + x * (1.0 - s));
}

/* One loop per kind and type.  LIBM loops widen to double and round once; NATIVE loops stay in T. */
#define FC_FWD_LIBM(NAME, T, S, EXPR)                                                                    \
static inline void fc_##NAME##_fwd_##S(const T *restrict x, T *restrict y, long n, double a, double b)   \
{                                                                                                       \
    long i;                                                                                             \
    (void)a; (void)b;                                                                                   \
    for (i = 0; i < n; i++) {                                                                           \
        double v = (double)x[i];                                                                        \
        y[i] = (T)(EXPR);                                                                               \
    }                                                                                                   \
}
#define FC_BWD_LIBM(NAME, T, S, EXPR)                                                                    \
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
FC_FWD_LIBM(sigmoid, T, S, fc_sigmoid(v))                                                                \
FC_FWD_LIBM(tanh, T, S, tanh(v))                                                                         \
FC_FWD_LIBM(elu, T, S, fc_elu_f(v, a, b))                                                                \
FC_FWD_LIBM(gelu, T, S, fc_gelu_f(v))                                                                    \
FC_FWD_LIBM(gelu_tanh, T, S, fc_gelu_tanh_f(v))                                                          \
FC_FWD_LIBM(silu, T, S, v * fc_sigmoid(v))                                                               \
FC_FWD_LIBM(softplus, T, S, fc_softplus_f(v))                                                            \
FC_BWD_LIBM(elu, T, S, fc_elu_b(d, v, a, b))                                                             \
FC_BWD_LIBM(gelu, T, S, fc_gelu_b(d, v))                                                                 \
FC_BWD_LIBM(gelu_tanh, T, S, fc_gelu_tanh_b(d, v))                                                       \
FC_BWD_LIBM(silu, T, S, fc_silu_b(d, v))                                                                 \
FC_BWD_LIBM(softplus, T, S, d * fc_sigmoid(v))                                                           \
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

/* Loops that call the C library: they pay for a parallel region at fewer elements. */
static inline int fc_act_calls_libm(int kind, int backward)
{
    if (kind == FC_LEAKY_RELU || kind == FC_SOFTSIGN || kind == FC_RELU6 || kind == FC_HARD_SIGMOID)
        return 0;
    return !(backward && (kind == FC_SIGMOID || kind == FC_TANH));
}

#endif /* FASTCONV_ACTIVATIONS_H */
