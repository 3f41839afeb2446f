"""Fused Adam and SGD: bit-identical to the reference step after step, every option; torch as extra oracle."""
import itertools

import numpy as np
import pytest
from conftest import DTYPES

from fastconv import _adam, ops, reference, runtime

ADAM_OPTIONS = [
    dict(zip(("weight_decay", "decoupled", "amsgrad", "eps_hat"), combo))
    for combo in itertools.product([0.0, 0.05], [False, True], [False, True], [False, True])
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", ADAM_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("size", [7, 1001, 70_001])  # serial, one block per thread, blocks
def test_adam_bit_identical_over_many_steps(monkeypatch, autotune, dtype, opts, size, rng):
    if size == 1001:  # below PARALLEL_MIN: split only when measured faster; here always
        autotune(False)
        monkeypatch.setattr(runtime, "_num_threads", 2)   # the thread count, restored after the test
    p = rng.standard_normal(size).astype(dtype)
    state = [np.zeros_like(p) for _ in range(3)]
    p_ref = p.copy()
    state_ref = [np.zeros_like(p) for _ in range(3)]
    for step in range(1, 31 if size < 2000 else 6):
        g = rng.standard_normal(size).astype(dtype)
        kw = dict(step=step, lr=1e-2, beta1=0.85, beta2=0.99, eps=1e-7, **opts)
        vm = state[2] if opts["amsgrad"] else None
        vm_ref = state_ref[2] if opts["amsgrad"] else None
        ops.adam_update(p, g, state[0], state[1], vmax=vm, **kw)
        reference.adam_update(p_ref, g, state_ref[0], state_ref[1], vmax=vm_ref, **kw)
        assert p.tobytes() == p_ref.tobytes(), f"param differs at step {step}"
        assert state[0].tobytes() == state_ref[0].tobytes() and state[1].tobytes() == state_ref[1].tobytes()


def test_adam_noncontiguous_param_updated_in_place(rng):
    base = rng.standard_normal((6, 8))
    p = base[:, ::2]
    g = rng.standard_normal((6, 4))
    m, v = np.zeros((6, 4)), np.zeros((6, 4))
    p_ref, m_r, v_r = p.copy(), m.copy(), v.copy()
    ops.adam_update(p, g, m, v, step=1)
    reference.adam_update(p_ref, g, m_r, v_r, step=1)
    assert np.array_equal(base[:, ::2], p_ref) and np.array_equal(m, m_r)


@pytest.mark.parametrize("layout", ["strided", "fortran", "2d_contiguous"])
def test_updates_write_every_layout_back(layout, rng):
    """param, m, v and velocity in any layout end as the reference's (copies are written back)."""
    def make(a):
        if layout == "strided":
            out = np.zeros((a.shape[0], 2 * a.shape[1]))[:, ::2]
        elif layout == "fortran":
            out = np.zeros(a.shape, order="F")
        else:
            out = np.zeros(a.shape)
        out[...] = a
        return out
    p0, g = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    p, m, v = make(p0), make(np.zeros((5, 6))), make(np.zeros((5, 6)))
    p_ref, m_r, v_r = p0.copy(), np.zeros((5, 6)), np.zeros((5, 6))
    for step in (1, 2):
        ops.adam_update(p, make(g), m, v, step=step)
        reference.adam_update(p_ref, g, m_r, v_r, step=step)
    assert np.array_equal(p, p_ref) and np.array_equal(m, m_r) and np.array_equal(v, v_r)
    p, vel, p_ref, vel_r = make(p0), make(np.zeros((5, 6))), p0.copy(), np.zeros((5, 6))
    for _ in range(2):
        ops.sgd_update(p, make(g), vel, lr=0.1, momentum=0.9)
        reference.sgd_update(p_ref, g, vel_r, lr=0.1, momentum=0.9)
    assert np.array_equal(p, p_ref) and np.array_equal(vel, vel_r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta2,step", [(0.999, 1), (0.999, 7), (0.9, 3), (0.0, 1), (1 - 2.0 ** -53, 1),
                                        (0.999999, 100), (0.5, 40)])
