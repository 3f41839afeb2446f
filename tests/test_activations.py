"""Compiled activations: against the NumPy twin (bit-identical), the accuracy of their polynomial exp, expm1,
tanh, log1p and erf (a float64 set and a float32 set), PyTorch's semantics (within a derived bound) at kinks
and special values, finite-difference gradients, thread-count independence, validation, and the model layer
(names, objects, configs, save/load, fit)."""
import math

import numpy as np
import pytest
from conftest import DTYPES, numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastconv
from fastconv import benchmarks, ops, reference
from fastconv.nn import activations, layers
from fastconv.nn.model import Sequential
from fastconv.nn.saving import load_model, save_model

KINDS = ops.ACTIVATION_KINDS
PARAMS = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}}


def _forward_scale(kind, x):
    """Sum of the magnitudes the libm call's rounding is multiplied by in the forward formula.

    Every formula but gelu's is well conditioned in its libm value (relative error in, relative error out),
    so the scale is |y|; gelu and gelu_tanh add 1 to erf/tanh, which cancels for negative x, so an absolute
    error of the erf/tanh value (<= 1 ulp of 1) arrives multiplied by 0.5*|x|."""
    v = x.astype(np.float64)
    with np.errstate(all="ignore"):
        y = np.abs(reference.activation_forward(v, kind))
    return y + np.abs(v) if kind in ("gelu", "gelu_tanh") else y


def _backward_scale(kind, dy, x):
    """As _forward_scale for dx: the sum of the absolute terms of each backward formula, times |dy|.  The
    backward of sigmoid and tanh reads y, whose own rounding (when y comes from another implementation)
    arrives multiplied by |1 - 2y| and 2|y|."""
    d, v = np.abs(dy.astype(np.float64)), x.astype(np.float64)
    with np.errstate(all="ignore"):
        if kind in ("sigmoid", "tanh"):
            y = np.abs(reference.activation_forward(v, kind))
            return d * (y * (1 + 3 * y) if kind == "sigmoid" else 1 + 3 * y * y)
        if kind == "gelu":
            return d * (1.0 + np.abs(v) * np.exp(-0.5 * v * v))
        if kind == "gelu_tanh":
            return d * (1.0 + np.abs(v) * (1.0 + 3 * 0.044715 * v * v))
        if kind == "silu":
            s = reference._sigmoid64(v)
            return d * s * (1.0 + np.abs(v) * (1.0 - s))
        y = reference.activation_forward(v, kind)
        return np.abs(reference.activation_backward(dy.astype(np.float64), v, y, kind))


def same_bits(a, b):
    """Identical bytes, except that a NaN's sign and payload may differ (C's invalid operations give the
    default NaN, NumPy's selects keep the input's)."""
    nan = np.isnan(a)
    return a.dtype == b.dtype and np.array_equal(nan, np.isnan(b)) and a[~nan].tobytes() == b[~nan].tobytes()


def check_against_twin(x, kind, dy=None, **params):
    """Forward and backward of ops bit-identical to reference for x (any layout)."""
    dtype = x.dtype.type if x.dtype.isnative else np.dtype(x.dtype.newbyteorder("=")).type
    xn = np.asarray(x, dtype)
    y = ops.activation_forward(x, kind, **params)
    assert same_bits(y, reference.activation_forward(xn, kind, **params)), f"{kind} forward"
    dy = np.linspace(-3, 3, y.size).astype(dtype).reshape(y.shape) if dy is None else dy
    dx = ops.activation_backward(dy, x, y, kind, **params)
    assert same_bits(dx, reference.activation_backward(np.asarray(dy, dtype), xn, y, kind, **params)), \
        f"{kind} backward"


# ------------------------------------------------------------------------------------------- the twin

@settings(max_examples=80, deadline=None)
@given(st.sampled_from(KINDS),
       st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4,
                                                                                   max_side=9))))
