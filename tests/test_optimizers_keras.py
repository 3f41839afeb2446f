"""Keras-form optimizer kernels (RMSprop, Adagrad, SGD, Adam/AdamW, Nadam) and fused gradient clipping:
bit-identical to the NumPy twins step after step, every option and clip mode, any thread count; against
a hand-written loop of Keras 3's formulas per variable; torch as an extra oracle where the formulas meet;
the nn optimizers' config, schedules, and save/load mid-training."""
import math

import numpy as np
import pytest
from conftest import DTYPES

from fastconv import Sequential, layers, ops, reference, runtime
from fastconv.nn import optimizers, schedules
from fastconv.nn.saving import load_model, save_model

SIZES = [7, 5000, 70_001]   # one piece, several pieces on one thread, pieces split between threads


def _segments(n):
    cuts = sorted({0, min(3, n), n // 3, n // 2, n})
    return [(a, b) for a, b in zip(cuts, cuts[1:])] + [(n, n)]   # an empty variable too


def _clips(n):
    return [{}, {"clipvalue": 0.3}, {"global_clipnorm": 1.5}, {"global_clipnorm": 1e6},
            {"clipnorm": 0.7, "segments": _segments(n)}, {"clipnorm": 0.7}]


def _ids(opts):
    words = [f"{k}={v}" for k, v in opts.items() if k != "segments"]
    return "-".join(words + (["segments"] if "segments" in opts else []))


KERNELS = {
    "rmsprop": [dict(), dict(momentum=0.9), dict(centered=True), dict(momentum=0.5, centered=True, weight_decay=0.1)],
    "adagrad": [dict(), dict(weight_decay=0.05, epsilon=1e-3)],
    "sgd_keras": [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=0.01)],
    "adam_keras": [dict(), dict(weight_decay=0.004), dict(amsgrad=True)],
    "nadam": [dict(), dict(weight_decay=0.004, beta1=0.8)],
}


def _state(kind, opts, p):
    z = lambda: np.zeros_like(p)  # noqa: E731
    if kind == "rmsprop":
        return [z(), z() if opts.get("momentum") else None, z() if opts.get("centered") else None]
    if kind == "adagrad":
        return [np.full_like(p, 0.1)]
    if kind == "sgd_keras":
        return [z() if opts.get("momentum") else None]
    if kind == "adam_keras":
        return [z(), z(), z() if opts.get("amsgrad") else None]
    return [z(), z(), [1.0]]


def _run(module, kind, p, g, state, step, opts, clip):
    kw = dict(opts, **clip)
    if kind == "rmsprop":
        module.rmsprop_update(p, g, *state, lr=1e-2, **kw)
    elif kind == "adagrad":
        module.adagrad_update(p, g, state[0], lr=1e-2, **kw)
    elif kind == "sgd_keras":
        module.sgd_keras_update(p, g, state[0], lr=1e-2, **kw)
    elif kind == "adam_keras":
        module.adam_keras_update(p, g, state[0], state[1], step=step, lr=1e-2, vhat=state[2], **kw)
    else:
        state[2][0] = module.nadam_update(p, g, state[0], state[1], step=step, u_product=state[2][0], lr=1e-2,
                                          **kw)


CASES = [(kind, opts) for kind, options in KERNELS.items() for opts in options]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,opts", CASES, ids=[f"{k}-{_ids(o)}" for k, o in CASES])
@pytest.mark.parametrize("size", SIZES)
def test_kernel_bit_identical_to_twin_every_clip_mode(kind, opts, size, dtype, rng):
    for clip in _clips(size):
        p = rng.standard_normal(size).astype(dtype)
        p_ref = p.copy()
        state, state_ref = _state(kind, opts, p), _state(kind, opts, p)
        for step in range(1, 6):
            g = (rng.standard_normal(size) * 3).astype(dtype)
            _run(ops, kind, p, g, state, step, opts, clip)
            _run(reference, kind, p_ref, g, state_ref, step, opts, clip)
            assert p.tobytes() == p_ref.tobytes(), f"{kind} {clip} param differs at step {step}"
            for a, b in zip(state, state_ref):
                if isinstance(a, np.ndarray):
                    assert a.tobytes() == b.tobytes(), f"{kind} {clip} state differs at step {step}"
                elif a is not None:
                    assert a == b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,opts", [("rmsprop", dict(momentum=0.9, centered=True)), ("nadam", {}),
                                       ("adam_keras", dict(amsgrad=True)), ("sgd_keras", dict(momentum=0.9)),
                                       ("adagrad", {})])
