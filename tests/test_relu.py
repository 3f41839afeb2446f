"""ReLU: bit-identical to the reference, PyTorch's semantics at 0 and NaN."""
import numpy as np
import pytest
from conftest import DTYPES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastconv import ops, reference


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(max_dims=4, max_side=9))))
def test_bit_identical_to_reference(x):
    y, mask = ops.relu_forward(x)
    y_ref, mask_ref = reference.relu_forward(x)
    np.testing.assert_array_equal(mask, mask_ref)
    assert y.tobytes() == y_ref.tobytes()
    dy = np.linspace(-3, 3, x.size).astype(x.dtype).reshape(x.shape)
    assert ops.relu_backward(dy, mask).tobytes() == reference.relu_backward(dy, mask_ref).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_semantics_at_zero_nan_inf(dtype):
    x = np.array([-1.0, -0.0, 0.0, 2.0, np.nan, np.inf, -np.inf], dtype=dtype)
    y, mask = ops.relu_forward(x)
    assert mask.tolist() == [False, False, False, True, True, True, False]
    assert y[:4].tolist() == [0.0, 0.0, 0.0, 2.0] and np.isnan(y[4]) and y[5] == np.inf and y[6] == 0
    assert not np.signbit(y[1])  # -0.0 becomes +0.0 as in torch.relu
    dx = ops.relu_backward(np.full(7, 5.0, dtype=dtype), mask)
    assert dx.tolist() == [0, 0, 0, 5, 5, 5, 0]


def test_large_parallel_and_noncontiguous(rng):
    x = rng.standard_normal((64, 33, 40))[:, ::2, ::-1]
    y, mask = ops.relu_forward(x)
    y_ref, mask_ref = reference.relu_forward(x)
    assert y.tobytes() == y_ref.tobytes() and (mask == mask_ref).all()
    dy = rng.standard_normal(x.shape)
    assert (ops.relu_backward(dy.T.copy().T, np.asfortranarray(mask)).tobytes()
            == reference.relu_backward(dy, mask).tobytes())


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(1000)
    x[:10] = 0.0
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.ones(1000, dtype=torch.float64))
    y, mask = ops.relu_forward(x)
    np.testing.assert_array_equal(y, torch.relu(torch.tensor(x)).numpy())
    np.testing.assert_array_equal(ops.relu_backward(np.ones(1000), mask), tx.grad.numpy())


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.relu_forward(np.arange(3)), TypeError, "astype"),
        (lambda: ops.relu_forward("abc"), TypeError, "numeric"),
        (lambda: ops.relu_backward(np.ones(3), np.ones(4, bool)), ValueError, "mask has shape"),
        (lambda: ops.relu_backward(np.ones(3), np.ones(3)), TypeError, "mask must be the bool array"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
