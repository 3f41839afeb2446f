"""Shared test helpers: the derived rounding bound for reductions, and finite differences."""
import numpy as np
import pytest

DTYPES = [np.float32, np.float64]


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