def test_bytes_identical_on_1_to_4_threads(monkeypatch, kind, opts, dtype, rng):
    n = 200_003
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    results = []
    for nt in (1, 2, 3, 4):
        monkeypatch.setattr(runtime, "_num_threads", nt)
        assert ops.get_num_threads() == nt
        for clip in ({"clipnorm": 2.0, "segments": _segments(n)}, {"global_clipnorm": 5.0}):
            p, state = p0.copy(), _state(kind, opts, p0)
            for step, g in enumerate(grads, 1):
                _run(ops, kind, p, g, state, step, opts, clip)
            results.append((nt, str(clip), p.tobytes(), ops.gradient_sumsq(grads[0], _segments(n)).tobytes()))
    for nt, clip, pb, sb in results[2:]:
        first = [r for r in results[:2] if r[1] == clip][0]
        assert pb == first[2] and sb == first[3], f"{nt} threads differ from one ({clip})"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 4095, 4096, 4097, 70_001])
def test_sumsq_bit_identical_and_within_bound(size, dtype, rng):
    g = rng.standard_normal(size).astype(dtype) * dtype(10.0) ** rng.integers(-5, 5, size).astype(dtype)
    segs = _segments(size)
    fast, ref = ops.gradient_sumsq(g, segs), reference.gradient_sumsq(g, segs)
    assert fast.tobytes() == ref.tobytes()
    exact = np.array([math.fsum(float(x) ** 2 for x in g[a:b]) for a, b in segs])
    K = max((b - a for a, b in segs), default=1)
    assert np.all(np.abs(fast - exact) <= 1.01 * (K + 2) * np.finfo(np.float64).eps * exact)


def test_clip_nan_and_inf_follow_keras():
    g = np.array([1.0, np.nan, -3.0])
    assert np.isnan(ops.clip_gradient(g, clipvalue=2.0)[1])
    assert ops.clip_gradient(g, clipvalue=2.0)[[0, 2]].tolist() == [1.0, -2.0]
    assert np.isnan(ops.clip_gradient(g, global_clipnorm=1.0)).all()        # scale NaN, as Keras's
    assert np.isnan(ops.clip_gradient(g, clipnorm=1.0)).all()
    z = np.zeros(4)
    assert np.array_equal(ops.clip_gradient(z, clipnorm=1.0), z)           # norm 0: no division by 0
    assert np.array_equal(ops.clip_gradient(z, global_clipnorm=1.0), z)
    inf = np.array([np.inf, 1.0])
    assert np.isnan(ops.clip_gradient(inf, global_clipnorm=1.0)).all()
    assert ops.clip_gradient(np.array([3.0, 4.0]), global_clipnorm=1.0).tolist() == pytest.approx([0.6, 0.8])


# ---- against Keras 3's formulas, written per variable as keras/src/optimizers/*.py compute them ----

