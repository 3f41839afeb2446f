"""Fully connected layer: derived bound against the reference (compiled small-batch loops and the BLAS
path), finite differences, layouts, edge sizes, bad input; torch as extra oracle."""
import numpy as np
import pytest
from conftest import DTYPES, assert_reduction_close, numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import _dense, ops, reference


def check_against_reference(x, w, b, dy=None):
    """Forward and backward against the reference, each element within the bound for its own sum."""
    y = ops.dense_forward(x, w, b)
    y_ref = reference.dense_forward(x, w, b)
    K, N, U = x.shape[1], x.shape[0], w.shape[0]
    abs_y = reference.dense_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b))
    assert_reduction_close(y, y_ref, abs_y, K, "y")
    if dy is None:
        dy = np.cos(y_ref).astype(x.dtype)
    dx, dw, db = ops.dense_backward(dy, x, w)
    dx_ref, dw_ref, db_ref = reference.dense_backward(dy, x, w)
    adx, adw, adb = reference.dense_backward(np.abs(dy), np.abs(x), np.abs(w))
    assert_reduction_close(dx, dx_ref, adx, U, "dx")
    assert_reduction_close(dw, dw_ref, adw, N, "dw")
    assert_reduction_close(db, db_ref, adb, N, "db")
    assert ops.dense_backward(dy, x, w, need_dx=False)[0] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,K,U", [(1, 648, 10), (1, 1, 1), (1, 3, 1), (2, 7, 5), (8, 33, 9), (9, 33, 9),
                                   (64, 100, 10), (1, 1000, 17)])
def test_matches_reference(dtype, N, K, U, rng):
    # N <= SMALL_BATCH takes the compiled loops, larger N BLAS; K not a multiple of the vector width
    # exercises the scalar tails, U not a multiple of 4 the last group of rows
    x = rng.standard_normal((N, K)).astype(dtype)
    w = rng.standard_normal((U, K)).astype(dtype)
    b = rng.standard_normal(U).astype(dtype)
    check_against_reference(x, w, b)
    check_against_reference(x, w, None)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 12), K=st.integers(1, 40), U=st.integers(1, 12), double=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes(N, K, U, double, seed):
    r = np.random.default_rng(seed)
    dtype = np.float64 if double else np.float32
    check_against_reference(r.standard_normal((N, K)).astype(dtype), r.standard_normal((U, K)).astype(dtype),
                            r.standard_normal(U).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_and_fortran_inputs(dtype, rng):
    x = rng.standard_normal((6, 40)).astype(dtype)[::2, ::2]       # strided (3, 20)
    w = np.asfortranarray(rng.standard_normal((7, 20)).astype(dtype))
    b = rng.standard_normal(14).astype(dtype)[::2]
    check_against_reference(x, w, b, dy=np.asfortranarray(rng.standard_normal((3, 7)).astype(dtype)))


@pytest.mark.parametrize("N", [1, 3, 9])
def test_finite_differences(N, rng):
    x = rng.standard_normal((N, 6))
    w = rng.standard_normal((4, 6))
    b = rng.standard_normal(4)
    c = rng.standard_normal((N, 4))   # loss = sum(c * y)

    def loss():
        return float(np.sum(c * ops.dense_forward(x, w, b)))

    dx, dw, db = ops.dense_backward(c, x, w)
    for a, g in ((x, dx), (w, dw), (b, db)):
        np.testing.assert_allclose(g.reshape(-1), numerical_gradient(loss, a, range(a.size)), rtol=1e-6, atol=1e-8)


def test_empty_batch_gives_zero_gradients():
    x, w = np.zeros((0, 5)), np.ones((3, 5))
    assert ops.dense_forward(x, w).shape == (0, 3)
    dx, dw, db = ops.dense_backward(np.zeros((0, 3)), x, w)
    assert dx.shape == (0, 5) and not dw.any() and not db.any()


def test_nan_propagates():
    y = ops.dense_forward(np.array([[1.0, np.nan]]), np.ones((2, 2)))
    assert np.isnan(y).all()


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    for N in (1, 32):
        x = rng.standard_normal((N, 648))
        w = rng.standard_normal((10, 648))
        b = rng.standard_normal(10)
        dy = rng.standard_normal((N, 10))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.linear(tx, tw, tb)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(ops.dense_forward(x, w, b), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        for mine, theirs in zip(ops.dense_backward(dy, x, w), (tx.grad, tw.grad, tb.grad)):
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.dense_forward(np.zeros(3), np.zeros((2, 3))), ValueError, r"x must be 2-D"),
        (lambda: ops.dense_forward(np.zeros((1, 3)), np.zeros((2, 4))), ValueError, r"input features"),
        (lambda: ops.dense_forward(np.zeros((1, 3)), np.zeros((2, 3)), np.zeros(3)), ValueError, r"b has length"),
        (lambda: ops.dense_forward(np.zeros((1, 3)), np.zeros((2, 3), np.float32)), TypeError, r"w has dtype float32"),
        (lambda: ops.dense_forward(np.zeros((1, 3), int), np.zeros((2, 3))), TypeError, r"x has dtype int"),
        (lambda: ops.dense_backward(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((2, 3))), ValueError,
         r"dy has shape \(1, 3\)"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_compiled_entry_rechecks_shapes():
    """The loops run with bounds checks off: the compiled entry refuses inconsistent buffers itself."""
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _dense.dense_forward(np.zeros((1, 3)), np.zeros((2, 4)), None, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="dx buffer"):
        _dense.dense_backward(np.zeros((1, 2)), np.zeros((1, 3)), np.zeros((2, 3)), np.zeros((1, 4)),
                              np.zeros((2, 3)), np.zeros(2))
