"""Slow, obviously-correct NumPy twins of every compiled kernel, with the same signatures as ``fastconv.ops``.

Each function is written as plain loops over output positions (vectorised only over the batch and
channels), so a reader can check it against the formula by eye.  The tests hold every compiled kernel to
these: bit-identical for the elementwise kernels (ReLU, max-pool, Adam, SGD), within the derived rounding
bound for the reductions (conv, softmax cross-entropy).

Unlike seed 000's loops, the stride is honoured everywhere: the window of output position ``(i, j)`` is
``x[..., i*sh : i*sh + kh, j*sw : j*sw + kw]`` in the forward pass *and* in both gradients.
"""
import math

import numpy as np

__all__ = [
    "conv2d_forward", "conv2d_backward", "dense_forward", "dense_backward", "relu_forward", "relu_backward",
    "maxpool2d_forward", "maxpool2d_backward", "adam_update", "sgd_update", "softmax_cross_entropy",
    "batchnorm_forward", "batchnorm_backward", "pool_padding", "avgpool2d_forward", "avgpool2d_backward",
    "global_avgpool2d_forward", "global_avgpool2d_backward", "global_maxpool2d_forward", "global_maxpool2d_backward",
    "rmsprop_update", "adagrad_update", "sgd_keras_update", "adam_keras_update", "nadam_update", "clip_gradient",
    "gradient_sumsq",
]


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _pads(v):
    """padding as (top, bottom, left, right): an int, a (height, width) pair or the 4-tuple itself."""
    if np.isscalar(v):
        return (int(v),) * 4
    if len(v) == 2:
        return int(v[0]), int(v[0]), int(v[1]), int(v[1])
    return tuple(int(p) for p in v)


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1):
    """y[n, f, i, j] = sum_{c, a, e} w[f, c, a, e] * x_pad[n, c, i*sh + a*dh, j*sw + e*dw] + b[f].

    x_pad is x with zero rows (top, bottom) and columns (left, right) around it; padding is an int, a
    pair or that 4-tuple."""
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    top, bottom, left, right = _pads(padding)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1   # the span of the dilated kernel
    Ho = (H + top + bottom - ekh) // sh + 1
    Wo = (W + left + right - ekw) // sw + 1
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * sh:i * sh + ekh:dh, j * sw:j * sw + ekw:dw]  # (N, C, kh, kw)
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        y += b.reshape(1, F, 1, 1)
    return y


def conv2d_backward(dy, x, w, *, stride=1, padding=0, dilation=1, need_dx=True):
    """Gradients of conv2d_forward: each output position sends dy back through its own strided window."""
    sh, sw = _pair(stride)
    dh, dw_ = _pair(dilation)
    top, bottom, left, right = _pads(padding)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ekh, ekw = dh * (kh - 1) + 1, dw_ * (kw - 1) + 1
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Ho, Wo = dy.shape[2], dy.shape[3]
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * sh, i * sh + ekh, dh), slice(j * sw, j * sw + ekw, dw_)
            window = xp[:, :, rows, cols]  # (N, C, kh, kw)
            g = dy[:, :, i, j]  # (N, F)
            dw += np.tensordot(g, window, axes=([0], [0]))  # (F, C, kh, kw)
            if need_dx:
                dxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))
    db = dy.sum(axis=(0, 2, 3))
    dx = dxp[:, :, top:top + H, left:left + W].copy() if need_dx else None
    return dx, dw, db


def dense_forward(x, w, b=None):
    """y[n, u] = sum_k x[n, k] * w[u, k] + b[u]."""
    N, K = x.shape
    U = w.shape[0]
    y = np.zeros((N, U), dtype=x.dtype)
    for n in range(N):
        for u in range(U):
            y[n, u] = np.sum(x[n, :] * w[u, :])
    if b is not None:
        y += b
    return y


def dense_backward(dy, x, w, *, need_dx=True):
    """dw[u, k] = sum_n dy[n, u] * x[n, k];  db[u] = sum_n dy[n, u];  dx[n, k] = sum_u dy[n, u] * w[u, k]."""
    N, K = x.shape
    U = w.shape[0]
    dw = np.zeros_like(w)
    db = np.zeros(U, dtype=x.dtype)
    dx = np.zeros_like(x) if need_dx else None
    for n in range(N):
        for u in range(U):
            dw[u, :] += dy[n, u] * x[n, :]
            db[u] += dy[n, u]
            if need_dx:
                dx[n, :] += dy[n, u] * w[u, :]
    return dx, dw, db


def relu_forward(x):
    """y = 0 where x <= 0 else x (NaN stays NaN); mask = not (x <= 0)."""
    mask = ~(x <= 0)
    y = np.where(mask, x, np.zeros((), dtype=x.dtype))
    return y, mask


def relu_backward(dy, mask):
    """dx = dy where mask else 0."""
    return np.where(mask, dy, np.zeros((), dtype=dy.dtype))


