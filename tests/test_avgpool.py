"""Average pooling (PyTorch's semantics) and global average/max pooling: bit-identical to the reference where
the operations are the same, against PyTorch for every flag combination, finite differences, and the layers."""
import itertools

import numpy as np
import pytest
from conftest import DTYPES, assert_reduction_close, numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import Sequential, layers, ops, reference


@st.composite
def avg_cases(draw):
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = tuple(draw(st.integers(0, k // 2)) for k in (kh, kh, kw, kw))
    if kh > H + pads[0] + pads[1] or kw > W + pads[2] + pads[3]:
        pads = (kh // 2, kh // 2, kw // 2, kw // 2)
        H, W = max(H, kh), max(W, kw)
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return ((draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W), (kh, kw), stride, pads,
            draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31)))


@settings(max_examples=120, deadline=None)
@given(avg_cases())
def test_bit_identical_to_reference(case):
    """Same sums in the same order and the same division: the same bits."""
    shape, size, stride, pads, ceil_mode, count_include_pad, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    kw = dict(size=size, stride=stride, padding=pads, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    y = ops.avgpool2d_forward(x, **kw)
    y_ref = reference.avgpool2d_forward(x, **kw)
    assert y.shape == ops.pool_output_shape(shape, size, stride, pads, ceil_mode)
    assert y.tobytes() == y_ref.tobytes()
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert ops.avgpool2d_backward(dy, shape, **kw).tobytes() == reference.avgpool2d_backward(dy, shape, **kw).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_pytorch_for_every_flag_combination(dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    for k, s, p, ceil_mode, cip in itertools.product([1, 2, 3, (3, 2)], [1, 2, 3, (2, 3)], [0, 1, (1, 0)],
                                                     [False, True], [False, True]):
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = (p, p) if isinstance(p, int) else p
        if ph > kh // 2 or pw > kw // 2:
            continue
        kwargs = dict(size=k, stride=s, padding=p, ceil_mode=ceil_mode, count_include_pad=cip)
        xt = torch.tensor(x, requires_grad=True)
        yt = F.avg_pool2d(xt, k, s, p, ceil_mode=ceil_mode, count_include_pad=cip)
        y = ops.avgpool2d_forward(x, **kwargs)
        assert y.shape == tuple(yt.shape), kwargs
        # PyTorch's CPU kernel sums in the input's precision in the same row-major order
        assert y.tobytes() == yt.detach().numpy().tobytes(), kwargs
        dy = rng.standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(dy))
        dx = ops.avgpool2d_backward(dy, x.shape, **kwargs)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=8 * np.finfo(dtype).eps,
                                   atol=8 * np.finfo(dtype).eps * np.abs(dy).max())


def test_ceil_mode_last_window_rule_and_overhang_divisor():
    """H=5, k=2, s=2, ceil: 3 windows, the last one overhangs; with padding 1 and s=2 on H=4, ceil mode would
    give a window starting in the bottom padding, which PyTorch drops."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y = ops.avgpool2d_forward(x, size=2, stride=2, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2] == 24.0    # the overhanging window: divisor 1 (clipped at H + pad), as PyTorch
    assert ops.pool_output_shape((1, 1, 4, 4), 2, 2, 1, ceil_mode=True) == (1, 1, 3, 3)
    assert ops.pool_output_shape((1, 1, 4, 4), 3, 3, 1, ceil_mode=True) == (1, 1, 2, 2)


def test_tensorflow_same_padding():
    """TensorFlow's "same": asymmetric pads, the extra at the bottom/right, divisor = input elements."""
    assert ops.pool_padding("same", 2, 2, (5, 4)) == (0, 1, 0, 0)
    assert ops.pool_padding("same", 3, 1, (5, 5)) == (1, 1, 1, 1)
    assert ops.pool_padding("same", 3, 2, (6, 7)) == (0, 1, 1, 1)
    x = np.arange(15.0).reshape(1, 1, 5, 3)
    y = ops.avgpool2d_forward(x, size=2, stride=2, padding="same", count_include_pad=False)
    assert y.shape == (1, 1, 3, 2)
    # the window at the bottom right holds only x[4, 2]; TensorFlow divides by 1
    assert y[0, 0, 2, 1] == 14.0 and y[0, 0, 0, 1] == (2 + 5) / 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_do_not_change_the_bits(dtype, rng):
    x = rng.standard_normal((8, 16, 26, 26)).astype(dtype)
    old = fastconv.get_num_threads()
    out = []
    try:
        for threads in (1, 2, 3, 4):
            fastconv.set_num_threads(threads)
            y = ops.avgpool2d_forward(x, size=3, stride=2, padding=1, ceil_mode=True)
            dx = ops.avgpool2d_backward(np.ones_like(y), x.shape, size=3, stride=2, padding=1, ceil_mode=True)
            g = ops.global_avgpool2d_forward(x)
            m, idx = ops.global_maxpool2d_forward(x)
            out.append(b"".join(a.tobytes() for a in (y, dx, g, m, idx)))
    finally:
        fastconv.set_num_threads(old)
    assert all(o == out[0] for o in out)


def test_finite_difference_gradients(rng):
    x = rng.standard_normal((2, 2, 5, 6))
    for kw in (dict(size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
               dict(size=2, stride=1, padding=(1, 0), count_include_pad=True)):
        y = ops.avgpool2d_forward(x, **kw)
        w = rng.standard_normal(y.shape)
        dx = ops.avgpool2d_backward(w, x.shape, **kw)
        idx = rng.choice(x.size, 8, replace=False)
        num = numerical_gradient(lambda: float((ops.avgpool2d_forward(x, **kw) * w).sum()), x, idx)
        np.testing.assert_allclose(dx.reshape(-1)[idx], num, rtol=1e-7, atol=1e-8)
    w = rng.standard_normal((2, 2))
    num = numerical_gradient(lambda: float((ops.global_avgpool2d_forward(x) * w).sum()), x, range(x.size))
    np.testing.assert_allclose(ops.global_avgpool2d_backward(w, x.shape).reshape(-1), num, rtol=1e-7, atol=1e-8)
    num = numerical_gradient(lambda: float((ops.global_maxpool2d_forward(x)[0] * w).sum()), x, range(x.size))
    _, idx = ops.global_maxpool2d_forward(x)
    np.testing.assert_allclose(ops.global_maxpool2d_backward(w, idx, x.shape).reshape(-1), num, rtol=1e-7,
                               atol=1e-8)


def test_noncontiguous_and_byteswapped_inputs(rng):
    x = rng.standard_normal((4, 6, 12, 10))[::2, 1::2, :, ::-1]
    xc = np.ascontiguousarray(x)
    kw = dict(size=3, stride=2, padding=1, ceil_mode=True)
    for a in (x, xc.astype(">f8")):
        assert ops.avgpool2d_forward(a, **kw).tobytes() == reference.avgpool2d_forward(xc, **kw).tobytes()
        assert ops.global_avgpool2d_forward(a).tobytes() == ops.global_avgpool2d_forward(xc).tobytes()
        assert ops.global_maxpool2d_forward(a)[0].tobytes() == reference.global_maxpool2d_forward(xc)[0].tobytes()
    dy = rng.standard_normal((2, 3, 7, 6))[:, :, ::-1]
    assert (ops.avgpool2d_backward(dy, x.shape, **kw).tobytes()
            == reference.avgpool2d_backward(np.ascontiguousarray(dy), x.shape, **kw).tobytes())


def test_bound_calls_check_their_buffers(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    with pytest.raises(ValueError, match="y has shape"):
        ops.bind_avgpool2d_forward(x, np.empty((2, 3, 2, 2)), size=2, stride=2, padding=0)
    with pytest.raises(TypeError, match="dtype"):
        ops.bind_global_avgpool2d_forward(x, np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="idx has shape"):
        ops.bind_global_maxpool2d_forward(x, np.empty((2, 3)), np.empty((2, 2), np.int64))
    y = np.empty((2, 3, 3, 3))
    fn, args = ops.bind_avgpool2d_forward(x, y, size=2, stride=2, padding=0)
    fn(*args)
    assert y.tobytes() == reference.avgpool2d_forward(x).tobytes()


# --------------------------------------------------------------------------------------------- global

@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       st.sampled_from(DTYPES), st.integers(0, 2**31))
def test_global_pooling_against_reference(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, shape).astype(dtype) + rng.standard_normal(shape).astype(dtype) * (seed % 2)
    y = ops.global_avgpool2d_forward(x)
    y_ref = reference.global_avgpool2d_forward(x)
    # both sum in double (any order: gamma_K*sum|x|) and round once to x's dtype
    S = shape[2] * shape[3]
    bound_terms = np.abs(x.astype(np.float64)).sum(axis=(2, 3)) / S
    err = np.abs(y.astype(np.float64) - y_ref)
    assert np.all(err <= 2.02 * (S + 2) * np.finfo(np.float64).eps * bound_terms + np.spacing(np.abs(y_ref)))
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    dx_ref = reference.global_avgpool2d_backward(dy, shape)
    assert ops.global_avgpool2d_backward(dy, shape).tobytes() == dx_ref.tobytes()
    m, idx = ops.global_maxpool2d_forward(x)
    m_ref, idx_ref = reference.global_maxpool2d_forward(x)
    assert m.tobytes() == m_ref.tobytes() and (idx == idx_ref).all()
    assert (ops.global_maxpool2d_backward(dy, idx, shape).tobytes()
            == reference.global_maxpool2d_backward(dy, idx_ref, shape).tobytes())


def test_global_max_ties_and_nan():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]], [[1.0, np.nan], [5.0, np.nan]]]])
    y, idx = ops.global_maxpool2d_forward(x)
    assert y[0, 0] == 3 and idx.tolist() == [[1, 1]] and np.isnan(y[0, 1])


