/* Elementwise activation loops for src_cy/_activations.pyx, forward and backward, float and double.
 *
 * Every kind computes in the array's dtype, the same in fastconv.reference.  The transcendental ones use
 * their own exp, expm1, tanh, log1p and erf: branch-free polynomials, one set in double (within 1, 1, 3, 3 ulp
 * and 3 eps of the C library's over their ranges) and one in float (within 1, 1, 3, 3 ulp and 3 eps of
 * float32's exact values), which vectorise; the reference repeats them operation by operation, so every kind
 * is bit-identical to its twin.
 * Each branch is PyTorch's (torch.nn.functional), condition and all, so kinks, signed zeros and NaN go the
 * way PyTorch sends them; the few places that differ say so.  Plain C with restrict pointers: the callers
 * pass arrays that do not overlap; the build has no fused multiply-add contraction (-ffp-contract=off). */
#ifndef FASTCONV_ACTIVATIONS_H
#define FASTCONV_ACTIVATIONS_H
#include <math.h>
#include <string.h>

/* The scalar helpers must inline into the loops, or the loops do not vectorise. */
#if defined(__GNUC__) || defined(__clang__)
#define FC_SCALAR static inline __attribute__((always_inline))
#else
#define FC_SCALAR static inline
#endif

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

FC_SCALAR double fc_pow2i(long j)         /* 2**j for -1022 <= j <= 1023 */
{
    unsigned long long bits = (unsigned long long)(j + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

FC_SCALAR double fc_expm1_poly(double r)  /* expm1(r) for |r| <= 0.35: r + r*r*(1/2! + r/3! + ...) */
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

FC_SCALAR double fc_exp(double x)
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
FC_SCALAR double fc_expm1_neg(double x)
{
    double xc = x < -40.0 ? -40.0 : x;
    xc = x == x ? xc : 0.0;
    double kd = (xc * FC_INV_LN2 + FC_ROUND_SHIFT) - FC_ROUND_SHIFT;
    double r = (xc - kd * FC_LN2_HI) - kd * FC_LN2_LO;
    double p = fc_pow2i((long)kd);
    double y = p * fc_expm1_poly(r) + (p - 1.0);
    return ((x == x) & (x != 0)) ? y : x;     /* NaN and both zeros pass through */
}

/* tanh(x) = sign(x) * -e/(e + 2), e = expm1(-2|x|); signed zeros and NaN pass through. */
FC_SCALAR double fc_tanh(double x)
{
    double e = fc_expm1_neg(-2.0 * fabs(x));
    double t = copysign(-e / (e + 2.0), x);
    return x == x ? t : x;
}

/* log1p(e) for 0 <= e <= 1 (softplus's argument) as 2*atanh(s), s = e/(2 + e) <= 1/3: its series
 * 2*s*(1 + s**2/3 + s**4/5 + ... + s**34/35) is complete to 1e-18 relative. */
FC_SCALAR double fc_log1p_unit(double e)
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

/* erf(x), for gelu.  |x| < 2: (2/sqrt(pi)) * |x| * exp(-x*x) * sum_n (2x*x)**n / (1*3*...*(2n+1)), a series of
 * positive terms (complete to 1e-19 at n = 34); exp takes -z/2 for the same rounded z = 2x*x as the series, so
 * the rounding of z cancels to first order.  |x| >= 2: 1 - erfc, erfc(x) = exp(-x*x) * g(1/x**2) / (x*sqrt(pi))
 * with g(u) = x*exp(x*x)*erfc(x)*sqrt(pi) fitted by Chebyshev polynomials of degree 18 on [1/36, 1/4]
 * (|fit error| < 2e-14 relative, < 1e-16 once multiplied by erfc <= 0.005); x is clamped to 6 in g, past which
 * erf is 1 in double.  Within 3 eps of the C library's erf. */
#define FC_TWO_OVER_SQRTPI 1.1283791670955126
#define FC_SQRTPI 1.7724538509055159

FC_SCALAR double fc_erf(double x)     /* written out step by step: GCC vectorises the calling loop */
{
    double a = fabs(x), z = 2.0 * a * a;
    double e = fc_exp(-0.5 * z);
    double s = 2.9639949605423333e-50;
    s = s * z + 2.04515652277421e-48;
    s = s * z + 1.3702548702587206e-46;
    s = s * z + 8.906656656681684e-45;
    s = s * z + 5.611193693709461e-43;
    s = s * z + 3.4228281531627713e-41;
    s = s * z + 2.019468610366035e-39;
    s = s * z + 1.1510971079086399e-37;
    s = s * z + 6.33103409349752e-36;
    s = s * z + 3.3554480695536855e-34;
    s = s * z + 1.7112785154723796e-32;
    s = s * z + 8.38526472581466e-31;
    s = s * z + 3.9410744211328905e-29;
    s = s * z + 1.7734834895098008e-27;
    s = s * z + 7.625979004892143e-26;
    s = s * z + 3.1266513920057783e-24;
    s = s * z + 1.2193940428822536e-22;
    s = s * z + 4.5117579586643385e-21;
    s = s * z + 1.5791152855325184e-19;
    s = s * z + 5.211080442257311e-18;
    s = s * z + 1.6154349370997664e-16;
    s = s * z + 4.684761317589322e-15;
    s = s * z + 1.264885555749117e-13;
    s = s * z + 3.1622138893727926e-12;
    s = s * z + 7.273091945557423e-11;
    s = s * z + 1.5273493085670588e-09;
    s = s * z + 2.901963686277412e-08;
    s = s * z + 4.9333382666716e-07;
    s = s * z + 7.4000074000074e-06;
    s = s * z + 9.62000962000962e-05;
    s = s * z + 0.0010582010582010583;
    s = s * z + 0.009523809523809525;
    s = s * z + 0.06666666666666667;
    s = s * z + 0.3333333333333333;
    s = s * z + 1.0;
    double small = (FC_TWO_OVER_SQRTPI * a) * e * s;
    double ac = a < 2.0 ? 2.0 : (a > 6.0 ? 6.0 : a);
    double t = (1.0 / (ac * ac)) * 9.0 + -1.2500000000000002, t2 = 2.0 * t;
    double b1 = 0.0, b2 = 0.0, b0;            /* Clenshaw's recurrence, from the top coefficient */
    b0 = (t2 * b1 - b2) + -2.2653773889426596e-15; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -2.9646942213045906e-15; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 1.1904082817483132e-14; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -6.017734384978825e-14; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 2.8443859862953186e-13; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -1.3817718119482507e-12; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 6.94294084805008e-12; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -3.6121772751619165e-11; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 1.9564887847435717e-10; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -1.1090608817287364e-09; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 6.626798598831511e-09; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -4.2123605876837426e-08; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 2.883902205669503e-07; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -2.1633926012034807e-06; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 1.8237456085205022e-05; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -0.0001798304565882841; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + 0.0022272841794086454; b2 = b1; b1 = b0;
    b0 = (t2 * b1 - b2) + -0.04046746751498493; b2 = b1; b1 = b0;
    double g = (t * b1 - b2) + 0.9437577877413555;
    double big = 1.0 - (e * g) / (a * FC_SQRTPI);
    double r = copysign(a < 2.0 ? small : big, x);
    return x == x ? r : x;
}

/* 1/(1+exp(-x)) where x >= 0, exp(x)/(1+exp(x)) elsewhere: exp never overflows; NaN stays NaN.  Written
 * with one division, (x >= 0 ? 1 : e)/(1 + e), the same two correctly rounded quotients. */
FC_SCALAR double fc_sigmoid(double x)
{
    double e = fc_exp(-fabs(x));
    return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

/* ---- forward formulas in double (a = alpha*scale for elu, b = scale) ---- */
FC_SCALAR double fc_elu_f(double x, double c, double s)
{
    return x <= 0 ? c * fc_expm1_neg(x <= 0 ? x : 0.0) : s * x;
}
FC_SCALAR double fc_gelu_f(double x) { return (x * 0.5) * (1.0 + fc_erf(x * FC_SQRT1_2)); }
FC_SCALAR double fc_gelu_tanh_f(double x)
{
    double inner = FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * (x * x * x));
    return (0.5 * x) * (1.0 + fc_tanh(inner));
}
FC_SCALAR double fc_softplus_f(double x) { return (x > 0 ? x : 0.0) + fc_log1p_unit(fc_exp(-fabs(x))); }

/* ---- backward formulas in double: dx from dy and the input x ---- */
FC_SCALAR double fc_elu_b(double d, double x, double c, double s)
{
    double ex = fc_exp(x <= 0 ? x : 0.0);    /* computed for every x: no branch in the loop */
    return x <= 0 ? d * (c * ex) : d * s;
}
FC_SCALAR double fc_gelu_b(double d, double x)
{
    double cdf = 0.5 * (1.0 + fc_erf(x * FC_SQRT1_2));
    double pdf = fc_exp((-0.5 * x) * x) * FC_INV_SQRT_2PI;
    return d * (cdf + x * pdf);
}
FC_SCALAR double fc_gelu_tanh_b(double d, double x)
{
    double x_sq = x * x, x_cube = x_sq * x;
    double t = fc_tanh(FC_SQRT_2_OVER_PI * (x + FC_GELU_KAPPA * x_cube));
    double left = 0.5 * x, right = 1.0 + t;
    double inner_d = FC_SQRT_2_OVER_PI * (1.0 + 3.0 * FC_GELU_KAPPA * x_sq);
    return d * (0.5 * right + left * (1.0 - t * t) * inner_d);
}
FC_SCALAR double fc_silu_b(double d, double x)
{
    double s = fc_sigmoid(x);
    return d * s * (1.0 + x * (1.0 - s));
}

/* ---- the float32 kinds: the same formulas in float, with float polynomials ----
 * float32 arrays compute in float (the float64 ones in double, above): exp (of x <= 0) and expm1 below are
 * within 1 ulp of float32's exact values, tanh and log1p 3 ulp, erf 3 eps absolute, each a short
 * branch-free polynomial that vectorises 16 lanes wide straight from the float loads.  fastconv/reference.py
 * repeats every float operation with np.float32 arithmetic, so the kernels and the twin agree bit for bit.
 * exp(x) = 2**k * exp(r) as above, ln2 in two parts (FC_LN2_HI_F has 15 significant bits, so k*FC_LN2_HI_F is
 * exact for |k| <= 150), |r| <= 0.35, exp(r) by its Taylor polynomial to r**7 (truncation below 1e-8
 * relative). */
#define FC_INV_LN2_F 1.442695f
#define FC_LN2_HI_F 0.69314575f
#define FC_LN2_LO_F 1.4286068e-06f
#define FC_ROUND_SHIFT_F 12582912.0f          /* 1.5 * 2**23 */

FC_SCALAR float fc_pow2if(int j)          /* 2**j for -126 <= j <= 127 */
{
    unsigned int bits = (unsigned int)(j + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

FC_SCALAR float fc_expm1_polyf(float r)   /* expm1(r) for |r| <= 0.35: r + r*r*(1/2! + ... + r**5/7!) */
{
    float q = 0.0001984127f;
    q = q * r + 0.0013888889f;
    q = q * r + 0.008333334f;
    q = q * r + 0.041666668f;
    q = q * r + 0.16666667f;
    q = q * r + 0.5f;
    return r + (r * r) * q;
}

/* exp(x) for x <= 0, the only arguments the float kinds give it (-|x|, min(x, 0), -x*x/2); below -104 it is
 * 0 in float.  One comparison clamps and sends NaN to -104 (x > -104 is false for NaN, so the compiler may use
 * a max instruction); the last line puts NaN back. */
FC_SCALAR float fc_exp_negf(float x)
{
    float xc = x > -104.0f ? x : -104.0f;
    float kd = (xc * FC_INV_LN2_F + FC_ROUND_SHIFT_F) - FC_ROUND_SHIFT_F;
    float r = (xc - kd * FC_LN2_HI_F) - kd * FC_LN2_LO_F;
    int k = (int)kd, k1 = k >> 1;
    float y = (1.0f + fc_expm1_polyf(r)) * fc_pow2if(k1) * fc_pow2if(k - k1);
    return x == x ? y : x;
}

/* expm1(x) for x <= 0, as fc_expm1_neg; below -20 it is -1 in float. */
FC_SCALAR float fc_expm1_negf(float x)
{
    float xc = x > -20.0f ? x : -20.0f;      /* NaN too, put back at the end */
    float kd = (xc * FC_INV_LN2_F + FC_ROUND_SHIFT_F) - FC_ROUND_SHIFT_F;
    float r = (xc - kd * FC_LN2_HI_F) - kd * FC_LN2_LO_F;
    float p = fc_pow2if((int)kd);
    float y = p * fc_expm1_polyf(r) + (p - 1.0f);
    return ((x == x) & (x != 0)) ? y : x;
}

FC_SCALAR float fc_tanhf(float x)
{
    float e = fc_expm1_negf(-2.0f * fabsf(x));
    float t = copysignf(-e / (e + 2.0f), x);
    return x == x ? t : x;
}

/* log1p(e) for 0 <= e <= 1 as 2*atanh(s), s = e/(2 + e) <= 1/3, the series to s**15 (complete to 1e-9). */
FC_SCALAR float fc_log1p_unitf(float e)
{
    float s = e / (2.0f + e), s2 = s * s;
    float p = 0.06666667f;
    p = p * s2 + 0.07692308f;
    p = p * s2 + 0.09090909f;
    p = p * s2 + 0.11111111f;
    p = p * s2 + 0.14285715f;
    p = p * s2 + 0.2f;
    p = p * s2 + 0.33333334f;
    p = p * s2 + 1.0f;
    return (2.0f * s) * p;
}

/* erf(x) = 1 - exp(-a*a) * g(a), a = min(|x|, 4), with g(a) = exp(a*a)*erfc(a) fitted by a polynomial of
 * degree 8 in t = 3*s - 2, s = 1/(1 + a/2) in [1/3, 1] (Chebyshev interpolation, fit error below 3e-9 once
 * multiplied by exp(-a*a)); past 4 erf is 1 in float.  Absolute error within 3 eps of float32, which is
 * what gelu's 1 + erf needs. */
FC_SCALAR float fc_erff_(float x)
{
    float a = fabsf(x);
    float ac = a > 4.0f ? 4.0f : a;
    float s = 1.0f / (1.0f + 0.5f * ac);
    float t = 3.0f * s - 2.0f;
    float g = -8.205218e-06f;
    g = g * t + 3.3165714e-05f;
    g = g * t + 9.8919925e-05f;
    g = g * t + -0.00086011743f;
    g = g * t + -0.0016015018f;
    g = g * t + 0.022509178f;
    g = g * t + 0.14242694f;
    g = g * t + 0.40981805f;
    g = g * t + 0.42758358f;
    float r = copysignf(1.0f - fc_exp_negf(-(ac * ac)) * g, x);
    return x == x ? r : x;
}

/* one division: (x >= 0 ? 1 : e) / (1 + e) is 1/(1+e) or e/(1+e), each rounded once */
FC_SCALAR float fc_sigmoidf(float x)
{
    float e = fc_exp_negf(-fabsf(x));
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

/* the forward and backward formulas of the double versions above, in float */
FC_SCALAR float fc_elu_ff(float x, float c, float s)
{
    return x <= 0 ? c * fc_expm1_negf(x <= 0 ? x : 0.0f) : s * x;
}
FC_SCALAR float fc_gelu_ff(float x) { return (x * 0.5f) * (1.0f + fc_erff_(x * (float)FC_SQRT1_2)); }
FC_SCALAR float fc_gelu_tanh_ff(float x)
{
    float inner = (float)FC_SQRT_2_OVER_PI * (x + (float)FC_GELU_KAPPA * (x * x * x));
    return (0.5f * x) * (1.0f + fc_tanhf(inner));
}
FC_SCALAR float fc_softplus_ff(float x) { return (x > 0 ? x : 0.0f) + fc_log1p_unitf(fc_exp_negf(-fabsf(x))); }
FC_SCALAR float fc_elu_bf(float d, float x, float c, float s)
{
    float ex = fc_exp_negf(x <= 0 ? x : 0.0f);
    return x <= 0 ? d * (c * ex) : d * s;
}
FC_SCALAR float fc_gelu_bf(float d, float x)
{
    float cdf = 0.5f * (1.0f + fc_erff_(x * (float)FC_SQRT1_2));
    float pdf = fc_exp_negf((-0.5f * x) * x) * (float)FC_INV_SQRT_2PI;
    return d * (cdf + x * pdf);
}
FC_SCALAR float fc_gelu_tanh_bf(float d, float x)
{
    float x_sq = x * x, x_cube = x_sq * x;
    float t = fc_tanhf((float)FC_SQRT_2_OVER_PI * (x + (float)FC_GELU_KAPPA * x_cube));
    float left = 0.5f * x, right = 1.0f + t;
    float inner_d = (float)FC_SQRT_2_OVER_PI * (1.0f + (float)(3.0 * FC_GELU_KAPPA) * x_sq);
    return d * (0.5f * right + left * (1.0f - t * t) * inner_d);
}
FC_SCALAR float fc_silu_bf(float d, float x)
{
    float s = fc_sigmoidf(x);
    return d * s * (1.0f + x * (1.0f - s));
}

/* float64 arrays: the double formulas above, element by element. */
#define FC_FWD_D(NAME, EXPR)                                                                            \
static inline void fc_##NAME##_fwd_d(const double *restrict x, double *restrict y, long n, double a,    \
                                     double b)                                                          \
{                                                                                                       \
    long i;                                                                                             \
    (void)a; (void)b;                                                                                   \
    for (i = 0; i < n; i++) {                                                                           \
        double v = x[i];                                                                                \
        y[i] = (EXPR);                                                                                  \
    }                                                                                                   \
}
#define FC_BWD_D(NAME, EXPR)                                                                            \
static inline void fc_##NAME##_bwd_d(const double *restrict dy, const double *restrict x,               \
                                     double *restrict dx, long n, double a, double b)                   \
{                                                                                                       \
    long i;                                                                                             \
    (void)a; (void)b;                                                                                   \
    for (i = 0; i < n; i++) {                                                                           \
        double d = dy[i], v = x[i];                                                                     \
        dx[i] = (EXPR);                                                                                 \
    }                                                                                                   \
}

/* float32 arrays: the float formulas above, straight from the float loads (a and b rounded to float once,
 * as fa and fb). */
#define FC_FWD_S(NAME, EXPR)                                                                            \
static inline void fc_##NAME##_fwd_s(const float *restrict x, float *restrict y, long n, double a,      \
                                     double b)                                                          \
{                                                                                                       \
    long i;                                                                                             \
    float fa = (float)a, fb = (float)b;                                                                 \
    (void)fa; (void)fb;                                                                                 \
    for (i = 0; i < n; i++) {                                                                           \
        float v = x[i];                                                                                 \
        y[i] = (EXPR);                                                                                  \
    }                                                                                                   \
}
#define FC_BWD_S(NAME, EXPR)                                                                            \
static inline void fc_##NAME##_bwd_s(const float *restrict dy, const float *restrict x,                 \
                                     float *restrict dx, long n, double a, double b)                    \
{                                                                                                       \
    long i;                                                                                             \
    float fa = (float)a, fb = (float)b;                                                                 \
    (void)fa; (void)fb;                                                                                 \
    for (i = 0; i < n; i++) {                                                                           \
        float d = dy[i], v = x[i];                                                                      \
        dx[i] = (EXPR);                                                                                 \
    }                                                                                                   \
}

FC_FWD_D(sigmoid, fc_sigmoid(v))
FC_FWD_D(tanh, fc_tanh(v))
FC_FWD_D(elu, fc_elu_f(v, a, b))
FC_FWD_D(gelu, fc_gelu_f(v))
FC_FWD_D(gelu_tanh, fc_gelu_tanh_f(v))
FC_FWD_D(silu, v * fc_sigmoid(v))
FC_FWD_D(softplus, fc_softplus_f(v))
FC_BWD_D(elu, fc_elu_b(d, v, a, b))
FC_BWD_D(gelu, fc_gelu_b(d, v))
FC_BWD_D(gelu_tanh, fc_gelu_tanh_b(d, v))
FC_BWD_D(silu, fc_silu_b(d, v))
FC_BWD_D(softplus, d * fc_sigmoid(v))

FC_FWD_S(sigmoid, fc_sigmoidf(v))
FC_FWD_S(tanh, fc_tanhf(v))
FC_FWD_S(elu, fc_elu_ff(v, fa, fb))
FC_FWD_S(gelu, fc_gelu_ff(v))
FC_FWD_S(gelu_tanh, fc_gelu_tanh_ff(v))
FC_FWD_S(silu, v * fc_sigmoidf(v))
FC_FWD_S(softplus, fc_softplus_ff(v))
FC_BWD_S(elu, fc_elu_bf(d, v, fa, fb))
FC_BWD_S(gelu, fc_gelu_bf(d, v))
FC_BWD_S(gelu_tanh, fc_gelu_tanh_bf(d, v))
FC_BWD_S(silu, fc_silu_bf(d, v))
FC_BWD_S(softplus, d * fc_sigmoidf(v))

/* The loops that stay in the array's dtype, one set per type. */
#define FC_DEFINE_ACTIVATIONS(T, S)                                                                      \
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
