"""conv2d_forward / conv2d_backward against the reference, finite differences, threads and PyTorch."""
import threading

import numpy as np
import pytest
from conftest import DTYPES, assert_reduction_close, check_conv_against_reference, int_or_pair, numerical_gradient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconv import _conv, _runtime, ops, reference, runtime


@st.composite
def conv_cases(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 4))
    F = draw(st.integers(1, 11))
    H = draw(st.integers(1, 12))
    W = draw(st.integers(1, 12))
    stride = draw(int_or_pair(1, 3))
    padding = draw(int_or_pair(0, 2))
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    kh = draw(st.integers(1, H + 2 * ph))
    kw = draw(st.integers(1, W + 2 * pw))
    kh, kw = min(kh, 6), min(kw, 6)
    dtype = draw(st.sampled_from(DTYPES))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return N, C, F, H, W, kh, kw, stride, padding, dtype, bias, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_random_shapes_match_reference(case):
    N, C, F, H, W, kh, kw, stride, padding, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    check_conv_against_reference(x, w, b, stride, padding, dy_seed=seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_every_output_element_is_written(case):
    """The compiled kernels fill buffers that ops allocates uninitialised: pre-filled with NaN, every
    element of y, dx, dw and db must still come out finite and right, including dx rows and columns no
    window reads (stride 2: 21 rows, kernel 4, row 20), which the phase planes leave out."""
    N, C, F, H, W, kh, kw, stride, padding, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    s = stride if isinstance(stride, tuple) else (stride, stride)
    p = padding if isinstance(padding, tuple) else (padding, padding)
    y_ref = reference.conv2d_forward(x, w, b, stride=s, padding=p)
    y = np.full_like(y_ref, np.nan)
    _conv.conv2d_forward(x, w, b, y, s, p, ops.get_num_threads())
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full(F, np.nan, dtype)
    _conv.conv2d_backward(dy, x, w, dx, dw, db, s, p, ops.get_num_threads())
    refs = (y_ref,) + reference.conv2d_backward(dy, x, w, stride=s, padding=p)
    for name, got, ref in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), refs):
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3, err_msg=name)