def test_matches_twin_on_any_shape_and_value(kind, x):
    check_against_twin(x, kind, **PARAMS.get(kind, {}))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_special_values_match_twin(kind, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-30, -1e-30, 3.0, -3.0, 6.0, 20.0, -20.0,
                  88.0, -88.0, 710.0, -745.0, 1e30, -1e30, np.finfo(dtype).max, -np.finfo(dtype).max],
                 dtype=dtype)
    check_against_twin(x, kind, **PARAMS.get(kind, {}))
    # and a spread of ordinary values, wide enough to meet every branch, both dtypes
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(3000) * 3, rng.standard_normal(1000) * 40]).astype(dtype)
    check_against_twin(x, kind, dy=rng.standard_normal(x.size).astype(dtype), **PARAMS.get(kind, {}))


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_and_byteswapped_inputs(dtype, rng):
    base = rng.standard_normal((6, 10, 12)).astype(dtype) * 4
    for kind in KINDS:
        for x in (base[:, ::2, ::-3], base.astype(base.dtype.newbyteorder(">" if np.little_endian else "<")),
                  np.asfortranarray(base)):
            y = ops.activation_forward(x, kind)
            assert y.dtype == np.dtype(dtype) and y.dtype.isnative and y.shape == x.shape
            assert same_bits(y, ops.activation_forward(np.ascontiguousarray(x, dtype), kind))
            dy = np.ones(x.shape, dtype)[::1]
            dx = ops.activation_backward(dy.astype(x.dtype), x, y, kind)
            assert same_bits(dx, ops.activation_backward(dy, np.ascontiguousarray(x, dtype), y, kind))


def test_polynomial_exp_expm1_tanh_log1p_erf_are_accurate(rng):
    """The kernels' own exp, expm1 (x <= 0), tanh, log1p (0 <= e <= 1) and erf, which the twin repeats bit
    for bit, against the C library's (math.*, within 1 ulp of the exact value).  erf is held to 3 eps
    absolute (what gelu's 1 + erf needs) and 6 ulp relative."""
    x = np.concatenate([rng.uniform(-745, 709.7, 20000), rng.uniform(-3, 3, 20000), np.logspace(-320, 2, 2000),
                        -np.logspace(-320, 2, 2000), [0.0, -0.0, 709.78, -745.1]])

    def ulps(ours, exact):
        return np.max(np.abs(ours - exact) / np.spacing(np.abs(exact)))

    assert ulps(reference._exp64(x), np.array([math.exp(v) for v in x])) <= 2
    neg = -np.abs(x)
    assert ulps(reference._expm1_neg64(neg), np.array([math.expm1(v) for v in neg])) <= 2
    assert ulps(reference._tanh64(x), np.array([math.tanh(v) for v in x])) <= 4
    e = np.concatenate([rng.uniform(0, 1, 20000), np.logspace(-320, 0, 2000)])
    assert ulps(reference._log1p_unit64(e), np.array([math.log1p(v) for v in e])) <= 4
    x = np.concatenate([np.linspace(-8, 8, 40001), np.logspace(-300, 1, 2000), -np.logspace(-300, 1, 2000)])
    exact = np.array([math.erf(v) for v in x])
    with np.errstate(all="ignore"):
        ours = reference._erf_poly64(x)
    assert np.max(np.abs(ours - exact)) <= 3 * np.finfo(np.float64).eps and ulps(ours, exact) <= 6
    with np.errstate(all="ignore"):
        assert same_bits(reference._erf_poly64(np.array([np.inf, -np.inf, np.nan, -0.0, 1e300])),
                         np.array([1.0, -1.0, np.nan, -0.0, 1.0]))
    special = np.array([np.inf, -np.inf, np.nan, 710.0, -746.0])
    with np.errstate(all="ignore"):
        assert same_bits(reference._exp64(special), np.array([np.inf, 0.0, np.nan, np.inf, 0.0]))
    minus_zero = np.array([-0.0])
    assert np.signbit(reference._expm1_neg64(minus_zero)[0]) and np.signbit(reference._tanh64(minus_zero)[0])