def test_global_pooling_matches_pytorch_adaptive(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for dtype in DTYPES:
        x = rng.standard_normal((3, 4, 7, 5)).astype(dtype)
        xt = torch.tensor(x, requires_grad=True)
        yt = F.adaptive_avg_pool2d(xt, 1).flatten(1)
        y = ops.global_avgpool2d_forward(x)
        assert_reduction_close(y, yt.detach().numpy(), np.abs(x).mean(axis=(2, 3)), 35, "global avg")
        dy = rng.standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(ops.global_avgpool2d_backward(dy, x.shape), xt.grad.numpy(),
                                   rtol=2 * np.finfo(dtype).eps)
        xt = torch.tensor(x, requires_grad=True)
        mt, it = F.adaptive_max_pool2d(xt, 1, return_indices=True)
        m, idx = ops.global_maxpool2d_forward(x)
        assert m.tobytes() == mt.detach().flatten(1).numpy().tobytes()
        np.testing.assert_array_equal(idx, it.flatten(1).numpy())
        mt.flatten(1).backward(torch.tensor(dy))
        assert ops.global_maxpool2d_backward(dy, idx, x.shape).tobytes() == xt.grad.numpy().tobytes()


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.avgpool2d_forward(np.ones((2, 4, 4))), ValueError, "4-D"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), size=5), ValueError, "larger than the padded"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), size=2, padding=2), ValueError, "at most half"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), padding=(0, 0, 1)), ValueError, "pair"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), padding="full"), ValueError, "'same'"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), padding=-1), ValueError, ">= 0"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), ceil_mode=1), TypeError, "ceil_mode"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4)), count_include_pad=None), TypeError, "count_include"),
        (lambda: ops.avgpool2d_forward(np.ones((1, 1, 4, 4), np.int32)), TypeError, "float32 or float64"),
        (lambda: ops.avgpool2d_backward(np.ones((1, 1, 3, 3)), (1, 1, 4, 4)), ValueError, "dy has shape"),
        (lambda: ops.global_avgpool2d_forward(np.ones((1, 1, 0, 4))), ValueError, "non-empty"),
        (lambda: ops.global_avgpool2d_backward(np.ones((1, 2)), (1, 1, 4, 4)), ValueError, "pools to"),
        (lambda: ops.global_maxpool2d_backward(np.ones((1, 1)), np.full((1, 1), 16), (1, 1, 4, 4)),
         ValueError, "outside"),
        (lambda: ops.global_maxpool2d_backward(np.ones((1, 1)), np.zeros((1, 1)), (1, 1, 4, 4)),
         TypeError, "integer"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------------------------- layers

def test_layers_in_a_model(rng):
    model = Sequential([layers.Conv2D(4, 3, padding=1), layers.AveragePooling2D(2, padding="same"),
                        layers.AveragePooling2D(3, strides=1, padding=1, count_include_pad=False, ceil_mode=True),
                        layers.GlobalMaxPooling2D(), layers.Reshape((2, -1)), layers.Reshape((4,)),
                        layers.Dense(3)], dtype="float64", seed=0)
    model.build((1, 7, 7))
    avg = model.layers[1]
    assert avg.pads == (0, 1, 0, 1) and avg.count_include_pad is False and avg.output_shape == (4, 4, 4)
    assert model.layers[4].output_shape == (2, 2)
    model.compile("sgd", "mse")
    x, t = rng.standard_normal((5, 1, 7, 7)), rng.standard_normal((5, 3))
    loss, grads = model.compute_gradients(x, t)
    # the chain through every layer against a finite difference on one weight
    i = 3

    def f():
        return model.evaluate(x, t)["loss"]
    num = numerical_gradient(f, model.params, [i])
    np.testing.assert_allclose(grads[i], num[0], rtol=1e-6)


def test_global_average_layer_and_configs():
    gap = layers.GlobalAveragePooling2D()
    assert Sequential([gap]).build((3, 4, 5)).output_shape == (3,)
    for layer in (layers.AveragePooling2D((2, 3), strides=1, padding=(1, 1, 0, 1), count_include_pad=False,
                                          ceil_mode=True), layers.Reshape((2, -1)), layers.GlobalMaxPooling2D(),
                  layers.MaxPool2D(3, padding="same")):
        clone = layers.layer_from_config(type(layer).__name__, layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="cannot reshape"):
        Sequential([layers.Reshape((5,))]).build((2, 3))
    with pytest.raises(ValueError, match="-1 once"):
        layers.Reshape((-1, -1))
    with pytest.raises(ValueError, match="expects"):
        Sequential([layers.GlobalAveragePooling2D()]).build((3,))