EDGE_CASES = [
    # name: (x shape, w shape, stride, padding)
    ("1x1 kernel", (2, 5, 7, 6), (9, 5, 1, 1), 1, 0),
    ("kernel = padded input", (2, 3, 5, 4), (4, 3, 7, 6), 1, 1),
    ("kernel = input, no padding", (1, 2, 6, 6), (3, 2, 6, 6), 1, 0),
    ("stride > kernel", (2, 3, 11, 13), (4, 3, 2, 3), (4, 5), 0),
    ("stride > kernel, padded", (1, 2, 9, 9), (3, 2, 1, 1), 3, 2),
    ("non-square kernel and stride", (2, 3, 12, 10), (5, 3, 5, 2), (2, 1), (1, 2)),
    ("seed conv 1", (1, 1, 28, 28), (16, 1, 8, 8), 1, 0),
    ("seed conv 2 (stride 2)", (1, 16, 21, 21), (8, 16, 4, 4), 2, 0),
    ("many filters (several row tiles)", (2, 3, 9, 9), (37, 3, 3, 3), 1, 1),
    # a dx tile whose first and last columns land NR-1 outputs apart with gaps between (once mistaken
    # for a contiguous run by the store path)
    ("strided width, wide padding, 1x1", (1, 1, 5, 5), (1, 1, 1, 1), (1, 2), 2),
    ("strided width, wide padding, 3x3", (2, 2, 5, 5), (3, 2, 3, 3), (1, 2), 2),
    ("wide output (many column tiles)", (1, 2, 40, 45), (3, 2, 3, 3), 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,xs,ws,stride,padding", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_sizes(name, xs, ws, stride, padding, dtype, rng):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    check_conv_against_reference(x, w, b, stride, padding)
    check_conv_against_reference(x, w, None, stride, padding, need_dx=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", range(1, 8))
def test_every_partial_row_panel(rows, dtype, rng):
    """The nn micro-kernel computes only the rows a panel has (filters of y, channels of dx): F and C
    = rows and 8 + rows cover every remainder of FC_MR = 4 (AVX2) and 8 (AVX-512), on enough columns
    for several tiles, stride 1 and 2."""
    for extra, stride in ((0, 1), (8, 2)):
        x = rng.standard_normal((2, rows + extra, 11, 13)).astype(dtype)
        w = rng.standard_normal((rows + extra, rows + extra, 3, 2)).astype(dtype)
        check_conv_against_reference(x, w, rng.standard_normal(rows + extra).astype(dtype), stride, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_batches_match_unchunked(monkeypatch, dtype, rng):
    """Tiny chunk budget: one sample per chunk, including a partial last chunk."""
    x = rng.standard_normal((5, 3, 10, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    monkeypatch.setattr(_conv, "CHUNK_BYTES", 1)
    monkeypatch.setattr(_conv, "IMPLICIT_CHUNK_BYTES", 1)
    monkeypatch.setattr(_conv, "BACKWARD_CHUNK_BYTES", 1)
    monkeypatch.setattr(_conv, "CHUNK_SAMPLES_PER_THREAD", 0)
    check_conv_against_reference(x, w, b, (2, 1), 1)
    check_conv_against_reference(x, w, b, 1, (0, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_and_fortran_inputs(dtype, rng):
    base = rng.standard_normal((3, 4, 14, 12)).astype(dtype)
    x_strided = base[::2, ::2, 1::2, ::-1]  # non-contiguous, negative stride
    x_fortran = np.asfortranarray(base[:2, :2, :9, :9])
    w_base = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    w_fortran = np.asfortranarray(w_base)
    w_strided = np.repeat(w_base, 2, axis=0)[::2]
    for x in (x_strided, x_fortran):
        for w in (w_fortran, w_strided):
            check_conv_against_reference(x, w, rng.standard_normal(6).astype(dtype)[::-1], 2, 1)
            # the compiled result does not depend on the memory layout
            y1 = ops.conv2d_forward(x, w, stride=2, padding=1)
            y2 = ops.conv2d_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), stride=2, padding=1)
            np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize(
    "xs,ws,stride,padding",
    [((2, 3, 7, 8), (4, 3, 3, 2), 1, 1), ((1, 2, 9, 9), (3, 2, 4, 4), 2, 0),
     ((2, 2, 8, 7), (2, 2, 3, 3), (3, 2), (2, 1))],
)
def test_finite_differences(xs, ws, stride, padding, rng):
    """dx, dw, db equal central differences of L = sum(conv(x, w, b) * R) in float64."""
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    R = rng.standard_normal(ops.conv2d_forward(x, w, b, stride=stride, padding=padding).shape)

    def loss():
        return float(np.sum(ops.conv2d_forward(x, w, b, stride=stride, padding=padding) * R))

    dx, dw, db = ops.conv2d_backward(R, x, w, stride=stride, padding=padding)
    for name, arr, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        idx = rng.choice(arr.size, size=min(arr.size, 25), replace=False)
        num = numerical_gradient(loss, arr, idx)
        np.testing.assert_allclose(grad.reshape(-1)[idx], num, rtol=1e-6, atol=1e-7, err_msg=name)


def seed000_stride2_dw(dLdkk, kr, fsh2, fsw2):
    """Seed 000's weight gradient of its stride-2 conv, verbatim in structure: the window slice ignores
    the stride (``kr[:, j:j+rsh2]``)."""
    filts2, rsh2, rsw2 = dLdkk.shape
    dk = np.zeros((filts2, kr.shape[0], fsh2, fsw2))
    for f in range(filts2):
        for j in range(fsh2):
            for jj in range(fsw2):
                dk[f, :, j, jj] = (dLdkk[f].reshape(1, rsh2, rsw2) * kr[:, j:j + rsh2, jj:jj + rsw2]).sum(axis=(1, 2))
    return dk


def test_gradient_check_catches_seed000_stride_bug(rng):
    """The finite-difference check used above rejects seed 000's stride-2 dW and accepts ours."""
    kr = rng.standard_normal((1, 16, 21, 21))
    w = rng.standard_normal((8, 16, 4, 4)) * 0.1
    R = rng.standard_normal((1, 8, 9, 9))

    def loss():
        return float(np.sum(ops.conv2d_forward(kr, w, stride=2) * R))

    idx = rng.choice(w.size, size=40, replace=False)
    num = numerical_gradient(loss, w, idx)
    ours = ops.conv2d_backward(R, kr, w, stride=2)[1].reshape(-1)[idx]
    seed = seed000_stride2_dw(R[0], kr[0], 4, 4).reshape(-1)[idx]
    np.testing.assert_allclose(ours, num, rtol=1e-6, atol=1e-7)
    relative_error = np.abs(seed - num).max() / np.abs(num).max()
    assert relative_error > 0.5, relative_error  # an error as large as the gradient itself


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_changes_only_rounding(dtype, rng):
    x = rng.standard_normal((3, 4, 16, 16)).astype(dtype)
    w = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
    dy = rng.standard_normal((3, 8, 16, 16)).astype(dtype)
    old = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        one = ops.conv2d_backward(dy, x, w, padding=1)
        ops.set_num_threads(3)
        three = ops.conv2d_backward(dy, x, w, padding=1)
    finally:
        ops.set_num_threads(old)
    np.testing.assert_array_equal(one[0], three[0])  # dx: no cross-thread reduction
    _, dw_abs, _ = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), padding=1)
    assert_reduction_close(three[1], one[1], dw_abs, 3 * 16 * 16, "dw across thread counts")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding", [
    ((1, 1, 28, 28), (16, 1, 8, 8), 1, 0),
    ((1, 16, 21, 21), (8, 16, 4, 4), 2, 0),
    ((1, 5, 13, 11), (11, 5, 3, 3), 1, 1),
])
@pytest.mark.parametrize("threads", [2, 3])
def test_single_sample_split_across_threads(autotune, dtype, xs, ws, stride, padding, threads, rng):
    """With the batch-1 trials off, one image uses every thread (output tiles, dW tiles and dx tiles
    spread over them): the results match the reference and are bit-identical to one thread's, which is
    what lets the trials pick either without changing a training run."""
    autotune(False)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    old = ops.get_num_threads()
    results = []
    try:
        for n in (threads, 1):
            ops.set_num_threads(n)
            if n > 1:
                check_conv_against_reference(x, w, b, stride, padding)
            y = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
            dy = np.cos(y)
            results.append((y,) + ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)
                           + ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=False)[1:])
    finally:
        ops.set_num_threads(old)
    for name, split, serial in zip(("y", "dx", "dw", "db", "dw (no dx)", "db (no dx)"), *results):
        assert np.array_equal(split, serial), f"{name} differs between {threads} threads and 1"


def test_batch1_thread_choice_is_measured_then_kept(autotune, rng):
    """A plan's first TRIALS batch-1 calls try one thread and all threads in alternating blocks, then it
    keeps the faster; every call, trial or not, returns the same bits."""
    autotune(True)
    x = rng.standard_normal((1, 7, 19, 17))   # a geometry no other test uses: a fresh plan
    w = rng.standard_normal((6, 7, 3, 2))
    old = ops.get_num_threads()
    try:
        ops.set_num_threads(2)
        first = ops.conv2d_forward(x, w, stride=(2, 1))
        dy = np.sin(first)
        grads = ops.conv2d_backward(dy, x, w, stride=(2, 1))
        for _ in range(_runtime.TRIALS + 3):
            assert np.array_equal(ops.conv2d_forward(x, w, stride=(2, 1)), first)
            for a, b in zip(ops.conv2d_backward(dy, x, w, stride=(2, 1)), grads):
                assert np.array_equal(a, b)
    finally:
        ops.set_num_threads(old)
    choices = [c for key, c in _conv.batch1_choices().items() if key[:10] == (7, 19, 17, 6, 3, 2, 2, 1, 0, 0)]
    assert len(choices) == 1 and set(choices[0]) == {"forward", "backward_dx"}
    for chosen, one_us, all_us in choices[0].values():
        # both modes were timed (an untimed one reports its 1e300 s start value)
        assert chosen in ("one", "all") and 0 < one_us < 1e6 and 0 < all_us < 1e6
        assert (chosen == "all") == (all_us < _runtime.MARGIN * one_us)



