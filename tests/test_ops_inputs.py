"""Unusual inputs to fastconv.ops (issue 18): byte order, aliased state, 0-d and bad shapes, zero sizes, the
thread bound.  Each reproducer from the issue is a test here; the fuzz tests run hypothesis over the space
around it."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_reduction_close
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import ops, reference

DTYPES = [np.float32, np.float64]
PACKAGE_ROOT = pathlib.Path(fastconv.__file__).parent.parent


def swapped(a):
    """``a`` with the same values stored in the other byte order."""
    return a.astype(a.dtype.newbyteorder())


def strided(a):
    """``a`` as a non-contiguous view (every other element of a twice as wide array, last axis)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    view = wide[..., ::2]
    view[...] = a
    return view


def assert_same_bits(fast, expected, what=""):
    assert fast.shape == expected.shape, (what, fast.shape, expected.shape)
    assert np.ascontiguousarray(fast, fast.dtype.newbyteorder("=")).tobytes() == \
        np.ascontiguousarray(expected, expected.dtype.newbyteorder("=")).tobytes(), what


# --------------------------------------------------------------------------- item 1: byte order

@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_forward_reads_byte_swapped_input_as_its_values(dtype, rng):
    """issue 18 item 1: ``conv2d_forward(x.astype('>f8'), w.astype('>f8'))`` returned +-inf."""
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    expected = ops.conv2d_forward(x, w, b, padding=1)
    for args in [(swapped(x), swapped(w), swapped(b)), (swapped(x), w, b), (x, swapped(w), b), (x, w, swapped(b))]:
        y = ops.conv2d_forward(*args, padding=1)
        assert y.dtype == np.dtype(dtype) and y.dtype.isnative   # outputs are native
        assert_same_bits(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_reads_byte_swapped_dy(dtype, rng):
    """issue 18 item 1: a big-endian dy for conv2d_backward gave garbage."""
    x = rng.standard_normal((2, 3, 7, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    dy = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
    expected = ops.conv2d_backward(dy, x, w)
    for args in [(swapped(dy), x, w), (dy, swapped(x), w), (dy, x, swapped(w)),
                 (swapped(dy), swapped(x), swapped(w))]:
        for got, want, name in zip(ops.conv2d_backward(*args), expected, ("dx", "dw", "db")):
            assert got.dtype.isnative
            assert_same_bits(got, want, name)


def test_non_contiguous_big_endian_input_is_converted_not_refused(rng):
    """It was refused with the confusing 'x has dtype >f8 ... take float32 or float64'."""
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((2, 3, 3, 3))
    y = ops.conv2d_forward(strided(swapped(x)), w)
    assert_same_bits(y, ops.conv2d_forward(x, w))


def test_other_kernels_read_byte_swapped_input(rng):
    x = rng.standard_normal((3, 2, 6, 6))
    assert_same_bits(ops.relu_forward(swapped(x))[0], ops.relu_forward(x)[0])
    mask = ops.relu_forward(x)[1]
    assert_same_bits(ops.relu_backward(swapped(x), mask), ops.relu_backward(x, mask))
    y, idx = ops.maxpool2d_forward(x)
    sy, sidx = ops.maxpool2d_forward(swapped(x))
    assert_same_bits(sy, y)
    assert np.array_equal(sidx, idx)
    assert_same_bits(ops.maxpool2d_backward(swapped(y), swapped(idx), x.shape), ops.maxpool2d_backward(y, idx, x.shape))
    a, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    assert_same_bits(ops.dense_forward(swapped(a), swapped(w), swapped(b)), ops.dense_forward(a, w, b))
    for got, want in zip(ops.dense_backward(swapped(a[:, :3]), swapped(a), swapped(w)),
                         ops.dense_backward(a[:, :3], a, w)):
        assert_same_bits(got, want)
    labels = np.array([0, 2, 1, 2])
    loss, grad = ops.softmax_cross_entropy(swapped(a), swapped(labels))
    loss_n, grad_n = ops.softmax_cross_entropy(a, labels)
    assert loss == loss_n
    assert_same_bits(grad, grad_n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_adam_updates_byte_swapped_state_in_place(dtype, layout, rng):
    """issue 18 item 1: adam_update on '>f8' params wrote ~1e-30 garbage.  Byte-swapped state is updated
    through a native copy and written back: the arrays keep their byte order and hold the native run's
    values."""
    make = (lambda a: a) if layout == "contiguous" else strided
    p0 = rng.standard_normal(50).astype(dtype)
    p, m, v = (make(swapped(a)) for a in (p0, np.zeros_like(p0), np.zeros_like(p0)))
    p_n, m_n, v_n = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for step in range(1, 4):
        g = rng.standard_normal(50).astype(dtype)
        ops.adam_update(p, swapped(g), m, v, step=step, lr=0.01)
        ops.adam_update(p_n, g, m_n, v_n, step=step, lr=0.01)
        for got, want, name in ((p, p_n, "param"), (m, m_n, "m"), (v, v_n, "v")):
            assert not got.dtype.isnative
            assert_same_bits(got, want, f"{name} at step {step}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_updates_byte_swapped_state_in_place(dtype, momentum, rng):
    """issue 18 item 1: sgd_update on '>f8' params wrote garbage."""
    p0 = rng.standard_normal(40).astype(dtype)
    p, vel = swapped(p0), swapped(np.zeros_like(p0))
    p_n, vel_n = p0.copy(), np.zeros_like(p0)
    for _ in range(3):
        g = rng.standard_normal(40).astype(dtype)
        ops.sgd_update(p, g, vel, lr=0.1, momentum=momentum, weight_decay=0.01)
        ops.sgd_update(p_n, g, vel_n, lr=0.1, momentum=momentum, weight_decay=0.01)
        assert_same_bits(p, p_n, "param")
        assert_same_bits(vel, vel_n, "velocity")
    assert not p.dtype.isnative and not vel.dtype.isnative


def test_mixed_byte_orders_are_one_dtype_but_kinds_still_must_match(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    with pytest.raises(TypeError, match="w has dtype"):
        ops.conv2d_forward(swapped(x), swapped(np.ones((1, 1, 3, 3), np.float32)))
    p = rng.standard_normal(5)
    with pytest.raises(TypeError, match="grad has dtype"):
        ops.sgd_update(swapped(p), np.ones(5, np.float32), lr=0.1)
    with pytest.raises(TypeError, match="x has dtype >i8"):
        ops.relu_forward(np.arange(3, dtype=">i8"))


ORDERS = st.sampled_from(["native", "swapped", "strided", "swapped+strided"])


def _as(a, order):
    if "swapped" in order:
        a = swapped(a)
    if "strided" in order:
        a = strided(a)
    return a


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(3, 7), w_=st.integers(3, 7), f=st.integers(1, 3),
       k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1), dtype=st.sampled_from(DTYPES),
       orders=st.tuples(ORDERS, ORDERS, ORDERS, ORDERS), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_fuzz_conv_byte_order_and_layout_never_change_the_result(n, c, h, w_, f, k, stride, padding, dtype, orders,
                                                                 bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((f, c, k, k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    y = ops.conv2d_forward(x, w, b, stride=stride, padding=padding)
    dy = np.cos(y)
    expected = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    ox, ow, ob, ody = orders
    got_y = ops.conv2d_forward(_as(x, ox), _as(w, ow), None if b is None else _as(b, ob), stride=stride,
                               padding=padding)
    assert_same_bits(got_y, y, "y")
    got = ops.conv2d_backward(_as(dy, ody), _as(x, ox), _as(w, ow), stride=stride, padding=padding)
    for g_, e_, name in zip(got, expected, ("dx", "dw", "db")):
        assert g_.dtype.isnative
        assert_same_bits(g_, e_, name)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 40), dtype=st.sampled_from(DTYPES), orders=st.tuples(ORDERS, ORDERS, ORDERS, ORDERS, ORDERS),
       amsgrad=st.booleans(), decoupled=st.booleans(), momentum=st.sampled_from([0.0, 0.9]), seed=st.integers(0, 2**31))
def test_fuzz_update_byte_order_and_layout_never_change_the_result(size, dtype, orders, amsgrad, decoupled, momentum,
                                                                   seed):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(size).astype(dtype)
    arrays = [_as(a, o) for a, o in zip((p0, np.zeros_like(p0), np.zeros_like(p0), np.zeros_like(p0)), orders)]
    native = [p0.copy()] + [np.zeros_like(p0) for _ in range(3)]
    for step in (1, 2):
        g = rng.standard_normal(size).astype(dtype)
        kw = {"step": step, "lr": 0.01, "weight_decay": 0.01, "decoupled": decoupled, "amsgrad": amsgrad}
        ops.adam_update(arrays[0], _as(g, orders[4]), arrays[1], arrays[2], vmax=arrays[3] if amsgrad else None, **kw)
        ops.adam_update(native[0], g, native[1], native[2], vmax=native[3] if amsgrad else None, **kw)
        for got, want in zip(arrays, native):
            assert_same_bits(got, want)
    p, vel = _as(p0, orders[0]), _as(np.zeros_like(p0), orders[1])
    p_n, vel_n = p0.copy(), np.zeros_like(p0)
    g = rng.standard_normal(size).astype(dtype)
    ops.sgd_update(p, _as(g, orders[2]), vel, lr=0.1, momentum=momentum)
    ops.sgd_update(p_n, g, vel_n, lr=0.1, momentum=momentum)
    assert_same_bits(p, p_n, "param")
    assert_same_bits(vel, vel_n, "velocity")


# -------------------------------------------------------------------------- item 3: aliased state

def _adam_state(rng, n=16):
    return rng.standard_normal(n), rng.standard_normal(n), np.zeros(n), np.zeros(n)


def test_adam_refuses_m_is_v(rng):
    p, g, mv, _ = _adam_state(rng)
    with pytest.raises(ValueError, match="m and v are the same array"):
        ops.adam_update(p, g, mv, mv, step=1)


def test_adam_refuses_param_as_m(rng):
    p, g, _, v = _adam_state(rng)
    with pytest.raises(ValueError, match="param and m are the same array"):
        ops.adam_update(p, g, p, v, step=1)


def test_sgd_refuses_param_as_velocity(rng):
    p, g, _, _ = _adam_state(rng)
    with pytest.raises(ValueError, match="param and velocity are the same array"):
        ops.sgd_update(p, g, p, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("n", [15, 131_072])
def test_partly_overlapping_param_and_grad_are_refused(n, rng):
    """issue 18 item 3: p=buf[1:], g=buf[:n] differed from value semantics in 58 of 131,072 elements."""
    buf = rng.standard_normal(n + 1)
    with pytest.raises(ValueError, match="param and grad share memory"):
        ops.sgd_update(buf[1:], buf[:n], lr=0.1)
    with pytest.raises(ValueError, match="param and grad share memory"):
        ops.adam_update(buf[1:], buf[:n], np.zeros(n), np.zeros(n), step=1)


@pytest.mark.parametrize("layout", ["owned", "views", "strided"])
def test_overlaps_are_found_in_every_layout(layout, rng):
    buf = rng.standard_normal(120)
    if layout == "owned":
        p, g, m = buf[:20].copy(), buf[20:40].copy(), np.zeros(20)
        v = m
    elif layout == "views":      # contiguous views: the bounds check is exact
        p, g, m, v = buf[:20], buf[20:40], buf[40:60], buf[55:75]
    else:                        # strided views: the exact check
        p, g, m, v = buf[0:40:2], buf[40:60], buf[60:100:2], buf[70:110:2]
    with pytest.raises(ValueError, match="m and v"):
        ops.adam_update(p, g, m, v, step=1)


def test_interleaved_strided_views_do_not_overlap(rng):
    """Bounds overlap, memory does not: accepted (the exact check), and the step is the reference's."""
    buf = np.zeros(80)
    buf[0:40:2] = rng.standard_normal(20)
    p, m, v, g = buf[0:40:2], buf[1:40:2], buf[40:80:2], buf[41:80:2]
    g[...] = rng.standard_normal(20)
    ref = [a.copy() for a in (p, g, m, v)]
    ops.adam_update(p, g, m, v, step=1)
    reference.adam_update(*ref, step=1)
    for got, want in zip((p, g, m, v), ref):
        assert_same_bits(got, want)


@pytest.mark.parametrize("same", ["is", "view", "reshape"])
def test_param_may_be_grad(same, rng):
    """param and grad as one array: harmless, each element is read before it is written."""
    p0 = rng.standard_normal(33)
    for update in ("adam", "sgd"):
        p = p0.copy()
        grad = {"is": p, "view": p.view(), "reshape": p.reshape(3, 11).reshape(33)}[same]
        p_ref = p0.copy()
        if update == "adam":
            m, v, m_r, v_r = np.zeros(33), np.zeros(33), np.zeros(33), np.zeros(33)
            ops.adam_update(p, grad, m, v, step=1, weight_decay=0.1)
            reference.adam_update(p_ref, p_ref, m_r, v_r, step=1, weight_decay=0.1)
            assert_same_bits(m, m_r)
        else:
            vel, vel_r = np.zeros(33), np.zeros(33)
            ops.sgd_update(p, grad, vel, lr=0.1, momentum=0.9, weight_decay=0.1)
            reference.sgd_update(p_ref, p_ref, vel_r, lr=0.1, momentum=0.9, weight_decay=0.1)
        assert_same_bits(p, p_ref, update)


def test_aliasing_checks_also_cover_vmax_and_non_contiguous_state(rng):
    p, g, m, v = _adam_state(rng)
    with pytest.raises(ValueError, match="v and vmax are the same array"):
        ops.adam_update(p, g, m, v, step=1, amsgrad=True, vmax=v)
    wide = np.zeros(32)
    with pytest.raises(ValueError, match="m and v share memory"):
        ops.adam_update(p, g, wide[::2], wide[::2], step=1)   # two view objects of the same elements


def _view(buf, start, step, n):
    """``buf[start::step][:n]`` where that has n elements, else None."""
    view = buf[start::step][:n]
    return view if len(view) == n else None


def _expected_overlap(named):
    for i, (na, a) in enumerate(named):
        for nb, b in named[i + 1:]:
            same = a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides
            if (na, nb) == ("param", "grad") and same:
                continue
            if np.shares_memory(a, b):
                return na, nb
    return None


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 12), slices=st.lists(st.tuples(st.integers(0, 47), st.sampled_from([1, 2, 3, -1, -2])),
                                             min_size=4, max_size=4),
       separate=st.lists(st.booleans(), min_size=4, max_size=4), update=st.sampled_from(["adam", "sgd"]),
       seed=st.integers(0, 2**31))
def test_fuzz_aliasing_is_refused_or_matches_value_semantics(n, slices, separate, update, seed):
    """Arguments drawn as views of one buffer (or separate arrays): an overlap between two of them is a
    ValueError naming both; anything else gives the reference step on copies, written back."""
    rng = np.random.default_rng(seed)
    buf = rng.uniform(0.5, 1.5, 48)   # positive: a view used as v stays a valid second moment
    names = ["param", "grad", "m", "v"] if update == "adam" else ["param", "grad", "velocity"]
    arrays = []
    for (start, step), own in zip(slices, separate):
        a = _view(buf, start, step, n)
        if a is None or own:
            a = rng.uniform(0.5, 1.5, n)
        arrays.append(a)
    arrays = arrays[:len(names)]
    named = list(zip(names, arrays))
    overlap = _expected_overlap(named)
    before = buf.copy()
    if overlap is not None:
        with pytest.raises(ValueError, match=f"{overlap[0]} and {overlap[1]}"):
            if update == "adam":
                ops.adam_update(*arrays, step=1)
            else:
                ops.sgd_update(*arrays, lr=0.1, momentum=0.9)
        assert np.array_equal(buf, before)  # refused before anything is written
        return
    copies = [a.copy() for a in arrays]
    if update == "adam":
        ops.adam_update(*arrays, step=1)
        reference.adam_update(*copies, step=1)
    else:
        ops.sgd_update(*arrays, lr=0.1, momentum=0.9)
        reference.sgd_update(*copies, lr=0.1, momentum=0.9)
    for (name, got), want in zip(named, copies):
        if name != "grad":
            assert_same_bits(got, want, name)


# ------------------------------------------------------------------ item 5: 0-d arrays and bad shapes

def test_relu_keeps_a_0d_shape():
    """issue 18 item 5: relu_forward(np.array(-1.0)) returned shape (1,)."""
    y, mask = ops.relu_forward(np.array(-1.0))
    assert y.shape == () and mask.shape == () and y == 0 and not mask
    y, mask = ops.relu_forward(np.array(2.5, np.float32))
    assert y.shape == () and y == 2.5 and y.dtype == np.float32
    dx = ops.relu_backward(np.array(3.0), mask)
    assert dx.shape == () and dx == 3.0


@pytest.mark.parametrize("input_shape, weight_shape, error, match", [
    (("a", 3, 5, 5), (2, 3, 3, 3), TypeError, r"input_shape must hold ints \(N, C, H, W\), got \('a', 3, 5, 5\)"),
    ((1, 3, -1, 5), (2, 3, 3, 3), ValueError, r"input_shape must hold sizes >= 0"),
    ((1, 3, 5, -2), (2, 3, 1, 1), ValueError, r"input_shape must hold sizes >= 0"),
    ((1, 3, 5), (2, 3, 3, 3), ValueError, r"input_shape must have 4 entries"),
    (5, (2, 3, 3, 3), TypeError, r"input_shape must be a tuple of 4 ints"),
    ((1, 3, 5.0, 5), (2, 3, 3, 3), TypeError, r"input_shape must hold ints"),
    ((1, True, 5, 5), (2, 1, 3, 3), TypeError, r"input_shape must hold ints"),
    ((1, 3, 5, 5), (2, 3, "3", 3), TypeError, r"weight_shape must hold ints \(F, C, kh, kw\)"),
    ((1, 3, 5, 5), (-2, 3, 3, 3), ValueError, r"weight_shape must hold sizes >= 0"),
    ((1, 3, 5, 5), (2, 3, 3), ValueError, r"weight_shape must have 4 entries"),
    ((1, 3, 5, 5), (2, 3, 0, 3), ValueError, r"non-empty kernel"),
])
def test_conv2d_output_shape_validates_the_shapes(input_shape, weight_shape, error, match):
    """issue 18 item 5: ('a', 3, 5, 5) gave ('a', 2, 3, 3); a negative H was accepted."""
    with pytest.raises(error, match=match):
        ops.conv2d_output_shape(input_shape, weight_shape, padding=2)


def test_conv2d_output_shape_takes_numpy_ints():
    shape = ops.conv2d_output_shape(np.array([2, 3, 8, 8]), (np.int64(4), 3, 3, 3), stride=2)
    assert shape == (2, 4, 3, 3) and all(type(s) is int for s in shape)


def test_maxpool_backward_x_shape_is_validated_the_same_way():
    dy, idx = np.ones((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.int64)
    with pytest.raises(TypeError, match="x_shape must hold ints"):
        ops.maxpool2d_backward(dy, idx, (1, 1, "4", 4))
    with pytest.raises(ValueError, match="x_shape must hold sizes >= 0"):
        ops.maxpool2d_backward(dy, idx, (1, 1, -4, 4))


# -------------------------------------------------------------------------------- item 8: zero sizes

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((2, 0, 5, 5), (3, 0, 3, 3), 0),     # no input channels: y is the bias
    ((1, 0, 4, 6), (2, 0, 1, 3), 1),
    ((2, 3, 5, 5), (0, 3, 3, 3), 1),     # no filters
    ((0, 3, 5, 5), (2, 3, 3, 3), 0),     # no samples
    ((2, 2, 0, 5), (3, 2, 1, 1), 1),     # no rows: the output reads only padding
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_zero_sizes_match_the_reference(dtype, x_shape, w_shape, padding, bias, rng):
    """issue 18 item 8: C=0 failed inside np.max of an empty array; the reference returns the bias."""
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    y = ops.conv2d_forward(x, w, b, padding=padding)
    y_ref = reference.conv2d_forward(x, w, b, padding=padding)
    assert y.dtype == y_ref.dtype
    assert_same_bits(y, y_ref, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    for need_dx in (True, False):
        got = ops.conv2d_backward(dy, x, w, padding=padding, need_dx=need_dx)
        want = reference.conv2d_backward(dy, x, w, padding=padding, need_dx=need_dx)
        for g_, w_, name in zip(got, want, ("dx", "dw", "db")):
            if w_ is None:
                assert g_ is None
                continue
            assert g_.dtype == w_.dtype, name
            if x_shape[1] == 0 or w_shape[0] == 0 or x_shape[0] == 0:
                assert_same_bits(g_, w_, name)   # no products: zeros, and db the same sum of dy
            else:
                K = max(y.shape[0] * y.shape[2] * y.shape[3], w_shape[0] * w_shape[2] * w_shape[3])
                abs_terms = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), padding=padding)
                assert_reduction_close(g_, w_, abs_terms[("dx", "dw", "db").index(name)], K, name)


# ----------------------------------------------------------------------------- item 6: thread bound

@pytest.mark.parametrize("n", [10**5, 4 * 10**4, 2**31])
def test_set_num_threads_has_an_upper_bound(n):
    """issue 18 item 6: 10**5 then a conv crashed in GOMP_parallel, 4*10**4 killed the interpreter
    ("libgomp: Thread creation failed"), 2**31 made every later call raise OverflowError."""
    old = fastconv.get_num_threads()
    try:
        for setter in (fastconv.set_num_threads, ops.set_num_threads):
            with pytest.raises(ValueError, match=r"num_threads must be at most \d+"):
                setter(n)
            assert fastconv.get_num_threads() == old
    finally:
        fastconv.set_num_threads(old)
    ops.conv2d_forward(np.ones((2, 1, 5, 5)), np.ones((1, 1, 3, 3)))   # later calls work


def test_too_many_threads_then_a_conv_does_not_crash():
    """The reproducer as the issue gives it, in a fresh interpreter (a crash shows as a signal)."""
    code = ("import numpy as np, fastconv\n"
            "from fastconv import ops\n"
            "try:\n"
            "    ops.set_num_threads(10**5)\n"
            "except ValueError as e:\n"
            "    print('refused:', e)\n"
            "ops.conv2d_forward(np.ones((4, 3, 16, 16)), np.ones((4, 3, 3, 3)))\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          check=False, cwd=str(PACKAGE_ROOT))
    assert done.returncode == 0 and "refused:" in done.stdout and "ok" in done.stdout, \
        (done.returncode, done.stdout, done.stderr[-2000:])


def test_byte_order_stays_right_once_the_compiled_checks_decline_swapped_arrays(monkeypatch, rng):
    """Today's compiled fast checks take a contiguous byte-swapped array as native, so ops declines such
    arrays itself (ops._DECLINE_SWAPPED, probed at import).  Once the checks decline them (the C-side fix),
    ops skips its own test: the swapped arrays then reach the converting path through the checks."""
    from fastconv import _adam, _conv, _sgd

    def declining(check, missing):
        def wrapped(*args):
            if any(isinstance(a, np.ndarray) and not a.dtype.isnative for a in args):
                return missing
            return check(*args)
        return wrapped

    monkeypatch.setattr(_conv, "forward_plain", declining(_conv.forward_plain, None))
    monkeypatch.setattr(_conv, "backward_plain", declining(_conv.backward_plain, None))
    monkeypatch.setattr(_adam, "plain_arrays", declining(_adam.plain_arrays, False))
    monkeypatch.setattr(_sgd, "plain_arrays", declining(_sgd.plain_arrays, False))
    assert not ops._fast_checks_take_swapped()
    monkeypatch.setattr(ops, "_DECLINE_SWAPPED", False)
    test_conv2d_forward_reads_byte_swapped_input_as_its_values(np.float64, rng)
    test_conv2d_backward_reads_byte_swapped_dy(np.float32, rng)
    test_adam_updates_byte_swapped_state_in_place(np.float64, "contiguous", rng)
    test_sgd_updates_byte_swapped_state_in_place(np.float32, 0.9, rng)