def test_float32_polynomials_are_accurate(rng):
    """The float32 set (what float32 arrays compute with) against float64's exact values rounded to float32:
    exp and expm1 within 1 ulp, tanh and log1p within 3 ulp (each a few roundings after its polynomial), erf
    within 3 float32 eps absolute; every operation stays in float32."""
    f32 = np.float32

    def ulps(ours, exact):
        assert ours.dtype == np.float32
        return np.max(np.abs(ours - exact) / np.spacing(np.abs(exact.astype(f32))).astype(np.float64))

    x = np.concatenate([rng.uniform(-104, 89, 40000), rng.uniform(-3, 3, 40000), np.logspace(-45, 1.9, 4000),
                        -np.logspace(-45, 2, 4000)]).astype(f32)
    neg = -np.abs(x)                                    # the float exp is only ever given x <= 0
    exact = np.exp(neg.astype(np.float64))
    ours = reference._exp32(neg)
    normal = exact > np.finfo(f32).tiny
    assert ulps(ours[normal], exact[normal]) <= 1
    sub = ~normal                                       # subnormal results: one rounding, of 2**-149
    assert np.max(np.abs(ours[sub] - exact[sub])) <= 2.0 ** -149
    assert ulps(reference._expm1_neg32(neg), np.expm1(neg.astype(np.float64))) <= 1
    assert ulps(reference._tanh32(x), np.tanh(x.astype(np.float64))) <= 3
    e = np.concatenate([rng.uniform(0, 1, 40000), np.logspace(-45, 0, 4000)]).astype(f32)
    assert ulps(reference._log1p_unit32(e), np.log1p(e.astype(np.float64))) <= 3
    x = np.concatenate([np.linspace(-8, 8, 40001), np.logspace(-40, 1, 2000), -np.logspace(-40, 1, 2000)]).astype(f32)
    ours = reference._erf_poly32(x)
    assert ours.dtype == np.float32
    assert np.max(np.abs(ours - np.array([math.erf(v) for v in x.astype(np.float64)]))) <= 3 * np.finfo(f32).eps
    with np.errstate(all="ignore"):
        special = np.array([-np.inf, np.nan, -104.0, -0.0, 0.0], f32)
        assert same_bits(reference._exp32(special), np.array([0.0, np.nan, 0.0, 1.0, 1.0], f32))
        assert same_bits(reference._erf_poly32(np.array([np.inf, -np.inf, np.nan, -0.0, 4.0], f32)),
                         np.array([1.0, -1.0, np.nan, -0.0, 1.0], f32))
    minus_zero = np.array([-0.0], f32)
    assert np.signbit(reference._expm1_neg32(minus_zero)[0]) and np.signbit(reference._tanh32(minus_zero)[0])


# ------------------------------------------------------------------------------ PyTorch's semantics

def test_kinks_nan_and_signed_zeros_follow_pytorch():
    x = np.array([-np.inf, -3.0, -0.0, 0.0, 3.0, 6.0, np.inf, np.nan])
    seven = np.full(x.size, 7.0)

    def both(kind, **p):
        y = ops.activation_forward(x, kind, **p)
        return y, ops.activation_backward(seven, x, y, kind, **p)

    y, dx = both("leaky_relu", negative_slope=0.5)
    assert np.signbit(y[2]) and np.isnan(y[7]) and y[0] == -np.inf
    assert dx.tolist() == [3.5, 3.5, 3.5, 3.5, 7, 7, 7, 3.5]       # the slope at 0 and at NaN
    y, dx = both("relu6")
    assert y[:7].tolist() == [0, 0, 0, 0, 3, 6, 6] and np.signbit(y[2]) and np.isnan(y[7])
    assert dx.tolist() == [0, 0, 0, 0, 7, 0, 0, 7]                 # 0 at both kinks, NaN passes dy
    y, dx = both("hard_sigmoid")
    assert y[:7].tolist() == [0, 0, 0.5, 0.5, 1, 1, 1] and np.isnan(y[7])
    assert dx.tolist() == [0, 0, 7 / 6, 7 / 6, 0, 0, 0, 0]         # 0 at -3 and 3 and NaN
    y, dx = both("elu", alpha=2.0)
    assert np.signbit(y[2]) and y[0] == -2 and np.isnan(y[7])
    assert dx[2:4].tolist() == [14, 14] and dx[7] == 7             # exp branch at 0; NaN: the linear branch
    for kind in KINDS:                                             # NaN in, NaN out
        assert np.isnan(ops.activation_forward(np.array([np.nan, 1.0]), kind)[0]), kind
    assert np.isnan(ops.activation_forward(np.array([-np.inf]), "gelu")[0])   # -inf * 0, as PyTorch
    assert ops.activation_forward(np.array([-np.inf, np.inf]), "softplus").tolist() == [0, np.inf]
    assert np.isnan(ops.activation_forward(np.array([np.inf]), "softsign")[0])