def test_one_autotune_switch_and_report_for_every_kernel(monkeypatch, autotune, rng):
    """fastconv._runtime holds the one trials state: set_autotune turns the trials off and on for conv
    and Adam alike, and autotune_report lists what each operation measured and chose."""
    monkeypatch.setattr(runtime, "_num_threads", 2)
    x = rng.standard_normal((1, 2, 13, 11))   # a geometry and a length no other test uses
    w = rng.standard_normal((3, 2, 2, 2))
    p, g, m, v = (rng.standard_normal(1237) for _ in range(4))
    v = np.abs(v)
    conv_key = (2, 13, 11, 3, 2, 2, 1, 1, 0, 0, _conv.tile_width(np.float64))

    def entries():
        return [e for e in _runtime.autotune_report()
                if (e["kernel"], e["key"]) in (("conv2d", conv_key), ("adam", (1237, "float64")))]

    autotune(False)
    assert not _runtime.autotune_enabled()
    for _ in range(_runtime.TRIALS + 3):
        ops.conv2d_forward(x, w)
        ops.adam_update(p, g, m, v, step=1)
    assert entries() == []                     # off: no trial ran in either module
    autotune(True)
    assert _runtime.autotune_enabled()
    for _ in range(_runtime.TRIALS + 3):
        ops.conv2d_forward(x, w)
        ops.adam_update(p, g, m, v, step=1)
    got = {(e["kernel"], e["op"]): e for e in entries()}
    assert set(got) == {("conv2d", "forward"), ("adam", "update")}
    for e in got.values():
        assert e["choice"] in ("one", "all")
        assert 0 < e["one_thread_us"] < 1e6 and 0 < e["all_threads_us"] < 1e6
    assert _conv.max_threads() == _runtime.max_threads() >= 1
    assert _conv.have_openmp() == _runtime.have_openmp()

@pytest.mark.parametrize("dtype", DTYPES)
def test_concurrent_calls_do_not_share_the_plan_workspace(dtype):
    """Plans keep one reusable workspace for small calls; concurrent calls with the same geometry but
    different data must each get their own (any sharing would mix the threads' inputs)."""
    n_threads, shapes = 4, ((1, 16, 21, 21), (8, 16, 4, 4), 2)
    cases = []
    for t in range(n_threads):
        r = np.random.default_rng(100 + t)
        x = r.standard_normal(shapes[0]).astype(dtype)
        w = r.standard_normal(shapes[1]).astype(dtype)
        y = ops.conv2d_forward(x, w, stride=shapes[2])
        dy = r.standard_normal(y.shape).astype(dtype)
        cases.append((x, w, dy, y, ops.conv2d_backward(dy, x, w, stride=shapes[2])))
    mismatches, errors = [], []

    def work(t):
        x, w, dy, y, (dx, dw, db) = cases[t]
        try:
            for _ in range(40):
                y2 = ops.conv2d_forward(x, w, stride=shapes[2])
                dx2, dw2, db2 = ops.conv2d_backward(dy, x, w, stride=shapes[2])
                if not (np.array_equal(y2, y) and np.array_equal(dx2, dx) and np.array_equal(dw2, dw)
                        and np.array_equal(db2, db)):
                    mismatches.append(t)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not mismatches


def test_concurrent_python_threads_give_identical_results(rng):
    x = rng.standard_normal((4, 3, 20, 20))
    w = rng.standard_normal((8, 3, 5, 5))
    dy = rng.standard_normal((4, 8, 16, 16))
    expected = (ops.conv2d_forward(x, w),) + ops.conv2d_backward(dy, x, w)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append((ops.conv2d_forward(x, w),) + ops.conv2d_backward(dy, x, w))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 20
    for r in results:
        for got, want in zip(r, expected):
            np.testing.assert_array_equal(got, want)


def test_nan_and_inf_propagate():
    x = np.ones((1, 1, 5, 5))
    x[0, 0, 2, 2] = np.nan
    x[0, 0, 0, 0] = np.inf
    w = np.ones((1, 1, 2, 2))
    y = ops.conv2d_forward(x, w)
    y_ref = reference.conv2d_forward(x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(y_ref))
    assert np.isnan(y[0, 0, 1:3, 1:3]).all() and np.isinf(y[0, 0, 0, 0])


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), ((1, 2), (2, 0))])
def test_nonfinite_gradients_match_reference_pattern(where, stride, padding, rng):
    """The implicit-GEMM backward multiplies stored zeros by x (dW) and w (dx) off the valid grid, so a
    non-finite x or w must take the im2col path: NaN/inf land exactly where the reference puts them."""
    x = rng.standard_normal((2, 3, 7, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    dy = rng.standard_normal(ops.conv2d_output_shape(x.shape, w.shape, stride, padding))
    arr = {"x": x, "w": w, "dy": dy}[where]
    arr[0, 1, 2, 1] = np.inf
    arr[1, 2, 0, 0] = np.nan
    got = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    want = reference.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=name)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(r), err_msg=name)
        fin = np.isfinite(r)
        np.testing.assert_allclose(g[fin], r[fin], rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding", [((1, 1, 28, 28), (16, 1, 8, 8), 1, 0),
                                                      ((2, 16, 21, 21), (8, 16, 4, 4), 2, 0),
                                                      ((3, 3, 9, 11), (4, 3, 3, 2), (2, 1), (1, 2))])
def test_plain_arguments_take_the_same_kernel_as_validated_ones(dtype, xs, ws, stride, padding, rng):
    """Plain arguments (C-contiguous ndarrays, Python-int stride/padding) are checked in C; anything else
    is validated in Python and converted.  Both must reach the same kernel: identical bits."""
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)

    def pair(v):  # numpy ints: Python path
        return tuple(np.int64(a) for a in ((v, v) if isinstance(v, int) else v))

    y_fast = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
    y_slow = ops.conv2d_forward(np.asfortranarray(x), w, list(b), stride=pair(stride), padding=pair(padding))
    np.testing.assert_array_equal(y_fast, y_slow)
    dy = rng.standard_normal(y_fast.shape).astype(dtype)
    for need_dx in (True, False):
        fast = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=need_dx)
        slow = ops.conv2d_backward(dy[::-1].copy()[::-1], x, w, stride=pair(stride), padding=pair(padding),
                                   need_dx=need_dx)
        assert (fast[0] is None) == (not need_dx)
        for got, want in zip(fast, slow):
            if want is not None:
                np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="b has dtype"):  # a plain call with a wrong-dtype bias is still refused
        ops.conv2d_forward(x, w, b.astype(np.float16), stride=stride, padding=padding)