def maxpool2d_forward(x, *, size=2, stride=None, padding=0):
    """Max over each window; the first maximum wins ties, a NaN wins over numbers; idx = h*W + w.
    Pads (int, pair, (top, bottom, left, right), "valid", "same") are -inf: never selected."""
    kh, kw = _pair(size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    N, C, H, W = x.shape
    pt, pb, pl, pr = pool_padding(padding, (kh, kw), (sh, sw), (H, W))
    Ho, Wo = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    h0, w0 = max(i * sh - pt, 0), max(j * sw - pl, 0)   # the window's first input element
                    best, best_k = x[n, c, h0, w0], h0 * W + w0
                    for a in range(kh):
                        for e in range(kw):
                            h, w = i * sh - pt + a, j * sw - pl + e
                            if not (0 <= h < H and 0 <= w < W):
                                continue  # padding: -inf
                            v = x[n, c, h, w]
                            if v > best or (np.isnan(v) and not np.isnan(best)):
                                best, best_k = v, h * W + w
                    y[n, c, i, j] = best
                    idx[n, c, i, j] = best_k
    return y, idx


def maxpool2d_backward(dy, idx, x_shape):
    """dx[idx] += dy, plane by plane in output order."""
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    dx[n, c, idx[n, c, i, j]] += dy[n, c, i, j]
    return dx.reshape(N, C, H, W)


def _adam_coefficients(step, lr, beta1, beta2, weight_decay, eps_hat):
    """The per-step scalars, in double precision, exactly as fastconv.ops computes them."""
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    if eps_hat:
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
    else:
        step_size = lr / bias_correction1
    return step_size, math.sqrt(bias_correction2), 1.0 - lr * weight_decay


def adam_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, amsgrad=False, vmax=None, eps_hat=False):
    """One Adam step in place (torch.optim.Adam by default; AdamW if decoupled; Keras eps-hat form)."""
    t = param.dtype.type
    step_size, bc2_sqrt, decay_factor = _adam_coefficients(step, lr, beta1, beta2, weight_decay, eps_hat)
    g = grad
    p = param
    if weight_decay != 0 and not decoupled:
        g = g + t(weight_decay) * p
    if weight_decay != 0 and decoupled:
        p = p * t(decay_factor)
    m[...] = t(beta1) * m + t(1.0 - beta1) * g
    v[...] = t(beta2) * v + t(1.0 - beta2) * g * g
    vv = v
    if amsgrad:
        vmax[...] = np.where((v > vmax) | np.isnan(v), v, vmax)
        vv = vmax
    denom = np.sqrt(vv)
    if not eps_hat:
        denom = denom / t(bc2_sqrt)
    denom = denom + t(eps)
    param[...] = p - t(step_size) * m / denom


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One SGD step in place, torch.optim.SGD semantics (velocity starts at zero)."""
    t = param.dtype.type
    d = grad
    if weight_decay != 0:
        d = d + t(weight_decay) * param
    if momentum != 0:
        velocity[...] = t(momentum) * velocity + d
        d = d + t(momentum) * velocity if nesterov else velocity
    param[...] = param + t(-lr) * d


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against class indices, and its gradient."""
    N, K = logits.shape
    dlogits = np.empty_like(logits)
    losses = np.empty(N, dtype=np.float64)
    for n in range(N):
        z = logits[n] - logits[n].max()
        e = np.exp(z)
        s = e.sum()
        losses[n] = np.log(s) - z[labels[n]]
        dlogits[n] = e / s
        dlogits[n, labels[n]] -= 1
    return float(losses.mean()), dlogits / logits.dtype.type(N)


# ---- activations ----
# The same formulas and branch conditions as src_cy/fc_activations.h, operation by operation.  Kinds made of
# +, -, *, /, comparisons (leaky_relu, softsign, relu6, hard_sigmoid; sigmoid's and tanh's backward) compute
# in x's dtype; so do the transcendental kinds, with the kernels' own polynomial exp, expm1, tanh, log1p and
# erf (below: a float64 set and a float32 set, the float32 one in np.float32 arithmetic, constants and all),
# so they too are bit-identical to the kernels.

