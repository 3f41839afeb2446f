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


# ------------------------------------------------------------------------------------------- padding

@st.composite
def padded_cases(draw):
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, min(H + 2, 5))), draw(st.integers(1, min(W + 2, 5)))
    pads = tuple(draw(st.integers(0, k // 2)) for k in (kh, kh, kw, kw))
    if kh > H + pads[0] + pads[1] or kw > W + pads[2] + pads[3]:
        pads = (kh // 2, kh // 2, kw // 2, kw // 2)
        H, W = max(H, kh), max(W, kw)
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return ((draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W), (kh, kw), stride, pads,
            draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31)))


@settings(max_examples=80, deadline=None)
@given(padded_cases())
def test_padded_bit_identical_to_reference(case):
    shape, size, stride, pads, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, shape).astype(dtype)
    x[x == -3] = -np.inf   # an input -inf still wins over the pads (the first input element starts a window)
    y, idx = ops.maxpool2d_forward(x, size=size, stride=stride, padding=pads)
    y_ref, idx_ref = reference.maxpool2d_forward(x, size=size, stride=stride, padding=pads)
    assert y.tobytes() == y_ref.tobytes()
    np.testing.assert_array_equal(idx, idx_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert (ops.maxpool2d_backward(dy, idx, x.shape).tobytes()
            == reference.maxpool2d_backward(dy, idx_ref, x.shape).tobytes())


def test_padded_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    for dtype in DTYPES:
        x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
        for k, s, p in [(3, 2, 1), (2, 1, 1), ((3, 2), (2, 1), (1, 0)), (3, 3, 1)]:
            y, idx = ops.maxpool2d_forward(x, size=k, stride=s, padding=p)
            ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
            assert y.tobytes() == ty.numpy().tobytes()
            np.testing.assert_array_equal(idx, tidx.numpy())


def test_same_padding_and_zero_padding_keep_the_unpadded_path(rng):
    x = rng.standard_normal((2, 2, 5, 6))
    y, idx = ops.maxpool2d_forward(x, size=2, stride=2, padding="same")
    assert y.shape == (2, 2, 3, 3)   # TensorFlow: ceil(5/2) x ceil(6/2); the pad row at the bottom
    np.testing.assert_array_equal(y[:, :, 2, :], np.maximum(x[:, :, 4, 0::2], x[:, :, 4, 1::2]))
    for padding in (0, (0, 0), (0, 0, 0, 0), "valid"):
        yv, iv = ops.maxpool2d_forward(x, size=2, padding=padding)
        y0, i0 = ops.maxpool2d_forward(x, size=2)
        assert yv.tobytes() == y0.tobytes() and (iv == i0).all()
    with pytest.raises(ValueError, match="at most half"):
        ops.maxpool2d_forward(x, size=2, padding=2)


def test_padded_layer_trains_and_round_trips(rng):
    from fastconv import Sequential, layers
    model = Sequential([layers.Conv2D(2, 3), layers.MaxPool2D(3, strides=2, padding=1), layers.Flatten(),
                        layers.Dense(2)], dtype="float64", seed=0)
    model.build((1, 8, 8))
    assert model.layers[1].pads == (1, 1, 1, 1) and model.layers[1].output_shape == (2, 3, 3)
    clone = layers.layer_from_config("MaxPool2D", model.layers[1].get_config())
    assert clone.get_config() == {"name": None, "pool_size": (3, 3), "strides": (2, 2), "padding": 1}
    assert "padding" not in layers.MaxPool2D(2).get_config()   # unpadded configs stay as they were


@pytest.mark.parametrize("dtype", DTYPES)
def test_bound_backward_overwrites_its_buffer_on_any_thread_count(dtype, rng):
    """The bound backward (the model's) writes every element of dx, whatever dx held, the same bits on
    1-3 threads, on a plane count large enough to split between them."""
    from fastconv import runtime
    x = rng.standard_normal((8, 16, 26, 26)).astype(dtype)
    y, idx = ops.maxpool2d_forward(x, size=3, stride=2)       # overlapping windows
    dy = rng.standard_normal(y.shape).astype(dtype)
    want = reference.maxpool2d_backward(dy, reference.maxpool2d_forward(x, size=3, stride=2)[1], x.shape)
    before = runtime.get_num_threads()
    try:
        for threads in (1, 2, 3):
            runtime.set_num_threads(threads)
            dx = np.full(x.shape, np.nan, dtype)
            fn, args = ops.bind_maxpool2d_backward(dy, idx, dx)
            fn(*args)
            fn(*args)                                         # twice: nothing accumulates across calls
            assert dx.tobytes() == want.tobytes(), threads
    finally:
        runtime.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H,W", [(2, 2), (5, 7), (26, 26), (11, 11), (4, 35)])
def test_two_by_two_stride_two_with_ties_and_nan(dtype, H, W, rng):
    """The 2x2, stride-2 pool has its own vectorised loop: ties, NaN anywhere in a window, odd sizes
    (the last row or column unused), against the reference."""
    x = rng.integers(-2, 2, (3, 2, H, W)).astype(dtype)
    x.reshape(-1)[rng.choice(x.size, x.size // 7 + 1, replace=False)] = np.nan
    y, idx = ops.maxpool2d_forward(x, size=2)
    y_ref, idx_ref = reference.maxpool2d_forward(x, size=2)
    assert y.tobytes() == y_ref.tobytes()
    np.testing.assert_array_equal(idx, idx_ref)