def test_adam_default_step_bit_identical_over_every_exponent(dtype, beta2, step, rng):
    """The default (torch) step against the reference with v drawn as random bit patterns over every
    exponent (subnormals included), with 0, inf and NaN, and g = 0 for half the elements so that v reaches
    the square root as drawn but for the beta2 factor.  p = 0 and eps = 0 make the new p show the last bit
    of sqrt(v) / sqrt(1 - beta2**step).  The smallest divisor (beta2 = 1 - 2^-53, step 1) and the largest
    (beta2 = 0) are among the cases.  A division done as RN(sqrt(v) * RN(1/c)) fails 10 of the 14."""
    n = 50_003                                      # a tail after the vector loop
    itype = np.uint32 if dtype == np.float32 else np.uint64
    top = np.array(np.inf, dtype).view(itype)       # bit pattern of +inf: all finite v >= 0 lie below
    v = rng.integers(0, int(top), n, dtype=itype, endpoint=True).view(dtype)
    v[:6] = [0.0, np.inf, np.nan, np.finfo(dtype).tiny, np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal]
    g = rng.standard_normal(n).astype(dtype) * dtype(10.0) ** rng.integers(-20, 20, n).astype(dtype)
    g[rng.random(n) < 0.5] = 0
    m = rng.standard_normal(n).astype(dtype)
    p = np.zeros(n, dtype)                          # so that p = -(ss*m) / d shows d's last bit
    state, ref = [p, g, m, v.copy()], [p.copy(), g, m.copy(), v.copy()]
    kw = dict(step=step, lr=1e-3, beta1=0.9, beta2=beta2, eps=0.0)   # eps = 1e-8 would hide d <~ 1e-1
    with np.errstate(all="ignore"):
        ops.adam_update(*state, **kw)
        reference.adam_update(*ref, **kw)
    for name, a, b in zip(("param", "grad", "m", "v"), state, ref):
        assert a.tobytes() == b.tobytes(), f"{name} differs from the reference"


def test_adam_nan_propagates():
    p = np.array([1.0, 2.0])
    g = np.array([np.nan, 1.0])
    m, v = np.zeros(2), np.zeros(2)
    ops.adam_update(p, g, m, v, step=1)
    assert np.isnan(p[0]) and np.isfinite(p[1])


@pytest.mark.parametrize("decoupled,amsgrad", [(False, False), (True, False), (False, True)])
def test_adam_matches_torch(decoupled, amsgrad, rng):
    torch = pytest.importorskip("torch")
    p0 = rng.standard_normal(500)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([tp], lr=1e-2, weight_decay=0.1, amsgrad=amsgrad)
    p, m, v, vmax = p0.copy(), np.zeros(500), np.zeros(500), np.zeros(500)
    for step in range(1, 51):
        g = rng.standard_normal(500)
        tp.grad = torch.tensor(g)
        opt.step()
        ops.adam_update(p, g, m, v, step=step, lr=1e-2, weight_decay=0.1, decoupled=decoupled, amsgrad=amsgrad,
                        vmax=vmax if amsgrad else None)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


SGD_OPTIONS = [
    dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
    dict(momentum=0.5, nesterov=True, weight_decay=0.1),
    dict(momentum=0.9, weight_decay=1e-2), dict(weight_decay=1e-2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=str)
@pytest.mark.parametrize("size", [5, 70_001])
def test_sgd_bit_identical_over_many_steps(dtype, opts, size, rng):
    p = rng.standard_normal(size).astype(dtype)
    vel = np.zeros_like(p) if opts.get("momentum") else None
    p_ref = p.copy()
    vel_ref = None if vel is None else vel.copy()
    for _ in range(20):
        g = rng.standard_normal(size).astype(dtype)
        ops.sgd_update(p, g, vel, lr=0.05, **opts)
        reference.sgd_update(p_ref, g, vel_ref, lr=0.05, **opts)
        assert p.tobytes() == p_ref.tobytes()


@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=str)
def test_sgd_matches_torch(opts, rng):
    torch = pytest.importorskip("torch")
    p0 = rng.standard_normal(300)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.05, **opts)
    p = p0.copy()
    vel = np.zeros(300) if opts.get("momentum") else None
    for _ in range(30):
        g = rng.standard_normal(300)
        tp.grad = torch.tensor(g)
        opt.step()
        ops.sgd_update(p, g, vel, lr=0.05, **opts)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


