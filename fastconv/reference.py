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