def _keras_clip(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    if clipnorm:
        out = []
        for g in grads:
            l2 = math.sqrt(float(np.sum(g * g)))
            out.append(g * clipnorm / max(l2, clipnorm))
        return out
    if global_clipnorm:
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        scale = global_clipnorm * min(1.0 / norm, 1.0 / global_clipnorm)
        return [g * scale for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


def _keras_loop(name, hyper, variables, grad_steps, clip):
    """The Keras optimizer ``name`` on a list of float64 variables; returns the variables after the steps."""
    v = [x.copy() for x in variables]
    slots = {k: [np.zeros_like(x) for x in v] for k in ("m", "v", "a", "b", "vh")}
    if name == "adagrad":
        slots["acc"] = [np.full_like(x, hyper.get("initial_accumulator_value", 0.1)) for x in v]
    lr, wd, u_product = hyper["learning_rate"], hyper.get("weight_decay"), 1.0
    for it, grads in enumerate(grad_steps):
        grads = _keras_clip(grads, **clip)
        if wd:
            v = [x - x * wd * lr for x in v]
        t = it + 1
        if name == "nadam":
            b1, b2 = hyper.get("beta_1", 0.9), hyper.get("beta_2", 0.999)
            u_product = u_product * b1 * (1.0 - 0.5 * 0.96 ** t)
        for i, g in enumerate(grads):
            x = v[i]
            if name == "sgd":
                mom = hyper.get("momentum", 0.0)
                if mom:
                    slots["m"][i] = slots["m"][i] * mom - g * lr
                    x = x + (slots["m"][i] * mom - g * lr if hyper.get("nesterov") else slots["m"][i])
                else:
                    x = x - g * lr
            elif name == "rmsprop":
                rho, mom, eps = hyper.get("rho", 0.9), hyper.get("momentum", 0.0), hyper.get("epsilon", 1e-7)
                slots["v"][i] = rho * slots["v"][i] + (1 - rho) * g * g
                if hyper.get("centered"):
                    slots["a"][i] = rho * slots["a"][i] + (1 - rho) * g
                    den = slots["v"][i] - slots["a"][i] ** 2 + eps
                else:
                    den = slots["v"][i] + eps
                inc = lr * g / np.sqrt(den)
                if mom > 0:
                    slots["b"][i] = mom * slots["b"][i] + inc
                    inc = slots["b"][i]
                x = x - inc
            elif name == "adagrad":
                slots["acc"][i] = slots["acc"][i] + g * g
                x = x - lr * g / np.sqrt(slots["acc"][i] + hyper.get("epsilon", 1e-7))
            elif name in ("adam", "adamw"):
                b1, b2, eps = hyper.get("beta_1", 0.9), hyper.get("beta_2", 0.999), hyper.get("epsilon", 1e-7)
                alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                slots["m"][i] += (g - slots["m"][i]) * (1 - b1)
                slots["v"][i] += (g * g - slots["v"][i]) * (1 - b2)
                vv = slots["v"][i]
                if hyper.get("amsgrad"):
                    slots["vh"][i] = np.maximum(slots["vh"][i], vv)
                    vv = slots["vh"][i]
                x = x - slots["m"][i] * alpha / (np.sqrt(vv) + eps)
            else:  # nadam
                eps = hyper.get("epsilon", 1e-7)
                u_t, u_t1 = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
                slots["m"][i] += (g - slots["m"][i]) * (1 - b1)
                slots["v"][i] += (g * g - slots["v"][i]) * (1 - b2)
                m_hat = u_t1 * slots["m"][i] / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
                v_hat = slots["v"][i] / (1 - b2 ** t)
                x = x - m_hat * lr / (np.sqrt(v_hat) + eps)
            v[i] = x
    return v


KERAS_CASES = [
    ("sgd", optimizers.SGD, dict(learning_rate=0.05, momentum=0.9, convention="keras")),
    ("sgd", optimizers.SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                                 convention="keras")),
    ("sgd", optimizers.SGD, dict(learning_rate=0.05, convention="keras")),
    ("rmsprop", optimizers.RMSprop, dict(learning_rate=0.01)),
    ("rmsprop", optimizers.RMSprop, dict(learning_rate=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("adagrad", optimizers.Adagrad, dict(learning_rate=0.05)),
    ("adam", optimizers.Adam, dict(learning_rate=0.01, epsilon=1e-7, convention="keras")),
    ("adam", optimizers.Adam, dict(learning_rate=0.01, epsilon=1e-7, amsgrad=True, convention="keras")),
    ("adamw", optimizers.AdamW, dict(learning_rate=0.01)),
    ("nadam", optimizers.Nadam, dict(learning_rate=0.01, weight_decay=0.01)),
]


@pytest.mark.parametrize("clip", [{}, {"clipnorm": 0.5}, {"global_clipnorm": 0.8}, {"clipvalue": 0.1}], ids=str)
@pytest.mark.parametrize("name,cls,hyper", KERAS_CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_optimizer_matches_keras_formulas_per_variable(name, cls, hyper, clip, rng):
    shapes = [(3, 4), (4,), (5, 3), (1,)]
    sizes = [math.prod(s) for s in shapes]
    segments = list(zip(np.cumsum([0] + sizes[:-1]).tolist(), np.cumsum(sizes).tolist()))
    variables = [rng.standard_normal(s) for s in shapes]
    grad_steps = [[rng.standard_normal(s) for s in shapes] for _ in range(8)]
    expected = _keras_loop(name, dict(hyper, weight_decay=hyper.get("weight_decay", 0.004 if name == "adamw" else 0)),
                           variables, grad_steps, clip)
    opt = cls(**hyper, **clip)
    n = sum(sizes)
    opt.build(n, np.float64)
    params = np.concatenate([x.ravel() for x in variables])
    grads = np.zeros(n)
    update = opt.bind(params, grads, segments)
    for step_grads in grad_steps:
        grads[...] = np.concatenate([g.ravel() for g in step_grads])
        update()
    assert opt.iterations == len(grad_steps)
    np.testing.assert_allclose(params, np.concatenate([x.ravel() for x in expected]), rtol=1e-12, atol=1e-14)


def test_step_and_bind_agree(rng):
    for cls, kw in [(optimizers.RMSprop, dict(momentum=0.5, clipnorm=1.0)), (optimizers.Nadam, {}),
                    (optimizers.Adagrad, dict(global_clipnorm=1.0)), (optimizers.AdamW, dict(clipvalue=0.5)),
                    (optimizers.SGD, dict(momentum=0.9, clipnorm=0.5)), (optimizers.Adam, dict(global_clipnorm=0.5)),
                    (optimizers.SGD, dict(momentum=0.9, convention="keras", clipvalue=0.2))]:
        a, b = cls(**kw), cls(**kw)
        a.build(50, np.float64)
        b.build(50, np.float64)
        pa = rng.standard_normal(50)
        pb, g = pa.copy(), np.zeros(50)
        update = b.bind(pb, g, [(0, 20), (20, 50)])
        for _ in range(4):
            g[...] = rng.standard_normal(50)
            a.step(pa, g, [(0, 20), (20, 50)])
            update()
        assert pa.tobytes() == pb.tobytes(), cls


# ---- torch as an extra oracle, where its formulas and Keras's coincide ----

def run_beside_torch(torch, make_torch, opt, n, steps, rng):
    """``opt`` (built here, float64) and the torch optimizer ``make_torch([tensor])`` from the same random
    start over the same random gradients, each step in both; returns (ours, torch's) final parameters."""
    p0 = rng.standard_normal(n)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    topt = make_torch([tp])
    opt.build(n, np.float64)
    p = p0.copy()
    for _ in range(steps):
        g = rng.standard_normal(n)
        tp.grad = torch.tensor(g)
        topt.step()
        opt.step(p, g)
    return p, tp.detach().numpy()


@pytest.mark.parametrize("kw", [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True)])
def test_keras_sgd_matches_torch_sgd(kw, rng):
    torch = pytest.importorskip("torch")
    p, expected = run_beside_torch(torch, lambda ps: torch.optim.SGD(ps, lr=0.05, **kw),
                                   optimizers.SGD(0.05, convention="keras", **kw), 300, 30, rng)
    np.testing.assert_allclose(p, expected, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(centered=True), dict(momentum=0.5, centered=True)])
def test_rmsprop_matches_torch_at_zero_epsilon(kw, rng):
    torch = pytest.importorskip("torch")
    p, expected = run_beside_torch(torch, lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=0.0, **kw),
                                   optimizers.RMSprop(0.01, rho=0.9, epsilon=0.0, **kw), 200, 20, rng)
    np.testing.assert_allclose(p, expected, rtol=1e-10, atol=1e-12)


def test_adagrad_matches_torch_at_zero_epsilon(rng):
    torch = pytest.importorskip("torch")
    p, expected = run_beside_torch(torch, lambda ps: torch.optim.Adagrad(ps, lr=0.05, eps=0.0,
                                                                         initial_accumulator_value=0.1),
                                   optimizers.Adagrad(0.05, epsilon=0.0), 200, 20, rng)
    np.testing.assert_allclose(p, expected, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("convention,eps", [("torch", 1e-8), ("keras", 0.0)])
def test_adamw_matches_torch(convention, eps, rng):
    torch = pytest.importorskip("torch")
    p, expected = run_beside_torch(torch, lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05, eps=eps),
                                   optimizers.AdamW(0.01, weight_decay=0.05, epsilon=eps, convention=convention),
                                   200, 20, rng)
    np.testing.assert_allclose(p, expected, rtol=1e-11, atol=1e-12)


def test_clipvalue_matches_torch_clip_grad_value(rng):
    torch = pytest.importorskip("torch")
    g = rng.standard_normal(100) * 2
    t = torch.tensor(g.copy(), requires_grad=True)
    t.grad = torch.tensor(g.copy())
    torch.nn.utils.clip_grad_value_([t], 0.5)
    assert ops.clip_gradient(g, clipvalue=0.5).tobytes() == t.grad.numpy().tobytes()


# ---- arrays: layouts, byte order, aliasing, validation ----

def test_unbound_updates_take_any_layout(rng):
    base = rng.standard_normal((6, 8))
    p = base[:, ::2]
    g = rng.standard_normal((6, 4))
    v = np.zeros((6, 4), order="F")
    p_ref, v_ref = p.copy(), np.zeros((6, 4))
    swapped_g = g.astype(g.dtype.newbyteorder())
    ops.rmsprop_update(p, swapped_g, v, lr=0.1, clipnorm=0.5)
    reference.rmsprop_update(p_ref, g, v_ref, lr=0.1, clipnorm=0.5)
    assert np.array_equal(base[:, ::2], p_ref) and np.array_equal(v, v_ref)
    q = rng.standard_normal(10)
    q_ref, acc, acc_ref = q.copy(), np.full(10, 0.1), np.full(10, 0.1)
    ops.adagrad_update(q, q, acc, lr=0.1)       # grad may be param itself
    reference.adagrad_update(q_ref, q_ref.copy(), acc_ref, lr=0.1)
    assert q.tobytes() == q_ref.tobytes()


BAD = [
    (lambda: ops.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(4), lr=0.1, momentum=0.9), ValueError,
     "momentum_buffer"),
    (lambda: ops.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(4), lr=0.1, centered=True), ValueError,
     "average_grad"),
    (lambda: ops.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(3), lr=0.1), ValueError, "velocity has shape"),
    (lambda: ops.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(4), lr=0.1, rho=1.5), ValueError, "rho"),
    (lambda: ops.adagrad_update(np.zeros(4), np.zeros(4), np.zeros(4, np.float32), lr=0.1), TypeError,
     "accumulator has dtype"),
    (lambda: ops.adagrad_update(np.zeros(4), np.zeros(4), np.zeros(4), lr=-0.1), ValueError, "lr"),
    (lambda: ops.sgd_keras_update(np.zeros(4), np.zeros(4), np.zeros(4), lr=0.1, momentum=1.5), ValueError,
     "momentum"),
    (lambda: ops.sgd_keras_update(np.zeros(4), np.zeros(4), lr=0.1, momentum=0.5), ValueError, "velocity"),
    (lambda: ops.adam_keras_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=0), ValueError, "step"),
    (lambda: ops.adam_keras_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1, amsgrad=True),
     ValueError, "vhat"),
    (lambda: ops.nadam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), step=1, u_product="x"),
     TypeError, "u_product"),
    (lambda: ops.clip_gradient(np.zeros(4), clipnorm=1.0, clipvalue=1.0), ValueError, "only one of"),
    (lambda: ops.clip_gradient(np.zeros(4), clipnorm=-1.0), ValueError, "clipnorm"),
    (lambda: ops.clip_gradient(np.zeros(4), clipnorm=1.0, segments=[(0, 2)]), ValueError, "tile"),
    (lambda: ops.clip_gradient(np.zeros(4), clipnorm=1.0, segments=[(0, 3), (2, 4)]), ValueError, "tile"),
    (lambda: ops.clip_gradient(np.zeros(4), clipnorm=1.0, segments=[(0, 2.5), (2.5, 4)]), TypeError, "segments"),
    (lambda: ops.gradient_sumsq(np.zeros(4, int)), TypeError, "grad"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_aliased_state_rejected():
    p, v = np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="param and velocity"):
        ops.rmsprop_update(p, np.zeros(8), p, lr=0.1)
    with pytest.raises(ValueError, match="m and v"):
        ops.nadam_update(p, np.zeros(8), v, v, step=1, u_product=1.0)
    with pytest.raises(ValueError, match="grad and accumulator"):
        ops.adagrad_update(p, v, v, lr=0.1)
    with pytest.raises(ValueError, match="velocity and average_grad"):
        ops.rmsprop_update(p, np.zeros(8), v[:4].base, None, v, lr=0.1, centered=True)


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="only one of"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue"):
        optimizers.RMSprop(clipvalue=-1)
    with pytest.raises(ValueError, match="momentum must be in"):
        optimizers.SGD(momentum=1.5, convention="keras")
    with pytest.raises(ValueError, match="convention"):
        optimizers.SGD(convention="jax")
    with pytest.raises(ValueError, match="epsilon_hat"):
        optimizers.Adam(epsilon_hat=True, convention="keras")
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(TypeError, match="centered"):
        optimizers.RMSprop(centered=1)
    with pytest.raises(RuntimeError, match="no state yet"):
        optimizers.RMSprop().bind(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="valid choices: adam, sgd, rmsprop, adagrad, adamw, nadam"):
        optimizers.get("adadelta")
    for name in ("adam", "sgd", "rmsprop", "adagrad", "adamw", "nadam", "RMSprop"):
        assert isinstance(optimizers.get(name), optimizers.Optimizer)
    assert isinstance(optimizers.get(optimizers.Nadam), optimizers.Nadam)