__all__ += ["activation_forward", "activation_backward"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT1_2 = 0.7071067811865476            # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327       # 1/sqrt(2*pi)
_SQRT_2_OVER_PI = 0.7978845608028654     # sqrt(2/pi)
_GELU_KAPPA = 0.044715
# exp, expm1 (for x <= 0) and tanh exactly as src_cy/fc_activations.h computes them, operation by operation
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_ROUND_SHIFT = 6755399441055744.0     # 1.5 * 2**52
_EXPM1_TAYLOR = (1.1470745597729725e-11, 1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08,
                 2.755731922398589e-07, 2.7557319223985893e-06, 2.48015873015873e-05, 0.0001984126984126984,
                 0.001388888888888889, 0.008333333333333333, 0.041666666666666664, 0.16666666666666666, 0.5)


def _pow2i(j):
    """2**j for int64 j in [-1022, 1023], from the bits."""
    return np.asarray((j + 1023).astype(np.uint64) << np.uint64(52)).view(np.float64)


def _expm1_poly(r):
    """expm1(r) for |r| <= 0.35: r + r*r*(1/2! + r/3! + ... + r**11/13!), Horner from the top."""
    q = np.full_like(r, _EXPM1_TAYLOR[0])
    for c in _EXPM1_TAYLOR[1:]:
        q = q * r + c
    return r + (r * r) * q


def _reduce(xc):
    """k = rint(x/ln2) as a float and r = x - k*ln2 with ln2 in two parts."""
    kd = (xc * _INV_LN2 + _ROUND_SHIFT) - _ROUND_SHIFT
    return kd, (xc - kd * _LN2_HI) - kd * _LN2_LO


def _exp64(x):
    """exp(x) = 2**k * (1 + expm1(r)), 2**k applied in two halves (overflow and subnormals round once)."""
    xc = np.where(np.isnan(x), 0.0, np.where(x < -746.0, -746.0, np.where(x > 710.0, 710.0, x)))
    kd, r = _reduce(xc)
    k = kd.astype(np.int64)
    k1 = np.right_shift(k, 1)
    y = (1.0 + _expm1_poly(r)) * _pow2i(k1) * _pow2i(k - k1)
    return np.where(np.isnan(x), x, y)


def _expm1_neg64(x):
    """expm1(x) for x <= 0: 2**k * expm1(r) + (2**k - 1); below -40 it is -1; NaN and zeros pass."""
    xc = np.where(np.isnan(x), 0.0, np.where(x < -40.0, -40.0, x))
    kd, r = _reduce(xc)
    p = _pow2i(kd.astype(np.int64))
    y = p * _expm1_poly(r) + (p - 1.0)
    return np.where(np.isnan(x) | (x == 0), x, y)


def _tanh64(x):
    """tanh(x) = sign(x) * -e/(e + 2), e = expm1(-2|x|)."""
    e = _expm1_neg64(-2.0 * np.abs(x))
    return np.where(np.isnan(x), x, np.copysign(-e / (e + 2.0), x))


_ATANH_SERIES = tuple(1 / (2 * n + 1) for n in range(17, -1, -1))   # 1/35, 1/33, ..., 1/3, 1


def _log1p_unit64(e):
    """log1p(e) for 0 <= e <= 1 as 2*atanh(s), s = e/(2 + e), by the series to s**35."""
    s = e / (2.0 + e)
    s2 = s * s
    p = np.full_like(s, _ATANH_SERIES[0])
    for c in _ATANH_SERIES[1:]:
        p = p * s2 + c
    return (2.0 * s) * p


_ERF_SERIES = (
    2.9639949605423333e-50, 2.04515652277421e-48, 1.3702548702587206e-46, 8.906656656681684e-45,
    5.611193693709461e-43, 3.4228281531627713e-41, 2.019468610366035e-39, 1.1510971079086399e-37,
    6.33103409349752e-36, 3.3554480695536855e-34, 1.7112785154723796e-32, 8.38526472581466e-31,
    3.9410744211328905e-29, 1.7734834895098008e-27, 7.625979004892143e-26, 3.1266513920057783e-24,
    1.2193940428822536e-22, 4.5117579586643385e-21, 1.5791152855325184e-19, 5.211080442257311e-18,
    1.6154349370997664e-16, 4.684761317589322e-15, 1.264885555749117e-13, 3.1622138893727926e-12,
    7.273091945557423e-11, 1.5273493085670588e-09, 2.901963686277412e-08, 4.9333382666716e-07,
    7.4000074000074e-06, 9.62000962000962e-05, 0.0010582010582010583, 0.009523809523809525,
    0.06666666666666667, 0.3333333333333333, 1.0,
)   # 1/(1*3*...*(2n+1)) for n = 34 down to 0
_ERFC_CHEB = (
    0.9437577877413555, -0.04046746751498493, 0.0022272841794086454, -0.0001798304565882841,
    1.8237456085205022e-05, -2.1633926012034807e-06, 2.883902205669503e-07, -4.2123605876837426e-08,
    6.626798598831511e-09, -1.1090608817287364e-09, 1.9564887847435717e-10, -3.6121772751619165e-11,
    6.94294084805008e-12, -1.3817718119482507e-12, 2.8443859862953186e-13, -6.017734384978825e-14,
    1.1904082817483132e-14, -2.9646942213045906e-15, -2.2653773889426596e-15,
)   # g(u) = x*exp(x*x)*erfc(x)*sqrt(pi), u = 1/x**2, as Chebyshev coefficients on [1/36, 1/4]
_TWO_OVER_SQRTPI = 1.1283791670955126
_SQRTPI = 1.7724538509055159


def _erf_poly64(x):
    """erf(x) as fc_erf computes it: a positive series below |x| = 2, 1 - erfc by a Chebyshev fit above."""
    a = np.abs(x)
    z = 2.0 * a * a
    e = _exp64(-0.5 * z)
    s = np.full_like(a, _ERF_SERIES[0])
    for c in _ERF_SERIES[1:]:
        s = s * z + c
    small = (_TWO_OVER_SQRTPI * a) * e * s
    ac = np.where(a < 2.0, 2.0, np.where(a > 6.0, 6.0, a))
    t = (1.0 / (ac * ac)) * 9.0 + -1.2500000000000002
    t2 = 2.0 * t
    b1, b2 = np.zeros_like(a), np.zeros_like(a)
    for c in _ERFC_CHEB[:0:-1]:
        b1, b2 = (t2 * b1 - b2) + c, b1
    g = (t * b1 - b2) + _ERFC_CHEB[0]
    big = 1.0 - (e * g) / (a * _SQRTPI)
    return np.where(np.isnan(x), x, np.copysign(np.where(a < 2.0, small, big), x))


def _sigmoid64(x):
    """1/(1+exp(-x)) where x >= 0, exp(x)/(1+exp(x)) elsewhere (NaN there), in float64."""
    e = _exp64(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)     # one division, as the kernel


# The float32 set (fc_exp_negf, fc_expm1_negf, fc_tanhf, fc_log1p_unitf, fc_erff_ in src_cy/fc_activations.h),
# every constant a np.float32 so that no operation widens to float64.
_f32 = np.float32
_INV_LN2_F = _f32("1.442695")
_LN2_HI_F = _f32("0.69314575")        # 15 significant bits: k*_LN2_HI_F is exact for |k| <= 150
_LN2_LO_F = _f32("1.4286068e-06")
_ROUND_SHIFT_F = _f32("12582912.0")   # 1.5 * 2**23
_EXPM1_TAYLOR_F = tuple(_f32(c) for c in ("0.0001984127", "0.0013888889", "0.008333334", "0.041666668",
                                          "0.16666667", "0.5"))   # 1/7!, ..., 1/2!
_ATANH_SERIES_F = tuple(_f32(c) for c in ("0.06666667", "0.07692308", "0.09090909", "0.11111111", "0.14285715",
                                          "0.2", "0.33333334", "1.0"))   # 1/15, 1/13, ..., 1/3, 1
_ERFCX_POLY_F = tuple(_f32(c) for c in (
    "-8.205218e-06", "3.3165714e-05", "9.8919925e-05", "-0.00086011743", "-0.0016015018", "0.022509178",
    "0.14242694", "0.40981805", "0.42758358",
))   # g(a) = exp(a*a)*erfc(a) as a polynomial in t = 3*s - 2, s = 1/(1 + a/2) in [1/3, 1], from the top


def _pow2i32(j):
    """2**j for int32 j in [-126, 127], from the bits."""
    return np.asarray((j + 127).astype(np.int32) << np.int32(23)).view(np.float32)


def _expm1_poly32(r):
    """expm1(r) for |r| <= 0.35 in float32: r + r*r*(1/2! + ... + r**5/7!)."""
    q = np.full_like(r, _EXPM1_TAYLOR_F[0])
    for c in _EXPM1_TAYLOR_F[1:]:
        q = q * r + c
    return r + (r * r) * q


def _reduce32(xc):
    kd = (xc * _INV_LN2_F + _ROUND_SHIFT_F) - _ROUND_SHIFT_F
    return kd, (xc - kd * _LN2_HI_F) - kd * _LN2_LO_F


def _exp32(x):
    """exp(x) for float32 x <= 0 (fc_exp_negf), as _exp64 with float32 constants; below -104 it is 0."""
    xc = np.where(x > -104, x, _f32(-104))    # NaN too, put back at the end
    kd, r = _reduce32(xc)
    k = kd.astype(np.int32)
    k1 = np.right_shift(k, 1)
    y = (_f32(1) + _expm1_poly32(r)) * _pow2i32(k1) * _pow2i32(k - k1)
    return np.where(np.isnan(x), x, y)


def _expm1_neg32(x):
    """expm1(x) for float32 x <= 0; below -20 it is -1; NaN and zeros pass."""
    xc = np.where(x > -20, x, _f32(-20))      # NaN too, put back at the end
    kd, r = _reduce32(xc)
    p = _pow2i32(kd.astype(np.int32))
    y = p * _expm1_poly32(r) + (p - _f32(1))
    return np.where(np.isnan(x) | (x == 0), x, y)


def _tanh32(x):
    """tanh(x) = sign(x) * -e/(e + 2), e = expm1(-2|x|), in float32."""
    e = _expm1_neg32(_f32(-2) * np.abs(x))
    return np.where(np.isnan(x), x, np.copysign(-e / (e + _f32(2)), x))


def _log1p_unit32(e):
    """log1p(e) for 0 <= e <= 1 as 2*atanh(s), s = e/(2 + e), by the series to s**15, in float32."""
    s = e / (_f32(2) + e)
    s2 = s * s
    p = np.full_like(s, _ATANH_SERIES_F[0])
    for c in _ATANH_SERIES_F[1:]:
        p = p * s2 + c
    return (_f32(2) * s) * p


def _erf_poly32(x):
    """erf(x) = 1 - exp(-a*a)*g(a), a = min(|x|, 4), g by Horner's rule, in float32."""
    a = np.abs(x)
    ac = np.where(a > 4, _f32(4), a)
    s = _f32(1) / (_f32(1) + _f32(0.5) * ac)
    t = _f32(3) * s - _f32(2)
    g = np.full_like(t, _ERFCX_POLY_F[0])
    for c in _ERFCX_POLY_F[1:]:
        g = g * t + c
    r = _f32(1) - _exp32(-(ac * ac)) * g
    return np.where(np.isnan(x), x, np.copysign(r, x))


def _sigmoid32(x):
    """_sigmoid64 in float32."""
    e = _exp32(-np.abs(x))
    return np.where(x >= 0, _f32(1), e) / (_f32(1) + e)


def _elu_coefficients(kind, alpha):
    """(alpha*scale, scale) of the elu kernel: selu is elu with PyTorch's constants."""
    if kind == "selu":
        return SELU_ALPHA * SELU_SCALE, SELU_SCALE
    return alpha * 1.0, 1.0


def activation_forward(x, kind, *, negative_slope=0.01, alpha=1.0):
    """y = f(x) for ``kind`` in sigmoid, tanh, elu, selu, gelu, gelu_tanh, leaky_relu, silu, softplus,
    softsign, relu6, hard_sigmoid (formulas in src_cy/_activations.pyx)."""
    with np.errstate(all="ignore"):   # exp overflows and inf - inf are part of the formulas, as in C
        return _activation_forward(x, kind, negative_slope, alpha)


def activation_backward(dy, x, y, kind, *, negative_slope=0.01, alpha=1.0):
    """dx = dy * f'(x); sigmoid and tanh read the output ``y``, every other kind the input ``x``."""
    with np.errstate(all="ignore"):
        return _activation_backward(dy, x, y, kind, negative_slope, alpha)


def _activation_forward(x, kind, negative_slope, alpha):
    t = x.dtype.type
    if kind == "leaky_relu":
        return np.where(x > 0, x, x * t(negative_slope))
    if kind == "softsign":
        return x / (t(1) + np.abs(x))
    if kind == "relu6":
        v = np.where(x < 0, t(0), x)
        return np.where(v > 6, t(6), v)
    if kind == "hard_sigmoid":
        v = x + t(3)
        v = np.where(v < 0, t(0), v)
        return np.where(v > 6, t(6), v) / t(6)
    if x.dtype == np.float32:
        return np.asarray(_transcendental_forward32(x, kind, alpha))
    v = x.astype(np.float64)
    if kind == "sigmoid":
        y = _sigmoid64(v)
    elif kind == "tanh":
        y = _tanh64(v)
    elif kind in ("elu", "selu"):
        c, s = _elu_coefficients(kind, alpha)
        y = np.where(v <= 0, c * _expm1_neg64(np.where(v <= 0, v, 0.0)), s * v)
    elif kind == "gelu":
        y = (v * 0.5) * (1.0 + _erf_poly64(v * _SQRT1_2))
    elif kind == "gelu_tanh":
        y = (0.5 * v) * (1.0 + _tanh64(_SQRT_2_OVER_PI * (v + _GELU_KAPPA * (v * v * v))))
    elif kind == "silu":
        y = v * _sigmoid64(v)
    elif kind == "softplus":
        y = np.where(v > 0, v, 0.0) + _log1p_unit64(_exp64(-np.abs(v)))
    else:
        raise ValueError(f"unknown activation kind {kind!r}")
    return y.astype(x.dtype)


def _activation_backward(dy, x, y, kind, negative_slope, alpha):
    t = dy.dtype.type
    if kind == "sigmoid":
        return (dy * y) * (t(1) - y)
    if kind == "tanh":
        return dy * (t(1) - y * y)
    if kind == "leaky_relu":
        return np.where(x > 0, dy, dy * t(negative_slope))
    if kind == "softsign":
        den = t(1) + np.abs(x)
        return dy / (den * den)
    if kind == "relu6":
        return np.where((x <= 0) | (x >= 6), t(0), dy)
    if kind == "hard_sigmoid":
        return np.where((x > -3) & (x < 3), dy / t(6), t(0))
    if dy.dtype == np.float32:
        return np.asarray(_transcendental_backward32(dy, x.astype(np.float32), kind, alpha))
    d, v = dy.astype(np.float64), x.astype(np.float64)
    if kind in ("elu", "selu"):
        c, s = _elu_coefficients(kind, alpha)
        dx = np.where(v <= 0, d * (c * _exp64(v)), d * s)
    elif kind == "gelu":
        cdf = 0.5 * (1.0 + _erf_poly64(v * _SQRT1_2))
        pdf = _exp64((-0.5 * v) * v) * _INV_SQRT_2PI
        dx = d * (cdf + v * pdf)
    elif kind == "gelu_tanh":
        x_sq = v * v
        th = _tanh64(_SQRT_2_OVER_PI * (v + _GELU_KAPPA * (x_sq * v)))
        inner_d = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_KAPPA * x_sq)
        dx = d * (0.5 * (1.0 + th) + (0.5 * v) * (1.0 - th * th) * inner_d)
    elif kind == "silu":
        s = _sigmoid64(v)
        dx = d * s * (1.0 + v * (1.0 - s))
    elif kind == "softplus":
        dx = d * _sigmoid64(v)
    else:
        raise ValueError(f"unknown activation kind {kind!r}")
    return dx.astype(dy.dtype)


