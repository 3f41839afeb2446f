"""Batch normalization: the kernel against its twin (derived bounds), PyTorch and Keras 3's formulas, finite
differences, bit-identical results on 1-4 threads, and the layer in a model."""
import numpy as np
import pytest
from conftest import DTYPES, numerical_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import Sequential, layers, ops, optimizers, reference


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _assert_close(fast, ref, terms, M, what):
    """|fast - ref| <= 2 * 1.01*(M + 2)*eps64*terms + one ulp of the result's dtype.

    Both sides accumulate the statistics in float64 in different orders: a sum of M terms is off by at most
    gamma_M*sum|terms| (Higham 3.1), and so is each statistic relative to the scale ``terms`` gives it;
    the result is then rounded once to its dtype (the ulp: both sides may round to neighbours)."""
    assert fast.shape == ref.shape and fast.dtype == ref.dtype, (what, fast.shape, ref.shape, fast.dtype)
    eps = np.finfo(np.float64).eps
    bound = 2.02 * (M + 2) * eps * terms + np.spacing(np.abs(ref))
    err = np.abs(fast.astype(np.float64) - ref.astype(np.float64))
    assert np.all(err <= bound), (what, float(np.max(err - bound)), float(err.max()))


def _scales(x, dy, gamma, mean, invstd):
    """Error scales: t bounds |xhat| plus its error factor (the mean's error is gamma_M*mean|x|)."""
    M = x.size // x.shape[1]
    xhat = (x.astype(np.float64) - _per_channel(mean, x)) * _per_channel(invstd, x)
    t = np.abs(xhat) + _per_channel(invstd * np.abs(x.astype(np.float64)).mean(axis=_axes(x)), x)
    ady = np.abs(dy.astype(np.float64))
    sdy = ady.sum(axis=_axes(x))
    sdyt = (ady * t).sum(axis=_axes(x))
    return M, xhat, t, sdy, sdyt


@st.composite
def bn_cases(draw):
    N, C = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    four_d = draw(st.booleans())
    shape = (N, C, draw(st.integers(1, 5)), draw(st.integers(1, 5))) if four_d else (N, C)
    if shape[0] * (shape[2] * shape[3] if four_d else 1) < 2:
        shape = (2,) + shape[1:]
    return shape, draw(st.sampled_from(DTYPES)), draw(st.sampled_from(["torch", "keras"])), \
        draw(st.floats(0, 1)), draw(st.integers(0, 2**31))