def test_defaults_follow_keras():
    assert optimizers.RMSprop().get_config() == dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                                                     centered=False, weight_decay=0.0, clipnorm=None, clipvalue=None,
                                                     global_clipnorm=None)
    adagrad = optimizers.Adagrad()
    assert (adagrad.learning_rate, adagrad.initial_accumulator_value, adagrad.epsilon) == (0.001, 0.1, 1e-7)
    adamw = optimizers.AdamW()
    assert (adamw.weight_decay, adamw.epsilon, adamw.convention) == (0.004, 1e-7, "keras")
    nadam = optimizers.Nadam()
    assert (nadam.beta_1, nadam.beta_2, nadam.epsilon) == (0.9, 0.999, 1e-7)


def test_learning_rate_settable_between_steps_and_schedule_not(rng):
    opt = optimizers.RMSprop(0.01)
    opt.build(10, np.float64)
    p, g = rng.standard_normal(10), np.ones(10)
    update = opt.bind(p, g)
    update()
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    q, v = p.copy(), opt.velocity.copy()
    update()
    reference.rmsprop_update(q, g, v, lr=0.5)
    assert q.tobytes() == p.tobytes()
    sched = optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="not settable"):
        sched.learning_rate = 0.1
    sched.learning_rate = schedules.InverseTimeDecay(0.2, 1, 1.0)   # another schedule may replace it
    assert sched.learning_rate == 0.2
    with pytest.raises(TypeError, match="learning-rate schedules are not supported"):
        optimizers.RMSprop(learning_rate=lambda: 0.1)


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.RMSprop, optimizers.Adam, optimizers.Nadam])
def test_schedule_is_read_at_iterations_before_the_step(cls, rng):
    sched = schedules.PiecewiseConstantDecay([1, 2], [0.3, 0.2, 0.1])
    opt = cls(learning_rate=sched)
    ref = [cls(learning_rate=v) for v in (0.3, 0.3, 0.2, 0.1)]
    opt.build(20, np.float64)
    p0 = rng.standard_normal(20)
    p, g = p0.copy(), np.zeros(20)
    update = opt.bind(p, g)
    q = p0.copy()
    # the reference: one optimizer whose learning rate is set by hand before each step
    manual = cls(learning_rate=0.3)
    manual.build(20, np.float64)
    for k in range(4):
        g[...] = rng.standard_normal(20)
        assert opt.learning_rate == sched(k) == ref[k].learning_rate
        manual.learning_rate = sched(k)
        update()
        manual.step(q, g)
    assert p.tobytes() == q.tobytes()