def _transcendental_forward32(v, kind, alpha):
    """The float64 formulas of _activation_forward with the float32 set (fc_*_ff in src_cy/fc_activations.h)."""
    f = _f32
    if kind == "sigmoid":
        return _sigmoid32(v)
    if kind == "tanh":
        return _tanh32(v)
    if kind in ("elu", "selu"):
        c, s = (f(p) for p in _elu_coefficients(kind, alpha))
        return np.where(v <= 0, c * _expm1_neg32(np.where(v <= 0, v, f(0))), s * v)
    if kind == "gelu":
        return (v * f(0.5)) * (f(1) + _erf_poly32(v * f(_SQRT1_2)))
    if kind == "gelu_tanh":
        return (f(0.5) * v) * (f(1) + _tanh32(f(_SQRT_2_OVER_PI) * (v + f(_GELU_KAPPA) * (v * v * v))))
    if kind == "silu":
        return v * _sigmoid32(v)
    if kind == "softplus":
        return np.where(v > 0, v, f(0)) + _log1p_unit32(_exp32(-np.abs(v)))
    raise ValueError(f"unknown activation kind {kind!r}")


def _transcendental_backward32(d, v, kind, alpha):
    """The float64 formulas of _activation_backward with the float32 set (fc_*_bf)."""
    f = _f32
    if kind in ("elu", "selu"):
        c, s = (f(p) for p in _elu_coefficients(kind, alpha))
        return np.where(v <= 0, d * (c * _exp32(np.where(v <= 0, v, f(0)))), d * s)
    if kind == "gelu":
        cdf = f(0.5) * (f(1) + _erf_poly32(v * f(_SQRT1_2)))
        pdf = _exp32((f(-0.5) * v) * v) * f(_INV_SQRT_2PI)
        return d * (cdf + v * pdf)
    if kind == "gelu_tanh":
        x_sq = v * v
        th = _tanh32(f(_SQRT_2_OVER_PI) * (v + f(_GELU_KAPPA) * (x_sq * v)))
        inner_d = f(_SQRT_2_OVER_PI) * (f(1) + f(3.0 * _GELU_KAPPA) * x_sq)
        return d * (f(0.5) * (f(1) + th) + (f(0.5) * v) * (f(1) - th * th) * inner_d)
    if kind == "silu":
        s = _sigmoid32(v)
        return d * s * (f(1) + v * (f(1) - s))
    if kind == "softplus":
        return d * _sigmoid32(v)
    raise ValueError(f"unknown activation kind {kind!r}")