def test_empty_batch():
    y = ops.conv2d_forward(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)))
    assert y.shape == (0, 3, 3, 3)
    dx, dw, db = ops.conv2d_backward(np.zeros((0, 3, 3, 3)), np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)))
    assert dx.shape == (0, 2, 5, 5) and not dw.any() and not db.any()


BAD_CALLS = [
    ("x ndim", lambda: ops.conv2d_forward(np.ones((2, 3, 4)), np.ones((1, 3, 2, 2))), ValueError, "x must be 4-D"),
    ("w ndim", lambda: ops.conv2d_forward(np.ones((1, 3, 4, 4)), np.ones((3, 2, 2))), ValueError, "w must be 4-D"),
    ("channels", lambda: ops.conv2d_forward(np.ones((1, 3, 4, 4)), np.ones((2, 2, 2, 2))),
     ValueError, "channel mismatch"),
    ("bias length", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((2, 1, 2, 2)), np.ones(3)),
     ValueError, "b has length 3"),
    ("stride 0", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), stride=0),
     ValueError, "stride must be >= 1"),
    ("stride pair", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), stride=(1, -2)),
     ValueError, "stride"),
    ("stride float", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), stride=1.5),
     TypeError, "stride"),
    ("stride triple", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), stride=(1, 1, 1)),
     ValueError, "stride"),
    ("negative padding", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), padding=-1),
     ValueError, "padding must be >= 0"),
    ("kernel too large", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 7, 2)), padding=1),
     ValueError, "larger than the padded input"),
    ("dtype mix", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2), np.float32)),
     TypeError, "must match"),
    ("integer x", lambda: ops.conv2d_forward(np.ones((1, 1, 4, 4), int), np.ones((1, 1, 2, 2))), TypeError, "astype"),
    ("strings", lambda: ops.conv2d_forward(np.array([["a"]]), np.ones((1, 1, 2, 2))), TypeError, "numeric"),
    ("object", lambda: ops.conv2d_forward(object(), np.ones((1, 1, 2, 2))), TypeError, "x"),
    ("dy shape", lambda: ops.conv2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))),
     ValueError, "dy has shape"),
    ("dy dtype", lambda: ops.conv2d_backward(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 4, 4)),
                                             np.ones((1, 1, 2, 2))),
     TypeError, "dy has dtype"),
]


@pytest.mark.parametrize("name,call,exc,match", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,stride,padding", [((2, 3, 11, 9), (5, 3, 3, 4), (2, 1), (1, 2)),
                                                  ((1, 16, 21, 21), (8, 16, 4, 4), 2, 0)])
def test_matches_pytorch(dtype, xs, ws, stride, padding, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.tensor(dy))
    y = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
    dx, dw, db = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    F, C, kh, kw = w.shape
    N, _, Ho, Wo = y.shape
    y_abs = reference.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), stride=stride, padding=padding)
    dx_a, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), stride=stride, padding=padding)
    assert_reduction_close(y, ty.detach().numpy(), y_abs, C * kh * kw, "y vs torch")
    assert_reduction_close(dx, tx.grad.numpy(), dx_a, F * kh * kw, "dx vs torch")
    assert_reduction_close(dw, tw.grad.numpy(), dw_a, N * Ho * Wo, "dw vs torch")
    assert_reduction_close(db, tb.grad.numpy(), db_a, N * Ho * Wo, "db vs torch")


def test_batch1_thread_choice_is_tried_again_after_retry_calls(monkeypatch, autotune, rng):
    """After RETRY decided calls the trials run again (the machine's load changes); bits never change."""
    autotune(True)
    monkeypatch.setattr(_runtime, "RETRY", 5)
    x = rng.standard_normal((1, 3, 11, 13))   # a geometry no other test uses: a fresh plan
    w = rng.standard_normal((5, 3, 2, 3))
    old = ops.get_num_threads()
    try:
        ops.set_num_threads(2)
        first = ops.conv2d_forward(x, w)
        key = (3, 11, 13, 5, 2, 3, 1, 1, 0, 0)

        def plan():
            return next(c for k, c in _conv.batch1_choices().items() if k[:10] == key)["forward"]

        for _ in range(_runtime.TRIALS):
            assert np.array_equal(ops.conv2d_forward(x, w), first)
        assert plan()[0] in ("one", "all")       # decided after TRIALS timed intervals
        for _ in range(_runtime.RETRY + 1):
            assert np.array_equal(ops.conv2d_forward(x, w), first)
        assert plan()[0] is None                 # trying again
    finally:
        ops.set_num_threads(old)


# ------------------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3): the forward and the dx of 3x3 stride-1 convolutions with >= 16 channels each way.

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)


def winograd_abs_terms(x, w, padding):
    """The Winograd computation of the 3x3 correlation run on absolute values: |A^T| [sum_c (|G||g||G^T|)
    .* (|B^T||d||B|)] |A| for every output (the magnitude its rounding errors scale with)."""
    x, w = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    N, C, H, W = x.shape
    ph, pw = padding
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = (Ho + 1) // 2, (Wo + 1) // 2
    xp = np.zeros((N, C, 2 * th + 2, 2 * tw + 2))
    rows, cols = min(H, 2 * th + 2 - ph), min(W, 2 * tw + 2 - pw)
    xp[:, :, ph:ph + rows, pw:pw + cols] = x[:, :, :rows, :cols]
    d = np.empty((N, C, th, tw, 4, 4))
    for r in range(4):
        for s in range(4):
            d[..., r, s] = xp[:, :, r:r + 2 * th:2, s:s + 2 * tw:2]
    u = np.einsum("ai,fcij,bj->abfc", np.abs(G), w, np.abs(G))
    v = np.einsum("ar,ncijrs,bs->abncij", np.abs(BT), d, np.abs(BT))
    m = np.einsum("abfc,abncij->abnfij", u, v)
    y = np.einsum("ra,abnfij,sb->nfirjs", np.abs(AT), m, np.abs(AT)).reshape(N, w.shape[0], 2 * th, 2 * tw)
    return y[:, :, :Ho, :Wo]