@settings(max_examples=80, deadline=None)
@given(bn_cases())
def test_matches_reference(case):
    shape, dtype, convention, momentum, seed = case
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + rng.standard_normal(C).reshape((1, C) + (1,) * (len(shape) - 2))
         ).astype(dtype)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rv = rng.standard_normal(C).astype(dtype), rng.random(C).astype(dtype) + 0.5
    rm_ref, rv_ref = rm.copy(), rv.copy()
    kw = dict(momentum=momentum, eps=1e-5, convention=convention)
    y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, **kw)
    y_ref, mean_ref, invstd_ref = reference.batchnorm_forward(x, gamma, beta, rm_ref, rv_ref, **kw)
    dy = rng.standard_normal(shape).astype(dtype)
    M, xhat, t, sdy, sdyt = _scales(x, dy, gamma, mean_ref, invstd_ref)
    g = _per_channel(np.abs(gamma.astype(np.float64)), x)
    _assert_close(y, y_ref, g * t + _per_channel(np.abs(beta), x), M, "y")
    ax = np.abs(x.astype(np.float64)).mean(axis=_axes(x))
    _assert_close(mean, mean_ref, ax, M, "mean")
    _assert_close(invstd, invstd_ref, invstd_ref, M, "invstd")
    # running = a*running + b*stat: the stat's error times its weight
    _assert_close(rm, rm_ref, np.abs(rm_ref) + ax, M, "running_mean")
    _assert_close(rv, rv_ref, np.abs(rv_ref) + 4 * (1 / invstd_ref**2 + ax**2), M, "running_var")
    for training in (True, False):
        dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd, training=training)
        dx_ref, dgamma_ref, dbeta_ref = reference.batchnorm_backward(dy, x, gamma, mean_ref, invstd_ref,
                                                                     training=training)
        _assert_close(dbeta, dbeta_ref, sdy, M, "dbeta")
        _assert_close(dgamma, dgamma_ref, sdyt, M, "dgamma")
        k = _per_channel(np.abs(gamma * invstd_ref), x)
        s_dyxhat = _per_channel(np.abs(dgamma_ref.astype(np.float64)), x)
        terms = k / M * (M * np.abs(dy) + _per_channel(sdy, x) + t * _per_channel(sdyt, x) + s_dyxhat * t)
        _assert_close(dx, dx_ref, terms, M, f"dx training={training}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5), (1, 2, 3, 3)])
def test_inference_uses_running_statistics(dtype, shape, rng):
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rv = rng.standard_normal(C).astype(dtype), rng.random(C).astype(dtype) + 0.1
    before = rm.tobytes(), rv.tobytes()
    y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=1e-3)
    assert (rm.tobytes(), rv.tobytes()) == before
    y_ref, mean_ref, invstd_ref = reference.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=1e-3)
    assert mean.tobytes() == mean_ref.tobytes() and invstd.tobytes() == invstd_ref.tobytes()
    assert y.tobytes() == y_ref.tobytes()  # one fused expression in double, rounded once, on both sides


def test_matches_pytorch_over_several_steps(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for dtype in DTYPES:
        for shape in [(6, 4, 5, 5), (9, 7)]:
            C = shape[1]
            gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
            rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
            trm, trv = torch.zeros(C, dtype=torch.from_numpy(rm).dtype), torch.ones(C, dtype=torch.from_numpy(rm).dtype)
            M = shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1)
            tol = 64 * M * np.finfo(dtype).eps
            for _ in range(4):
                x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
                dy = rng.standard_normal(shape).astype(dtype)
                y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.1, eps=1e-5)
                xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
                yt = F.batch_norm(xt, trm, trv, gt, bt, training=True, momentum=0.1, eps=1e-5)
                yt.backward(torch.tensor(dy))
                dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd)
                for ours, theirs in ((y, yt.detach()), (rm, trm), (rv, trv), (dx, xt.grad), (dgamma, gt.grad),
                                     (dbeta, bt.grad)):
                    np.testing.assert_allclose(ours, theirs.numpy(), rtol=tol, atol=tol * np.abs(theirs.numpy()).max())
            ye, _, _ = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False)
            yte = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=False)
            np.testing.assert_allclose(ye, yte.numpy(), rtol=tol, atol=tol * np.abs(yte.numpy()).max())


def test_keras_convention_over_several_steps(rng):
    """Keras 3 (keras/src/layers/normalization/batch_normalization.py): moving = moving*momentum +
    stat*(1 - momentum), with ops.moments's biased variance E[x^2] - E[x]^2; PyTorch's running mean with
    momentum 1 - m is the same recursion."""
    torch = pytest.importorskip("torch")
    x_shape, m = (8, 3, 4, 4), 0.99
    rm, rv = np.zeros(3), np.ones(3)
    k_mean, k_var = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(5):
        x = rng.standard_normal(x_shape) * 2 + 3
        ops.batchnorm_forward(x, None, None, rm, rv, momentum=m, eps=1e-3, convention="keras")
        mean = x.mean(axis=(0, 2, 3))
        var = (x ** 2).mean(axis=(0, 2, 3)) - mean ** 2
        k_mean, k_var = k_mean * m + mean * (1 - m), k_var * m + var * (1 - m)
        F = torch.nn.functional
        F.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=1 - m)
    tol = 64 * 128 * np.finfo(np.float64).eps * 10   # E[x^2] - E[x]^2 cancels about one digit here
    np.testing.assert_allclose(rm, k_mean, rtol=tol)
    np.testing.assert_allclose(rv, k_var, rtol=tol)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=tol)


