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
    "rmsprop_update", "adagrad_update", "sgd_keras_update", "adam_keras_update", "nadam_update", "clip_gradient",
    "gradient_sumsq",
]


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def conv2d_forward(x, w, b=None, *, stride=1, padding=0):
    """y[n, f, i, j] = sum_{c, a, e} w[f, c, a, e] * x_pad[n, c, i*sh + a, j*sw + e] + b[f]."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (N, C, kh, kw)
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        y += b.reshape(1, F, 1, 1)
    return y


def conv2d_backward(dy, x, w, *, stride=1, padding=0, need_dx=True):
    """Gradients of conv2d_forward: each output position sends dy back through its own strided window."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Ho, Wo = dy.shape[2], dy.shape[3]
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (N, C, kh, kw)
            g = dy[:, :, i, j]  # (N, F)
            dw += np.tensordot(g, window, axes=([0], [0]))  # (F, C, kh, kw)
            if need_dx:
                dxp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += np.tensordot(g, w, axes=([1], [0]))
    db = dy.sum(axis=(0, 2, 3))
    dx = dxp[:, :, ph:ph + H, pw:pw + W].copy() if need_dx else None
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


def maxpool2d_forward(x, *, size=2, stride=None):
    """Max over each window; the first maximum wins ties, a NaN wins over numbers; idx = h*W + w."""
    kh, kw = _pair(size)
    sh, sw = _pair(stride if stride is not None else (kh, kw))
    N, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best, best_k = x[n, c, i * sh, j * sw], (i * sh) * W + j * sw
                    for a in range(kh):
                        for e in range(kw):
                            v = x[n, c, i * sh + a, j * sw + e]
                            if v > best or (np.isnan(v) and not np.isnan(best)):
                                best, best_k = v, (i * sh + a) * W + j * sw + e
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