def assert_winograd_close(fast, ref, wino_abs, direct_abs, C, K, what):
    """|fast - ref| <= gamma_{C+11} * wino_abs + gamma_{K+1} * direct_abs elementwise (u = eps/2).

    Along any path Winograd rounds at most C + 11 times: 4 in the filter transform (two 3-term sums), 2 in
    the input transform, 1 product and C - 1 additions over the channels, 4 in the output transform (two
    3-term sums), 1 for the bias.  Each rounding is relative to the magnitude of what is
    rounded, which the same computation on absolute values bounds (wino_abs).  The reference, a plain sum
    of K products, is within gamma_{K+1} * direct_abs (conftest.reduction_bound); 1.01 covers the 1/(1 - nu)
    factors and the rounding of the bounds themselves."""
    u = np.finfo(ref.dtype).eps / 2
    bound = 1.01 * u * ((C + 11) * wino_abs + (K + 2) * direct_abs)
    err = np.abs(fast.astype(np.float64) - ref.astype(np.float64))
    worst = np.argmax(err - bound)
    assert np.all(err <= bound), (what, err.flat[worst], bound.flat[worst])


@st.composite
def winograd_cases(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(16, 20))
    F = draw(st.integers(16, 20))
    H = draw(st.integers(2, 13))
    W = draw(st.integers(2, 13))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H, W = max(H, 3 - 2 * ph), max(W, 3 - 2 * pw)
    dtype, bias, seed = draw(st.sampled_from(DTYPES)), draw(st.booleans()), draw(st.integers(0, 2**31))
    return N, C, F, H, W, (ph, pw), dtype, bias, seed


class small_winograd:
    """Winograd for small calls too (>= 16 channels, >= 24 tiles), so that the tests cover odd shapes
    quickly; the defaults keep it to calls where it measured faster."""

    def __enter__(self):
        self.old = _conv.WINOGRAD_MIN_CHANNELS, _conv.WINOGRAD_MIN_TILES
        _conv.WINOGRAD_MIN_CHANNELS, _conv.WINOGRAD_MIN_TILES = 16, 24

    def __exit__(self, *exc):
        _conv.WINOGRAD_MIN_CHANNELS, _conv.WINOGRAD_MIN_TILES = self.old


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(winograd_cases())
def test_winograd_forward_and_dx_within_their_bounds(case):
    """Forward and dx of 3x3 stride-1 convolutions that take Winograd (odd output sizes: partial tiles;
    padding 0-2), each within its derived bound; dW and db keep the implicit GEMM's."""
    with small_winograd():
        check_winograd_case(*case)


