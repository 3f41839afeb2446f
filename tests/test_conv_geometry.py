"""conv2d's general geometry: dilation and asymmetric (top, bottom, left, right) padding, in ops, the
reference, the bound calls and the Conv2D layer (TensorFlow's "same" at any stride)."""
import math

import numpy as np
import pytest
from conftest import DTYPES, assert_reduction_close, check_conv_against_reference, int_or_pair, numerical_gradient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconv import Sequential, _conv, layers, ops, reference, runtime
from fastconv.nn.saving import load_model, save_model

THREADS = (1, 2, 3, 4)


def pads4(padding):
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


@st.composite
def geometry_cases(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 4))
    F = draw(st.integers(1, 9))
    H = draw(st.integers(1, 12))
    W = draw(st.integers(1, 12))
    stride = draw(int_or_pair(1, 3))
    dilation = draw(int_or_pair(1, 3))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.tuples(*[st.integers(0, 4)] * 4)))
    top, bottom, left, right = pads4(padding)
    dh, dw = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    # the dilated kernel d*(k - 1) + 1 must fit the padded input
    kh = draw(st.integers(1, min(5, (H + top + bottom - 1) // dh + 1)))
    kw = draw(st.integers(1, min(5, (W + left + right - 1) // dw + 1)))
    dtype = draw(st.sampled_from(DTYPES))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return N, C, F, H, W, kh, kw, stride, padding, dilation, dtype, bias, seed


def make(case):
    N, C, F, H, W, kh, kw, stride, padding, dilation, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    return x, w, b, stride, padding, dilation, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry_cases())
def test_random_geometry_matches_reference(case):
    x, w, b, stride, padding, dilation, seed = make(case)
    check_conv_against_reference(x, w, b, stride, padding, dilation, dy_seed=seed, need_dx=seed % 4 != 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry_cases(), st.booleans())
def test_random_asymmetric_padding_matches_reference(case, batch1):
    """Dilation 1 with a (top, bottom, left, right) padding: the implicit GEMM's path (batch 1: its trials)."""
    N, C, F, H, W, kh, kw, stride, padding, dilation, dtype, bias, seed = case
    case = (1 if batch1 else N, C, F, H, W, kh, kw, stride, pads4(padding), 1, dtype, bias, seed)
    x, w, b, stride, padding, dilation, seed = make(case)
    check_conv_against_reference(x, w, b, stride, padding, dilation, dy_seed=seed, need_dx=seed % 4 != 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry_cases())
def test_every_output_element_is_written(case):
    """ops allocates the outputs uninitialised: buffers pre-filled with NaN must come out finite and right."""
    x, w, b, stride, padding, dilation, seed = make(case)
    s = stride if isinstance(stride, tuple) else (stride, stride)
    d = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    p = ops._kernel_padding(pads4(padding))
    geo = dict(stride=s, padding=padding, dilation=d)
    y_ref = reference.conv2d_forward(x, w, b, **geo)
    y = np.full_like(y_ref, np.nan)
    _conv.conv2d_forward(x, w, b, y, s, p, ops.get_num_threads(), d)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full(w.shape[0], np.nan, x.dtype)
    _conv.conv2d_backward(dy, x, w, dx, dw, db, s, p, ops.get_num_threads(), d)
    refs = (y_ref,) + reference.conv2d_backward(dy, x, w, **geo)
    for name, got, ref in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), refs):
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3, err_msg=name)


GENERAL_CASES = [
    # name: (x shape, w shape, stride, padding, dilation)
    ("3x3 d2 same", (2, 3, 9, 10), (4, 3, 3, 3), 1, 2, 2),
    ("TF same s2 even input", (2, 3, 8, 8), (5, 3, 3, 3), 2, (0, 1, 0, 1), 1),
    ("TF same s2 k2", (1, 2, 7, 6), (3, 2, 2, 2), 2, (0, 1, 0, 0), 1),
    ("even kernel s1 same", (2, 2, 6, 7), (3, 2, 4, 2), 1, (1, 2, 0, 1), 1),
    ("dilation > input without padding on one side", (1, 2, 1, 3), (2, 2, 1, 2), 1, (0, 0, 4, 0), (1, 4)),
    ("dilation per axis, stride per axis", (2, 3, 13, 11), (4, 3, 3, 2), (2, 1), (1, 0, 2, 3), (3, 2)),
    ("dilated 1x1 is a plain 1x1", (2, 4, 5, 5), (3, 4, 1, 1), 1, 0, 3),
    ("stride > dilated kernel", (2, 2, 12, 12), (3, 2, 2, 2), 5, (1, 0, 0, 2), 2),
    ("many filters, wide output", (1, 3, 20, 45), (37, 3, 3, 3), 1, (2, 1, 1, 2), (1, 2)),
    # Winograd-sized 3x3 stride-1 layers: asymmetric padding or dilation takes the implicit GEMM instead
    ("3x3 32->32 asymmetric", (4, 32, 24, 24), (32, 32, 3, 3), 1, (1, 2, 0, 1), 1),
    ("3x3 32->32 dilated", (4, 32, 24, 24), (32, 32, 3, 3), 1, 2, 2),
    ("dilated, shifted copies (dilation on rows only)", (1, 1, 28, 28), (16, 1, 8, 8), 1, (3, 4, 3, 4), (2, 1)),
    ("dilation and stride share a factor", (2, 3, 17, 16), (4, 3, 3, 3), 2, (1, 2, 1, 0), (2, 4)),
    ("asymmetric, stride > kernel", (2, 3, 13, 11), (4, 3, 2, 3), (4, 5), (0, 3, 2, 0), 1),
    ("asymmetric, shifted copies (wide kernel)", (1, 1, 28, 28), (16, 1, 8, 8), 1, (3, 4, 3, 4), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,xs,ws,stride,padding,dilation", GENERAL_CASES, ids=[c[0] for c in GENERAL_CASES])
def test_general_edge_geometry(name, xs, ws, stride, padding, dilation, dtype, rng):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    check_conv_against_reference(x, w, b, stride, padding, dilation)
    check_conv_against_reference(x, w, None, stride, padding, dilation, need_dx=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,xs,ws,stride,padding,dilation", GENERAL_CASES, ids=[c[0] for c in GENERAL_CASES])
def test_matches_pytorch(name, xs, ws, stride, padding, dilation, dtype, rng):
    """PyTorch's conv2d with dilation; an asymmetric padding as F.pad (left, right, top, bottom) first."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    top, bottom, left, right = pads4(padding)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (left, right, top, bottom)), tw, tb,
                                    stride=stride, dilation=dilation)
    y = ops.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, dilation=dilation)
    geo = dict(stride=stride, padding=padding, dilation=dilation)
    y_abs = reference.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), **geo)
    dx_a, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **geo)
    F, C, kh, kw = w.shape
    N, _, Ho, Wo = y.shape
    # two independent roundings (ours and PyTorch's): twice the one-sided bound
    assert_reduction_close(y, ty.detach().numpy(), 2 * y_abs, C * kh * kw, "y vs torch")
    assert_reduction_close(dx, tx.grad.numpy(), 2 * dx_a, F * kh * kw, "dx vs torch")
    assert_reduction_close(dw, tw.grad.numpy(), 2 * dw_a, N * Ho * Wo, "dw vs torch")
    assert_reduction_close(db, tb.grad.numpy(), 2 * db_a, N * Ho * Wo, "db vs torch")


@pytest.mark.parametrize("name,xs,ws,stride,padding,dilation", GENERAL_CASES[:6], ids=[c[0] for c in GENERAL_CASES[:6]])
def test_finite_differences(name, xs, ws, stride, padding, dilation, rng):
    """float64 gradients of L = sum(y * g) against central differences of the forward."""
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    geo = dict(stride=stride, padding=padding, dilation=dilation)
    g = rng.standard_normal(ops.conv2d_output_shape(xs, ws, **geo))

    def loss():
        return float(np.sum(ops.conv2d_forward(x, w, b, **geo) * g))

    dx, dw, db = ops.conv2d_backward(g, x, w, **geo)
    for a, grad in ((x, dx), (w, dw), (b, db)):
        idx = rng.choice(a.size, size=min(a.size, 12), replace=False)
        np.testing.assert_allclose(grad.reshape(-1)[idx], numerical_gradient(loss, a, idx), rtol=1e-6, atol=1e-7)


@pytest.fixture
def restore_threads():
    old = runtime.get_num_threads()
    yield
    runtime.set_num_threads(old)


DETERMINISM_CASES = {
    "3x3 d2 32->16 b8": ((8, 32, 16, 16), (16, 32, 3, 3), 1, 2, 2),
    "TF same s2 b16": ((16, 8, 15, 16), (12, 8, 3, 3), 2, (0, 1, 1, 1), 1),
    "dilated, asymmetric b1": ((1, 16, 24, 24), (16, 16, 3, 3), (1, 2), (2, 3, 1, 0), (2, 3)),
    "even kernel same b5": ((5, 4, 20, 21), (8, 4, 4, 4), 1, (1, 2, 1, 2), 1),
    "asymmetric b1": ((1, 16, 24, 24), (16, 16, 3, 3), 2, (0, 1, 0, 1), 1),
    "asymmetric 3x3 32->32 b8": ((8, 32, 16, 16), (32, 32, 3, 3), 1, (1, 2, 2, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(DETERMINISM_CASES))
@pytest.mark.parametrize("nonfinite", [False, True])
def test_general_geometry_gives_the_same_bits_on_any_thread_count(restore_threads, name, dtype, nonfinite):
    """dW (and everything else) of a general plan is summed in an order the thread count does not change."""
    xs, ws, s, p, d = DETERMINISM_CASES[name]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    if nonfinite:
        x[0, 0, 3, 4] = np.inf
    geo = dict(stride=s, padding=p, dilation=d)
    dy = rng.standard_normal(ops.conv2d_output_shape(x.shape, w.shape, **geo)).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    results = []
    for t in THREADS:
        runtime.set_num_threads(t)
        y = ops.conv2d_forward(x, w, b, **geo)
        dx, dw, db = ops.conv2d_backward(dy, x, w, **geo)
        results.append([a.tobytes() for a in (y, dx, dw, db)])
    for t, r in zip(THREADS[1:], results[1:]):
        differ = [k for k, (a, b) in enumerate(zip(r, results[0])) if a != b]
        assert not differ, f"{t} threads differ from 1 in outputs {differ} (y, dx, dw, db)"


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_inputs_give_the_reference_pattern(dtype, rng):
    """im2col multiplies exactly the reference's products: inf and NaN land where the reference's do."""
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    x[0, 1, 4, 3], x[1, 2, 0, 0], w[2, 0, 1, 1] = np.inf, np.nan, -np.inf
    geo = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(2, 1))
    y, y_ref = ops.conv2d_forward(x, w, **geo), reference.conv2d_forward(x, w, **geo)
    dy = rng.standard_normal(y.shape).astype(dtype)
    with np.errstate(invalid="ignore"):
        got, want = ops.conv2d_backward(dy, x, w, **geo), reference.conv2d_backward(dy, x, w, **geo)
    for name, a, r in zip(("y", "dx", "dw", "db"), (y,) + got, (y_ref,) + want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(r), err_msg=name)
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(r), err_msg=name)
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(r), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_symmetric_forms_take_the_existing_plan(dtype, rng):
    """padding (1, 1, 2, 2) and dilation 1 are the symmetric geometry of earlier releases: the same plan key
    and the same bits as padding (1, 2)."""
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    y = ops.conv2d_forward(x, w, padding=(1, 2))
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = ops.conv2d_backward(dy, x, w, padding=(1, 2))
    for padding, dilation in (((1, 1, 2, 2), 1), ([1, 1, 2, 2], (1, 1)), ((1, 2), [1, 1])):
        assert ops.conv2d_forward(x, w, padding=padding, dilation=dilation).tobytes() == y.tobytes()
        got = ops.conv2d_backward(dy, x, w, padding=padding, dilation=dilation)
        assert [a.tobytes() for a in got] == [a.tobytes() for a in grads]
    key = (3, 9, 8, 4, 3, 2, 1, 1, 1, 2, _conv.tile_width(dtype))
    assert key in _conv._plans
    ops.conv2d_forward(x, w, padding=(1, 2, 2, 2))
    plan = _conv._plans[key + (2, 2, 1, 1)]   # bottom 2, right 2, no dilation: implicit GEMM, no Winograd
    assert not plan.winograd_ok and _conv._plans[key].winograd_ok
    assert not [k for k in _conv.batch1_choices() if len(k) not in (11, 15)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_and_validated_paths_agree(dtype, rng):
    """A byte-swapped or strided input (validated in Python) gives the bits of the plain one (checked in C)."""
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    geo = dict(stride=(2, 1), padding=(0, 1, 2, 1), dilation=(2, 3))
    y = ops.conv2d_forward(x, w, **geo)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = ops.conv2d_backward(dy, x, w, **geo)
    xs = x.astype(x.dtype.newbyteorder())
    wide = np.zeros((2, 3, 9, 16), dtype)
    wide[..., ::2] = x
    for xv in (xs, wide[..., ::2]):
        assert ops.conv2d_forward(xv, w, **geo).tobytes() == y.tobytes()
        assert [a.tobytes() for a in ops.conv2d_backward(dy, xv, w, **geo)] == [a.tobytes() for a in grads]
    geo_np = dict(stride=(np.int64(2), 1), padding=tuple(np.int32(v) for v in (0, 1, 2, 1)), dilation=np.int64(2))
    assert ops.conv2d_forward(x, w, **geo_np).shape == ops.conv2d_output_shape(x.shape, w.shape, **geo_np)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bound_calls_match_ops(dtype, rng):
    x = rng.standard_normal((3, 2, 10, 7)).astype(dtype)
    w = rng.standard_normal((5, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    geo = dict(stride=2, padding=(1, 0, 0, 1), dilation=(1, 2))
    want_y = ops.conv2d_forward(x, w, b, **geo)
    y = np.empty_like(want_y)
    fn, args = ops.bind_conv2d_forward(x, w, b, y, **geo)
    fn(*args)
    assert y.tobytes() == want_y.tobytes()
    dy = rng.standard_normal(y.shape).astype(dtype)
    want = ops.conv2d_backward(dy, x, w, **geo)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    fn, args = ops.bind_conv2d_backward(dy, x, w, dx, dw, db, **geo)
    fn(*args)
    assert [a.tobytes() for a in (dx, dw, db)] == [a.tobytes() for a in want]
    with pytest.raises(ValueError, match="y has shape"):
        ops.bind_conv2d_forward(x, w, b, np.empty((3, 5, 5, 4), dtype), stride=2, padding=(1, 0, 0, 1))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=(0, 0, -1, 0)), ValueError, "padding must be >= 0"),
    (dict(padding=(1, 2, 3)), ValueError, r"padding must be an int, a \(height, width\) pair or a \(top, bottom"),
    (dict(padding=(1,)), ValueError, r"padding must be an int, a \(height, width\) pair or a \(top, bottom"),
    (dict(padding=(1.0, 1)), TypeError, "padding must be an int"),
    (dict(padding=True), TypeError, "padding must be an int"),
    (dict(dilation=0), ValueError, "dilation must be >= 1"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (dict(dilation=(1, 2, 3)), ValueError, "dilation must be an int or a"),
    (dict(dilation=1.5), TypeError, "dilation must be an int"),
    (dict(dilation=4), ValueError, r"kernel 3x3 \(dilation \(4, 4\) spreads it over 9x9\) is larger than the padded "
                                   r"input 8x8 \(input 8x8, padding \(0, 0\)\)"),
    (dict(dilation=(2, 5), padding=(0, 0, 0, 1)), ValueError, r"spreads it over 5x11\) is larger than the padded "
                                                              r"input 8x9 \(input 8x8, padding \(0, 0, 0, 1\)\)"),
])
def test_bad_geometry_names_the_argument(kwargs, error, match):
    x, w = np.zeros((1, 2, 8, 8)), np.zeros((3, 2, 3, 3))
    ok = {"dilation": 3} if "padding" in kwargs and "dilation" not in kwargs else {}
    for call in (lambda: ops.conv2d_forward(x, w, **{**ok, **kwargs}),
                 lambda: ops.conv2d_backward(np.zeros((1, 3, 6, 6)), x, w, **{**ok, **kwargs}),
                 lambda: ops.conv2d_output_shape(x.shape, w.shape, **{**ok, **kwargs}),
                 lambda: ops.bind_conv2d_forward(x, w, None, np.zeros((1, 3, 6, 6)), stride=1,
                                                 **{"padding": 0, **ok, **kwargs})):
        with pytest.raises(error, match=match):
            call()


def test_output_shape_formula():
    for H in range(1, 12):
        for k in range(1, 5):
            for d in range(1, 4):
                for s in range(1, 4):
                    for top, bottom in ((0, 0), (1, 0), (0, 2), (3, 1)):
                        if d * (k - 1) + 1 > H + top + bottom:
                            continue
                        shape = ops.conv2d_output_shape((1, 1, H, 5), (1, 1, k, 1), stride=(s, 1),
                                                        padding=(top, bottom, 0, 0), dilation=(d, 1))
                        assert shape[2] == (H + top + bottom - d * (k - 1) - 1) // s + 1
                        assert shape == reference.conv2d_forward(
                            np.zeros((1, 1, H, 5)), np.zeros((1, 1, k, 1)), stride=(s, 1),
                            padding=(top, bottom, 0, 0), dilation=(d, 1)).shape


# ------------------------------------------------------------------------------------------ the layer

def tf_same_pads(size, k, s, d):
    """TensorFlow's rule, written out as its documentation states it."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_output_is_ceil_of_input_over_stride(stride, kernel, dilation):
    for H, W in ((1, 1), (5, 8), (7, 7), (12, 9), (16, 15)):
        layer = layers.Conv2D(2, kernel, strides=stride, padding="same", dilation_rate=dilation)
        assert layer.build((3, H, W)) == (2, math.ceil(H / stride), math.ceil(W / stride))
        assert layer.pads == tf_same_pads(H, kernel, stride, dilation) + tf_same_pads(W, kernel, stride, dilation)
        assert layer.padding_arg == "same"


def test_same_at_stride_one_with_odd_kernels_is_the_old_symmetric_padding():
    for k in (1, 3, 5, 7):
        layer = layers.Conv2D(2, k, padding="same")
        assert layer.pads == (k // 2,) * 4 and layer.padding == (k // 2, k // 2)
        layer.build((1, 9, 9))
        assert layer.pads == (k // 2,) * 4
    layer = layers.Conv2D(2, (3, 5), padding="SAME", dilation_rate=(1, 2))
    assert layer.padding == (1, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_forward_and_backward_match_the_reference(dtype, rng):
    model = Sequential([layers.Conv2D(4, 3, strides=2, padding="same", dilation_rate=(1, 2), activation="linear")],
                       dtype=dtype, seed=0)
    model.build((3, 10, 9))
    conv = model.layers[0]
    pads = tf_same_pads(10, 3, 2, 1) + tf_same_pads(9, 3, 2, 2)
    assert conv.pads == pads == (0, 1, 2, 2) and conv.padding == pads
    x = rng.standard_normal((2, 3, 10, 9)).astype(dtype)
    w, b = conv.params["kernel"], conv.params["bias"]
    b[...] = rng.standard_normal(4)
    y = model.predict(x)
    y_ref = reference.conv2d_forward(x, w, b, stride=2, padding=pads, dilation=(1, 2))
    y_abs = reference.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), stride=2, padding=pads, dilation=(1, 2))
    assert y.shape == (2, 4, 5, 5)
    assert_reduction_close(y, y_ref, y_abs, 3 * 9, "y")
    # the backward (two layers, so that the conv's dx is needed too): bits of the ops calls on the same input
    model = Sequential([layers.Conv2D(2, 2, padding="same", strides=(2, 1), activation="linear"),
                        layers.Conv2D(4, 3, strides=2, padding="same", dilation_rate=(1, 2), activation="linear")],
                       dtype=dtype, seed=0)
    model.build((3, 10, 9))
    first, conv = model.layers
    g = rng.standard_normal((2,) + model.output_shape).astype(dtype)
    h = model.backpropagate(x, g)[0]
    dx, dw, db = ops.conv2d_backward(g, h, conv.params["kernel"], stride=2, padding=conv.pads, dilation=(1, 2))
    assert conv.grads["kernel"].tobytes() == dw.tobytes() and conv.grads["bias"].tobytes() == db.tobytes()
    # the first layer needs no dx, and asks for none
    _, dw1, _ = ops.conv2d_backward(dx, x, first.params["kernel"], stride=(2, 1), padding=first.pads, need_dx=False)
    assert first.pads == (0, 0, 0, 1) and first.grads["kernel"].tobytes() == dw1.tobytes()


@pytest.mark.parametrize("padding", [0, 2, (1, 2), [1, 2], (0, 1, 2, 3), [0, 1, 2, 3], "valid", "same", "Same"])
def test_config_and_save_round_trip(padding, tmp_path, rng):
    model = Sequential([layers.Conv2D(3, (3, 2), strides=(2, 1), padding=padding, dilation_rate=(2, 1),
                                      activation="relu"), layers.Flatten(), layers.Dense(2)], seed=1)
    model.build((2, 11, 10))
    cfg = model.layers[0].get_config()
    assert cfg["dilation_rate"] == (2, 1)
    want = padding.lower() if isinstance(padding, str) else (padding if isinstance(padding, int) else tuple(padding))
    assert cfg["padding"] == want
    again = layers.layer_from_config("Conv2D", cfg)
    assert again.get_config() == cfg
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.layers[0].get_config() == cfg
    assert loaded.layers[0].pads == model.layers[0].pads
    x = rng.standard_normal((2, 2, 11, 10)).astype(np.float32)
    assert loaded.predict(x).tobytes() == model.predict(x).tobytes()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(padding="full"), ValueError, "padding must be an int, a pair, a .* 'valid' or 'same'"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=(1, 2, 3)), ValueError, "padding must be"),
    (dict(dilation_rate=0), ValueError, "dilation_rate must be >= 1"),
    (dict(dilation_rate=(1, 2, 3)), ValueError, "dilation_rate must be an int or a"),
])
def test_layer_rejects_bad_geometry(kwargs, error, match):
    with pytest.raises(error, match=match):
        layers.Conv2D(2, 3, **kwargs)


def test_layer_rejects_a_dilated_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match=r"dilation \(3, 3\) spreads it over 7x7"):
        layers.Conv2D(2, 3, dilation_rate=3).build((1, 6, 6))