def test_finite_difference_gradients(rng):
    for shape in [(3, 2, 4, 3), (5, 3)]:
        C = shape[1]
        x = rng.standard_normal(shape)
        gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
        w = rng.standard_normal(shape)
        for training in (True, False):
            rm, rv = rng.standard_normal(C), rng.random(C) + 0.5

            def loss():
                y, _, _ = ops.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), training=training)
                return float((y * w).sum())

            y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), training=training)
            dx, dgamma, dbeta = ops.batchnorm_backward(w, x, gamma, mean, invstd, training=training)
            idx = rng.choice(x.size, 6, replace=False)
            np.testing.assert_allclose(dx.reshape(-1)[idx], numerical_gradient(loss, x, idx), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(dgamma, numerical_gradient(loss, gamma, range(C)), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(dbeta, numerical_gradient(loss, beta, range(C)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 16, 20, 20), (4096, 12)])
def test_bit_identical_on_1_to_4_threads(dtype, shape, rng):
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    old = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            fastconv.set_num_threads(threads)
            rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
            y, mean, invstd = ops.batchnorm_forward(x, gamma, beta, rm, rv)
            dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, gamma, mean, invstd)
            results.append(b"".join(a.tobytes() for a in (y, mean, invstd, rm, rv, dx, dgamma, dbeta)))
    finally:
        fastconv.set_num_threads(old)
    assert all(r == results[0] for r in results)


def test_noncontiguous_byteswapped_and_optional_arguments(rng):
    x = rng.standard_normal((6, 8, 5, 4))[::2, ::2]
    y, mean, invstd = ops.batchnorm_forward(x.astype(">f8"))
    y_ref, _, _ = reference.batchnorm_forward(np.ascontiguousarray(x))
    y_c, _, _ = ops.batchnorm_forward(np.ascontiguousarray(x))
    assert y.tobytes() == y_c.tobytes() and y.dtype.isnative
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    rm = np.zeros(8)[::2]          # a strided running statistic is updated through a copy written back
    rv = np.ones(4).astype(">f8")
    ops.batchnorm_forward(x, None, None, rm, rv)
    rm_ref, rv_ref = np.zeros(4), np.ones(4)
    reference.batchnorm_forward(np.ascontiguousarray(x), None, None, rm_ref, rv_ref)
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-14)
    dx, dgamma, dbeta = ops.batchnorm_backward(np.ones_like(x), x, None, mean, invstd, need_dx=False)
    assert dx is None and dgamma.shape == dbeta.shape == (4,)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.batchnorm_forward(np.ones((2, 3, 4))), ValueError, "must be"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), np.ones(2)), ValueError, "gamma must have shape"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), np.ones(3, np.float32)), TypeError, "gamma has dtype"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), eps=0), ValueError, "eps must be >"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), momentum=1.5), ValueError, "momentum must be <="),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), convention="tf"), ValueError, "convention"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), training=False), ValueError, "needs running_mean"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), None, None, np.zeros(3)), ValueError, "both"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), None, None, np.zeros(4), np.ones(4)), ValueError,
         "running_mean must have shape"),
        (lambda: ops.batchnorm_forward(np.ones((1, 3)), None, None, np.zeros(3), np.ones(3)), ValueError,
         "more than one value per channel"),
        (lambda: ops.batchnorm_forward(np.ones((0, 3))), ValueError, "at least one value"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3)), None, None, np.zeros(3, np.int64), np.ones(3)),
         TypeError, "running_mean"),
        (lambda: ops.batchnorm_backward(np.ones((2, 4)), np.ones((2, 3)), None, np.zeros(3), np.ones(3)),
         ValueError, "dy has shape"),
        (lambda: ops.batchnorm_backward(np.ones((2, 3)), np.ones((2, 3)), None, np.zeros(2), np.ones(3)),
         ValueError, "mean must be"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_aliased_running_statistics_are_refused():
    x = np.ones((4, 3))
    stats = np.zeros(6)
    with pytest.raises(ValueError, match="running_mean and running_var share memory"):
        ops.batchnorm_forward(x, None, None, stats[:3], stats[2:5])
    with pytest.raises(ValueError, match="running_mean and x share memory"):
        ops.batchnorm_forward(x, None, None, x[0], np.ones(3))


def test_bound_calls_check_their_buffers():
    x = np.ones((4, 3))
    c, d = np.ones(3), np.empty(3)
    with pytest.raises(TypeError, match="mean has dtype"):
        ops.bind_batchnorm_forward(x, c, c, np.zeros(3), np.ones(3), np.empty_like(x), np.empty(3, np.float32),
                                   np.empty(3), np.empty(12), training=True, momentum=0.1, eps=1e-5,
                                   convention="torch")
    with pytest.raises(ValueError, match="work has shape"):
        ops.bind_batchnorm_backward(x, x, c, np.empty(3), np.empty(3), None, d, d, np.empty(12))


def test_keras_convention_takes_a_batch_of_one():
    rm, rv = np.zeros(3), np.ones(3)
    y, _, _ = ops.batchnorm_forward(np.ones((1, 3)), None, None, rm, rv, momentum=0.99, convention="keras")
    assert (y == 0).all() and np.allclose(rv, 0.99)


# ------------------------------------------------------------------------------------------------ layer

def _images(rng, n):
    """Two classes of 8x8 images on an offset of 5: bright left half or bright right half, with noise."""
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 8, 8)) * 0.5 + 5
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x, y