def check_winograd_case(N, C, F, H, W, padding, dtype, bias, seed):
    Ho, Wo = H + 2 * padding[0] - 2, W + 2 * padding[1] - 2
    forward = _conv.winograd_fits(N, C, F, 3, 3, 1, 1, Ho, Wo)
    backward = _conv.winograd_fits(N, F, C, 3, 3, 1, 1, H, W)
    if not (forward or backward):
        return   # too few tiles for Winograd: the other tests cover this geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    y = ops.conv2d_forward(x, w, b, padding=padding)
    y_ref = reference.conv2d_forward(x, w, b, padding=padding)
    y_abs = reference.conv2d_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b), padding=padding)
    if forward:
        wino = winograd_abs_terms(x, w, padding) + (0 if b is None else np.abs(b)[:, None, None])
        assert_winograd_close(y, y_ref, wino, y_abs, C, C * 9, "y")
    else:
        assert_reduction_close(y, y_ref, y_abs, C * 9, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = ops.conv2d_backward(dy, x, w, padding=padding)
    dx_r, dw_r, db_r = reference.conv2d_backward(dy, x, w, padding=padding)
    dx_a, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), padding=padding)
    assert_reduction_close(dw, dw_r, dw_a, N * Ho * Wo, "dw")
    assert_reduction_close(db, db_r, db_a, N * Ho * Wo, "db")
    if backward:
        flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        wino = winograd_abs_terms(dy, flipped, (2 - padding[0], 2 - padding[1]))
        assert_winograd_close(dx, dx_r, wino, dx_a, F, F * 9, "dx")
    else:
        assert_reduction_close(dx, dx_r, dx_a, F * 9, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_is_taken_at_the_default_sizes(monkeypatch, dtype, rng):
    """The smallest call the defaults send to Winograd (32 channels each way, 512 tiles): its results are
    not the implicit GEMM's bits (so the path is really taken) and are within its bound; fewer tiles
    (450) or channels (31) take the implicit GEMM."""
    x = rng.standard_normal((2, 32, 32, 32)).astype(dtype)
    w = rng.standard_normal((32, 32, 3, 3)).astype(dtype)
    assert _conv.winograd_fits(2, 32, 32, 3, 3, 1, 1, 32, 32)
    assert not _conv.winograd_fits(2, 32, 32, 3, 3, 1, 1, 30, 30)
    assert not _conv.winograd_fits(2, 31, 32, 3, 3, 1, 1, 32, 32)
    check_winograd_case(2, 32, 32, 32, 32, (1, 1), dtype, True, 7)
    y = ops.conv2d_forward(x, w, padding=1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.conv2d_backward(dy, x, w, padding=1)[0]
    monkeypatch.setattr(_conv, "WINOGRAD", False)
    assert not np.array_equal(y, ops.conv2d_forward(x, w, padding=1))
    assert not np.array_equal(dx, ops.conv2d_backward(dy, x, w, padding=1)[0])


@pytest.mark.parametrize("threads", [1, 3])
def test_winograd_bits_do_not_depend_on_threads(threads, rng):
    x = rng.standard_normal((3, 16, 11, 9))
    w = rng.standard_normal((16, 16, 3, 3))
    b = rng.standard_normal(16)
    old = ops.get_num_threads()
    with small_winograd():
        assert _conv.winograd_fits(3, 16, 16, 3, 3, 1, 1, 11, 9)
        try:
            ops.set_num_threads(2)
            y2 = ops.conv2d_forward(x, w, b, padding=1)
            dx2 = ops.conv2d_backward(np.cos(y2), x, w, padding=1)[0]
            ops.set_num_threads(threads)
            assert np.array_equal(ops.conv2d_forward(x, w, b, padding=1), y2)
            assert np.array_equal(ops.conv2d_backward(np.cos(y2), x, w, padding=1)[0], dx2)
        finally:
            ops.set_num_threads(old)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
def test_winograd_leaves_nonfinite_inputs_to_the_direct_paths(monkeypatch, where, rng):
    """A NaN or an infinity in a 4x4 patch would reach all four outputs of its Winograd tile; such calls
    take the direct paths, so their NaN/inf pattern is the direct paths' (and the reference's)."""
    x = rng.standard_normal((2, 16, 10, 10))
    w = rng.standard_normal((16, 16, 3, 3))
    dy = rng.standard_normal((2, 16, 10, 10))
    {"x": x, "w": w, "dy": dy}[where].flat[37] = np.inf
    with small_winograd():
        got = (ops.conv2d_forward(x, w, padding=1),) + ops.conv2d_backward(dy, x, w, padding=1)
    monkeypatch.setattr(_conv, "WINOGRAD", False)
    want = (ops.conv2d_forward(x, w, padding=1),) + ops.conv2d_backward(dy, x, w, padding=1)
    first = 1 if where == "dy" else 0    # with a finite x and w the forward still takes Winograd
    assert any(not np.isfinite(a).all() for a in want)
    for a, b in zip(got[first:], want[first:]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------------
# Byte order (issue 18, item 1): a byte-swapped array is never read as a native one.

def _native_or_clear_error(call, expected):
    """``call()`` must give ``expected`` (what the same values in native byte order give: ops converted)
    or raise an error that names the dtype or the byte order; never a silently wrong result."""
    try:
        got = call()
    except (TypeError, ValueError) as exc:
        assert ">f" in str(exc) or "byte order" in str(exc), str(exc)
        return
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        assert (g is None and e is None) or np.array_equal(g, e)


@pytest.mark.parametrize("dtype", DTYPES)
def test_byte_swapped_conv_inputs_match_native_or_raise(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = ops.conv2d_forward(x, w, b, stride=(2, 1), padding=1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = ops.conv2d_backward(dy, x, w, stride=(2, 1), padding=1)
    swapped = np.dtype(dtype).newbyteorder(">")
    xs, ws, bs, dys = (a.astype(swapped) for a in (x, w, b, dy))
    _native_or_clear_error(lambda: ops.conv2d_forward(xs, ws, bs, stride=(2, 1), padding=1), y)
    _native_or_clear_error(lambda: ops.conv2d_forward(xs, w, b, stride=(2, 1), padding=1), y)
    _native_or_clear_error(lambda: ops.conv2d_backward(dys, x, w, stride=(2, 1), padding=1), grads)
    _native_or_clear_error(lambda: ops.conv2d_backward(dy, xs, ws, stride=(2, 1), padding=1), grads)


def test_kernel_fast_checks_decline_byte_swapped_arrays(rng):
    """The compiled plain-array checks answer "not plain" for a swapped array (ops' generic path then
    runs) and the kernels themselves refuse one."""
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 2, 2))
    dy = rng.standard_normal((1, 3, 4, 4))
    be = np.dtype(">f8")
    assert _conv.forward_plain(x.astype(be), w, None, 1, 0, 1) is None
    assert _conv.forward_plain(x, w.astype(be), None, 1, 0, 1) is None
    assert _conv.forward_plain(x, w, np.zeros(3, be), 1, 0, 1) is None
    assert _conv.backward_plain(dy.astype(be), x, w, True, 1, 0, 1) is None
    assert not _conv.kernel_ready(x.astype(be))
    with pytest.raises(ValueError, match="byte order"):
        _conv.conv2d_forward(x.astype(be), w, None, np.empty((1, 3, 4, 4)), (1, 1), (0, 0), 1)
    with pytest.raises(ValueError, match="byte order"):
        _conv.conv2d_backward(dy, x, w, None, np.empty((3, 2, 2, 2), be), np.empty(3), (1, 1), (0, 0), 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=4), st.sampled_from(DTYPES), st.integers(0, 2**31))
def test_fuzz_byte_order_of_each_argument(swap, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, 6, 7)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    y = ops.conv2d_forward(x, w, b)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = ops.conv2d_backward(dy, x, w)
    be = np.dtype(dtype).newbyteorder(">")
    xs, ws, bs, dys = (a.astype(be) if s else a for a, s in zip((x, w, b, dy), swap))
    _native_or_clear_error(lambda: ops.conv2d_forward(xs, ws, bs), y)
    _native_or_clear_error(lambda: ops.conv2d_backward(dys, xs, ws), grads)


# ------------------------------------------------------------------------------------------------------
# Non-finite w and several im2col chunks (issue 18, item 2).

@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_dw_stays_finite_when_w_is_not_and_n_spans_several_im2col_chunks(bad):
    """dW does not depend on w: an infinite or NaN w reaches dcols (W^T dy), and the next chunk's dW
    must not read what that left in the im2col buffer's tile tails."""
    R = np.random.default_rng(0).standard_normal
    x, w, dy = R((80, 1, 29, 29)), R((2, 1, 3, 3)), R((80, 2, 27, 27))
    w[0, 0, 1, 1] = bad
    dx, dw, db = ops.conv2d_backward(dy, x, w)
    dx_r, dw_r, db_r = reference.conv2d_backward(dy, x, w)
    assert np.isfinite(dw).all() and np.isfinite(db).all()
    _, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w))
    assert_reduction_close(dw, dw_r, dw_a, 80 * 27 * 27, "dw")
    assert_reduction_close(db, db_r, db_a, 80 * 27 * 27, "db")
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(dx_r))