P = np.zeros(4)
BAD = [
    (lambda: ops.adam_update(np.zeros(4), np.zeros(5), np.zeros(4), np.zeros(4), step=1), ValueError, "grad has shape"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(3), np.zeros(4), step=1), ValueError, "m has shape"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4, np.float32), np.zeros(4), np.zeros(4), step=1),
     TypeError, "grad has dtype"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4, np.float32), step=1),
     TypeError, "v has dtype"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=0),
     ValueError, "step must be >= 1"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1.0),
     TypeError, "step must be an int"),
    (lambda: ops.adam_update(np.zeros(4, int), np.zeros(4, int), np.zeros(4), np.zeros(4), step=1),
     TypeError, "param must be float"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1, beta1=1.0),
     ValueError, "beta1"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1, amsgrad=True),
     ValueError, "vmax"),
    (lambda: ops.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1, lr="x"), TypeError, "lr"),
    (lambda: ops.adam_update([0.0], np.zeros(1), np.zeros(1), np.zeros(1), step=1),
     TypeError, "param must be a NumPy array"),
    (lambda: ops.sgd_update(np.zeros(4), np.zeros(4), lr=0.1, momentum=0.9), ValueError, "velocity"),
    (lambda: ops.sgd_update(np.zeros(4), np.zeros(4), np.zeros(3), lr=0.1, momentum=0.9),
     ValueError, "velocity has shape"),
    (lambda: ops.sgd_update(np.zeros(4), np.zeros(4), lr=-1.0), ValueError, "lr"),
    (lambda: ops.sgd_update(np.zeros(4), np.zeros(4), lr=0.1, nesterov=True), ValueError, "nesterov"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_param_rejected():
    p = np.zeros(4)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="param is read-only"):
        ops.adam_update(p, np.zeros(4), np.zeros(4), np.zeros(4), step=1)
    with pytest.raises(ValueError, match="param is read-only"):
        ops.sgd_update(p, np.zeros(4), lr=0.1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"amsgrad": True, "weight_decay": 0.01}, {"epsilon_hat": True},
                                  {"weight_decay": 0.1, "decoupled": True}])
