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