# ---- batch norm ----

def batchnorm_forward(x, gamma=None, beta=None, running_mean=None, running_var=None, *, training=True,
                      momentum=0.1, eps=1e-5, convention="torch"):
    """y = (x - mean)*gamma/sqrt(var + eps) + beta over axis 1, statistics in float64; returns
    (y, mean, invstd).  Training updates the running statistics in place (torch: (1-m)*r + m*stat with the
    unbiased variance; keras: m*r + (1-m)*stat with the biased variance)."""
    C = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, C) + (1,) * (x.ndim - 2)
    xd = x.astype(np.float64)
    gamma = np.ones(C) if gamma is None else gamma.astype(np.float64)
    beta = np.zeros(C) if beta is None else beta.astype(np.float64)
    if training:
        M = x.size // C
        mean = xd.sum(axis=axes) / M
        var = ((xd - mean.reshape(shape)) ** 2).sum(axis=axes) / M
        if running_mean is not None:
            if convention == "torch":
                running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
                running_var[...] = (1.0 - momentum) * running_var.astype(np.float64) + momentum * (var * M / (M - 1))
            else:
                running_mean[...] = momentum * running_mean.astype(np.float64) + (1.0 - momentum) * mean
                running_var[...] = momentum * running_var.astype(np.float64) + (1.0 - momentum) * var
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    y = (xd - mean.reshape(shape)) * (gamma * invstd).reshape(shape) + beta.reshape(shape)
    return y.astype(x.dtype), mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, *, training=True, need_dx=True):
    """dbeta = sum(dy); dgamma = sum(dy*xhat); dx = gamma*invstd/M*(M*dy - sum(dy) - xhat*sum(dy*xhat))
    (training) or gamma*invstd*dy, with xhat = (x - mean)*invstd, in float64."""
    C = x.shape[1]
    M = x.size // C
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, C) + (1,) * (x.ndim - 2)
    gamma = np.ones(C) if gamma is None else gamma.astype(np.float64)
    dyd = dy.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.reshape(shape)) * invstd.reshape(shape)
    dbeta = dyd.sum(axis=axes)
    dgamma = (dyd * xhat).sum(axis=axes)
    k = (gamma * invstd).reshape(shape)
    dx = None
    if need_dx:
        if training:
            dx = k / M * (M * dyd - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))
        else:
            dx = k * dyd
        dx = dx.astype(x.dtype)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ---- pooling ----