@pytest.mark.parametrize("convention,momentum", [("torch", 0.1), ("keras", 0.9)])
def test_small_cnn_with_batch_norm_trains(convention, momentum):
    rng = np.random.default_rng(0)
    x, y = _images(rng, 256)
    model = Sequential([layers.Conv2D(4, 3), layers.BatchNormalization(momentum=momentum, convention=convention),
                        layers.Activation("relu"), layers.MaxPool2D(2), layers.Flatten(),
                        layers.Dense(8), layers.BatchNormalization(momentum=momentum, convention=convention),
                        layers.Activation("relu"), layers.Dense(2, activation="softmax")], dtype="float64", seed=0)
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0]
    assert model.evaluate(x, y)["accuracy"] > 0.95   # predict: the running statistics
    bn = model.layers[1]
    assert not np.array_equal(bn.state["moving_mean"], np.zeros(4))   # updated by the training steps
    assert set(bn.params) == {"gamma", "beta"} and model.state.size == 2 * 4 + 2 * 8


def test_predict_uses_the_running_statistics(rng):
    bn = layers.BatchNormalization(epsilon=1e-3)
    model = Sequential([bn], dtype="float64").build((3, 4, 4))
    bn.state["moving_mean"][...] = [1.0, -2.0, 0.5]
    bn.state["moving_variance"][...] = [4.0, 0.25, 1.0]
    bn.params["gamma"][...] = [2.0, 1.0, -1.0]
    bn.params["beta"][...] = [0.0, 1.0, 3.0]
    x = rng.standard_normal((5, 3, 4, 4))
    out = model.predict(x)
    mean, var = bn.state["moving_mean"], bn.state["moving_variance"]
    expected = ((x - mean.reshape(1, 3, 1, 1)) * (bn.params["gamma"] / np.sqrt(var + 1e-3)).reshape(1, 3, 1, 1)
                + bn.params["beta"].reshape(1, 3, 1, 1))
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)
    assert model.predict(x[:1]).tobytes() == out[:1].tobytes()   # per-sample: no batch statistics
    before = model.state.copy()
    model.predict(x)
    assert model.state.tobytes() == before.tobytes()
    assert model.params.size == 6 and not np.shares_memory(model.state, model.params)