def test_adam_optimizer_rechecks_only_what_changed(dtype, opts, rng):
    """Adam.bind checks the buffers and hyperparameters once; the bound steps stay bit-identical to the
    reference, the learning rate is read (and checked) at each step, and other buffers are checked again."""
    from fastconv.optimizers import Adam

    n = 1000
    p = rng.standard_normal(n).astype(dtype)
    p_ref = p.copy()
    opt = Adam(learning_rate=3e-3, **opts)
    opt.build(n, dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    vmax = np.zeros(n, dtype) if opts.get("amsgrad") else None
    g = np.empty(n, dtype)
    update = opt.bind(p, g)
    for step in range(1, 31):
        g[...] = rng.standard_normal(n).astype(dtype)
        if step == 15:
            opt.learning_rate = 1  # an int: checked and converted as adam_update does
        update()
        reference.adam_update(p_ref, g, m, v, step=step, lr=opt.learning_rate, amsgrad=bool(vmax is not None),
                              vmax=vmax, eps_hat=opts.get("epsilon_hat", False),
                              weight_decay=opts.get("weight_decay", 0.0), decoupled=opts.get("decoupled", False))
        np.testing.assert_array_equal(p, p_ref)
    assert opt.bind(p, g) is update  # the same buffers and hyperparameters: the same bound step
    opt.learning_rate = -1.0
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        update()
    opt.learning_rate = 1e-3
    with pytest.raises(ValueError, match="grad has shape"):
        opt.bind(p, g[:10])  # other buffers: checked again


# Byte order (issue 18, item 1): a byte-swapped array is never read as a native one.

def _swapped(a):
    return a.astype(a.dtype.newbyteorder(">"))


def _update_native_or_clear_error(update, arrays, expected):
    """``update(*arrays)`` updates in place; afterwards the arrays must hold ``expected`` (the values the
    native update gives: ops converted) unless it raised an error naming the dtype or the byte order."""
    before = [a.copy() for a in arrays]
    try:
        update(*arrays)
    except (TypeError, ValueError) as exc:
        assert ">f" in str(exc) or "byte order" in str(exc), str(exc)
        for a, b in zip(arrays, before):      # refused: nothing written
            assert a.tobytes() == b.tobytes()
        return
    for a, e in zip(arrays, expected):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", [0, 1, 2, 3, None])   # which of p, g, m, v is swapped (None: all)
def test_adam_byte_swapped_arrays_match_native_or_raise(dtype, which, rng):
    p, g, m = (rng.standard_normal(300).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(300)).astype(dtype)
    native = [a.copy() for a in (p, g, m, v)]
    ops.adam_update(*native, step=3, lr=1e-2)
    arrays = [_swapped(a) if which in (None, k) else a.copy() for k, a in enumerate((p, g, m, v))]
    _update_native_or_clear_error(lambda *a: ops.adam_update(*a, step=3, lr=1e-2), arrays, native)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", [0, 1, 2, None])      # which of p, g, velocity is swapped (None: all)
def test_sgd_byte_swapped_arrays_match_native_or_raise(dtype, which, rng):
    p, g, vel = (rng.standard_normal(300).astype(dtype) for _ in range(3))
    native = [a.copy() for a in (p, g, vel)]
    ops.sgd_update(*native, lr=0.1, momentum=0.9)
    arrays = [_swapped(a) if which in (None, k) else a.copy() for k, a in enumerate((p, g, vel))]
    _update_native_or_clear_error(lambda *a: ops.sgd_update(*a, lr=0.1, momentum=0.9), arrays, native)


def test_update_kernels_decline_byte_swapped_arrays(rng):
    from fastconv import _sgd
    p, g, m, v = (rng.standard_normal(10) for _ in range(4))
    assert _adam.plain_arrays(p, g, m, v) and _sgd.plain_arrays(p, g, m)
    for k in range(4):
        args = [_swapped(a) if i == k else a for i, a in enumerate((p, g, m, v))]
        assert not _adam.plain_arrays(*args)
        if k < 3:
            assert not _sgd.plain_arrays(*args[:3])
    with pytest.raises(ValueError, match="byte order"):
        _adam.adam_update(_swapped(p), g, m, v, None, 0.9, 0.1, 0.999, 0.001, 1e-3, 1.0, 1e-8, 0.0, 1.0,
                          False, False, 1)
    with pytest.raises(ValueError, match="byte order"):
        _sgd.sgd_update(p, _swapped(g), None, 0.1, 0.0, False, 0.0, 1)


# Keras 3's Adam (keras/src/optimizers/adam.py) is the eps-hat form above with its moments written
# m += (g - m)*(1 - beta1), v += (g*g - v)*(1 - beta2): the same formula, rounded differently.  Both
# paths exist: eps_hat=True keeps seed 000's bits, adam_keras_update follows Keras's operation order.

def test_keras_adam_is_the_eps_hat_form_up_to_rounding(rng):
    p = rng.standard_normal(1000)
    q = p.copy()
    s1, s2 = [np.zeros(1000) for _ in range(2)], [np.zeros(1000) for _ in range(2)]
    for step in range(1, 21):
        g = rng.standard_normal(1000)
        ops.adam_update(p, g, *s1, step=step, lr=1e-2, eps=1e-7, eps_hat=True)
        ops.adam_keras_update(q, g, *s2, step=step, lr=1e-2, epsilon=1e-7)
    np.testing.assert_allclose(q, p, rtol=1e-12, atol=1e-15)
    assert q.tobytes() != p.tobytes()    # the operation order differs, so do some last bits


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_forms_with_clipping_read_the_clipped_gradient(dtype, rng):
    """Adam and SGD in the torch convention clip (Keras semantics) into a scratch copy, then step."""
    from fastconv.nn.optimizers import SGD, Adam

    for opt, run in [(Adam(1e-2, global_clipnorm=0.5), lambda p, g: reference.adam_update(p, g, m, v, step=k,
                                                                                            lr=1e-2)),
                     (SGD(0.1, momentum=0.9, clipnorm=0.5), lambda p, g: reference.sgd_update(p, g, m, lr=0.1,
                                                                                               momentum=0.9))]:
        n = 300
        opt.build(n, dtype)
        p = rng.standard_normal(n).astype(dtype)
        p_ref, g = p.copy(), np.zeros(n, dtype)
        m, v = np.zeros(n, dtype), np.zeros(n, dtype)
        update = opt.bind(p, g, [(0, 100), (100, n)])
        for k in range(1, 6):
            g[...] = rng.standard_normal(n).astype(dtype)
            update()
            clip = opt.get_config()
            run(p_ref, reference.clip_gradient(g, clipnorm=clip["clipnorm"], global_clipnorm=clip["global_clipnorm"],
                                               segments=[(0, 100), (100, n)]))
            assert p.tobytes() == p_ref.tobytes()