def _torch_fn(torch, kind, params):
    F = torch.nn.functional
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "elu": lambda t: F.elu(t, **params),
            "selu": F.selu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
            "leaky_relu": lambda t: F.leaky_relu(t, **params), "silu": F.silu, "softplus": F.softplus,
            "softsign": F.softsign, "relu6": F.relu6, "hard_sigmoid": F.hardsigmoid}[kind]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_pytorch(kind, dtype):
    """Within c = 16 ulps (of the dtype PyTorch computes in) of the terms' magnitude, plus one ulp of the
    result: both sides evaluate the same formula with transcendental routines within 4 ulp or 3 eps (the
    kernels' polynomials, PyTorch's Sleef routines) and a few roundings downstream of them.

    softplus is compared where |x| < 20: above, PyTorch's threshold returns x itself (off by log1p(exp(-x))).
    PyTorch's hardsigmoid backward multiplies by the float32 1/6 even for float64; ours divides by 6."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(4000) * 5).astype(dtype)
    x[:4] = [0.0, -0.0, 3.0, -3.0]
    dy = rng.standard_normal(x.size).astype(dtype)
    params = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}}.get(kind, {})
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_fn(torch, kind, params)(tx)
    ty.backward(torch.tensor(dy))
    y = ops.activation_forward(x, kind, **params)
    dx = ops.activation_backward(dy, x, y, kind, **params)
    keep = np.abs(x) < 20 if kind == "softplus" else np.ones(x.size, bool)
    eps = np.finfo(dtype).eps
    for name, ours, theirs, scale in (("forward", y, ty.detach().numpy(), _forward_scale(kind, x)),
                                      ("backward", dx, tx.grad.numpy(), _backward_scale(kind, dy, x))):
        bound = 16 * eps * scale + np.spacing(np.abs(theirs))
        if kind == "hard_sigmoid" and name == "backward":
            bound = bound + np.finfo(np.float32).eps * np.abs(theirs)
        err = np.abs(ours.astype(np.float64) - theirs)
        assert np.all(err[keep] <= bound[keep]), (kind, name, err[keep].max())


# --------------------------------------------------------------------------------- gradients, threads

@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_finite_differences(kind, rng):
    """Central differences, h = 1e-5, away from the kinks (0, +-3, 6): the truncation error is
    h**2/6*|f'''| <= 2*h**2 for these functions on [-4, 4], the rounding error 2*eps*|f|/h."""
    x = rng.uniform(-4, 4, 400)
    x = x[(np.abs(x) > 1e-2) & (np.abs(np.abs(x) - 3) > 1e-2)]
    dy = rng.standard_normal(x.size)
    p = PARAMS.get(kind, {})
    h = 1e-5
    fd = (ops.activation_forward(x + h, kind, **p) - ops.activation_forward(x - h, kind, **p)) / (2 * h)
    dx = ops.activation_backward(dy, x, ops.activation_forward(x, kind, **p), kind, **p)
    f = np.abs(ops.activation_forward(x, kind, **p))
    bound = np.abs(dy) * (2 * h * h + 2 * np.finfo(np.float64).eps * (f + 1) / h)
    assert np.all(np.abs(dx - dy * fd) <= bound), (kind, np.max(np.abs(dx - dy * fd) - bound))


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_the_thread_count(dtype, rng):
    x = (rng.standard_normal(70_001) * 4).astype(dtype)        # above both parallel thresholds
    dy = rng.standard_normal(x.size).astype(dtype)
    previous = fastconv.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            fastconv.set_num_threads(threads)
            out = []
            for kind in KINDS:
                y = ops.activation_forward(x, kind)
                out.append(y.tobytes() + ops.activation_backward(dy, x, y, kind).tobytes())
            runs.append(out)
    finally:
        fastconv.set_num_threads(previous)
    assert runs[0] == runs[1] == runs[2]


# ------------------------------------------------------------------------------------ the ops layer

def test_bound_calls_write_the_given_buffers(rng):
    x = rng.standard_normal((4, 5))
    y, dy, dx = np.empty_like(x), rng.standard_normal(x.shape), np.empty_like(x)
    for kind in KINDS:
        f, args = ops.bind_activation_forward(x, y, kind)
        f(*args)
        assert y.tobytes() == ops.activation_forward(x, kind).tobytes()
        reads_y = ops.activation_backward_reads(kind) == "y"
        f, args = ops.bind_activation_backward(dy, None if reads_y else x, y if reads_y else None, dx, kind)
        f(*args)
        assert dx.tobytes() == ops.activation_backward(dy, x, y, kind).tobytes()


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.activation_forward(np.ones(3), "swishy"), ValueError, "valid kinds: sigmoid, tanh"),
    (lambda: ops.activation_forward(np.ones(3), "elu", negative_slope=0.1), TypeError, "takes only alpha"),
    (lambda: ops.activation_forward(np.ones(3), "tanh", alpha=1.0), TypeError, "takes no parameters"),
    (lambda: ops.activation_forward(np.ones(3), "leaky_relu", negative_slope=np.inf), ValueError, "finite"),
    (lambda: ops.activation_forward(np.ones(3), "elu", alpha=float("nan")), ValueError, "NaN"),
    (lambda: ops.activation_forward(np.ones(3), "elu", alpha="1"), TypeError, "real number"),
    (lambda: ops.activation_forward(np.arange(3), "tanh"), TypeError, "astype"),
    (lambda: ops.activation_backward(np.ones(3), np.ones(4), None, "elu"), ValueError, "x has shape"),
    (lambda: ops.activation_backward(np.ones(3), None, np.ones(3, np.float32), "tanh"), TypeError, "dtype"),
    (lambda: ops.bind_activation_forward(*(2 * [np.ones(3)]), "elu"), ValueError, "same array"),
    (lambda: ops.bind_activation_forward(np.ones(3), np.ones(3, np.float32), "elu"), TypeError, "dtype"),
    (lambda: ops.bind_activation_backward(np.ones(3), np.ones(3), None, np.ones(2), "elu"), ValueError, "shape"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bind_rejects_an_output_overlapping_an_input():
    a = np.ones(6)
    with pytest.raises(ValueError, match="share memory"):
        ops.bind_activation_forward(a, a.reshape(6, 1)[:, 0], "elu")   # a view of x
    with pytest.raises(ValueError, match="same array"):
        ops.bind_activation_backward(a, np.ones(6), None, a, "elu")
    with pytest.raises(ValueError, match="same array"):
        ops.bind_activation_backward(np.ones(6), a, None, a, "elu")


# ---------------------------------------------------------------------------------- the model layer

def test_names_objects_and_errors():
    assert activations.get("SeLu").name == "selu" and activations.get("swish").name == "silu"
    assert activations.get(None).name == "linear"
    leaky = activations.LeakyReLU(0.2)
    assert activations.get(leaky) is leaky and leaky.negative_slope == 0.2 and leaky.name == "leaky_relu"
    assert activations.ELU(2).alpha == 2.0 and activations.get("elu").alpha == 1.0
    assert activations.GELU("tanh").name == "gelu_tanh" and activations.get("gelu").approximate == "none"
    with pytest.raises(ValueError, match="valid choices: relu, sigmoid"):
        activations.get("relu7")
    with pytest.raises(ValueError, match="approximate"):
        activations.GELU(True)
    with pytest.raises(ValueError, match="finite"):
        activations.LeakyReLU(float("inf"))
    with pytest.raises(TypeError, match="real number"):
        activations.ELU("big")
    for name in ("relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu", "gelu_tanh", "leaky_relu",
                 "silu", "swish", "softplus", "softsign", "relu6", "hard_sigmoid"):
        assert name in activations.ACTIVATIONS


def test_layers_keep_the_name_and_the_object():
    dense = layers.Dense(3, activation=activations.LeakyReLU(0.3))
    assert dense.activation == "leaky_relu" and dense.activation_fn.negative_slope == 0.3
    assert dense.get_config()["activation"] == {"class": "LeakyReLU", "config": {"negative_slope": 0.3}}
    assert layers.Conv2D(2, 3, activation="GELU_tanh").get_config()["activation"] == "gelu_tanh"
    assert layers.Activation(activations.ELU()).get_config()["activation"] == "elu"   # the default: by name
    again = layers.layer_from_config("Dense", dense.get_config())
    assert again.activation_fn == dense.activation_fn
    with pytest.raises(ValueError, match="valid choices"):
        layers.Dense(3, activation="nope")


def test_saved_model_keeps_parametrised_activations(tmp_path, rng):
    model = Sequential([layers.Dense(6, activation=activations.LeakyReLU(0.2)),
                        layers.Activation(activations.ELU(0.5)),
                        layers.Dense(4, activation=activations.GELU("tanh")), layers.Dense(2)], seed=0)
    model.compile("sgd", "mse")
    x, t = rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((16, 2)).astype(np.float32)
    model.fit(x, t, batch_size=8, verbose=0)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.layers[0].activation_fn == activations.LeakyReLU(0.2)
    assert loaded.layers[1].activation_fn == activations.ELU(0.5)
    assert loaded.layers[2].activation == "gelu_tanh"
    assert loaded.predict(x).tobytes() == model.predict(x).tobytes()


HIDDEN = ("relu", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "gelu_tanh", "leaky_relu", "silu", "swish",
          "softplus", "softsign", "relu6", "hard_sigmoid")


@pytest.mark.parametrize("name", HIDDEN)
def test_model_with_each_activation_learns(name, rng):
    x = rng.standard_normal((64, 4))
    t = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.abs(x[:, 3])], axis=1)
    model = Sequential([layers.Dense(16, activation=name), layers.Activation(name), layers.Dense(2)],
                       dtype="float64", seed=1)
    model.compile("adam", "mse")
    before = model.evaluate(x, t)
    model.fit(x, t, batch_size=16, epochs=20, verbose=0)
    after = model.evaluate(x, t)
    first = lambda logs: logs["loss"] if isinstance(logs, dict) else logs  # noqa: E731
    assert first(after) < first(before)


@pytest.mark.parametrize("name", ["elu", "selu", "gelu", "gelu_tanh", "silu", "softplus", "softsign"])
def test_model_gradients_through_compiled_activations(name, rng):
    model = Sequential([layers.Conv2D(3, 3, activation=name), layers.Flatten(), layers.Dense(4, activation=name),
                        layers.Dense(2)], dtype="float64", seed=2)
    model.compile("sgd", "mse")
    x, t = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((3, 2))
    model.build(x.shape[1:])
    loss, grads = model.compute_gradients(x, t)
    idx = np.random.default_rng(0).choice(model.params.size, 25, replace=False)
    num = numerical_gradient(lambda: model.compute_gradients(x, t)[0], model.params, idx)
    # central differences with h = 1e-6: truncation h**2*|f'''| and rounding eps*|loss|/h, far below 1e-7
    np.testing.assert_allclose(grads.reshape(-1)[idx], num, rtol=1e-6, atol=1e-8 + 1e-9 * abs(float(loss)))
    assert math.isfinite(float(loss))


def test_bench_activations_rows(capsys):
    rows = benchmarks.bench_activations(None, np.float32, shapes=[(1, 2, 3, 3)], kinds=["elu", "relu6"])
    assert [r["kernel"] for r in rows] == ["elu fwd", "elu bwd", "relu6 fwd", "relu6 bwd"]
    assert all(r["shape"] == "1x2x3x3" and r["fast_us"] > 0 and r["ref_us"] > 0 for r in rows)
    assert "elu fwd" in capsys.readouterr().out