# ---- save and load mid-training: identical continued training ----

SAVE_CASES = [
    optimizers.SGD(0.05, momentum=0.9, nesterov=True, convention="keras", clipnorm=0.5),
    optimizers.SGD(0.05, momentum=0.9, global_clipnorm=0.5),
    optimizers.RMSprop(0.01, momentum=0.5, centered=True, clipvalue=0.1),
    optimizers.Adagrad(schedules.ExponentialDecay(0.05, 3, 0.5, staircase=True)),
    optimizers.AdamW(schedules.CosineDecay(0.01, 20, alpha=0.1, warmup_target=0.02, warmup_steps=3)),
    optimizers.Adam(0.01, amsgrad=True, convention="keras", epsilon=1e-7, weight_decay=0.01),
    optimizers.Nadam(schedules.InverseTimeDecay(0.01, 2, 0.5), global_clipnorm=1.0),
]


@pytest.mark.parametrize("opt", SAVE_CASES, ids=lambda o: type(o).__name__)
def test_save_load_mid_training_continues_identically(opt, tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential([layers.Dense(5, activation="relu"), layers.Dense(3, activation="softmax")], dtype="float64",
                       seed=1)
    model.compile(opt, "sparse_categorical_crossentropy", ["accuracy"])
    x, y = rng.random((12, 4)), rng.integers(0, 3, 12)
    model.fit(x, y, batch_size=4, verbose=0, shuffle=False)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert type(loaded.optimizer) is type(opt)
    assert loaded.optimizer.get_config() == opt.get_config()
    assert loaded.optimizer.iterations == opt.iterations == 3
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert model.params.tobytes() == loaded.params.tobytes()
    for key, value in model.optimizer.state().items():
        assert np.asarray(value).tobytes() == np.asarray(loaded.optimizer.state()[key]).tobytes(), key


def test_bench_optimizer_rows(capsys):
    from fastconv import benchmarks

    rows = benchmarks.bench_optimizers(None, np.float32, [1000])
    assert [r["kernel"] for r in rows] == ["rmsprop_update", "adagrad_update", "adam+global_clipnorm"]
    assert all(r["fast_us"] > 0 and r["ref_us"] > 0 for r in rows)
    assert "rmsprop_update" in capsys.readouterr().out


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_nadam_matches_torch_nadam_with_keras_momentum_schedule(weight_decay, rng):
    """torch.optim.NAdam with momentum_decay=1 uses Keras's u_t = beta_1*(1 - 0.5*0.96**t), and with
    decoupled_weight_decay its decay is Keras's.  torch keeps its mu_product in the default dtype: float64
    here, as ours."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _nadam_vs_torch(torch, weight_decay, rng)
    finally:
        torch.set_default_dtype(old)


def _nadam_vs_torch(torch, weight_decay, rng):
    p, expected = run_beside_torch(torch, lambda ps: torch.optim.NAdam(ps, lr=0.01, eps=1e-7, momentum_decay=1.0,
                                                                       weight_decay=weight_decay,
                                                                       decoupled_weight_decay=True),
                                   optimizers.Nadam(0.01, weight_decay=weight_decay), 200, 25, rng)
    np.testing.assert_allclose(p, expected, rtol=1e-11, atol=1e-12)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:   # hypothesis is a test dependency; without it these cases are skipped
    given = None

if given is not None:
    @settings(max_examples=40, deadline=None)
    @given(n=st.integers(0, 12_000), cuts=st.lists(st.floats(0, 1), max_size=6),
           kind=st.sampled_from(["clipnorm", "global_clipnorm", "clipvalue"]), c=st.floats(1e-3, 1e3),
           dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
    def test_clipping_random_shapes_bit_identical(n, cuts, kind, c, dtype, seed):
        rng = np.random.default_rng(seed)
        g = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
        bounds = sorted({0, n, *(int(x * n) for x in cuts)})
        segments = list(zip(bounds, bounds[1:])) if n else [(0, 0)]
        kw = {kind: c, "segments": segments} if kind == "clipnorm" else {kind: c}
        assert ops.clip_gradient(g, **kw).tobytes() == reference.clip_gradient(g, **kw).tobytes()
        assert ops.gradient_sumsq(g, segments).tobytes() == reference.gradient_sumsq(g, segments).tobytes()
        p, v = rng.standard_normal(n).astype(dtype), np.zeros(n, dtype)
        p_ref, v_ref = p.copy(), v.copy()
        ops.rmsprop_update(p, g, v, lr=1e-2, **kw)
        reference.rmsprop_update(p_ref, g, v_ref, lr=1e-2, **kw)
        assert p.tobytes() == p_ref.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_scalars_bit_identical_to_twin(dtype):
    from fastconv import _clip

    tiny = float(np.finfo(dtype).tiny)
    sums = np.array([0.0, 1.0, 2.0, 0.49, 1e-300, tiny, tiny ** 2, 1e30, 1e300, np.inf, np.nan, 49.0, 3.0])
    for c in (1.0, 0.7, 7.0, 49.0, 1e-3, 1e20, float(np.finfo(dtype).max)):
        denoms = np.zeros(len(sums), dtype)
        _clip.norm_denominators(sums, c, denoms)
        assert denoms.tobytes() == reference.clip_coefficients("norm", c, sums, dtype)[2].tobytes()
        for s in sums:
            with np.errstate(all="ignore"):
                fast = _clip.global_scale(s, c, dtype == np.float64)
                ref = reference.clip_coefficients("global", c, np.array([s]), dtype)[1]
            assert np.array([fast]).tobytes() == np.array([ref]).tobytes(), (s, c)