# ------------------------------------------------------------------------------------------------------
# Strides larger than the kernel, up to huge ones (issue 18, item 7).

@pytest.mark.parametrize("stride", [2048, 2**20, 2**40, 2**70])
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_stride_is_fast_and_matches_reference(stride, dtype, rng):
    import time
    x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 1, 1)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    t0 = time.perf_counter()
    y = ops.conv2d_forward(x, w, b, stride=stride)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.conv2d_backward(dy, x, w, stride=stride)[0]
    assert time.perf_counter() - t0 < 1.0
    assert y.shape == (2, 4, 1, 1)
    check_conv_against_reference(x, w, b, stride, 0)
    check_conv_against_reference(x, w, b, (stride, 3), 1)
    # only x[..., 0, 0] is in the one window
    assert not dx[:, :, 1:, :].any() and not dx[:, :, :, 1:].any()


@st.composite
def strided_cases(draw):
    """Strides >= kernel: most stride phases hold no tap; huge strides yield one window."""
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    H, W = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, min(4, H + 2 * ph))), draw(st.integers(1, min(4, W + 2 * pw)))
    big = st.one_of(st.integers(1, 7), st.sampled_from([2**20, 2**40, 2**63, 2**70]))
    sh, sw = kh + draw(big) - 1, kw + draw(big) - 1
    return (N, C, F, H, W, kh, kw, (sh, sw), (ph, pw), draw(st.sampled_from(DTYPES)), draw(st.booleans()),
            draw(st.integers(0, 2**31)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strided_cases())
def test_fuzz_strides_at_least_kernel_match_reference(case):
    N, C, F, H, W, kh, kw, stride, padding, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    check_conv_against_reference(x, w, b, stride, padding, dy_seed=seed)


@st.composite
def first_layer_cases(draw):
    """First layers: 1 or 3 channels, 3x3 or 5x5 kernels, padding 0-2, stride 1 or 2, batch 1 or more."""
    N = draw(st.sampled_from([1, 2, 5]))
    C = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([3, 5]))
    stride = draw(st.sampled_from([1, 2, (1, 2), (2, 1)]))
    padding = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, k - 2 * padding), 30))
    W = draw(st.integers(max(1, k - 2 * padding), 30))
    F = draw(st.integers(1, 33))
    dtype = draw(st.sampled_from(DTYPES))
    return N, C, H, W, F, k, stride, padding, dtype, draw(st.booleans()), draw(st.integers(0, 2**31))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first_layer_cases())
def test_first_layer_forward_matches_reference_and_grid_layout(case):
    """The forward of few terms runs on the shifted layout (_Plan.forward_plan): within the reference's
    bound, and bit-identical to the grid layout it replaces (FORWARD_SHIFT_MAX_TERMS = 0) on 1-4 threads."""
    N, C, H, W, F, k, stride, padding, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, k, k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    check_conv_against_reference(x, w, b, stride, padding, dy_seed=seed, need_dx=False)
    old_threads, old_terms = ops.get_num_threads(), _conv.FORWARD_SHIFT_MAX_TERMS
    try:
        _conv.FORWARD_SHIFT_MAX_TERMS = 0
        ops.set_num_threads(1)
        grid = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
        _conv.FORWARD_SHIFT_MAX_TERMS = old_terms
        for threads in (1, 2, 3, 4):
            ops.set_num_threads(threads)
            y = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
            assert np.array_equal(y, grid), f"y on {threads} threads differs from the grid layout's"
    finally:
        ops.set_num_threads(old_threads)
        _conv.FORWARD_SHIFT_MAX_TERMS = old_terms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding", [
    ((128, 1, 28, 28), (32, 1, 3, 3), 1, 0),      # Keras's MNIST convnet, first layer
    ((1, 1, 28, 28), (6, 1, 5, 5), 1, 2),         # LeNet-5's first layer
    ((4, 3, 32, 32), (32, 3, 3, 3), 1, 1),
    ((3, 3, 32, 31), (16, 3, 5, 5), 2, 2),
])
def test_first_layer_shapes_keep_their_bits(dtype, xs, ws, stride, padding, rng):
    """The model shapes the shifted forward serves: the same bits as the grid layout, and they take it."""
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    old = _conv.FORWARD_SHIFT_MAX_TERMS
    assert ws[1] * ws[2] * ws[3] <= old
    try:
        _conv.FORWARD_SHIFT_MAX_TERMS = 0
        grid = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
    finally:
        _conv.FORWARD_SHIFT_MAX_TERMS = old
    assert np.array_equal(ops.conv2d_forward(x, w, b, stride=stride, padding=padding), grid)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws", [
    ((40, 32, 13, 13), (64, 32, 3, 3)),   # Keras's MNIST convnet, second layer (its dx by Winograd)
    ((23, 16, 11, 9), (24, 16, 3, 3)),    # dx by implicit GEMM: dW reads dy on the dx grid
])
def test_small_map_dw_sums_several_samples_per_tile(dtype, xs, ws, rng):
    """dW of maps whose rows are a few vectors: each tile of dW sums several samples before its
    horizontal sums (chunks and a partial group of samples here).  Within the reference's bound, and
    the same bits on 1-4 threads."""
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    check_conv_against_reference(x, w, b, 1, 0)
    dy = rng.standard_normal((xs[0], ws[0], xs[2] - 2, xs[3] - 2)).astype(dtype)
    old = ops.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            ops.set_num_threads(threads)
            results.append(ops.conv2d_backward(dy, x, w) + ops.conv2d_backward(dy, x, w, need_dx=False)[1:])
    finally:
        ops.set_num_threads(old)
    for threads, result in zip((2, 3, 4), results[1:]):
        for name, got, one in zip(("dx", "dw", "db", "dw (no dx)", "db (no dx)"), result, results[0]):
            assert np.array_equal(got, one), f"{name} differs between {threads} threads and 1"