def test_center_and_scale_off_and_config():
    bn = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, center=False, scale=False, convention="keras")
    model = Sequential([layers.Flatten(), bn, layers.Dense(2)], seed=0).build((2, 3, 3))
    assert bn.params == {} and model.state.size == 36
    assert bn.get_config() == {"name": None, "momentum": 0.99, "epsilon": 1e-3, "center": False, "scale": False,
                               "convention": "keras"}
    model.compile("sgd", "mse")
    model.train_on_batch(np.ones((4, 2, 3, 3)), np.zeros((4, 2)))
    assert np.allclose(bn.state["moving_mean"], 0.01)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(momentum=2), ValueError, "momentum"), (dict(epsilon=0), ValueError, "epsilon"),
    (dict(center=1), TypeError, "center"), (dict(convention="tf"), ValueError, "convention"),
    (dict(momentum="x"), TypeError, "momentum"),
])
def test_layer_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        layers.BatchNormalization(**kwargs)


def test_layer_bad_input_shape():
    with pytest.raises(ValueError, match="BatchNormalization expects"):
        Sequential([layers.BatchNormalization()]).build((2, 3))


def test_torch_convention_refuses_a_training_batch_of_one_value_per_channel():
    model = Sequential([layers.Dense(3), layers.BatchNormalization(), layers.Dense(2)], seed=0)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="BatchNormalization.*at least 2 samples"):
        model.train_on_batch(np.ones((1, 4)), np.zeros((1, 2)))
    assert model.predict(np.ones((1, 4))).shape == (1, 2)   # inference takes one sample


def test_layer_gradients_and_running_statistics_match_pytorch(rng):
    """Conv -> BatchNormalization -> Flatten -> Dense against the same torch modules: outputs, every
    parameter gradient, the running statistics after two training steps, and inference."""
    torch = pytest.importorskip("torch")
    model = Sequential([layers.Conv2D(3, 3), layers.BatchNormalization(momentum=0.2), layers.Flatten(),
                        layers.Dense(2)], dtype="float64", seed=0).build((2, 6, 6))
    conv, bn, _, dense = model.layers
    bn.params["gamma"][...] = rng.standard_normal(3)
    bn.params["beta"][...] = rng.standard_normal(3)
    tconv, tbn, tdense = torch.nn.Conv2d(2, 3, 3).double(), torch.nn.BatchNorm2d(3, momentum=0.2).double(), \
        torch.nn.Linear(48, 2).double()
    with torch.no_grad():
        tconv.weight[...] = torch.tensor(conv.params["kernel"])
        tconv.bias[...] = torch.tensor(conv.params["bias"])
        tbn.weight[...] = torch.tensor(bn.params["gamma"])
        tbn.bias[...] = torch.tensor(bn.params["beta"])
        tdense.weight[...] = torch.tensor(dense.params["kernel"])
        tdense.bias[...] = torch.tensor(dense.params["bias"])
    tmodel = torch.nn.Sequential(tconv, tbn, torch.nn.Flatten(), tdense)
    for _ in range(2):
        x, g = rng.standard_normal((4, 2, 6, 6)), rng.standard_normal((4, 2))
        outs = model.backpropagate(x, g)
        tmodel.zero_grad()
        out = tmodel(torch.tensor(x))
        out.backward(torch.tensor(g))
        np.testing.assert_allclose(outs[-1], out.detach().numpy(), rtol=1e-12, atol=1e-12)
        for ours, theirs in ((conv.grads["kernel"], tconv.weight), (conv.grads["bias"], tconv.bias),
                             (bn.grads["gamma"], tbn.weight), (bn.grads["beta"], tbn.bias),
                             (dense.grads["kernel"], tdense.weight)):
            np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.state["moving_mean"], tbn.running_mean.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(bn.state["moving_variance"], tbn.running_var.numpy(), rtol=1e-13)
    tmodel.eval()
    x = rng.standard_normal((3, 2, 6, 6))
    np.testing.assert_allclose(model.predict(x), tmodel(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
