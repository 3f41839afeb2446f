"""Shared test helpers: the derived rounding bound for reductions, finite differences, and conv2d checked
against its reference."""
import importlib.util
import os

import numpy as np
import pytest
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64]
BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench")


def load_bench(script, module_name):
    """Import ``bench/<script>.py`` (a script, not a package module) as ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(BENCH, script + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reduction_bound(K, abs_terms, dtype):
    """Elementwise bound on |fast - reference| for sums of K products.

    Any summation order of K products satisfies |computed - exact| <= gamma_K * sum|terms| with
    gamma_K = K*u/(1 - K*u), u = eps/2 (Higham, Accuracy and Stability, 3.1).  Both the compiled kernel and
    the reference obey it, so |fast - ref| <= 2*gamma_{K+1}*sum|terms| ~= (K + 1)*eps*sum|terms|; one more
    term covers the bias and 1.01 covers the 1/(1 - K*u) factor and the rounding of sum|terms| itself.
    """
    eps = np.finfo(dtype).eps
    return 1.01 * (K + 2) * eps * abs_terms


def assert_reduction_close(fast, ref, abs_terms, K, what=""):
    assert fast.shape == ref.shape, (what, fast.shape, ref.shape)
    assert fast.dtype == ref.dtype, (what, fast.dtype, ref.dtype)
    bound = reduction_bound(K, abs_terms, ref.dtype)
    err = np.abs(fast.astype(np.float64) - ref.astype(np.float64))
    worst = np.argmax(err - bound) if err.size else None
    assert np.all(err <= bound), (
        f"{what}: |fast - ref| exceeds the derived bound at {np.unravel_index(worst, err.shape)}: "
        f"err {err.flat[worst]:.3e} > bound {bound.flat[worst]:.3e} (K={K})"
    )


def numerical_gradient(f, a, indices, h=1e-6):
    """Central differences of scalar f() with respect to a.flat[indices] (a modified in place, restored)."""
    grads = []
    flat = a.reshape(-1)
    for i in indices:
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        grads.append((fp - fm) / (2 * h))
    return np.array(grads)


def check_conv_against_reference(x, w, b, stride, padding, dilation=None, dy_seed=0, need_dx=True):
    """Forward and backward of ops.conv2d_* vs the reference, each within the derived bound: every output
    element is a sum of at most C*kh*kw (y), N*Ho*Wo (dw, db) or F*kh*kw (dx) products.  ``dilation`` None
    leaves it to the default.  Returns ``y, (dx, dw, db)``."""
    from fastconv import ops, reference
    geo = dict(stride=stride, padding=padding) if dilation is None else \
        dict(stride=stride, padding=padding, dilation=dilation)
    y = ops.conv2d_forward(x, w, b, **geo)
    y_ref = reference.conv2d_forward(x, w, b, **geo)
    y_abs = reference.conv2d_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b), **geo)
    F, C, kh, kw = w.shape
    assert_reduction_close(y, y_ref, y_abs, C * kh * kw, "y")
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = ops.conv2d_backward(dy, x, w, need_dx=need_dx, **geo)
    dx_r, dw_r, db_r = reference.conv2d_backward(dy, x, w, need_dx=need_dx, **geo)
    dx_a, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), need_dx=need_dx, **geo)
    N, _, Ho, Wo = y.shape
    assert_reduction_close(dw, dw_r, dw_a, N * Ho * Wo, "dw")
    assert_reduction_close(db, db_r, db_a, N * Ho * Wo, "db")
    if need_dx:
        assert_reduction_close(dx, dx_r, dx_a, F * kh * kw, "dx")
    else:
        assert dx is None
    return y, (dx, dw, db)


def int_or_pair(lo, hi):
    """Hypothesis: an int in [lo, hi] or a pair of them (a stride, padding or dilation)."""
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def autotune():
    """fastconv._runtime.set_autotune, restored after the test (the one switch for every kernel)."""
    from fastconv import _runtime
    old = _runtime.autotune_enabled()
    yield _runtime.set_autotune
    _runtime.set_autotune(old)