def pool_padding(padding, size, stride=None, input_hw=None):
    """(top, bottom, left, right) of an int, (h, w) pair, 4-tuple, "valid" or "same" (TensorFlow: total =
    max((ceil(H/s) - 1)*s + k - H, 0), top = total//2, the rest at the bottom)."""
    kh, kw = _pair(size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        H, W = input_hw
        th = max((math.ceil(H / sh) - 1) * sh + kh - H, 0)
        tw = max((math.ceil(W / sw) - 1) * sw + kw - W, 0)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    if np.ndim(padding) == 1 and len(padding) == 4:
        return tuple(int(p) for p in padding)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def _pool_out(n, k, s, lo, hi, ceil_mode):
    """PyTorch's pooling_output_shape_pad_lr: in ceil mode the last window starts inside input or left pad."""
    out = (n + lo + hi - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _avg_windows(x_shape, size, stride, padding, ceil_mode, count_include_pad):
    """Yield (i, j, rows, cols, divisor) of every output position: the window's input slices and divisor."""
    kh, kw = _pair(size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    H, W = x_shape[2], x_shape[3]
    pt, pb, pl, pr = pool_padding(padding, (kh, kw), (sh, sw), (H, W))
    Ho, Wo = _pool_out(H, kh, sh, pt, pb, ceil_mode), _pool_out(W, kw, sw, pl, pr, ceil_mode)
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * sh - pt, j * sw - pl
            h1, w1 = min(h0 + kh, H + pb), min(w0 + kw, W + pr)   # the window within the padded input
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            divisor = pool_size if count_include_pad else (h1 - h0) * (w1 - w0)
            yield i, j, Ho, Wo, range(h0, h1), range(w0, w1), divisor


def avgpool2d_forward(x, *, size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """PyTorch's avg_pool2d: the sum over the window's input elements (x's precision, row-major) / divisor."""
    N, C = x.shape[:2]
    out = {}
    for i, j, Ho, Wo, rows, cols, divisor in _avg_windows(x.shape, size, stride, padding, ceil_mode,
                                                          count_include_pad):
        s = np.zeros((N, C), x.dtype)
        for h in rows:
            for w in cols:
                s = s + x[:, :, h, w]
        out[i, j] = s / x.dtype.type(divisor) if len(rows) and len(cols) else s
        shape = (N, C, Ho, Wo)
    y = np.zeros(shape, x.dtype)
    for (i, j), v in out.items():
        y[:, :, i, j] = v
    return y


def avgpool2d_backward(dy, x_shape, *, size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """dx: each output's dy/divisor added to its window's input elements, outputs in row-major order."""
    dx = np.zeros(x_shape, dy.dtype)
    for i, j, _, _, rows, cols, divisor in _avg_windows(x_shape, size, stride, padding, ceil_mode,
                                                        count_include_pad):
        if not (len(rows) and len(cols)):
            continue
        g = dy[:, :, i, j] / dy.dtype.type(divisor)
        for h in rows:
            for w in cols:
                dx[:, :, h, w] += g
    return dx


def global_avgpool2d_forward(x):
    """y[n, c] = mean of x[n, c] (float64 sum / (H*W))."""
    return (x.astype(np.float64).sum(axis=(2, 3)) / (x.shape[2] * x.shape[3])).astype(x.dtype)


def global_avgpool2d_backward(dy, x_shape):
    """dx[n, c, :, :] = dy[n, c] / (H*W)."""
    g = dy / dy.dtype.type(x_shape[2] * x_shape[3])
    return np.broadcast_to(g[:, :, None, None], x_shape).copy()


def global_maxpool2d_forward(x):
    """The first maximum of each plane (NaN wins) and its flat position h*W + w."""
    N, C, H, W = x.shape
    y = np.empty((N, C), x.dtype)
    idx = np.empty((N, C), np.int64)
    for n in range(N):
        for c in range(C):
            plane = x[n, c].reshape(-1)
            best, k = plane[0], 0
            for i in range(1, plane.size):
                v = plane[i]
                if v > best or (np.isnan(v) and not np.isnan(best)):
                    best, k = v, i
            y[n, c], idx[n, c] = best, k
    return y, idx


def global_maxpool2d_backward(dy, idx, x_shape):
    """dx zero except dx[n, c, idx[n, c]] = dy[n, c]."""
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W), dy.dtype)
    for n in range(N):
        for c in range(C):
            dx[n, c, idx[n, c]] = dy[n, c]
    return dx.reshape(x_shape)
# ---- optimizers (Keras forms) ----
# Twins of fastconv.ops's Keras-form updates and gradient clipping: the same operations in the same order,
# so the compiled kernels are bit-identical to them (the norms included: gradient_sumsq adds in the same
# fixed order as the kernel).

CLIP_CHUNK = 4096   # fastconv._clip.CHUNK


def _clip_kind(clipnorm=None, clipvalue=None, global_clipnorm=None):
    for kind, c in (("norm", clipnorm), ("value", clipvalue), ("global", global_clipnorm)):
        if c is not None and c > 0:
            return kind, float(c)
    return None, 0.0


def _segments(n, segments):
    return [(0, n)] if segments is None else [(int(a), int(b)) for a, b in segments]


def gradient_sumsq(grad, segments=None):
    """Per-segment sums of squares in float64: pieces of CLIP_CHUNK elements, four interleaved
    accumulators per piece combined as (a0 + a1) + (a2 + a3), pieces added in order."""
    g = np.asarray(grad).reshape(-1).astype(np.float64)
    out = []
    for start, stop in _segments(g.size, segments):
        total = 0.0
        for a in range(start, stop, CLIP_CHUNK):
            x = g[a:min(a + CLIP_CHUNK, stop)]
            sq = np.zeros(-(-x.size // 4) * 4)
            sq[:x.size] = x * x
            acc = np.cumsum(sq.reshape(-1, 4), axis=0)[-1]     # each accumulator in order
            total = total + float((acc[0] + acc[1]) + (acc[2] + acc[3]))
        out.append(total)
    return np.array(out, dtype=np.float64)


def clip_coefficients(kind, c, sums, dtype):
    """(mode, a, denominators) from the sums of squares, Keras's formulas in ``dtype`` (the twin of
    fastconv._clip.global_scale and norm_denominators)."""
    t = np.dtype(dtype).type
    with np.errstate(all="ignore"):
        if kind == "global":
            norm = t(math.sqrt(sums[0]) if sums[0] == sums[0] and sums[0] >= 0 else sums[0])
            scale = t(c) * np.minimum(t(1) / norm, t(1.0 / c)) + (norm - norm)
            return 2, float(scale), None
        if kind == "norm":
            positive = sums > 0
            l2 = np.where(positive, np.sqrt(np.where(positive, sums, 1.0)), sums).astype(dtype)
            return 3, c, np.maximum(l2, t(c))
    return {None: 0, "value": 1}[kind], c, None


def clip_gradient(grad, *, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """``grad`` clipped as Keras's optimizers do (a new array)."""
    g = np.array(grad)
    t = g.dtype.type
    kind, c = _clip_kind(clipnorm, clipvalue, global_clipnorm)
    flat = g.reshape(-1)
    if kind == "value":
        flat[...] = np.where(flat < -t(c), -t(c), np.where(flat > t(c), t(c), flat))
    elif kind == "global":
        _, scale, _ = clip_coefficients(kind, c, gradient_sumsq(flat), g.dtype)
        flat *= t(scale)
    elif kind == "norm":
        _, _, denoms = clip_coefficients(kind, c, gradient_sumsq(flat, segments), g.dtype)
        for (start, stop), d in zip(_segments(flat.size, segments), denoms):
            flat[start:stop] = (flat[start:stop] * t(c)) / d
    return g


def _keras_decay(param, weight_decay, lr):
    t = param.dtype.type
    if weight_decay:
        return param - param * t(weight_decay) * t(lr)
    return param


def rmsprop_update(param, grad, velocity, momentum_buffer=None, average_grad=None, *, lr=1e-3, rho=0.9,
                   momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0, clipnorm=None, clipvalue=None,
                   global_clipnorm=None, segments=None):
    """One RMSprop step in place, keras.optimizers.RMSprop's formula."""
    t = param.dtype.type
    g = clip_gradient(grad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                      segments=segments)
    p = _keras_decay(param, weight_decay, lr)
    velocity[...] = t(rho) * velocity + t(1.0 - rho) * (g * g)
    if centered:
        average_grad[...] = t(rho) * average_grad + t(1.0 - rho) * g
        d = (velocity - average_grad * average_grad) + t(epsilon)
    else:
        d = velocity + t(epsilon)
    inc = (t(lr) * g) / np.sqrt(d)
    if momentum > 0:
        momentum_buffer[...] = t(momentum) * momentum_buffer + inc
        inc = momentum_buffer
    param[...] = p - inc


def adagrad_update(param, grad, accumulator, *, lr=1e-3, epsilon=1e-7, weight_decay=0.0, clipnorm=None,
                   clipvalue=None, global_clipnorm=None, segments=None):
    """One Adagrad step in place, keras.optimizers.Adagrad's formula."""
    t = param.dtype.type
    g = clip_gradient(grad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                      segments=segments)
    p = _keras_decay(param, weight_decay, lr)
    accumulator[...] = accumulator + g * g
    param[...] = p - (t(lr) * g) / np.sqrt(accumulator + t(epsilon))


def sgd_keras_update(param, grad, velocity=None, *, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                     clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One SGD step in place, keras.optimizers.SGD's formula (the velocity carries the learning rate)."""
    t = param.dtype.type
    g = clip_gradient(grad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                      segments=segments)
    p = _keras_decay(param, weight_decay, lr)
    if momentum != 0:
        velocity[...] = velocity * t(momentum) - g * t(lr)
        param[...] = p + (velocity * t(momentum) - g * t(lr)) if nesterov else p + velocity
    else:
        param[...] = p - g * t(lr)


def adam_keras_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7, weight_decay=0.0,
                      amsgrad=False, vhat=None, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One Adam step in place, keras.optimizers.Adam's formula (AdamW's with weight_decay)."""
    t = param.dtype.type
    alpha = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    g = clip_gradient(grad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                      segments=segments)
    p = _keras_decay(param, weight_decay, lr)
    m[...] = m + (g - m) * t(1.0 - beta1)
    v[...] = v + (g * g - v) * t(1.0 - beta2)
    vv = v
    if amsgrad:
        vhat[...] = np.where((v > vhat) | np.isnan(v), v, vhat)
        vv = vhat
    param[...] = p - (m * t(alpha)) / (np.sqrt(vv) + t(epsilon))


def nadam_coefficients(step, beta1, beta2, u_product):
    """Nadam's per-step scalars in double precision (fastconv.ops.nadam_coefficients' twin)."""
    u_t = beta1 * (1.0 - 0.5 * 0.96 ** step)
    u_next = beta1 * (1.0 - 0.5 * 0.96 ** (step + 1))
    prod = u_product * beta1 * (1.0 - 0.5 * 0.96 ** step)
    return prod, u_next, 1.0 - prod * u_next, 1.0 - u_t, 1.0 - prod, 1.0 - beta2 ** step


def nadam_update(param, grad, m, v, *, step, u_product, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7,
                 weight_decay=0.0, clipnorm=None, clipvalue=None, global_clipnorm=None, segments=None):
    """One Nadam step in place, keras.optimizers.Nadam's formula; returns the new u_product."""
    t = param.dtype.type
    prod, u_next, omp_next, om_u, om_prod, bc2 = nadam_coefficients(step, beta1, beta2, u_product)
    g = clip_gradient(grad, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                      segments=segments)
    p = _keras_decay(param, weight_decay, lr)
    m[...] = m + (g - m) * t(1.0 - beta1)
    v[...] = v + (g * g - v) * t(1.0 - beta2)
    m_hat = (t(u_next) * m) / t(omp_next) + (t(om_u) * g) / t(om_prod)
    v_hat = v / t(bc2)
    param[...] = p - (m_hat * t(lr)) / (np.sqrt(v_hat) + t(epsilon))
    return prod