@st.composite
def few_term_cases(draw):
    """Layers of few terms C*kh*kw: 1-3 channels, kernels up to 6x6, any stride, symmetric or asymmetric
    padding, dilation (a column dilation keeps the implicit GEMM), batch 1-9."""
    N = draw(st.integers(1, 9))
    C = draw(st.integers(1, 3))
    F = draw(st.integers(1, 14))
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    dilation = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 1, 1, 2])))
    stride = draw(int_or_pair(1, 3))
    padding = draw(st.one_of(int_or_pair(0, 3), st.tuples(*[st.integers(0, 3)] * 4)))
    if isinstance(padding, int):
        pads = (padding,) * 4
    elif len(padding) == 2:
        pads = (padding[0], padding[0], padding[1], padding[1])
    else:
        pads = padding
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    H = draw(st.integers(max(1, ekh - pads[0] - pads[1]), 20))
    W = draw(st.integers(max(1, ekw - pads[2] - pads[3]), 20))
    dtype = draw(st.sampled_from(DTYPES))
    return N, C, F, H, W, kh, kw, stride, padding, dilation, dtype, draw(st.integers(0, 2**31))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(few_term_cases())
def test_few_term_dw_matches_reference_and_keeps_its_bits_on_any_thread_count(case):
    """dW and db without dx of few terms take the shifted dW (conv_dw_shifted.pxi): within the reference's
    bound, and the same bits on 1-4 threads."""
    N, C, F, H, W, kh, kw, stride, padding, dilation, dtype, seed = case
    sw = stride if isinstance(stride, int) else stride[1]
    one_column_shift = dilation[1] * (kw - 1) + 1 <= sw   # no column dilation needs shifted copies
    most = min(_conv.DW_SHIFT_MAX_TERMS, _conv.DW_SHIFT_MAX_TERMS_BATCH1 if N == 1 else _conv.DW_SHIFT_MAX_TERMS)
    assert _conv.dw_shifted_taken((N, C, H, W), (F, C, kh, kw), stride, padding, dilation) == (
        C * kh * kw <= most and (dilation[1] == 1 or one_column_shift))
    assert not _conv.dw_shifted_taken((N, C, H, W), (F, C, kh, kw), stride, padding, dilation, need_dx=True)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, kh, kw)).astype(dtype)
    y, (_, dw, db) = check_conv_against_reference(x, w, None, stride, padding, dilation, dy_seed=seed,
                                                  need_dx=False)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    old = ops.get_num_threads()
    try:
        for threads in (1, 3, 4):
            ops.set_num_threads(threads)
            _, dw_t, db_t = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, dilation=dilation,
                                                need_dx=False)
            assert np.array_equal(dw_t, dw) and np.array_equal(db_t, db), f"{threads} threads differ"
    finally:
        ops.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, stride, padding", [
    ((128, 1, 28, 28), (32, 1, 3, 3), 1, 0),      # Keras's MNIST convnet, first layer
    ((64, 1, 28, 28), (6, 1, 5, 5), 1, 2),        # LeNet-5's first layer
    ((1, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    ((32, 1, 28, 28), (16, 1, 8, 8), 1, 0),       # seed 000's first layer
    ((64, 3, 32, 32), (32, 3, 3, 3), 1, 1),       # a CIFAR-size stem
    ((2, 3, 32, 32), (32, 3, 5, 5), 2, 2),        # two samples: blocks of positions
    ((3, 1, 28, 28), (32, 1, 3, 3), 1, 0),
])
def test_first_layer_dw_takes_the_shifted_dw_and_keeps_its_bits(dtype, xs, ws, stride, padding, rng):
    """The model shapes the shifted dW serves: within the reference's bound (against the implicit GEMM it
    replaces), and the same bits on 1-4 threads."""
    assert _conv.dw_shifted_taken(xs, ws, stride, padding)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    dy = rng.standard_normal(ops.conv2d_output_shape(xs, ws, stride, padding)).astype(dtype)
    old_threads, old_terms = ops.get_num_threads(), _conv.DW_SHIFT_MAX_TERMS
    try:
        _conv.DW_SHIFT_MAX_TERMS = 0
        _, dw_i, db_i = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=False)
        _conv.DW_SHIFT_MAX_TERMS = old_terms
        results = []
        for threads in (1, 2, 3, 4):
            ops.set_num_threads(threads)
            results.append(ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=False)[1:])
    finally:
        ops.set_num_threads(old_threads)
        _conv.DW_SHIFT_MAX_TERMS = old_terms
    _, dw_a, db_a = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), stride=stride,
                                              padding=padding, need_dx=False)
    K = dy.shape[0] * dy.shape[2] * dy.shape[3]
    assert_reduction_close(results[0][0], dw_i, dw_a, K, "dw")
    assert_reduction_close(results[0][1], db_i, db_a, K, "db")
    for threads, (dw, db) in zip((2, 3, 4), results[1:]):
        assert np.array_equal(dw, results[0][0]) and np.array_equal(db, results[0][1]), f"{threads} threads"


@pytest.mark.parametrize("N", [1, 3, 9])
@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 2), ((2, 1), (1, 0, 2, 1))])
def test_few_term_dw_puts_nonfinite_dy_where_the_reference_does(N, stride, padding, rng):
    """dy is read where it lies, its last partial vector masked: a NaN or an infinity reaches exactly the
    dW and db elements it reaches in the reference (0 * inf in the padding included), never a neighbour."""
    x = rng.standard_normal((N, 1, 11, 13))
    w = rng.standard_normal((5, 1, 3, 4))
    assert _conv.dw_shifted_taken(x.shape, w.shape, stride, padding)
    dy = rng.standard_normal(ops.conv2d_output_shape(x.shape, w.shape, stride, padding))
    dy[-1, 1, -1, -1] = np.nan          # the last element of dy: past it nothing may be read
    dy[0, 3, 0, 0] = np.inf
    dy[N // 2, 4, 1, 2] = -np.inf
    got = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=False)[1:]
    with np.errstate(invalid="ignore"):   # inf - inf in the reference's sums
        want = reference.conv2d_backward(dy, x, w, stride=stride, padding=padding, need_dx=False)[1:]
    for name, g, r in zip(("dw", "db"), got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=name)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(r), err_msg=name)
        fin = np.isfinite(r)
        np.testing.assert_allclose(g[fin], r[fin], rtol=1e-10, atol=1e-10, err_msg=name)
