"""Softmax cross-entropy: derived bound against the reference, finite differences, stability."""
import numpy as np
import pytest
from conftest import DTYPES, assert_reduction_close, numerical_gradient

from fastconv import ops, reference


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,K", [(1, 1), (1, 10), (7, 3), (300, 10), (2000, 17)])
def test_matches_reference(dtype, N, K, rng):
    z = (rng.standard_normal((N, K)) * 5).astype(dtype)
    t = rng.integers(0, K, N)
    loss, dz = ops.softmax_cross_entropy(z, t)
    loss_ref, dz_ref = reference.softmax_cross_entropy(z, t)
    # each row: log-sum-exp of K terms (<= |lse| + |z| in magnitude), then a mean of N rows
    eps = np.finfo(dtype).eps
    scale = np.abs(z).max() + np.log(K) + 1
    assert abs(loss - loss_ref) <= 1.01 * (K + N + 4) * eps * scale
    # dz = exp(z - max)/sum/N: the sum of K positive terms bounds the relative error
    assert_reduction_close(dz, dz_ref, np.abs(dz_ref) + 1.0 / N, K + 2, "dlogits")


def test_finite_differences(rng):
    z = rng.standard_normal((5, 4)) * 3
    t = rng.integers(0, 4, 5)
    _, dz = ops.softmax_cross_entropy(z, t)
    num = numerical_gradient(lambda: ops.softmax_cross_entropy(z, t)[0], z, range(z.size))
    np.testing.assert_allclose(dz.reshape(-1), num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_for_huge_logits(dtype):
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4 + 1]], dtype=dtype)
    loss, dz = ops.softmax_cross_entropy(z, np.array([0, 2]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    np.testing.assert_allclose(loss, np.log1p(2 * np.exp(-1.0)) / 2, rtol=1e-5)


def test_nan_propagates():
    loss, dz = ops.softmax_cross_entropy(np.array([[0.0, np.nan]]), np.array([0]))
    assert np.isnan(loss) and np.isnan(dz).all()


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((64, 10))
    t = rng.integers(0, 10, 64)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t))
    tl.backward()
    loss, dz = ops.softmax_cross_entropy(z, t)
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-13)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError,
         r"labels must lie in \[0, 3\), found 3 at row 1"),
        (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, -1])), ValueError, "found -1 at row 1"),
        (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError, "integer"),
        (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0])), ValueError, "labels must have shape"),
        (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2 ** 63], dtype=np.uint64)), ValueError,
         r"labels must lie in \[0, 3\), found 9223372036854775808"),
        (lambda: ops.softmax_cross_entropy(np.zeros(3), np.array([0])), ValueError, "2-D"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", DTYPES)
def test_count_correct_matches_numpy_argmax(dtype, rng):
    """The training loop's accuracy count: first maximum wins ties, NaN counts as the maximum (numpy)."""
    from fastconv import _softmax_ce
    z = rng.integers(0, 3, (200, 5)).astype(dtype)      # many ties
    z[::7, 2] = np.nan
    z[::11, 0] = np.nan
    t = rng.integers(0, 5, 200)
    assert _softmax_ce.count_correct(z, t) == np.count_nonzero(z.argmax(axis=1) == t)
    for n in range(1, 4):
        assert _softmax_ce.count_correct(z[:n], t[:n]) == np.count_nonzero(z[:n].argmax(axis=1) == t[:n])
    with pytest.raises(ValueError, match="inconsistent"):
        _softmax_ce.count_correct(z, t[:3])
