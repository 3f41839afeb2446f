"""Max-pooling: bit-identical to the reference; first maximum wins ties; NaN propagates."""
import numpy as np
import pytest
from conftest import DTYPES
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import ops, reference


@st.composite
def pool_cases(draw):
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    size = (draw(st.integers(1, H)), draw(st.integers(1, W)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return ((draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W), size, stride,
            draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31)))


@settings(max_examples=80, deadline=None)
@given(pool_cases())
def test_bit_identical_to_reference(case):
    shape, size, stride, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, shape).astype(dtype)  # small integers: many ties
    y, idx = ops.maxpool2d_forward(x, size=size, stride=stride)
    y_ref, idx_ref = reference.maxpool2d_forward(x, size=size, stride=stride)
    assert y.tobytes() == y_ref.tobytes()
    np.testing.assert_array_equal(idx, idx_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert (ops.maxpool2d_backward(dy, idx, x.shape).tobytes()
            == reference.maxpool2d_backward(dy, idx_ref, x.shape).tobytes())


def test_ties_nan_and_overlap():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 0.0, np.nan, 0.0], [2.0, 2.0, 2.0, 2.0]]]])
    y, idx = ops.maxpool2d_forward(x, size=2, stride=1)
    assert idx[0, 0].tolist() == [[1, 6, 6], [4, 6, 6]]  # first of the tied 3s wins; NaN wins its windows
    assert y[0, 0, 0, 0] == 3 and y[0, 0, 1, 0] == 3 and np.isnan(y[0, 0, :, 1:]).all()
    dx = ops.maxpool2d_backward(np.ones((1, 1, 2, 3)), idx, x.shape)
    assert dx[0, 0].tolist() == [[0, 1, 0, 0], [1, 0, 4, 0], [0, 0, 0, 0]]  # overlapping windows accumulate


def test_noncontiguous(rng):
    x = rng.standard_normal((4, 6, 12, 10))[::2, 1::2, :, ::-1]
    y, idx = ops.maxpool2d_forward(x)
    y_ref, idx_ref = reference.maxpool2d_forward(x)
    assert y.tobytes() == y_ref.tobytes() and (idx == idx_ref).all()


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 9, 8))
    y, idx = ops.maxpool2d_forward(x, size=3, stride=2)
    ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.maxpool2d_forward(np.ones((2, 4, 4))), ValueError, "4-D"),
        (lambda: ops.maxpool2d_forward(np.ones((1, 1, 4, 4)), size=5), ValueError, "larger than the input"),
        (lambda: ops.maxpool2d_forward(np.ones((1, 1, 4, 4)), size=0), ValueError, "size must be >= 1"),
        (lambda: ops.maxpool2d_forward(np.ones((1, 1, 4, 4)), stride=0), ValueError, "stride"),
        (lambda: ops.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 3), np.int64), (1, 1, 4, 4)),
         ValueError, "idx has shape"),
        (lambda: ops.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 99), (1, 1, 4, 4)),
         ValueError, "outside"),
        (lambda: ops.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), (1, 1, 4, 4)),
         TypeError, "integer"),
        (lambda: ops.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), int), (2, 1, 4, 4)),
         ValueError, "x_shape"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("stride", [7, 2**40, 2**70, (2**40, 1)])
def test_stride_that_yields_one_window_is_taken_at_any_size(stride, rng):
    """A stride past the last window (here up to 2**70) gives the one window at the origin, as the
    reference does, instead of an OverflowError."""
    x = rng.standard_normal((2, 3, 5, 6))
    y, idx = ops.maxpool2d_forward(x, size=2, stride=stride)
    y_ref, idx_ref = reference.maxpool2d_forward(x, size=2, stride=stride)
    assert y.tobytes() == y_ref.tobytes()
    np.testing.assert_array_equal(idx, idx_ref)
    dy = rng.standard_normal(y.shape)
    dx_ref = reference.maxpool2d_backward(dy, idx_ref, x.shape)
    assert ops.maxpool2d_backward(dy, idx, x.shape).tobytes() == dx_ref.tobytes()
